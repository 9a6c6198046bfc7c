"""Convert Bones-SEED G1 CSVs (one clip per file, 120 fps) into a gear_sonic motion library.

    python data_process/convert_soma_csv_to_motion_lib.py \
        --input /path/to/bones_seed/g1/csv/ --output data/motion_lib_bones_seed/robot \
        --fps 30 --fps_source 120 --num_workers 16

Without --individual, OUT is one library directory (index.json + memory-mapped arrays).
With --individual, OUT is a directory of per-clip .npz files mirroring the input tree (the
layout SONIC's per-clip PKLs had); MotionLibrary.open() reads either.
"""

from __future__ import annotations

import argparse
import sys

from gear_sonic.data.convert_csv import convert_csv_tree


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="directory searched recursively for .csv files, or one .csv")
    parser.add_argument("--output", required=True, help="library directory to write (or, with --individual, a directory of .npz)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate to store clips at (default 30)")
    parser.add_argument("--fps_source", type=float, default=120.0, help="frame rate of the CSVs (default 120)")
    parser.add_argument("--individual", action="store_true", help="write one .npz per clip, mirroring the input tree")
    parser.add_argument("--num_workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--smpl_dir", help="directory of per-clip SMPL joint .npz files to attach by clip name")
    parser.add_argument("--soma_dir", help="directory of per-clip SOMA joint .npz files to attach by clip name")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output library")
    parser.add_argument("--skip_existing", action="store_true", help="with --individual: keep .npz files already written")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar (the summary is still printed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = convert_csv_tree(
            args.input,
            args.output,
            fps=args.fps,
            fps_source=args.fps_source,
            individual=args.individual,
            num_workers=args.num_workers,
            smpl_dir=args.smpl_dir,
            soma_dir=args.soma_dir,
            overwrite=args.overwrite,
            skip_existing=args.skip_existing,
            show_progress=not args.no_progress,
        )
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.summary_text())
    if report.converted:
        print(f"wrote {args.output}")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
