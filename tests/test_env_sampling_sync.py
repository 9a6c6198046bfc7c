"""Adaptive-sampling statistics summed across two real processes (torch.distributed, gloo)."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gear_sonic.envs.sampling import AdaptiveSampler

NAMES = ["clip_a", "clip_b"]
FRAMES = np.array([120, 260])


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    sampler = AdaptiveSampler(FRAMES, NAMES)
    # Each process sees different episodes: rank 0 fails in clip 1 bin 2, rank 1 in clip 0 bin 0.
    if rank == 0:
        sampler.record(
            torch.tensor([1, 1]), torch.tensor([100, 100]), torch.tensor([120, 130]), torch.tensor([True, True])
        )
    else:
        sampler.record(torch.tensor([0]), torch.tensor([0]), torch.tensor([20]), torch.tensor([True]))
    sampler.sync(dist.all_reduce)
    sampler.sync(dist.all_reduce)  # nothing new: counts must not double
    torch.save(sampler.state_dict(), f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_sync_sums_counts_across_processes(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    torch.testing.assert_close(states[0]["bin_failures"], states[1]["bin_failures"])
    reference = AdaptiveSampler(FRAMES, NAMES)
    clip1_bin2 = int(reference.clip_bin_offset[1]) + 2
    assert float(states[0]["bin_failures"][clip1_bin2]) == 2.0
    assert float(states[0]["bin_failures"][0]) == 1.0
    assert float(states[0]["bin_visits"].sum()) == 3.0
    assert float(states[0]["delta_failures"].abs().sum()) == 0.0
