"""Keyword filter for Bones-SEED clips the G1 cannot perform (furniture, vehicles, acrobatics, heights).

A clip is dropped when `parent_dir/filename` (its parent directory name, a slash and its file
name, or the last two parts of a library clip name) contains any keyword, case-insensitively. The
filter works on a directory of per-clip files (CSV, npz, BVH, PKL or per-clip library
directories, copied with their tree) and on a library directory (a filtered library is written).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from gear_sonic.data.clip import MotionFormatError, atomic_write
from gear_sonic.data.library import MotionLibrary, is_motion_library, write_motion_library

# The keyword list of the SONIC Bones-SEED recipe (about 8.7% of its 142K clips match).
DEFAULT_FILTER_KEYWORDS: tuple[str, ...] = (
    "bed", "bike", "chair", "climb", "com_up_50cm", "sitting", "step_on", "seat", "table", "_sit_",
    "sit_", "ladder", "crutch", "_bed_", "_ride_", "scooter", "stepdown", "acrobatics_", "box_HSPU",
    "cartwheel", "50cm_box_", "on_box", "fall_from", "handstand_ff_", "on_1m", "form_box", "off_1m",
    "230m", "jump_over_obstacle_", "lift_crate_come_up_", "jump_to_shoulder_roll", "kozak_dance",
    "stair", "handstand", "box_jump", "monkey_jump", "safety_roll", "box_dips", "walking_on_edge",
    "push_obstacle",
)


def read_keyword_file(path: str | os.PathLike) -> list[str]:
    """Keywords from a text file, one per line; blank lines and lines starting with # are ignored."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise MotionFormatError(f"{path}: cannot read keyword file ({error})") from error
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def filter_key(clip_name: str) -> str:
    """`parent_dir/filename` of a clip name or relative path, lower case."""
    path = PurePosixPath(clip_name.replace(os.sep, "/"))
    parent = path.parent.name
    return (f"{parent}/{path.name}" if parent else path.name).lower()


def matching_keywords(clip_name: str, keywords: tuple[str, ...] | list[str]) -> list[str]:
    """The keywords (as given) found in the clip's filter key, case-insensitively."""
    key = filter_key(clip_name)
    return [k for k in keywords if k.lower() in key]


@dataclass
class FilterReport:
    """How many clips were seen, kept and dropped, and how often each keyword matched."""

    total: int = 0
    kept: list[str] = field(default_factory=list)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # clip -> matching keywords
    keyword_counts: Counter = field(default_factory=Counter)
    dry_run: bool = False

    def summary_text(self, max_listed: int = 20) -> str:
        share = 100.0 * len(self.dropped) / self.total if self.total else 0.0
        verb = "would drop" if self.dry_run else "dropped"
        lines = [f"{self.total} clips: kept {len(self.kept)}, {verb} {len(self.dropped)} ({share:.1f}%)"]
        if self.keyword_counts:
            lines.append("matches per keyword (a clip can match several):")
            lines += [f"  {keyword}: {count}" for keyword, count in self.keyword_counts.most_common()]
        for name, keywords in list(self.dropped.items())[:max_listed]:
            lines.append(f"  {verb} {name} ({', '.join(keywords)})")
        if len(self.dropped) > max_listed:
            lines.append(f"  ... and {len(self.dropped) - max_listed} more")
        return "\n".join(lines)


def _classify(names: list[str], keywords: list[str], report: FilterReport) -> list[bool]:
    keep = []
    for name in names:
        hits = matching_keywords(name, keywords)
        report.total += 1
        if hits:
            report.dropped[name] = hits
            report.keyword_counts.update(hits)
            keep.append(False)
        else:
            report.kept.append(name)
            keep.append(True)
    return keep


def _clip_units(source: Path) -> list[Path]:
    """Per-clip files under `source`, and per-clip library directories taken as single units."""
    units = []
    for root, dirs, files in os.walk(source):
        root_path = Path(root)
        library_dirs = [d for d in dirs if is_motion_library(root_path / d)]
        units += [root_path / d for d in library_dirs]
        dirs[:] = sorted(d for d in dirs if d not in library_dirs and not d.startswith("."))
        units += [root_path / f for f in files if not f.startswith(".")]
    return sorted(units)


def _copy_unit(task: tuple[Path, Path]) -> None:
    source, dest = task
    if source.is_dir():
        temp = dest.parent / f".{dest.name}.partial"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.copytree(source, temp)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(temp, dest)
    else:
        atomic_write(dest, lambda temp: shutil.copy2(source, temp))


def filter_motion_data(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    keywords: list[str] | tuple[str, ...] = DEFAULT_FILTER_KEYWORDS,
    *,
    workers: int = 1,
    dry_run: bool = False,
    overwrite: bool = False,
) -> FilterReport:
    """Copy the clips of `source` whose names match no keyword to `dest`.

    A library directory gives a filtered library at `dest` (needs `overwrite` if `dest`
    exists). A directory of per-clip files gives the kept files under `dest` with the same
    relative paths. `dry_run` only reports.
    """
    source, dest = Path(source), Path(dest)
    keywords = list(keywords)
    report = FilterReport(dry_run=dry_run)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or directory")
    if source.resolve() == dest.resolve():
        raise ValueError(f"{dest}: destination must differ from the source")
    if is_motion_library(source):
        library = MotionLibrary.open(source)
        keep = _classify(list(library.names), keywords, report)
        if not dry_run:
            if dest.exists() and not overwrite:
                raise FileExistsError(f"{dest}: already exists (use --overwrite to replace it)")
            kept = (library[i] for i, k in enumerate(keep) if k)
            write_motion_library(dest, kept, overwrite=overwrite)
        return report
    if not source.is_dir():
        raise MotionFormatError(f"{source}: neither a motion library nor a directory of clip files")
    units = _clip_units(source)
    names = [u.relative_to(source).as_posix() for u in units]
    keep = _classify(names, keywords, report)
    if not dry_run:
        tasks = [(u, dest / u.relative_to(source)) for u, k in zip(units, keep) if k]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(_copy_unit, tasks))
    return report
