"""The simulator interface an environment needs, over batched torch tensors only.

An environment never sees a backend's own types (MjModel, MjData, warp arrays): it sets
states, applies joint position targets, steps, and reads world-frame states, all as torch
tensors with a leading env dimension. Joint-indexed tensors are in
`gear_sonic.robots.g1.JOINT_NAMES_MUJOCO` order; quaternions are wxyz.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@dataclass
class SimState:
    """World-frame state of every env after the latest step or reset.

    The tensors may be views of the backend's buffers and are overwritten by the next `step`,
    `reset_envs` or `set_root_velocity`; clone what must outlive that, and read `state` again
    after any of them.
    """

    root_pos: torch.Tensor  # (N, 3) m, pelvis origin
    root_quat: torch.Tensor  # (N, 4) wxyz
    root_lin_vel: torch.Tensor  # (N, 3) m/s, world frame, at the pelvis origin
    root_ang_vel: torch.Tensor  # (N, 3) rad/s, world frame
    joint_pos: torch.Tensor  # (N, 29) rad
    joint_vel: torch.Tensor  # (N, 29) rad/s
    joint_acc: torch.Tensor  # (N, 29) rad/s^2, from the last physics step
    joint_torque: torch.Tensor  # (N, 29) N m, actuator output of the last physics step
    body_pos: torch.Tensor  # (N, B, 3) m, origins of `Simulator.body_names`
    body_quat: torch.Tensor  # (N, B, 4) wxyz
    body_rotmat: torch.Tensor  # (N, B, 3, 3) body -> world rotation matrices (same orientations)
    body_lin_vel: torch.Tensor  # (N, B, 3) m/s, world frame, at the body origin
    body_ang_vel: torch.Tensor  # (N, B, 3) rad/s, world frame
    contact_force: torch.Tensor  # (N, C, 3) N, net contact force on each of `Simulator.contact_body_names`
    point_pos: torch.Tensor  # (N, P, 3) m, world positions of the body-fixed points `Simulator.point_names`


@runtime_checkable
class Simulator(Protocol):
    """A batch of `num_envs` independent G1 robots stepped together."""

    num_envs: int
    device: torch.device
    physics_dt_s: float
    decimation: int
    body_names: tuple[str, ...]
    contact_body_names: tuple[str, ...]
    point_names: tuple[str, ...]  # body-fixed points (name, body, offset) declared at construction

    @property
    def state(self) -> SimState: ...

    @property
    def joint_limits_rad(self) -> torch.Tensor:
        """(29, 2) lower and upper joint position limits."""
        ...

    @property
    def unstable_reset_count(self) -> torch.Tensor:
        """(N,) long: how many times each env was reset because its state became NaN or exploded."""
        ...

    def reset_envs(
        self,
        env_ids: torch.Tensor,
        root_pos: torch.Tensor,
        root_quat: torch.Tensor,
        root_lin_vel: torch.Tensor,
        root_ang_vel: torch.Tensor,
        joint_pos: torch.Tensor,
        joint_vel: torch.Tensor,
    ) -> None:
        """Place the chosen envs in the given state (velocities world frame) and refresh `state`."""
        ...

    def set_root_velocity(self, env_ids: torch.Tensor, lin_vel_w: torch.Tensor, ang_vel_w: torch.Tensor) -> None:
        """Overwrite root velocities (world frame), e.g. for pushes."""
        ...

    def set_joint_targets(self, joint_pos_target: torch.Tensor) -> None:
        """(N, 29) rad position targets held by the PD actuators over the next `step`."""
        ...

    def step(self) -> torch.Tensor:
        """Advance `decimation` physics steps; returns (N,) bool, True where the env went unstable
        (NaN or exploding state) and was reset to the default standing pose."""
        ...

    def set_friction(self, env_ids: torch.Tensor, friction: torch.Tensor) -> None:
        """(n,) sliding friction coefficient of every contact of the chosen envs."""
        ...

    def set_body_mass_scale(self, env_ids: torch.Tensor, body_names: tuple[str, ...], scale: torch.Tensor) -> None:
        """(n, k) multipliers of the nominal mass (and inertia) of the named bodies."""
        ...

    def set_com_offset(self, env_ids: torch.Tensor, body_names: tuple[str, ...], offset_m: torch.Tensor) -> None:
        """(n, k, 3) offsets of the named bodies' centres of mass from nominal, body frame, metres."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class StatefulSimulator(Simulator, Protocol):
    """A simulator whose complete state can be captured and restored, so training resumes exactly."""

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Every value the next `step` depends on, as CPU tensors (for a safetensors checkpoint)."""
        ...

    def load_full_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a `full_state_dict()` taken from a simulator with the same model and env count."""
        ...
