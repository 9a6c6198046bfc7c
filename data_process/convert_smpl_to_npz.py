"""Convert SONIC-style SMPL PKLs (pose_aa, smpl_joints, transl, fps; y-up) to gear_sonic SMPL npz files.

    python data_process/convert_smpl_to_npz.py --input data/smpl_filtered --output data/smpl_npz \
        --trust-pickle --num_workers 8

Each PKL becomes `<output>/<relative path>.npz` with `smpl_joints` (T, 24, 3) and `transl` (T, 3)
in SMPL's y-up frame, `fps` and `pose_aa` when present; these are matched to robot clips by name
(MotionLibrary.open(..., smpl_path=OUT) or the CSV converter's --smpl_dir). Unpickling runs code
stored in the file, so nothing is read without --trust-pickle.
"""

from __future__ import annotations

import argparse
import sys

from gear_sonic.data.import_pkl import convert_smpl_pkls
from gear_sonic.data.sonic_pkl import UntrustedPickleError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="directory searched recursively for .pkl files, or one .pkl")
    parser.add_argument("--output", required=True, help="directory for the .npz files")
    parser.add_argument("--trust-pickle", "--trust_pickle", dest="trust_pickle", action="store_true",
                        help="allow unpickling the input files (they can run code: trusted sources only)")
    parser.add_argument("--num_workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--skip_existing", action="store_true", help="keep .npz files already written")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar (the summary is still printed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = convert_smpl_pkls(args.input, args.output, trust_pickle=args.trust_pickle, num_workers=args.num_workers,
                                   skip_existing=args.skip_existing, show_progress=not args.no_progress)
    except (UntrustedPickleError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.summary_text())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
