#!/usr/bin/env python3
"""Fetch the real SOMA skeleton BVH (``soma_zero_frame0.bvh``, 77 joints + virtual Root).

The file ships inside the ``eden-soma-retargeter`` wheel on PyPI (Apache-2.0). The package itself
needs a GPU, so we only download the wheel with pip (no install, no dependencies) and read the one
file out of it. The output is written atomically.

    python data_process/fetch_soma_skeleton.py --output sample_data/soma_skeleton/soma_zero_frame0.bvh
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_PACKAGE = "eden-soma-retargeter"
WHEEL_VERSION = "0.4.0"
MEMBER = "soma_retargeter/configs/soma/soma_zero_frame0.bvh"
# sha256 of the file in version 0.4.0, checked so a changed upload cannot slip in unnoticed.
KNOWN_SHA256 = {"0.4.0": "103b407df5a74bcc1b0b1b55e3cd165d88af05f6ca249b2a528fd9c76cb11eb8"}
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "sample_data" / "soma_skeleton" / "soma_zero_frame0.bvh"


def extract_from_wheel(wheel: Path, output: Path, expected_sha256: str | None = None) -> Path:
    """Copy the skeleton BVH out of a downloaded wheel to ``output`` (temporary name, then rename)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(MEMBER)
    except KeyError:
        raise SystemExit(f"{wheel}: does not contain {MEMBER}") from None
    except zipfile.BadZipFile as error:
        raise SystemExit(f"{wheel}: not a wheel ({error})") from None
    if not data.lstrip().startswith(b"HIERARCHY"):
        raise SystemExit(f"{wheel}: {MEMBER} is not a BVH file")
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise SystemExit(f"{wheel}: {MEMBER} has sha256 {digest}, expected {expected_sha256}")
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(temp, output)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return output


def download_wheel(directory: Path, version: str) -> Path:
    """``pip download --no-deps`` the wheel into ``directory`` and return its path."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        f"{WHEEL_PACKAGE}=={version}", "-d", str(directory),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"pip download {WHEEL_PACKAGE}=={version} failed:\n{result.stderr.strip()}")
    wheels = sorted(directory.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"pip download {WHEEL_PACKAGE}=={version} produced no wheel in {directory}")
    return wheels[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write soma_zero_frame0.bvh")
    parser.add_argument("--version", default=WHEEL_VERSION, help="eden-soma-retargeter wheel version")
    parser.add_argument("--wheel", type=Path, help="use an already downloaded wheel instead of pip download")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    if args.output.is_file() and not args.force:
        print(f"{args.output} already exists (use --force to fetch again)")
        return 0
    expected = KNOWN_SHA256.get(args.version)
    if args.wheel is not None:
        extract_from_wheel(args.wheel, args.output, expected)
    else:
        with tempfile.TemporaryDirectory(prefix="soma_wheel_") as tmp:
            extract_from_wheel(download_wheel(Path(tmp), args.version), args.output, expected)
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes) from {WHEEL_PACKAGE}=={args.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
