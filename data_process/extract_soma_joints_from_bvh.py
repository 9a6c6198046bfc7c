#!/usr/bin/env python3
"""Extract the 26 SOMA encoder joints (z-up, metres) and root pose from SOMA BVH files.

Writes one ``.npz`` per clip, mirroring the input tree under ``--output`` (see docs/soma.md):
``soma_joints`` (T, 26, 3), ``root_quat`` (T, 4 wxyz), ``root_pos`` (T, 3), ``fps``, ``joint_names``.

    python data_process/extract_soma_joints_from_bvh.py --input bvh/ --output soma/ --fps 30 --num_workers 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gear_sonic.data.batch import BatchProgress, parallel_map
from gear_sonic.data.soma import extract_soma_file


def find_bvh_files(input_path: Path) -> tuple[Path, list[Path]]:
    """(base directory, BVH files under it, sorted); a single file is its own list."""
    if input_path.is_file():
        return input_path.parent, [input_path]
    if not input_path.is_dir():
        raise SystemExit(f"--input {input_path}: no such file or directory")
    files = sorted(p for p in input_path.rglob("*") if p.suffix.lower() == ".bvh" and p.is_file())
    return input_path, files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="a .bvh file or a directory searched recursively")
    parser.add_argument("--output", type=Path, required=True, help="output directory (mirrors the input tree)")
    parser.add_argument("--fps", type=float, default=30.0, help="output frame rate (default 30); source rate is the file's")
    parser.add_argument("--num_workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--skip_existing", action="store_true", help="leave clips whose .npz already exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (summary only)")
    args = parser.parse_args(argv)
    if args.fps <= 0:
        parser.error("--fps must be positive")

    base, files = find_bvh_files(args.input)
    if not files:
        print(f"no .bvh files under {args.input}", file=sys.stderr)
        return 1
    tasks, existing = [], []
    for file in files:
        target = args.output / file.relative_to(base).with_suffix(".npz")
        if args.skip_existing and target.is_file():
            existing.append(file)
        else:
            tasks.append((str(file), str(target), float(args.fps)))
    print(f"{len(files)} BVH file(s) under {args.input}; {len(tasks)} to extract at {args.fps:g} fps, "
          f"{len(existing)} already done; {args.num_workers} worker(s)")  # fmt: skip

    with BatchProgress(total=len(files), description="extracted", enabled=not args.quiet) as progress:
        for file in existing:
            progress.skipped(file.relative_to(base).as_posix(), f"{file}: output exists (--skip_existing)")
        for result in parallel_map(extract_soma_file, tasks, num_workers=args.num_workers, ordered=False):
            name = Path(result.item[0]).relative_to(base).as_posix()
            if result.error is None:
                progress.converted(name, frames=result.value)
            else:
                progress.skipped(name, result.error)
    code = progress.finish()
    failed = len(progress.report.skipped) - len(existing)
    if code != 0 and existing and failed == 0:
        return 0  # everything was already extracted: nothing to do is not a failure
    return code


if __name__ == "__main__":
    sys.exit(main())
