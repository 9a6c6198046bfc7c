"""Shared driver for converters: run per-file jobs in a pool, then write one library or per-clip files."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gear_sonic.data.batch import BatchProgress, BatchReport, parallel_map
from gear_sonic.data.clip import MotionClip
from gear_sonic.data.library import write_motion_library


def replace_directory(built: Path, target: Path) -> None:
    """Move a finished directory to `target`, replacing whatever is there only once it is complete."""
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
        os.replace(built, target)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(built, target)


def run_conversion(
    jobs: Sequence[Any],
    worker: Callable[[Any], Any],
    output_path: Path,
    progress: BatchProgress,
    *,
    individual: bool,
    num_workers: int = 1,
) -> BatchReport:
    """Run `worker` over `jobs` (each with a `.name`) and collect the results.

    Library mode: the worker returns a MotionClip or a list of them; they are streamed into a
    library built beside `output_path` and moved there only if at least one job succeeded.
    Per-clip mode: the worker writes its own files and returns the number of frames written.
    """
    results = parallel_map(worker, jobs, num_workers=num_workers)
    if individual:
        for result in results:
            if result.error is None:
                progress.converted(result.item.name, frames=int(result.value))
            else:
                progress.skipped(result.item.name, result.error)
        return progress.close()

    def converted_clips():
        for result in results:
            if result.error is not None:
                progress.skipped(result.item.name, result.error)
                continue
            clips = [result.value] if isinstance(result.value, MotionClip) else list(result.value)
            progress.converted(result.item.name, frames=sum(c.num_frames for c in clips))
            yield from clips

    output_path.parent.mkdir(parents=True, exist_ok=True)
    building = output_path.parent / f".{output_path.name}.building-{uuid.uuid4().hex[:8]}"
    try:
        write_motion_library(building, converted_clips())
        report = progress.close()
        if report.converted:
            replace_directory(building, output_path)
    finally:
        if building.exists():
            shutil.rmtree(building)
        progress.close()
    return report
