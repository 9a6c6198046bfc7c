"""Building blocks of the universal-token model: MLPs, the FSQ token quantiser, the running
observation normaliser and the Gaussian action head."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from vector_quantize_pytorch import FSQ

_ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh}


def activation_class(name: str) -> type[nn.Module]:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; known: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


class MLP(nn.Sequential):
    """Linear layers with an activation between them and a linear output layer."""

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int, activation: str = "silu"):
        act = activation_class(activation)
        layers: list[nn.Module] = []
        dims = [in_dim, *hidden_dims]
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), act()]
        layers.append(nn.Linear(dims[-1], out_dim))
        super().__init__(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim


class TokenLayerNorm(nn.Module):
    """Parameter-free layer norm of each token's FSQ dimensions: zero mean, unit variance per token.

    Placed after an encoder's last linear layer it fixes the latents' scale to the FSQ bound's
    working range (tanh(1) x 15.5 = 11.8 levels), so tokens differ between motions from the first
    iteration and the alignment losses cannot be met by shrinking every latent towards zero.
    """

    def __init__(self, num_tokens: int, token_size: int, eps: float = 1e-5):
        super().__init__()
        self.num_tokens, self.token_size, self.eps = num_tokens, token_size, eps

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        # Shape-free reshapes keep Shape/Gather ops out of the exported ONNX graph.
        per_token = latent.unflatten(-1, (self.num_tokens, self.token_size))
        return nn.functional.layer_norm(per_token, (self.token_size,), eps=self.eps).flatten(-2)


class TokenQuantizer(nn.Module):
    """Finite scalar quantisation of `num_tokens` x `len(levels)` latents (vector-quantize-pytorch's FSQ).

    Codebook indices are never formed (32^32 codes overflow int64); the decoders consume the
    quantised values, which lie on a grid in [-1, 1). `quantize_export` is the same map written
    with plain bound -> round -> rescale ops so the ONNX graph holds no index or gather ops.
    """

    def __init__(self, levels: Sequence[int], num_tokens: int):
        super().__init__()
        self.levels = [int(level) for level in levels]
        self.num_tokens = num_tokens
        self.fsq = FSQ(levels=self.levels, return_indices=False)

    @property
    def token_dim(self) -> int:
        return self.num_tokens * len(self.levels)

    def reset_buffers(self) -> None:
        """Restore FSQ's non-persistent level buffers (they are not in the checkpoint)."""
        levels = torch.tensor(self.levels, dtype=torch.int32, device=self.fsq._levels.device)
        basis = torch.cumprod(torch.tensor([1] + self.levels[:-1]), dim=0, dtype=torch.int32).to(levels.device)
        self.fsq._levels.copy_(levels)
        self.fsq._basis.copy_(basis)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent (N, token_dim) -> quantised token (N, token_dim), straight-through gradients."""
        codes = self.fsq(latent.reshape(latent.shape[0], self.num_tokens, len(self.levels)))[0]
        return codes.reshape(latent.shape[0], self.token_dim)

    def _constants(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # Same float32 arithmetic as FSQ.bound (eps 1e-3) so both paths round identically.
        levels = torch.tensor(self.levels, dtype=torch.int32)
        half_l = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        half_width = (levels // 2).to(half_l.dtype)
        return tuple(t.to(like.dtype).repeat(self.num_tokens) for t in (half_l, offset, shift, half_width))

    def bounded(self, latent: torch.Tensor) -> torch.Tensor:
        """Latents squashed onto the level scale, just before rounding."""
        half_l, offset, shift, _ = self._constants(latent)
        return torch.tanh(latent + shift) * half_l - offset

    def quantize_export(self, latent: torch.Tensor) -> torch.Tensor:
        """The forward map without autograd tricks: tanh bound -> round -> rescale."""
        return torch.round(self.bounded(latent)) / self._constants(latent)[3]

    def near_rounding_boundary(self, latent: torch.Tensor, tol: float) -> torch.Tensor:
        """(N,) bool: some dimension lies within `tol` level units of a rounding boundary, where
        last-bit differences between runtimes (torch vs onnxruntime) may pick the other level."""
        bounded = self.bounded(latent)
        return ((bounded - bounded.floor() - 0.5).abs() < tol).any(dim=-1)


class RunningMeanStd(nn.Module):
    """Running mean and variance of observations, stored as buffers (saved in safetensors).

    Buffers: `count` (float64 scalar, samples seen), `mean` (D,) and `var` (D,) float32
    (population variance). Normalised input: (x - mean) / (sqrt(var) + eps).

    Several processes keep identical statistics in one of two ways: pass `all_reduce_sum` to
    `update` (each batch's moments are summed over processes before merging), or update locally
    during a rollout and call `sync` afterwards, which rebuilds the statistics from the last synced
    state plus the summed moments of every process's batches since then (exact, one collective).
    """

    def __init__(self, dim: int, eps: float = 1e-2):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self._pending: torch.Tensor | None = None  # local (count, sum, sum of squares) since the last sync
        self._synced: dict[str, torch.Tensor] | None = None  # statistics at the last sync

    def reset(self) -> None:
        self.count.zero_()
        self.mean.zero_()
        self.var.fill_(1.0)
        self._pending = self._synced = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / (self.var.sqrt() + self.eps)

    def _moments(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, self.dim).to(torch.float64)
        return torch.cat([x.new_tensor([x.shape[0]]), x.sum(0), (x * x).sum(0)])

    @torch.no_grad()
    def update(self, x: torch.Tensor, all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Merge the batch x (..., D) into the running statistics.

        With `all_reduce_sum` (a function summing a tensor over processes, e.g.
        `lambda t: accelerator.reduce(t, "sum")`) the batch moments are summed first, so every
        process ends with the same statistics. Without it the update is local and remembered for `sync`.
        """
        moments = self._moments(x)
        if all_reduce_sum is not None:
            self._merge_moments(all_reduce_sum(moments))
            return
        if self._pending is None:
            self._synced = self.state()
            self._pending = torch.zeros_like(moments)
        self._pending += moments
        self._merge_moments(moments)

    @torch.no_grad()
    def sync(self, all_reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Make every process's statistics those of all processes' local updates since the last sync.
        Every process must call it (it is a collective), also those without local updates."""
        pending = self._pending if self._pending is not None else torch.zeros(1 + 2 * self.dim, dtype=torch.float64,
                                                                               device=self.mean.device)
        total = all_reduce_sum(pending.clone())
        if self._synced is not None:
            self.load_state(self._synced)
        self._merge_moments(total)
        self._pending = self._synced = None

    def _merge_moments(self, moments: torch.Tensor) -> None:
        batch_count = moments[0]
        if batch_count <= 0:
            return
        batch_mean = moments[1 : 1 + self.dim] / batch_count
        batch_var = (moments[1 + self.dim :] / batch_count - batch_mean**2).clamp_min(0.0)
        count = self.count
        total = count + batch_count
        mean = self.mean.to(torch.float64)
        delta = batch_mean - mean
        new_mean = mean + delta * batch_count / total
        m2 = self.var.to(torch.float64) * count + batch_var * batch_count + delta**2 * count * batch_count / total
        self.mean.copy_(new_mean.to(self.mean.dtype))
        self.var.copy_((m2 / total).to(self.var.dtype))
        self.count.copy_(total)

    def state(self) -> dict[str, torch.Tensor]:
        return {"count": self.count.clone(), "mean": self.mean.clone(), "var": self.var.clone()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        for key in ("count", "mean", "var"):
            if key not in state:
                raise KeyError(f"normaliser state lacks '{key}' (has {sorted(state)})")
            getattr(self, key).copy_(torch.as_tensor(state[key]))
        self._pending = self._synced = None


class GaussianActionHead(nn.Module):
    """State-independent action standard deviation, clamped to [min_std, max_std]."""

    def __init__(self, action_dim: int, init_std: float, min_std: float, max_std: float):
        super().__init__()
        self.init_std, self.min_std, self.max_std = init_std, min_std, max_std
        self.std = nn.Parameter(torch.full((action_dim,), init_std))

    def reset(self) -> None:
        with torch.no_grad():
            self.std.fill_(self.init_std)

    def forward(self) -> torch.Tensor:
        return self.std.clamp(self.min_std, self.max_std)
