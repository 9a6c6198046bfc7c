"""Motion library speed and memory: CSV conversion rate, open time, sampling rate, resident memory.

Builds everything in a temporary directory:
1. Bones-style CSVs (120 fps) converted with one worker -> source frames/s per worker.
2. A synthetic library of 10K clips (5-15 s at 30 fps) -> open time of the memory-mapped
   library versus loading its arrays into memory, random clip reads, random (clip, time)
   sampling in batches, memory-mapped versus in-memory arrays.
3. Resident memory (psutil RSS) before and after opening and after sampling, against the
   bytes on disk.
Ends with the headline `open_time_10k_clips_s=<seconds>`.

    python benchmarks/motion_library.py [--clips 10000] [--csv_clips 16]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from scipy.spatial.transform import Rotation

from gear_sonic.data import MotionClip, MotionLibrary, write_bones_csv, write_motion_library
from gear_sonic.data.convert_csv import convert_csv_tree

MIB = 1024.0**2


def rss_mib() -> tuple[float, float]:
    """(resident MiB, of which file-backed MiB: memory-mapped pages, shared and reclaimable)."""
    gc.collect()
    info = psutil.Process().memory_info()
    return info.rss / MIB, info.shared / MIB


def synthetic_clips(count: int, fps: float, seed: int):
    """Smooth random clips of 5-15 s: walking root, turning yaw, joint sinusoids."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        frames = int(rng.uniform(5.0, 15.0) * fps) + 1
        t = np.arange(frames) / fps
        root_pos = np.stack([0.5 * t, 0.1 * np.sin(t), 0.76 + 0.02 * np.sin(2 * t)], axis=1)
        yaw = rng.uniform(-1, 1) * t
        root_quat = np.stack([np.cos(yaw / 2), 0 * t, 0 * t, np.sin(yaw / 2)], axis=1)
        dof = 0.3 * np.sin(t[:, None] * rng.uniform(0.5, 3, 29) + rng.uniform(0, 6, 29))
        yield MotionClip(f"group_{i // 1000:02d}/clip_{i:06d}", fps, root_pos, root_quat, dof)


def bench_conversion(work: Path, csv_clips: int) -> float:
    rng = np.random.default_rng(1)
    source_frames = 0
    for i in range(csv_clips):
        frames = int(rng.uniform(5.0, 15.0) * 120) + 1
        t = np.arange(frames) / 120.0
        quat = Rotation.from_rotvec(np.outer(t, [0.1, 0.05, 0.8])).as_quat(scalar_first=True)
        dof = 0.3 * np.sin(t[:, None] * rng.uniform(0.5, 3, 29))
        write_bones_csv(work / "csv" / f"sub_{i % 3}" / f"clip_{i:03d}.csv", np.outer(t, [0.5, 0, 0]), quat, dof)
        source_frames += frames
    start = time.perf_counter()
    report = convert_csv_tree(work / "csv", work / "converted", fps=30, fps_source=120, num_workers=1, show_progress=False)
    elapsed = time.perf_counter() - start
    assert len(report.converted) == csv_clips
    rate = source_frames / elapsed
    print(f"conversion: {csv_clips} CSVs, {source_frames:,} frames at 120 fps -> 30 fps in {elapsed:.2f} s")
    print(f"  {rate:,.0f} source frames/s per worker ({csv_clips / elapsed:.1f} clips/s)")
    return rate


def bench_library(work: Path, clips: int, batch: int, batches: int) -> float:
    path = work / "library"
    start = time.perf_counter()
    write_motion_library(path, synthetic_clips(clips, 30.0, seed=2))
    build_s = time.perf_counter() - start
    disk_bytes = sum(f.stat().st_size for f in path.iterdir())
    rss_before = rss_mib()

    start = time.perf_counter()
    lib = MotionLibrary.open(path)
    open_s = time.perf_counter() - start
    rss_open = rss_mib()
    frames = lib.total_frames
    print(f"library: {len(lib):,} clips, {frames:,} frames, {disk_bytes / MIB:,.0f} MiB on disk (built in {build_s:.1f} s)")
    print(f"  open (memory-mapped): {open_s * 1e3:.1f} ms")


    rng = np.random.default_rng(3)
    reads = 2000
    start = time.perf_counter()
    for i in rng.integers(0, len(lib), reads):
        lib[int(i)]
    clip_rate = reads / (time.perf_counter() - start)
    print(f"  random clip reads lib[i]: {clip_rate:,.0f} clips/s")

    generator = torch.Generator().manual_seed(4)
    queries = []
    for _ in range(batches):
        ids = torch.randint(0, len(lib), (batch,), generator=generator)
        times = torch.rand(batch, generator=generator) * torch.from_numpy(lib.durations_s).float()[ids]
        queries.append((ids, times))
    lib.sample(*queries[0])  # warm-up
    start = time.perf_counter()
    for ids, times in queries:
        lib.sample(ids, times)
    mmap_s = time.perf_counter() - start
    rss_sampled = rss_mib()
    samples = batch * batches

    start = time.perf_counter()
    in_memory = {n: np.load(path / f"{n}.npy", allow_pickle=False) for n in ("root_pos", "root_quat", "dof_pos",
                                                                            "root_lin_vel", "root_ang_vel", "dof_vel")}
    load_all_s = time.perf_counter() - start
    print(f"  reading all arrays into memory instead: {load_all_s * 1e3:.0f} ms (x{load_all_s / open_s:.0f} the open time)")
    memory_lib = MotionLibrary(path, lib.names, lib.fps, lib.num_frames, in_memory, {})
    start = time.perf_counter()
    for ids, times in queries:
        memory_lib.sample(ids, times)
    memory_s = time.perf_counter() - start
    print(f"  sample(): {samples / mmap_s:,.0f} frames/s memory-mapped, {samples / memory_s:,.0f} frames/s in memory "
          f"(ratio {mmap_s / memory_s:.2f}; batches of {batch})")
    disk_mib = disk_bytes / MIB
    print(f"  resident memory (RSS) vs {disk_mib:,.0f} MiB of data on disk:")
    print(f"    before open {rss_before[0]:,.0f} MiB; after open +{rss_open[0] - rss_before[0]:,.1f} MiB "
          f"({(rss_open[0] - rss_before[0]) / disk_mib:.2%} of the data)")
    grown, file_backed = rss_sampled[0] - rss_before[0], rss_sampled[1] - rss_before[1]
    print(f"    after {samples:,} random samples +{grown:,.0f} MiB ({grown / disk_mib:.0%} of the data), of which "
          f"{file_backed:,.0f} MiB are file-backed mapped pages (shared between processes, reclaimable) and "
          f"{grown - file_backed:,.0f} MiB private")
    return open_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=10_000, help="clips in the synthetic library")
    parser.add_argument("--csv_clips", type=int, default=16, help="CSV files for the conversion rate")
    parser.add_argument("--batch", type=int, default=4096, help="samples per sample() call")
    parser.add_argument("--batches", type=int, default=50, help="sample() calls to time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="gear_sonic_bench_"))
    try:
        conversion_rate = bench_conversion(work, args.csv_clips)
        open_s = bench_library(work, args.clips, args.batch, args.batches)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"conversion_frames_per_s_per_worker={conversion_rate:.0f}")
    print(f"open_time_{args.clips / 1000:g}k_clips_s={open_s:.3f}")


if __name__ == "__main__":
    main()
