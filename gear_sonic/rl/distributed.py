"""Cross-process reductions for training under `accelerate launch` (any backend, gloo on CPU).

One code path for 1 process and many: with a single process every reduction is the identity.
Gradients are averaged by hand (one flat all-reduce) rather than through DDP, because each minibatch
uses a varying subset of encoders, which DDP's bucketing handles only with costly unused-parameter scans.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as torch_dist


class PeerFailure(RuntimeError):
    """A collective failed: another process died (its connection closed) or stalled past the timeout."""

    def __init__(self, process_index: int, num_processes: int, operation: str, timeout_s: float | None, cause: BaseException):
        super().__init__(f"{operation} failed on process {process_index}/{num_processes}: {cause}")
        self.process_index, self.num_processes = process_index, num_processes
        self.operation, self.timeout_s, self.cause = operation, timeout_s, cause


def describe_peer_failure(exc: PeerFailure) -> str:
    """The message a process prints before exiting on a failed collective."""
    first_line = str(exc.cause).strip().splitlines()[0] if str(exc.cause).strip() else type(exc.cause).__name__
    limit = f"{exc.timeout_s:g} s (dist_timeout_s)" if exc.timeout_s else "the process-group timeout"
    return (
        f"ERROR [process {exc.process_index} of {exc.num_processes}]: lost contact with the other training "
        f"processes during {exc.operation}: {first_line}\n"
        f"  Another process has died (crashed, was killed or ran out of memory) or stalled for longer than {limit}.\n"
        "  This process stops now; see the other processes' logs for the first failure. Resume with "
        "+checkpoint=<run folder>/last."
    )


class ProcessGroup:
    """Thin wrapper around the default process group that accelerate initialised (if any).

    A failing collective (dead peer: connection closed; stalled peer: `timeout_s` elapsed) raises
    PeerFailure naming the operation, so entry points can exit with a clear message."""

    def __init__(self, num_processes: int, process_index: int, timeout_s: float | None = None):
        self.num_processes = num_processes
        self.process_index = process_index
        self.timeout_s = timeout_s

    def _run(self, operation: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (RuntimeError, OSError) as exc:  # gloo/NCCL raise DistBackendError etc., RuntimeError subclasses
            raise PeerFailure(self.process_index, self.num_processes, operation, self.timeout_s, exc) from exc

    @property
    def is_main(self) -> bool:
        return self.process_index == 0

    @property
    def distributed(self) -> bool:
        return self.num_processes > 1 and torch_dist.is_available() and torch_dist.is_initialized()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place sum over processes."""
        if self.distributed:
            self._run("all_reduce(sum)", torch_dist.all_reduce, tensor, op=torch_dist.ReduceOp.SUM)
        return tensor

    def mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place mean over processes."""
        if self.distributed:
            self._run("all_reduce(mean)", torch_dist.all_reduce, tensor, op=torch_dist.ReduceOp.SUM)
            tensor /= self.num_processes
        return tensor

    def max_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place maximum over processes."""
        if self.distributed:
            self._run("all_reduce(max)", torch_dist.all_reduce, tensor, op=torch_dist.ReduceOp.MAX)
        return tensor

    def all_gather_bytes(self, data: bytes) -> list[bytes]:
        """Every process's `data`, in process order (raw bytes over tensors: nothing is unpickled)."""
        if not self.distributed:
            return [data]
        length = torch.tensor([len(data)], dtype=torch.long)
        lengths = [torch.zeros_like(length) for _ in range(self.num_processes)]
        self._run("all_gather", torch_dist.all_gather, lengths, length)
        longest = max(int(n) for n in lengths)
        mine = torch.zeros(longest, dtype=torch.uint8)
        mine[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else mine[:0]
        chunks = [torch.zeros(longest, dtype=torch.uint8) for _ in range(self.num_processes)]
        self._run("all_gather", torch_dist.all_gather, chunks, mine)
        return [bytes(c[: int(n)].tolist()) for c, n in zip(chunks, lengths)]

    def mean_scalars(self, values: dict[str, float]) -> dict[str, float]:
        """Mean of a dict of floats over the processes that report each key.

        Processes may report different keys (e.g. episode statistics exist only where an episode
        finished during the rollout), so the key sets are merged first; a key's mean is over the
        processes that have it."""
        if not self.distributed:
            return dict(values)
        names = self.all_gather_bytes("\n".join(sorted(values)).encode())
        keys = sorted({k for blob in names for k in blob.decode().split("\n") if k})
        if not keys:
            return {}
        t = torch.zeros(2, len(keys), dtype=torch.float64)
        for i, k in enumerate(keys):
            if k in values:
                t[0, i], t[1, i] = float(values[k]), 1.0
        self.sum_(t)
        return {k: float(t[0, i] / t[1, i]) for i, k in enumerate(keys)}

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Mean gradient over processes. Every parameter leaves with a gradient (zeros where this
        minibatch did not use it, e.g. an encoder no env was routed to), so the optimizer steps every
        parameter on every update: the same in one process as in many, and the same in a resumed run
        (whose fresh parameters have no gradients yet) as in an uninterrupted one."""
        params = [p for p in params if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if not self.distributed:
            return
        grads = [p.grad for p in params]
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
            self._run("broadcast", torch_dist.broadcast, tensor.data, src=0)

    def barrier(self) -> None:
        if self.distributed:
            self._run("barrier", torch_dist.barrier)
