"""Encoder routing: which encoders run in an episode and which one drives the action.

SONIC samples one driving encoder per env and episode (g1 : teleop : smpl = 1 : 1 : 1). A
human-motion encoder (smpl, soma) never runs alone: the g1 encoder runs beside it so the two
latents can be aligned by the auxiliary losses, and for smpl the teleop encoder joins with
probability 0.5. The human token still drives the action.

It lives in `layout` because the environment (which draws routing per episode) and the model
(which consumes it) both need it; it depends on torch tensors only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Human-motion encoders and the robot encoders that run beside them for latent pairing:
# name -> (always paired, paired with probability `pair_prob`).
HUMAN_ENCODER_PAIRS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "smpl": (("g1",), ("teleop",)),
    "soma": (("g1",), ()),
}


def sample_encoder_routing(
    encoder_names: Sequence[str],
    num_envs: int,
    generator: torch.Generator | None = None,
    *,
    sample_weights: Sequence[float] | None = None,
    pair_prob: float = 0.5,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample SONIC's per-episode encoder routing for `num_envs` envs.

    Returns `encoder_index` (N,) long, the encoder whose token drives the action (index into
    `encoder_names`), and `encoder_active` (N, E) bool, the encoders to run (always including the
    driving one). `sample_weights` defaults to uniform (1:1:1 for the release encoders).
    """
    names = list(encoder_names)
    if not names:
        raise ValueError("encoder_names is empty")
    if sample_weights is None:
        sample_weights = [1.0] * len(names)
    if len(sample_weights) != len(names):
        raise ValueError(f"sample_weights has {len(sample_weights)} entries for {len(names)} encoders {names}")
    if not 0.0 <= pair_prob <= 1.0:
        raise ValueError(f"pair_prob must lie in [0, 1], got {pair_prob}")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    weights = torch.as_tensor(sample_weights, dtype=torch.float64, device=gen_device)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"sample_weights must be non-negative with a positive sum, got {list(sample_weights)}")
    encoder_index = torch.multinomial(weights, num_envs, replacement=True, generator=generator)
    pair_draw = torch.rand(num_envs, generator=generator, device=gen_device)

    encoder_active = torch.zeros(num_envs, len(names), dtype=torch.bool, device=gen_device)
    encoder_active[torch.arange(num_envs, device=gen_device), encoder_index] = True
    for human, (always, sometimes) in HUMAN_ENCODER_PAIRS.items():
        if human not in names:
            continue
        drives = encoder_index == names.index(human)
        for partner in always:
            if partner in names:
                encoder_active[:, names.index(partner)] |= drives
        for partner in sometimes:
            if partner in names:
                encoder_active[:, names.index(partner)] |= drives & (pair_draw < pair_prob)
    if device is not None:
        encoder_index, encoder_active = encoder_index.to(device), encoder_active.to(device)
    return encoder_index, encoder_active


def single_encoder_routing(
    encoder_names: Sequence[str], encoder: str | int | torch.Tensor, num_envs: int,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Routing where one encoder (a name, an index, or per-env indices) runs alone: evaluation,
    `++use_encoder=`."""
    names = list(encoder_names)
    if isinstance(encoder, str):
        if encoder not in names:
            raise ValueError(f"unknown encoder '{encoder}'; this model has {names}")
        encoder = names.index(encoder)
    if isinstance(encoder, int):
        if not 0 <= encoder < len(names):
            raise ValueError(f"encoder index {encoder} out of range for {names}")
        encoder_index = torch.full((num_envs,), encoder, dtype=torch.long, device=device)
    else:
        encoder_index = encoder.to(device=device, dtype=torch.long)
    encoder_active = torch.nn.functional.one_hot(encoder_index, len(names)).bool()
    return encoder_index, encoder_active
