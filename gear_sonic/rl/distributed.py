"""Cross-process reductions for training under `accelerate launch` (any backend, gloo on CPU).

One code path for 1 process and many: with a single process every reduction is the identity.
Gradients are averaged by hand (one flat all-reduce) rather than through DDP, because each minibatch
uses a varying subset of encoders, which DDP's bucketing handles only with costly unused-parameter scans.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as torch_dist


class ProcessGroup:
    """Thin wrapper around the default process group that accelerate initialised (if any)."""

    def __init__(self, num_processes: int, process_index: int):
        self.num_processes = num_processes
        self.process_index = process_index

    @property
    def is_main(self) -> bool:
        return self.process_index == 0

    @property
    def distributed(self) -> bool:
        return self.num_processes > 1 and torch_dist.is_available() and torch_dist.is_initialized()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place sum over processes."""
        if self.distributed:
            torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        return tensor

    def mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place mean over processes."""
        if self.distributed:
            torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
            tensor /= self.num_processes
        return tensor

    def mean_scalars(self, values: dict[str, float]) -> dict[str, float]:
        """Mean of a dict of floats over processes, in one collective."""
        if not values or not self.distributed:
            return dict(values)
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        self.mean_(t)
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        if not self.distributed:
            return
        params = [p for p in params if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.mean_(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def broadcast_module_(self, module: torch.nn.Module) -> None:
        """Make every process start from the main process's parameters and buffers."""
        if not self.distributed:
            return
        for tensor in list(module.parameters()) + list(module.buffers()):
            torch_dist.broadcast(tensor.data, src=0)

    def barrier(self) -> None:
        if self.distributed:
            torch_dist.barrier()
