"""Run small per-step torch maths on one intra-op thread.

On a CPU where the simulator's worker threads already occupy every core, torch's OpenMP
parallel kernels gain nothing on env-sized tensors and their barrier waits can cost
milliseconds per op under contention, so the environment's per-step maths runs with one
intra-op thread and the previous setting is restored afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    previous = torch.get_num_threads()
    if previous != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if previous != 1:
            torch.set_num_threads(previous)
