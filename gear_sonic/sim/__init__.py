"""Simulator layer: a backend-neutral protocol over batched torch tensors, and its backends."""

from __future__ import annotations

import torch

from gear_sonic.robots import g1
from gear_sonic.sim.protocol import SimState, Simulator, StatefulSimulator
from gear_sonic.sim.torch_threads import single_threaded_torch

BACKENDS = ("mujoco",)


def make_simulator(
    backend: str,
    num_envs: int,
    body_names: tuple[str, ...] = g1.TRACKED_BODY_NAMES,
    *,
    contact_body_names: tuple[str, ...] | None = None,
    points: tuple[tuple[str, str, tuple[float, float, float]], ...] = (),
    num_threads: int | None = None,
    device: str | torch.device = "cpu",
) -> Simulator:
    """Construct a backend by name ("mujoco": C MuJoCo on CPU threads).

    `points` are body-fixed points (name, body name, offset in the body frame, metres) whose
    world positions `SimState.point_pos` reports; `contact_body_names` defaults to every body."""
    if backend == "mujoco":
        from gear_sonic.sim.mujoco_backend import MujocoSimulator

        return MujocoSimulator(
            num_envs, body_names, contact_body_names, points, num_threads=num_threads or None, device=device
        )
    raise ValueError(f"unknown simulator backend {backend!r}; available: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "SimState", "Simulator", "StatefulSimulator", "make_simulator", "single_threaded_torch"]
