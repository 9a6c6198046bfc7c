"""Reference motion of the resident clips, precomputed at the control rate.

Resident clips are resampled once to 50 Hz (SONIC's rate), so every reference the task needs,
now or at a future offset, is a whole-frame lookup. Per frame we precompute everything that
depends only on the reference: tracked-body poses and velocities (forward kinematics and
finite differences), the teleop VR points in the reference pelvis frame, and the SMPL/SOMA
joints in their own root frames. Packed tables keep the per-step lookups to one gather each:
`robot` (joint and root fields read at the g1/teleop offsets), `human` (fields read at the
smpl/soma offsets) and `current` (fields needed only now).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gear_sonic.data import MotionLibrary
from gear_sonic.robots import g1
from gear_sonic.robots.kinematics import G1Kinematics
from gear_sonic.utils.rotations import (
    quat_apply,
    quat_apply_inverse,
    quat_conjugate,
    quat_mul,
    quat_to_axis_angle,
    quat_to_matrix,
)

FK_CHUNK_FRAMES = 20000


def resampled_num_frames(lib: MotionLibrary, fps: float) -> np.ndarray:
    """Frames per clip at `fps` covering each clip's duration (first frame kept)."""
    return np.floor(lib.durations_s * fps + 1e-6).astype(np.int64) + 1


class _Packer:
    """Columns of a packed table by field name."""

    def __init__(self):
        self.slices: dict[str, slice] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._parts: list[torch.Tensor] = []
        self.width = 0

    def add(self, name: str, values: torch.Tensor) -> None:
        frames = values.shape[0]
        shape = tuple(values.shape[1:])
        flat = values.reshape(frames, -1).to(torch.float32)
        self.slices[name] = slice(self.width, self.width + flat.shape[1])
        self.shapes[name] = shape
        self.width += flat.shape[1]
        self._parts.append(flat)

    def table(self) -> torch.Tensor:
        return torch.cat(self._parts, dim=1).contiguous()


@dataclass
class ReferenceCache:
    clip_ids: torch.Tensor  # (R,) library index of each resident clip
    clip_start: torch.Tensor  # (R,) row of each clip's frame 0 in the tables
    clip_num_frames: torch.Tensor  # (R,) frames at the control rate
    clip_has_smpl: torch.Tensor  # (R,) bool
    clip_has_soma: torch.Tensor  # (R,) bool
    tables: dict[str, torch.Tensor]  # "robot", "human", "current": (F, D) each
    slices: dict[str, dict[str, slice]]  # columns of each field in its table
    shapes: dict[str, dict[str, tuple[int, ...]]]  # per-frame shape of each field

    def field(self, rows: torch.Tensor, table: str, name: str) -> torch.Tensor:
        """One field for arbitrary rows (for setup, tests and tools)."""
        data = self.tables[table].index_select(0, rows.reshape(-1))[:, self.slices[table][name]]
        return data.reshape(rows.shape + self.shapes[table][name])


def _first_two_columns(quat: torch.Tensor) -> torch.Tensor:
    """(F, 4) wxyz -> (F, 6): first two rotation-matrix columns, row-major (r00, r01, r10, r11, r20, r21)."""
    return quat_to_matrix(quat)[..., :, :2].reshape(quat.shape[0], 6)


def _finite_difference_rows(clip_start: np.ndarray, clip_len: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Previous and next row of every frame, clamped inside its own clip."""
    owner = np.repeat(np.arange(len(clip_len)), clip_len)
    rows = np.arange(int(clip_len.sum()))
    first = clip_start[owner]
    last = first + clip_len[owner] - 1
    return torch.from_numpy(np.maximum(rows - 1, first)), torch.from_numpy(np.minimum(rows + 1, last))


def build_reference_cache(
    lib: MotionLibrary,
    clip_ids: np.ndarray,
    *,
    fps: float,
    kinematics: G1Kinematics,
    with_smpl: bool,
    with_soma: bool,
) -> ReferenceCache:
    clip_ids = np.asarray(clip_ids, dtype=np.int64)
    lengths = resampled_num_frames(lib, fps)[clip_ids]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    owner = np.repeat(np.arange(len(clip_ids)), lengths)
    times = (np.arange(int(lengths.sum())) - starts[owner]) / fps
    state = lib.sample(torch.from_numpy(clip_ids[owner]), torch.from_numpy(times))

    tracked = kinematics.body_index(g1.TRACKED_BODY_NAMES)
    body_pos_parts, body_quat_parts = [], []
    for lo in range(0, len(times), FK_CHUNK_FRAMES):
        hi = min(lo + FK_CHUNK_FRAMES, len(times))
        pos, quat = kinematics.forward(state.root_pos[lo:hi], state.root_quat[lo:hi], state.dof_pos[lo:hi])
        body_pos_parts.append(pos[:, tracked])
        body_quat_parts.append(quat[:, tracked])
    body_pos = torch.cat(body_pos_parts)
    body_quat = torch.cat(body_quat_parts)
    prev_rows, next_rows = _finite_difference_rows(starts, lengths)
    span_s = ((next_rows - prev_rows).clamp_min(1).to(torch.float32) / fps)[:, None, None]
    body_lin_vel = (body_pos[next_rows] - body_pos[prev_rows]) / span_s
    body_ang_vel = quat_to_axis_angle(quat_mul(body_quat[next_rows], quat_conjugate(body_quat[prev_rows]))) / span_s

    root_pos, root_quat = state.root_pos, state.root_quat
    root_q = root_quat[:, None, :]
    # Bodies relative to the pelvis in the heading frame (yaw removed): the re-anchored
    # reference the rewards compare with is then one heading rotation away from the robot's.
    w, x, y, z = root_quat.unbind(-1)
    half = -0.5 * torch.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    unyaw = torch.stack([torch.cos(half), torch.zeros_like(half), torch.zeros_like(half), torch.sin(half)], -1)[:, None]
    unyaw = unyaw.expand(-1, body_pos.shape[1], -1)
    heading_body_pos = quat_apply(unyaw, body_pos - root_pos[:, None, :])
    heading_body_quat = quat_mul(unyaw, body_quat)

    def in_reference_pelvis_frame(points) -> tuple[torch.Tensor, torch.Tensor]:
        index = [g1.TRACKED_BODY_NAMES.index(p.body) for p in points]
        offsets = torch.tensor([p.offset_m for p in points], dtype=torch.float32)
        q = body_quat[:, index]
        world = body_pos[:, index] + quat_apply(q, offsets.expand(q.shape[0], -1, -1))
        local_pos = quat_apply_inverse(root_q, world - root_pos[:, None, :])
        local_quat = quat_mul(quat_conjugate(root_q).expand_as(q), q)
        return local_pos, local_quat

    teleop_pos, teleop_quat = in_reference_pelvis_frame(g1.VR_POINTS_TELEOP)
    reward_pos, _ = in_reference_pelvis_frame(g1.VR_POINTS_REWARD)

    root_cols6 = _first_two_columns(root_quat)
    robot = _Packer()  # read at the g1/teleop offsets (0.0 .. 0.9 s)
    robot.add("dof_pos", state.dof_pos)
    robot.add("dof_vel", state.dof_vel)
    robot.add("root_cols6", root_cols6)
    robot.add("root_quat", root_quat)
    robot.add("root_pos", root_pos)
    human = _Packer()  # read at the smpl/soma offsets (10 consecutive frames)
    human.add("root_cols6", root_cols6)
    human.add("wrist_dof_pos", state.dof_pos[:, [g1.JOINT_NAMES_MUJOCO.index(j) for j in g1.WRIST_JOINT_NAMES]])
    has_smpl = torch.zeros(len(clip_ids), dtype=torch.bool)
    has_soma = torch.zeros(len(clip_ids), dtype=torch.bool)
    if with_smpl:
        joints = state.smpl_joints
        # SMPL joints in the frame of the (retargeted) reference pelvis: origin at SMPL's pelvis joint.
        human.add("smpl_joints_local", quat_apply_inverse(root_q, joints - joints[:, :1]))
        has_smpl = torch.from_numpy(np.asarray(lib.smpl_available, dtype=bool)[clip_ids])
    if with_soma:
        joints = state.soma_joints
        soma_q = state.soma_root_quat if state.soma_root_quat is not None else root_quat
        human.add("soma_joints_local", quat_apply_inverse(soma_q[:, None, :], joints - joints[:, :1]))
        human.add("soma_cols6", _first_two_columns(soma_q))
        has_soma = torch.from_numpy(np.asarray(lib.soma_available, dtype=bool)[clip_ids])

    current = _Packer()  # read at the current frame only
    # What the tracking rewards compare, in one block (see TrackingEnv._reward_terms):
    # pelvis position (1), heading-frame body offsets (14), body linear (14) and angular (14)
    # velocities, reward VR points in the pelvis frame (3); then pelvis and heading-frame body
    # orientations (15).
    current.add("error_vectors", torch.cat(
        [root_pos[:, None], heading_body_pos, body_lin_vel, body_ang_vel, reward_pos], 1))
    current.add("error_quats", torch.cat([root_quat[:, None], heading_body_quat], 1))
    current.add("body_pos", body_pos)
    current.add("body_quat", body_quat)
    current.add("root_lin_vel", state.root_lin_vel)
    current.add("root_ang_vel", state.root_ang_vel)
    current.add("vr_teleop_pos", teleop_pos)  # vr_teleop_pos and vr_teleop_quat stay adjacent
    current.add("vr_teleop_quat", teleop_quat)

    packers = {"robot": robot, "human": human, "current": current}
    return ReferenceCache(
        clip_ids=torch.from_numpy(clip_ids),
        clip_start=torch.from_numpy(starts),
        clip_num_frames=torch.from_numpy(lengths),
        clip_has_smpl=has_smpl,
        clip_has_soma=has_soma,
        tables={k: p.table() for k, p in packers.items()},
        slices={k: p.slices for k, p in packers.items()},
        shapes={k: p.shapes for k, p in packers.items()},
    )
