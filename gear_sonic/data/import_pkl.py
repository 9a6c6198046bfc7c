"""Batch import of SONIC's pickled data: motion-lib PKLs -> library, SMPL PKLs -> SMPL npz.

Workers only ever unpickle when the caller passed `trust_pickle=True` (the scripts'
`--trust-pickle`); without it nothing is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gear_sonic.data.batch import BatchProgress, BatchReport
from gear_sonic.data.clip import resample_clip, save_clip_npz
from gear_sonic.data.pipeline import run_conversion
from gear_sonic.data.side_files import write_smpl_npz
from gear_sonic.data.sonic_pkl import UntrustedPickleError, load_smpl_pkl, load_sonic_motion_pkl


@dataclass(frozen=True)
class PklJob:
    path: Path
    name: str
    trust_pickle: bool
    output: Path | None = None  # per-clip output: a .npz path (motion) or the SMPL npz path
    fps: float | None = None
    smpl_joints: str = "ignore"


def find_pkl_files(input_path: Path) -> list[tuple[Path, str]]:
    """(file, clip name) for every .pkl under `input_path` (or the file itself), sorted."""
    if input_path.is_file():
        return [(input_path, input_path.stem)]
    if not input_path.is_dir():
        raise FileNotFoundError(f"{input_path}: no such file or directory")
    files = sorted(p for p in input_path.rglob("*") if p.is_file() and p.suffix.lower() == ".pkl")
    return [(p, p.relative_to(input_path).with_suffix("").as_posix()) for p in files]


def import_one_motion_pkl(job: PklJob):
    clips = load_sonic_motion_pkl(job.path, trust_pickle=job.trust_pickle, name=job.name, smpl_joints=job.smpl_joints)
    if job.fps is not None:
        clips = [resample_clip(c, job.fps) for c in clips]
    if job.output is None:
        return clips
    for clip in clips:
        save_clip_npz(job.output / f"{clip.name}.npz", clip)
    return sum(c.num_frames for c in clips)


def convert_one_smpl_pkl(job: PklJob) -> int:
    data = load_smpl_pkl(job.path, trust_pickle=job.trust_pickle)
    write_smpl_npz(job.output, data["smpl_joints"], data["fps"], data["transl"], data.get("pose_aa"))
    return int(data["smpl_joints"].shape[0])


def _require_trust(trust_pickle: bool, input_path: Path) -> None:
    if not trust_pickle:
        raise UntrustedPickleError(
            f"{input_path}: refusing to unpickle SONIC PKLs (loading a pickle runs code from the file); "
            "pass --trust-pickle only for files you trust"
        )


def import_sonic_motion_lib(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    trust_pickle: bool = False,
    individual: bool = False,
    fps: float | None = None,
    smpl_joints: str = "ignore",
    num_workers: int = 1,
    overwrite: bool = False,
    show_progress: bool = True,
) -> BatchReport:
    """SONIC motion-lib PKLs (one clip per file, xyzw) -> one library, or per-clip .npz with `individual`."""
    input_path, output_path = Path(input_path), Path(output_path)
    _require_trust(trust_pickle, input_path)
    if not individual and output_path.exists() and not overwrite:
        raise FileExistsError(f"{output_path}: already exists (use --overwrite to replace it)")
    files = find_pkl_files(input_path)
    jobs = [
        PklJob(path, name, trust_pickle, output_path if individual else None, fps, smpl_joints) for path, name in files
    ]
    progress = BatchProgress(total=len(jobs), description="imported", enabled=show_progress)
    return run_conversion(jobs, import_one_motion_pkl, output_path, progress, individual=individual, num_workers=num_workers)


def convert_smpl_pkls(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    trust_pickle: bool = False,
    num_workers: int = 1,
    skip_existing: bool = False,
    show_progress: bool = True,
) -> BatchReport:
    """SMPL PKLs -> SMPL joint npz files (`output/<name>.npz`, y-up as in the source)."""
    input_path, output_path = Path(input_path), Path(output_path)
    _require_trust(trust_pickle, input_path)
    files = find_pkl_files(input_path)
    progress = BatchProgress(total=len(files), description="converted", enabled=show_progress)
    jobs = []
    for path, name in files:
        target = output_path / f"{name}.npz"
        if skip_existing and target.exists():
            progress.skipped(name, f"{target}: exists (--skip_existing)")
            continue
        jobs.append(PklJob(path, name, trust_pickle, target))
    return run_conversion(jobs, convert_one_smpl_pkl, output_path, progress, individual=True, num_workers=num_workers)
