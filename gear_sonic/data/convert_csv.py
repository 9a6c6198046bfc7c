"""Bones-SEED G1 CSV tree -> motion library (or per-clip .npz files), in parallel.

Clip names are the CSV paths relative to the input directory without extension
(`subdir/clip_001`). SMPL / SOMA side files are attached by the same name when directories
for them are given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gear_sonic.data.batch import BatchProgress, BatchReport
from gear_sonic.data.bones_csv import read_bones_csv
from gear_sonic.data.clip import MotionClip, MotionFormatError, resample_clip, save_clip_npz
from gear_sonic.data.pipeline import run_conversion
from gear_sonic.data.side_files import attach_side_data, find_side_file, index_side_files


@dataclass(frozen=True)
class CsvJob:
    """One CSV to convert (picklable, sent to worker processes)."""

    csv_path: Path
    name: str
    fps: float
    fps_source: float
    smpl_file: Path | None = None
    soma_file: Path | None = None
    npz_output: Path | None = None  # per-clip mode: write here instead of returning the clip


def find_csv_files(input_path: Path) -> list[tuple[Path, str]]:
    """(file, clip name) for every .csv under `input_path` (or the file itself), sorted."""
    if input_path.is_file():
        return [(input_path, input_path.stem)]
    if not input_path.is_dir():
        raise FileNotFoundError(f"{input_path}: no such file or directory")
    files = sorted(p for p in input_path.rglob("*") if p.is_file() and p.suffix.lower() == ".csv")
    return [(p, p.relative_to(input_path).with_suffix("").as_posix()) for p in files]


def convert_one_csv(job: CsvJob) -> MotionClip | int:
    """Read, resample and attach side data; return the clip, or its frame count in per-clip mode."""
    clip = read_bones_csv(job.csv_path, fps=job.fps_source, name=job.name)
    clip = resample_clip(clip, job.fps)
    if clip.num_frames < 2:
        raise MotionFormatError(f"{job.csv_path}: only {clip.num_frames} frame at {job.fps} fps; need at least 2")
    if job.smpl_file is not None or job.soma_file is not None:
        clip = attach_side_data(clip, job.smpl_file, job.soma_file)
    if job.npz_output is not None:
        save_clip_npz(job.npz_output, clip)
        return clip.num_frames
    return clip


def convert_csv_tree(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    fps: float = 30.0,
    fps_source: float = 120.0,
    individual: bool = False,
    num_workers: int = 1,
    smpl_dir: str | os.PathLike | None = None,
    soma_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    skip_existing: bool = False,
    show_progress: bool = True,
) -> BatchReport:
    """Convert every CSV under `input_path`.

    Default: one library directory at `output_path`, written only if at least one clip
    converted. `individual=True`: one clip .npz per CSV at `output_path/<name>.npz`, mirroring
    the input tree (each file written atomically; `skip_existing` keeps files already there).
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if fps <= 0 or fps_source <= 0:
        raise ValueError(f"fps and fps_source must be positive, got {fps} and {fps_source}")
    if not individual and output_path.exists() and not overwrite:
        raise FileExistsError(f"{output_path}: already exists (use --overwrite to replace it)")
    files = find_csv_files(input_path)
    smpl_index = index_side_files(smpl_dir) if smpl_dir is not None else None
    soma_index = index_side_files(soma_dir) if soma_dir is not None else None
    jobs = []
    progress = BatchProgress(total=len(files), description="converted", enabled=show_progress)
    seen: set[str] = set()
    for csv_path, name in files:
        if name in seen:  # e.g. clip.csv and clip.CSV side by side
            progress.skipped(name, f"{csv_path}: another CSV already gives the clip name {name!r}")
            continue
        seen.add(name)
        npz_output = output_path / f"{name}.npz" if individual else None
        if npz_output is not None and skip_existing and npz_output.exists():
            progress.skipped(name, f"{npz_output}: exists (--skip_existing)")
            continue
        jobs.append(
            CsvJob(
                csv_path=csv_path,
                name=name,
                fps=fps,
                fps_source=fps_source,
                smpl_file=find_side_file(smpl_index, name) if smpl_index is not None else None,
                soma_file=find_side_file(soma_index, name) if soma_index is not None else None,
                npz_output=npz_output,
            )
        )
    return run_conversion(jobs, convert_one_csv, output_path, progress, individual=individual, num_workers=num_workers)
