"""Drop Bones-SEED clips the G1 cannot perform (furniture, vehicles, acrobatics, elevated surfaces).

    python data_process/filter_and_copy_bones_data.py \
        --source data/motion_lib_bones_seed/robot --dest data/motion_lib_bones_seed/robot_filtered --workers 16

A clip is dropped when its `parent_dir/filename` contains a keyword (case-insensitive).
--source may be a motion library directory (a filtered library is written to --dest) or a
directory of per-clip files (CSV, npz, BVH, PKL, ...; the kept ones are copied to --dest with
their relative paths). Keywords: the SONIC list, plus --add-keywords and the lines of
--filter_file (use --no_default_keywords to use only your own).
"""

from __future__ import annotations

import argparse
import sys

from gear_sonic.data.clip import MotionFormatError
from gear_sonic.data.filtering import DEFAULT_FILTER_KEYWORDS, filter_motion_data, read_keyword_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="library directory or directory of per-clip files")
    parser.add_argument("--dest", required=True, help="where the kept clips go")
    parser.add_argument("--workers", type=int, default=1, help="parallel copies (default 1)")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="report only, copy nothing")
    parser.add_argument("--add-keywords", "--add_keywords", dest="add_keywords", nargs="+", default=[], metavar="KEYWORD",
                        help="extra keywords to drop")
    parser.add_argument("--filter_file", "--filter-file", dest="filter_file", help="file of extra keywords, one per line")
    parser.add_argument("--no_default_keywords", action="store_true", help="do not use the built-in SONIC keyword list")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing destination library")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keywords = [] if args.no_default_keywords else list(DEFAULT_FILTER_KEYWORDS)
    keywords += args.add_keywords
    try:
        if args.filter_file:
            keywords += read_keyword_file(args.filter_file)
        if not keywords:
            raise ValueError("no keywords: give --add-keywords or --filter_file with --no_default_keywords")
        keywords = list(dict.fromkeys(keywords))
        report = filter_motion_data(args.source, args.dest, keywords, workers=args.workers, dry_run=args.dry_run,
                                    overwrite=args.overwrite)
    except (FileExistsError, FileNotFoundError, MotionFormatError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.summary_text())
    if not args.dry_run:
        print(f"wrote {len(report.kept)} clips to {args.dest}")
    return 0 if report.kept or report.total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
