"""Import SONIC motion-lib PKLs (joblib, one clip per file) into a gear_sonic motion library.

    python data_process/import_sonic_motion_lib.py --input data/motion_lib_bones_seed/robot_filtered \
        --output data/robot_filtered_lib --trust-pickle --num_workers 8

Unpickling runs code stored in the file, so nothing is read without --trust-pickle: use it only
for files from a source you trust. Root rotations are converted from SONIC's xyzw to wxyz.
Clip names are the PKL paths relative to --input without extension.
"""

from __future__ import annotations

import argparse
import sys

from gear_sonic.data.clip import MotionFormatError
from gear_sonic.data.import_pkl import import_sonic_motion_lib
from gear_sonic.data.sonic_pkl import SMPL_JOINTS_FRAMES, UntrustedPickleError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="directory searched recursively for .pkl files, or one .pkl")
    parser.add_argument("--output", required=True, help="library directory to write (or, with --individual, a directory of .npz)")
    parser.add_argument("--trust-pickle", "--trust_pickle", dest="trust_pickle", action="store_true",
                        help="allow unpickling the input files (they can run code: trusted sources only)")
    parser.add_argument("--individual", action="store_true", help="write one .npz per clip, mirroring the input tree")
    parser.add_argument("--fps", type=float, default=None, help="resample clips to this rate (default: keep theirs)")
    parser.add_argument("--smpl_joints", choices=SMPL_JOINTS_FRAMES, default="ignore",
                        help="how to read entries' smpl_joints: ignore them (default), keep as z-up, or rotate from y-up")
    parser.add_argument("--num_workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output library")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar (the summary is still printed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = import_sonic_motion_lib(
            args.input, args.output, trust_pickle=args.trust_pickle, individual=args.individual, fps=args.fps,
            smpl_joints=args.smpl_joints, num_workers=args.num_workers, overwrite=args.overwrite,
            show_progress=not args.no_progress,
        )
    except (UntrustedPickleError, FileExistsError, FileNotFoundError, MotionFormatError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.summary_text())
    if report.converted:
        print(f"wrote {args.output}")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
