"""Synthesised G1 motions for the bundled sample data, with matching SMPL-24 and SOMA joints.

The project ships no third-party motion capture, so the sample clips are made here: each clip is
a task-space plan (centre-of-mass path, pelvis height and tilt, foot placements, upper-body
joint keyframes) that damped-least-squares inverse kinematics turns into whole-body G1 joint
angles. Stance feet are held flat at a fixed world pose (sole touching z = 0), the pelvis is
shifted until the whole-body centre of mass sits over the planned point of the support polygon
(quasi-static balance), and every joint stays inside the compiled model's ranges.

Human joint trajectories are derived from the same kinematics: every human joint takes the
rotation of a matching G1 body (relative to the G1's all-zero pose), bones keep human lengths,
and the root translation is anchored to the stance foot so human feet do not slide either.

Pure numpy/torch on top of `gear_sonic.robots`; MuJoCo is used to read the model and, in
`ground_contact_report`, as an independent check of floor contact on its collision geometry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import mujoco
import numpy as np
import torch

from gear_sonic.robots import g1
from gear_sonic.robots.kinematics import G1Kinematics
from gear_sonic.robots.mjcf import build_g1_model
from gear_sonic.utils.rotations import (
    matrix_to_quat,
    quat_apply,
    quat_conjugate,
    quat_from_axis_angle,
    quat_mul,
    quat_normalize,
    quat_slerp,
    quat_to_axis_angle,
)

SYNTH_FPS_HZ = 120.0
DEFAULT_SEED = 20251121
SIDES: tuple[str, str] = ("left", "right")
LEG_BODY_SUFFIXES: tuple[str, ...] = (
    "hip_pitch_link", "hip_roll_link", "hip_yaw_link", "knee_link", "ankle_pitch_link", "ankle_roll_link",
)
UPPER_BODY_JOINT_NAMES: tuple[str, ...] = g1.JOINT_NAMES_MUJOCO[12:]
NEUTRAL_PELVIS_HEIGHT_M = 0.755
NEUTRAL_FOOT_Y_M = 0.1185
SWING_CLEARANCE_M = 0.07
_DTYPE = torch.float64


# --------------------------------------------------------------------------------------------
# Model facts used by the synthesis (read from the compiled MuJoCo model, not hard-coded)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FootGeometry:
    """Sole of the G1 foot in the ankle_roll_link frame, from its collision capsules."""

    sole_height_m: float            # ankle_roll_link origin above the floor when the foot is flat
    support_points_xy_m: np.ndarray  # (K, 2) corners of the sole outline (capsule ends +- radius)

    @property
    def support_centre_xy_m(self) -> np.ndarray:
        lo, hi = self.support_points_xy_m.min(0), self.support_points_xy_m.max(0)
        return 0.5 * (lo + hi)


def foot_geometry(model: mujoco.MjModel, side: str = "left") -> FootGeometry:
    """Sole height and outline of one foot from the capsules on its ankle_roll_link."""
    body = model.body(f"{side}_ankle_roll_link").id
    lowest, points = [], []
    for gid in range(model.ngeom):
        if model.geom_bodyid[gid] != body or model.geom_type[gid] != mujoco.mjtGeom.mjGEOM_CAPSULE:
            continue
        if model.geom_contype[gid] == 0 and model.geom_conaffinity[gid] == 0:
            continue
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, model.geom_quat[gid])
        axis = rot.reshape(3, 3)[:, 2]
        radius, half = model.geom_size[gid, 0], model.geom_size[gid, 1]
        centre = model.geom_pos[gid]
        lowest.append(centre[2] - half * abs(axis[2]) - radius)
        for end in (centre + half * axis, centre - half * axis):
            for dx, dy in ((radius, 0.0), (-radius, 0.0), (0.0, radius), (0.0, -radius)):
                points.append((end[0] + dx, end[1] + dy))
    if not lowest:
        raise ValueError(f"G1 model has no collision capsules on {side}_ankle_roll_link")
    return FootGeometry(sole_height_m=-float(min(lowest)), support_points_xy_m=np.array(points))


def joint_limits_rad(model: mujoco.MjModel) -> np.ndarray:
    """(29, 2) joint ranges in MuJoCo joint order, from the compiled model."""
    return np.array([model.jnt_range[model.joint(n).id] for n in g1.JOINT_NAMES_MUJOCO])


class _G1Model:
    """FK plus the mass and joint data the solver needs, in float64 torch."""

    def __init__(self, model: mujoco.MjModel | None = None):
        self.mj = model if model is not None else build_g1_model(add_ground=False, add_actuators=False)
        self.kin = G1Kinematics(self.mj, dtype=_DTYPE)
        names = self.kin.body_names
        self.mass = torch.tensor([self.mj.body_mass[self.mj.body(n).id] for n in names], dtype=_DTYPE)
        self.ipos = torch.tensor(np.array([self.mj.body_ipos[self.mj.body(n).id] for n in names]), dtype=_DTYPE)
        self.leg_bodies = [self.kin.body_index([f"{s}_{b}" for b in LEG_BODY_SUFFIXES]) for s in SIDES]
        self.leg_axes = torch.tensor(
            np.array([[self.mj.jnt_axis[self.mj.joint(n).id] for n in g1.JOINT_NAMES_MUJOCO[6 * k : 6 * k + 6]]
                      for k in range(2)]),
            dtype=_DTYPE,
        )  # (2, 6, 3)
        self.limits = torch.tensor(joint_limits_rad(self.mj), dtype=_DTYPE)
        self.foot = foot_geometry(self.mj, "left")

    def com(self, body_pos: torch.Tensor, body_quat: torch.Tensor) -> torch.Tensor:
        """Whole-body centre of mass (..., 3) from FK body poses."""
        com_b = body_pos + quat_apply(body_quat, self.ipos.expand_as(body_pos))
        return (com_b * self.mass[:, None]).sum(-2) / self.mass.sum()


# --------------------------------------------------------------------------------------------
# Time profiles
# --------------------------------------------------------------------------------------------


def smoothstep(x: np.ndarray) -> np.ndarray:
    """Quintic ease from 0 to 1 on [0, 1] with zero velocity and acceleration at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def keyframe_track(t_s: np.ndarray, key_times_s: list[float], key_values: list) -> np.ndarray:
    """Piecewise quintic-eased interpolation through keyframes (held before the first/after the last)."""
    values = np.asarray(key_values, dtype=np.float64)
    out = np.empty((len(t_s),) + values.shape[1:])
    out[:] = values[0]
    for k in range(len(key_times_s) - 1):
        t0, t1 = key_times_s[k], key_times_s[k + 1]
        s = smoothstep((t_s - t0) / max(t1 - t0, 1e-9))
        inside = t_s >= t0
        blend = values[k] + (values[k + 1] - values[k]) * s.reshape((-1,) + (1,) * (values.ndim - 1))
        out[inside] = blend[inside]
    return out


def envelope(t_s: np.ndarray, duration_s: float, ramp_s: float = 1.0) -> np.ndarray:
    """1 in the middle of a clip, easing to 0 at both ends so every clip starts and ends at rest."""
    return smoothstep(t_s / ramp_s) * smoothstep((duration_s - t_s) / ramp_s)


def clip_times(duration_s: float, fps: float = SYNTH_FPS_HZ) -> np.ndarray:
    """Frame times; the frame count is a multiple of 4 plus one so 120 fps -> 30 fps is exact."""
    n = int(round(duration_s * fps / 4.0)) * 4 + 1
    return np.arange(n) / fps


def rpy_to_quat(rpy: np.ndarray) -> np.ndarray:
    """(..., 3) roll, pitch, yaw (rad, applied x then y then z in the world) -> wxyz."""
    r, p, y = (torch.as_tensor(rpy[..., i], dtype=_DTYPE) for i in range(3))
    ex = torch.tensor([1.0, 0.0, 0.0], dtype=_DTYPE).expand(r.shape + (3,))
    ey = torch.tensor([0.0, 1.0, 0.0], dtype=_DTYPE).expand(r.shape + (3,))
    ez = torch.tensor([0.0, 0.0, 1.0], dtype=_DTYPE).expand(r.shape + (3,))
    q = quat_mul(quat_from_axis_angle(ez, y), quat_mul(quat_from_axis_angle(ey, p), quat_from_axis_angle(ex, r)))
    return q.numpy()


# --------------------------------------------------------------------------------------------
# Task-space plan and whole-body solve
# --------------------------------------------------------------------------------------------


@dataclass
class MotionPlan:
    """What a clip should do, per frame; the solver fills in pelvis x/y and the leg joints."""

    name: str
    fps: float
    com_xy_m: np.ndarray         # (T, 2) where the centre of mass should project on the floor
    pelvis_height_m: np.ndarray  # (T,)
    pelvis_rpy_rad: np.ndarray   # (T, 3)
    foot_pos_m: np.ndarray       # (2, T, 3) ankle_roll_link origins (left, right), world
    foot_yaw_rad: np.ndarray     # (2, T)
    upper_dof_rad: np.ndarray    # (T, 17) waist and arm joints, MuJoCo order
    stance: np.ndarray           # (2, T) bool: the foot is planted (flat, fixed) on the floor
    description: str = ""

    @property
    def num_frames(self) -> int:
        return len(self.pelvis_height_m)


@dataclass
class SyntheticClip:
    """A solved G1 clip (float32 arrays, world z-up) plus the plan facts tests check against."""

    name: str
    fps: float
    root_pos: np.ndarray        # (T, 3) m
    root_quat: np.ndarray       # (T, 4) wxyz
    dof_pos: np.ndarray         # (T, 29) rad, MuJoCo order
    stance: np.ndarray          # (2, T) bool, planned stance of left/right foot
    com_error_m: float          # worst |CoM xy - planned xy| after balancing
    foot_error_m: float         # worst stance-foot position error after IK
    description: str = ""

    @property
    def num_frames(self) -> int:
        return len(self.root_pos)

    @property
    def duration_s(self) -> float:
        return (self.num_frames - 1) / self.fps


class InfeasibleMotionError(ValueError):
    """A plan asks for something the G1 cannot do (joint limits, unreachable feet)."""


def _leg_ik(
    gm: _G1Model,
    root_pos: torch.Tensor,
    root_quat: torch.Tensor,
    dof: torch.Tensor,
    foot_pos: torch.Tensor,
    foot_quat: torch.Tensor,
    iterations: int = 40,
    damping: float = 1e-4,
    max_step_rad: float = 0.2,
    tolerance: float = 1e-9,
) -> tuple[torch.Tensor, float]:
    """Solve both legs so each ankle_roll_link reaches its world pose; returns (dof, worst error)."""
    dof = dof.clone()
    err_max = math.inf
    for _ in range(iterations):
        body_pos, body_quat = gm.kin.forward(root_pos, root_quat, dof)
        errs = []
        for k in range(2):
            chain = gm.leg_bodies[k]
            p_joint = body_pos[:, chain]                      # (T, 6, 3) joint anchors (jnt_pos = 0)
            axis = quat_apply(body_quat[:, chain], gm.leg_axes[k].expand_as(p_joint))
            p_end, q_end = body_pos[:, chain[-1]], body_quat[:, chain[-1]]
            e_pos = foot_pos[k] - p_end
            e_rot = quat_to_axis_angle(quat_mul(foot_quat[k], quat_conjugate(q_end)))
            err = torch.cat([e_pos, e_rot], -1)               # (T, 6)
            jac = torch.cat([torch.cross(axis, p_end[:, None] - p_joint, dim=-1), axis], -1).transpose(1, 2)
            jjt = jac @ jac.transpose(1, 2) + damping * torch.eye(6, dtype=_DTYPE)
            step = (jac.transpose(1, 2) @ torch.linalg.solve(jjt, err[..., None]))[..., 0]
            step = step * (max_step_rad / step.abs().amax(-1, keepdim=True).clamp_min(max_step_rad))
            dof[:, 6 * k : 6 * k + 6] += step
            errs.append(err.abs().amax())
        err_max = float(torch.stack(errs).max())
        if err_max < tolerance:
            break
    return dof, err_max


def solve_plan(plan: MotionPlan, gm: _G1Model | None = None, balance_iterations: int = 8) -> SyntheticClip:
    """Whole-body solve: leg IK for the feet, pelvis x/y shifted until the CoM is where planned."""
    # Thousands of small batched ops: one thread is several times faster than two on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _solve_plan(plan, gm if gm is not None else _shared_model(), balance_iterations)
    finally:
        torch.set_num_threads(threads)


def _solve_plan(plan: MotionPlan, gm: _G1Model, balance_iterations: int) -> SyntheticClip:
    n = plan.num_frames
    root_quat = torch.as_tensor(rpy_to_quat(plan.pelvis_rpy_rad), dtype=_DTYPE)
    foot_pos = torch.as_tensor(plan.foot_pos_m, dtype=_DTYPE)
    zeros = np.zeros_like(plan.foot_yaw_rad)
    foot_quat = torch.as_tensor(rpy_to_quat(np.stack([zeros, zeros, plan.foot_yaw_rad], -1)), dtype=_DTYPE)
    com_target = torch.as_tensor(plan.com_xy_m, dtype=_DTYPE)

    dof = torch.as_tensor(np.tile(g1.DEFAULT_JOINT_POS_RAD, (n, 1)), dtype=_DTYPE).clone()
    dof[:, 12:] = torch.as_tensor(plan.upper_dof_rad, dtype=_DTYPE)
    root_pos = torch.zeros(n, 3, dtype=_DTYPE)
    root_pos[:, :2] = com_target - 0.03 * torch.tensor([1.0, 0.0], dtype=_DTYPE)
    root_pos[:, 2] = torch.as_tensor(plan.pelvis_height_m, dtype=_DTYPE)

    for iteration in range(balance_iterations + 1):
        dof, foot_err = _leg_ik(gm, root_pos, root_quat, dof, foot_pos, foot_quat)
        com = gm.com(*gm.kin.forward(root_pos, root_quat, dof))
        delta = com_target - com[:, :2]
        com_err = float(delta.norm(dim=-1).max())
        if com_err < 1e-5 or iteration == balance_iterations:
            break
        root_pos[:, :2] += delta

    lo, hi = gm.limits[:, 0], gm.limits[:, 1]
    bad = (dof < lo - 1e-9) | (dof > hi + 1e-9)
    if bad.any():
        frame, joint = (int(i) for i in torch.nonzero(bad)[0])
        raise InfeasibleMotionError(
            f"clip '{plan.name}': {g1.JOINT_NAMES_MUJOCO[joint]} = {float(dof[frame, joint]):.3f} rad at frame "
            f"{frame} is outside its range [{float(lo[joint]):.3f}, {float(hi[joint]):.3f}]"
        )
    if foot_err > 1e-5:
        raise InfeasibleMotionError(f"clip '{plan.name}': feet unreachable (IK error {foot_err:.2e})")
    return SyntheticClip(
        name=plan.name,
        fps=plan.fps,
        root_pos=root_pos.numpy().astype(np.float32),
        root_quat=quat_normalize(root_quat).numpy().astype(np.float32),
        dof_pos=dof.numpy().astype(np.float32),
        stance=plan.stance.copy(),
        com_error_m=com_err,
        foot_error_m=foot_err,
        description=plan.description,
    )


_MODEL_CACHE: list[_G1Model] = []


def _shared_model() -> _G1Model:
    if not _MODEL_CACHE:
        _MODEL_CACHE.append(_G1Model())
    return _MODEL_CACHE[0]


# --------------------------------------------------------------------------------------------
# Plan building blocks
# --------------------------------------------------------------------------------------------

_UPPER_INDEX = {name: i for i, name in enumerate(UPPER_BODY_JOINT_NAMES)}


def _yaw_rot(yaw: np.ndarray) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


class _PlanBuilder:
    """Starts from the neutral stance (feet flat, CoM over the middle of the feet, arms at the
    default pose) and lets a clip recipe add pelvis, arm and stepping motions on top."""

    def __init__(self, name: str, duration_s: float, foot: FootGeometry, description: str):
        self.name, self.description, self.foot = name, description, foot
        self.t = clip_times(duration_s)
        self.duration_s = float(self.t[-1])
        n = len(self.t)
        self.foot_pos = np.zeros((2, n, 3))
        self.foot_pos[0, :, 1], self.foot_pos[1, :, 1] = NEUTRAL_FOOT_Y_M, -NEUTRAL_FOOT_Y_M
        self.foot_pos[:, :, 2] = foot.sole_height_m
        self.foot_yaw = np.zeros((2, n))
        self.stance = np.ones((2, n), dtype=bool)
        self.com_offset = np.zeros((n, 2))      # added to the planned support point
        self.com_override: np.ndarray | None = None
        self.pelvis_height = np.full(n, NEUTRAL_PELVIS_HEIGHT_M)
        self.pelvis_rpy = np.zeros((n, 3))
        self.upper = np.tile(g1.DEFAULT_JOINT_POS_RAD[12:], (n, 1))

    def env(self, ramp_s: float = 1.0) -> np.ndarray:
        return envelope(self.t, self.duration_s, ramp_s)

    def add(self, joint: str, values: np.ndarray | float) -> None:
        self.upper[:, _UPPER_INDEX[joint]] += values

    def add_both(self, joint_suffix: str, left: np.ndarray | float, right: np.ndarray | float) -> None:
        self.add(f"left_{joint_suffix}", left)
        self.add(f"right_{joint_suffix}", right)

    def support_point(self, side: int, foot_xy: np.ndarray, foot_yaw: float, inward_m: float = 0.02) -> np.ndarray:
        """A point well inside one foot's sole (a little towards the other foot)."""
        local = self.foot.support_centre_xy_m + np.array([0.0, -inward_m if side == 0 else inward_m])
        return foot_xy + _yaw_rot(np.array(foot_yaw)) @ local

    def double_support_point(self) -> np.ndarray:
        """(T, 2) middle of the two feet's sole centres."""
        pts = [
            self.foot_pos[k, :, :2] + np.einsum("tij,j->ti", _yaw_rot(self.foot_yaw[k]), self.foot.support_centre_xy_m)
            for k in range(2)
        ]
        return 0.5 * (pts[0] + pts[1])

    def gait(
        self,
        steps: list[tuple[str, tuple[float, float], float]],
        start_s: float,
        shift_s: float,
        swing_s: float,
        clearance_m: float = SWING_CLEARANCE_M,
        lean_rad_per_m: float = 1.0,
    ) -> float:
        """Quasi-static stepping: before each step the CoM moves over the stance foot, then the
        other foot swings (lifting before it moves and landing before it stops moving sideways)
        to its new (x, y, yaw). Ends with the CoM back between the feet; returns the end time."""
        t = self.t
        com_times, com_points = [0.0, start_s], [None, None]
        yaw_times, yaw_values = [0.0, start_s], [0.0, 0.0]
        clock = start_s
        feet_xy = [self.foot_pos[k, 0, :2].copy() for k in range(2)]
        feet_yaw = [float(self.foot_yaw[k, 0]) for k in range(2)]
        for side_name, target_xy, target_yaw in steps:
            swing = SIDES.index(side_name)
            stance = 1 - swing
            over_stance = self.support_point(stance, feet_xy[stance], feet_yaw[stance])
            com_times += [clock + shift_s, clock + shift_s + swing_s]
            com_points += [over_stance, over_stance]
            clock += shift_s
            phase = (t - clock) / swing_s
            moving = (phase > 0.0) & (phase < 1.0)
            after = phase >= 1.0
            horiz = smoothstep((phase - 0.2) / 0.6)[:, None]
            new_xy = np.asarray(target_xy, dtype=np.float64)
            self.foot_pos[swing, moving | after, :2] = (feet_xy[swing] + (new_xy - feet_xy[swing]) * horiz)[moving | after]
            self.foot_pos[swing, moving, 2] += clearance_m * 0.5 * (1.0 - np.cos(2.0 * np.pi * phase[moving]))
            yaw_blend = feet_yaw[swing] + (target_yaw - feet_yaw[swing]) * horiz[:, 0]
            self.foot_yaw[swing, moving | after] = yaw_blend[moving | after]
            self.stance[swing, moving] = False
            clock += swing_s
            feet_xy[swing], feet_yaw[swing] = new_xy, float(target_yaw)
            yaw_times.append(clock)
            yaw_values.append(0.5 * (feet_yaw[0] + feet_yaw[1]))
        end = clock + shift_s
        if end > self.duration_s - 0.2:
            raise InfeasibleMotionError(f"clip '{self.name}': steps end at {end:.2f} s, after the clip")
        com_times.append(end)
        com_points.append(None)
        # CoM keyframes: None means "between the feet" at that time.
        middle = self.double_support_point()
        key_xy = []
        for time_s, point in zip(com_times, com_points):
            if point is None:
                point = middle[min(int(round(time_s * SYNTH_FPS_HZ)), len(t) - 1)]
            key_xy.append(point)
        self.com_override = keyframe_track(t, com_times, key_xy)
        heading = keyframe_track(t, yaw_times, yaw_values)
        self.pelvis_rpy[:, 2] += heading
        # Lean the trunk towards the stance foot, as people do, so the hips need to shift less.
        offset = self.com_override - middle
        lateral = -np.sin(heading) * offset[:, 0] + np.cos(heading) * offset[:, 1]
        self.add("waist_roll_joint", -lean_rad_per_m * lateral)
        return end

    def build(self) -> MotionPlan:
        base = self.com_override if self.com_override is not None else self.double_support_point()
        return MotionPlan(
            name=self.name,
            fps=SYNTH_FPS_HZ,
            com_xy_m=base + self.com_offset,
            pelvis_height_m=self.pelvis_height,
            pelvis_rpy_rad=self.pelvis_rpy,
            foot_pos_m=self.foot_pos,
            foot_yaw_rad=self.foot_yaw,
            upper_dof_rad=self.upper,
            stance=self.stance,
            description=self.description,
        )


def _sin(b: _PlanBuilder, freq_hz: float, phase_rad: float = 0.0) -> np.ndarray:
    return np.sin(2.0 * np.pi * freq_hz * b.t + phase_rad)


# --------------------------------------------------------------------------------------------
# The clip catalogue
# --------------------------------------------------------------------------------------------


def _idle_sway(b: _PlanBuilder, rng: np.random.Generator) -> None:
    e = b.env(2.0)
    ph = rng.uniform(0, 2 * np.pi, 8)
    b.com_offset[:, 0] = 0.012 * e * _sin(b, 0.17, ph[0])
    b.com_offset[:, 1] = 0.03 * e * _sin(b, 0.11, ph[1])
    b.pelvis_height += 0.006 * e * _sin(b, 0.23, ph[2])
    b.pelvis_rpy[:, 0] += 0.02 * e * _sin(b, 0.11, ph[1] + 0.5)
    b.pelvis_rpy[:, 1] += 0.015 * e * _sin(b, 0.17, ph[3])
    b.add("waist_yaw_joint", 0.08 * e * _sin(b, 0.09, ph[4]))
    b.add_both("shoulder_pitch_joint", 0.08 * e * _sin(b, 0.3, ph[5]), 0.08 * e * _sin(b, 0.27, ph[6]))
    b.add_both("elbow_joint", 0.1 * e * _sin(b, 0.21, ph[7]), 0.1 * e * _sin(b, 0.19, ph[5]))


def _look_around(b: _PlanBuilder, rng: np.random.Generator) -> None:
    yaw = rng.uniform(0.45, 0.6)
    keys = [1.0, 2.5, 4.0, 5.5, 7.0, 8.5]
    b.add("waist_yaw_joint", keyframe_track(b.t, keys, [0.0, yaw, yaw, -yaw, -yaw, 0.0]))
    b.add("waist_pitch_joint", keyframe_track(b.t, keys, [0.0, 0.05, 0.05, 0.05, 0.05, 0.0]))
    b.pelvis_rpy[:, 2] += keyframe_track(b.t, keys, [0.0, 0.15, 0.15, -0.15, -0.15, 0.0])
    b.add_both("shoulder_roll_joint", keyframe_track(b.t, keys, [0, 0.1, 0.1, 0.0, 0.0, 0]),
               keyframe_track(b.t, keys, [0, 0.0, 0.0, -0.1, -0.1, 0]))


def _squat(depth_m: float, reps: int, arms_forward: bool):
    def recipe(b: _PlanBuilder, rng: np.random.Generator) -> None:
        period = (b.duration_s - 2.0) / reps
        times, heights, pitch, reach = [0.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]
        for k in range(reps):
            t0 = 1.0 + k * period
            times += [t0 + 0.4 * period, t0 + 0.55 * period, t0 + period]
            heights += [depth_m, depth_m, 0.0]
            pitch += [1.0, 1.0, 0.0]
            reach += [1.0, 1.0, 0.0]
        down = keyframe_track(b.t, times, heights)
        frac = keyframe_track(b.t, times, pitch)
        b.pelvis_height -= down
        b.pelvis_rpy[:, 1] += 0.55 * frac * depth_m / 0.25
        b.add("waist_pitch_joint", 0.1 * frac)
        if arms_forward:
            b.add_both("shoulder_pitch_joint", -1.4 * frac, -1.4 * frac)
            b.add_both("elbow_joint", 0.8 * frac, 0.8 * frac)
        else:
            b.add_both("shoulder_roll_joint", 0.25 * frac, -0.25 * frac)
            b.add_both("elbow_joint", 0.9 * frac, 0.9 * frac)
    return recipe


def _wave(sides: tuple[str, ...]):
    def recipe(b: _PlanBuilder, rng: np.random.Generator) -> None:
        keys = [0.8, 2.0, b.duration_s - 2.0, b.duration_s - 0.8]
        up = keyframe_track(b.t, keys, [0.0, 1.0, 1.0, 0.0])
        wave = up * np.sin(2.0 * np.pi * rng.uniform(1.2, 1.6) * b.t)
        for side in sides:
            sign = 1.0 if side == "left" else -1.0
            b.add(f"{side}_shoulder_pitch_joint", -0.6 * up)
            b.add(f"{side}_shoulder_roll_joint", sign * 1.0 * up)
            b.add(f"{side}_shoulder_yaw_joint", sign * 0.3 * up)
            b.add(f"{side}_elbow_joint", -0.9 * up + 0.35 * wave)
            b.add(f"{side}_wrist_roll_joint", sign * 0.3 * wave)
        if len(sides) == 1:
            b.add("waist_roll_joint", (-0.08 if sides[0] == "left" else 0.08) * up)
    return recipe


def _reach_forward(b: _PlanBuilder, rng: np.random.Generator) -> None:
    def reach(t0: float, t1: float) -> np.ndarray:
        return keyframe_track(b.t, [t0, t0 + 0.9, t1 - 0.9, t1], [0.0, 1.0, 1.0, 0.0])

    right, left, both = reach(0.8, 3.4), reach(3.8, 6.4), reach(6.8, 9.2)
    lean = np.maximum(np.maximum(right, left), both)
    for side, amount in (("right", right + both), ("left", left + both)):
        sign = 1.0 if side == "left" else -1.0
        b.add(f"{side}_shoulder_pitch_joint", -1.55 * amount)
        b.add(f"{side}_shoulder_roll_joint", sign * 0.12 * amount)
        b.add(f"{side}_elbow_joint", 0.85 * amount)
    b.add("waist_pitch_joint", 0.2 * lean)
    b.add("waist_yaw_joint", 0.25 * (left - right))
    b.pelvis_rpy[:, 1] += 0.15 * lean
    b.pelvis_height -= 0.03 * lean


def _reach_up_and_side(b: _PlanBuilder, rng: np.random.Generator) -> None:
    def hold(t0: float, t1: float) -> np.ndarray:
        return keyframe_track(b.t, [t0, t0 + 1.0, t1 - 1.0, t1], [0.0, 1.0, 1.0, 0.0])

    up, side_r, side_l = hold(0.8, 3.8), hold(4.0, 6.8), hold(7.0, 9.8)
    b.add_both("shoulder_pitch_joint", -2.6 * up, -2.6 * up)
    b.add_both("shoulder_roll_joint", 0.35 * up, -0.35 * up)
    b.add_both("elbow_joint", 0.9 * up, 0.9 * up)
    b.add("right_shoulder_roll_joint", -1.35 * side_r)
    b.add("right_elbow_joint", 0.9 * side_r)
    b.add("left_shoulder_roll_joint", 1.35 * side_l)
    b.add("left_elbow_joint", 0.9 * side_l)
    b.add("waist_roll_joint", -0.2 * side_r + 0.2 * side_l)
    b.com_offset[:, 1] = -0.03 * side_r + 0.03 * side_l


def _torso_twist(b: _PlanBuilder, rng: np.random.Generator) -> None:
    e = b.env(1.5)
    freq = rng.uniform(0.22, 0.28)
    twist = e * _sin(b, freq)
    b.add("waist_yaw_joint", 0.8 * twist)
    b.pelvis_rpy[:, 2] += 0.12 * twist
    b.add_both("shoulder_roll_joint", 0.35 * e, -0.35 * e)
    b.add_both("elbow_joint", 0.5 * e, 0.5 * e)
    b.add_both("shoulder_pitch_joint", 0.35 * twist, -0.35 * twist)


def _weight_shift_lateral(b: _PlanBuilder, rng: np.random.Generator) -> None:
    e = b.env(1.5)
    b.com_offset[:, 1] = 0.085 * e * _sin(b, rng.uniform(0.13, 0.17))
    b.pelvis_rpy[:, 0] -= 0.3 * b.com_offset[:, 1]
    b.add_both("shoulder_roll_joint", 0.6 * b.com_offset[:, 1], 0.6 * b.com_offset[:, 1])


def _weight_shift_sagittal(b: _PlanBuilder, rng: np.random.Generator) -> None:
    e = b.env(1.5)
    shift = 0.04 * e * _sin(b, rng.uniform(0.18, 0.22))
    b.com_offset[:, 0] = shift
    b.pelvis_rpy[:, 1] += 1.0 * shift
    b.add_both("shoulder_pitch_joint", -2.0 * shift, -2.0 * shift)


def _step_in_place(b: _PlanBuilder, rng: np.random.Generator) -> None:
    steps = [(side, (0.0, NEUTRAL_FOOT_Y_M if side == "left" else -NEUTRAL_FOOT_Y_M), 0.0)
             for side in ("right", "left") * 3]
    b.gait(steps, start_s=1.0, shift_s=0.8, swing_s=0.9, clearance_m=0.08)
    _arm_swing(b, 0.1)


def _walk(step_m: float, num_steps: int, shift_s: float = 0.7, swing_s: float = 0.9):
    def recipe(b: _PlanBuilder, rng: np.random.Generator) -> None:
        steps, front = [], {"left": 0.0, "right": 0.0}
        for k in range(num_steps):
            side = ("right", "left")[k % 2]
            other = "left" if side == "right" else "right"
            last = k == num_steps - 1
            x = front[other] if last else front[other] + step_m
            front[side] = x
            steps.append((side, (x, NEUTRAL_FOOT_Y_M if side == "left" else -NEUTRAL_FOOT_Y_M), 0.0))
        b.gait(steps, start_s=1.0, shift_s=shift_s, swing_s=swing_s)
        b.pelvis_height -= 0.02 * b.env(1.0)
        _arm_swing(b, 0.15 if step_m > 0 else 0.08)
    return recipe


def _side_step(b: _PlanBuilder, rng: np.random.Generator) -> None:
    w = 0.04
    y_l, y_r = NEUTRAL_FOOT_Y_M, -NEUTRAL_FOOT_Y_M
    steps = [
        ("left", (0.0, y_l + w), 0.0), ("right", (0.0, y_r + w), 0.0),
        ("left", (0.0, y_l + 2 * w), 0.0), ("right", (0.0, y_r + 2 * w), 0.0),
        ("right", (0.0, y_r + w), 0.0), ("left", (0.0, y_l + w), 0.0),
        ("right", (0.0, y_r), 0.0), ("left", (0.0, y_l), 0.0),
    ]
    b.gait(steps, start_s=0.8, shift_s=0.65, swing_s=0.75, clearance_m=0.04, lean_rad_per_m=2.0)
    b.add_both("shoulder_roll_joint", 0.15 * b.env(), -0.15 * b.env())


def _turn_in_place(b: _PlanBuilder, rng: np.random.Generator) -> None:
    steps, yaw = [], 0.0
    for k in range(6):
        side = ("left", "right")[k % 2]
        if side == "left":
            yaw += math.pi / 8
        y = NEUTRAL_FOOT_Y_M if side == "left" else -NEUTRAL_FOOT_Y_M
        steps.append((side, (-math.sin(yaw) * y, math.cos(yaw) * y), yaw))
    b.gait(steps, start_s=1.0, shift_s=0.75, swing_s=0.85, clearance_m=0.06)
    _arm_swing(b, 0.08)


def _arm_circles(b: _PlanBuilder, rng: np.random.Generator) -> None:
    up = keyframe_track(b.t, [0.8, 2.0, b.duration_s - 2.0, b.duration_s - 0.8], [0.0, 1.0, 1.0, 0.0])
    w = 2.0 * np.pi * rng.uniform(0.45, 0.55) * b.t
    b.add_both("shoulder_roll_joint", up * (1.1 + 0.3 * np.sin(w)), -up * (1.1 + 0.3 * np.sin(w)))
    b.add_both("shoulder_pitch_joint", -up * (0.2 + 0.45 * np.cos(w)), -up * (0.2 + 0.45 * np.cos(w)))
    b.add_both("elbow_joint", 0.9 * up, 0.9 * up)


def _arm_swing(b: _PlanBuilder, amplitude_rad: float) -> None:
    """Arms swing against the legs: each shoulder follows the opposite foot's forward travel."""
    left_fwd = b.foot_pos[0, :, 0] - b.foot_pos[1, :, 0]
    scale = amplitude_rad / 0.15
    b.add_both("shoulder_pitch_joint", np.clip(-scale * left_fwd, -0.3, 0.3), np.clip(scale * left_fwd, -0.3, 0.3))


@dataclass(frozen=True)
class ClipRecipe:
    name: str
    duration_s: float
    description: str
    build: Callable[[_PlanBuilder, np.random.Generator], None] = field(repr=False)


SAMPLE_CLIPS: tuple[ClipRecipe, ...] = (
    ClipRecipe("idle_stand_sway", 12.0, "quiet standing with slow body sway", _idle_sway),
    ClipRecipe("idle_look_around", 10.0, "standing, turning the torso left and right", _look_around),
    ClipRecipe("squat_deep", 12.0, "two slow deep squats with the arms forward", _squat(0.26, 2, True)),
    ClipRecipe("squat_half", 9.0, "three half squats", _squat(0.12, 3, False)),
    ClipRecipe("wave_right_hand", 8.0, "waving with the right hand", _wave(("right",))),
    ClipRecipe("wave_both_hands", 8.0, "waving with both hands", _wave(("left", "right"))),
    ClipRecipe("reach_forward", 10.0, "reaching forward with each arm, then both", _reach_forward),
    ClipRecipe("reach_up_and_side", 10.8, "arms overhead, then side reaches", _reach_up_and_side),
    ClipRecipe("torso_twist", 10.0, "twisting the torso with the arms out", _torso_twist),
    ClipRecipe("weight_shift_lateral", 10.0, "shifting weight from foot to foot", _weight_shift_lateral),
    ClipRecipe("weight_shift_sagittal", 8.0, "rocking weight between heels and toes", _weight_shift_sagittal),
    ClipRecipe("step_in_place", 12.8, "six quasi-static steps in place", _step_in_place),
    ClipRecipe("walk_forward_slow", 15.0, "slow quasi-static walk forward (~0.1 m/s)", _walk(0.18, 8)),
    ClipRecipe("walk_backward_slow", 12.0, "slow quasi-static walk backward", _walk(-0.12, 6)),
    ClipRecipe("side_step", 13.2, "small side steps to the left and back", _side_step),
    ClipRecipe("turn_in_place", 12.0, "stepping turn of 67.5 degrees to the left", _turn_in_place),
    ClipRecipe("arm_circles", 8.0, "arm circles with the arms out to the sides", _arm_circles),
)
SAMPLE_CLIP_NAMES: tuple[str, ...] = tuple(r.name for r in SAMPLE_CLIPS)


def make_plan(name: str, seed: int = DEFAULT_SEED) -> MotionPlan:
    """The task-space plan of one catalogue clip; the seed only varies phases and frequencies."""
    recipes = {r.name: r for r in SAMPLE_CLIPS}
    if name not in recipes:
        raise KeyError(f"unknown sample clip '{name}'; known: {', '.join(SAMPLE_CLIP_NAMES)}")
    recipe = recipes[name]
    rng = np.random.default_rng([seed, SAMPLE_CLIP_NAMES.index(name)])
    builder = _PlanBuilder(recipe.name, recipe.duration_s, _shared_model().foot, recipe.description)
    recipe.build(builder, rng)
    return builder.build()


def synthesize_clip(name: str, seed: int = DEFAULT_SEED) -> SyntheticClip:
    """Plan and solve one catalogue clip at 120 fps."""
    return solve_plan(make_plan(name, seed))


# --------------------------------------------------------------------------------------------
# Human skeletons driven by the G1's kinematics
# --------------------------------------------------------------------------------------------

# y-up (x, y, z) -> z-up (x, -z, y), and a human that faces +z in a y-up file faces +x here once
# it is also turned 90 degrees about the vertical: P = Y_UP_TO_Z_UP @ Ry(90 deg).
_Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_RY90 = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
CANONICAL_TO_WORLD = _Y_UP_TO_Z_UP @ _RY90


@dataclass(frozen=True)
class JointDrive:
    """How one human joint follows the G1: the rotation of `body` (or a slerp from `body` to
    `blend_body` by `blend`), with its bone towards `bone_child` turned to lie along the G1 bone
    `g1_bone` (from, to) of the all-zero pose. Joints without a drive keep their rest rotation
    relative to their parent."""

    body: str
    blend_body: str | None = None
    blend: float = 0.0
    bone_child: str | None = None
    g1_bone: tuple[str, str] | None = None


@dataclass(frozen=True)
class HumanSkeleton:
    """Rest pose of a human skeleton in our world (z-up, metres, facing +x, feet on the floor)."""

    names: tuple[str, ...]
    parents: np.ndarray           # (J,) int, -1 for roots
    rest_pos_m: np.ndarray        # (J, 3)
    rest_quat: np.ndarray         # (J, 4) wxyz: joint frame -> world
    drives: dict[str, JointDrive]
    pelvis: str                   # the joint the root translation moves
    ankles: tuple[str, str]       # (left, right): placed on the floor, anchored while in stance

    def index(self, name: str) -> int:
        return self.names.index(name)


def _quat_from_matrix_np(m: np.ndarray) -> np.ndarray:
    return matrix_to_quat(torch.as_tensor(m, dtype=_DTYPE)).numpy()


def _min_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation (wxyz) turning direction a onto direction b."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.dot(a, b))
    if s < 1e-12:
        if c > 0:
            return np.array([1.0, 0.0, 0.0, 0.0])
        perp = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        return np.concatenate([[0.0], perp / np.linalg.norm(perp)])
    angle = math.atan2(s, c)
    return np.concatenate([[math.cos(angle / 2)], math.sin(angle / 2) * axis / s])


# SMPL-24 joints and a rest skeleton of average adult proportions (about 1.7 m tall), given as
# offsets from the parent in SMPL's canonical frame (y up, facing +z, the body's left at +x).
SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)
SMPL_PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])
_SMPL_LEFT_OFFSETS_M = {  # left side and spine; the right side mirrors x
    "left_hip": (0.069, -0.091, -0.004),
    "spine1": (0.0, 0.109, -0.027),
    "left_knee": (0.036, -0.379, -0.007),
    "spine2": (0.0, 0.135, 0.001),
    "left_ankle": (-0.015, -0.398, -0.043),
    "spine3": (0.0, 0.053, 0.025),
    "left_foot": (0.026, -0.052, 0.121),
    "neck": (0.0, 0.214, -0.043),
    "left_collar": (0.080, 0.120, -0.036),
    "head": (0.0, 0.065, 0.051),
    "left_shoulder": (0.093, 0.032, -0.009),
    "left_elbow": (0.257, -0.013, -0.024),
    "left_wrist": (0.252, 0.008, -0.003),
    "left_hand": (0.084, -0.007, -0.012),
}
SMPL_ANKLE_HEIGHT_M = 0.085


def _smpl_offsets() -> np.ndarray:
    offsets = np.zeros((24, 3))
    for j, name in enumerate(SMPL_JOINT_NAMES[1:], start=1):
        if name in _SMPL_LEFT_OFFSETS_M:
            offsets[j] = _SMPL_LEFT_OFFSETS_M[name]
        else:
            offsets[j] = _SMPL_LEFT_OFFSETS_M[name.replace("right_", "left_")] * np.array([-1.0, 1.0, 1.0])
    return offsets


def _limb_drives(human: dict[str, str]) -> dict[str, JointDrive]:
    """Drives for the limbs, given human joint names keyed by role (per side)."""
    drives = {}
    for side in SIDES:
        h = {role: name.format(side=side, Side=side.capitalize()) for role, name in human.items()}
        drives[h["hip"]] = JointDrive(f"{side}_hip_yaw_link", bone_child=h["knee"],
                                      g1_bone=(f"{side}_hip_roll_link", f"{side}_knee_link"))
        drives[h["knee"]] = JointDrive(f"{side}_knee_link", bone_child=h["ankle"],
                                       g1_bone=(f"{side}_knee_link", f"{side}_ankle_roll_link"))
        drives[h["ankle"]] = JointDrive(f"{side}_ankle_roll_link")
        drives[h["shoulder"]] = JointDrive(f"{side}_shoulder_yaw_link", bone_child=h["elbow"],
                                           g1_bone=(f"{side}_shoulder_roll_link", f"{side}_elbow_link"))
        drives[h["elbow"]] = JointDrive(f"{side}_elbow_link", bone_child=h["wrist"],
                                        g1_bone=(f"{side}_elbow_link", f"{side}_wrist_roll_link"))
        drives[h["wrist"]] = JointDrive(f"{side}_wrist_yaw_link", bone_child=h["hand"],
                                        g1_bone=(f"{side}_wrist_roll_link", f"{side}_wrist_yaw_link"))
    return drives


def smpl_skeleton() -> HumanSkeleton:
    """The SMPL-24 rest skeleton (T-pose, identity joint rotations in SMPL's canonical frame)."""
    offsets = _smpl_offsets()
    canonical = np.zeros((24, 3))
    for j in range(1, 24):
        canonical[j] = canonical[SMPL_PARENTS[j]] + offsets[j]
    rest = canonical @ CANONICAL_TO_WORLD.T
    rest[:, 2] += SMPL_ANKLE_HEIGHT_M - rest[SMPL_JOINT_NAMES.index("left_ankle"), 2]
    drives = _limb_drives({"hip": "{side}_hip", "knee": "{side}_knee", "ankle": "{side}_ankle",
                           "shoulder": "{side}_shoulder", "elbow": "{side}_elbow", "wrist": "{side}_wrist",
                           "hand": "{side}_hand"})
    drives.update({
        "pelvis": JointDrive("pelvis"),
        "spine1": JointDrive("pelvis", "torso_link", 1.0 / 3.0),
        "spine2": JointDrive("pelvis", "torso_link", 2.0 / 3.0),
        "spine3": JointDrive("torso_link"),
    })
    return HumanSkeleton(
        names=SMPL_JOINT_NAMES,
        parents=SMPL_PARENTS,
        rest_pos_m=rest,
        rest_quat=np.tile(_quat_from_matrix_np(CANONICAL_TO_WORLD), (24, 1)),
        drives=drives,
        pelvis="pelvis",
        ankles=("left_ankle", "right_ankle"),
    )


def soma_human_skeleton(bvh_skeleton_path: str | None = None) -> HumanSkeleton:
    """The real SOMA skeleton (from its BVH rest pose), turned to face +x like the G1."""
    from gear_sonic.data.bvh import bvh_world_transforms
    from gear_sonic.data.soma import soma_rest_motion

    rest = soma_rest_motion(bvh_skeleton_path)
    pos_cm, quat_yup = bvh_world_transforms(rest)
    # The file is y-up facing +z, like SMPL's canonical frame, so the same map turns it to face +x.
    pos = (pos_cm[0] * 0.01) @ CANONICAL_TO_WORLD.T
    to_world = torch.as_tensor(_quat_from_matrix_np(CANONICAL_TO_WORLD), dtype=_DTYPE)
    quat = quat_mul(to_world.expand(len(pos), 4), torch.as_tensor(quat_yup[0], dtype=_DTYPE)).numpy()
    drives = _limb_drives({"hip": "{Side}Leg", "knee": "{Side}Shin", "ankle": "{Side}Foot",
                           "shoulder": "{Side}Arm", "elbow": "{Side}ForeArm", "wrist": "{Side}Hand",
                           "hand": "{Side}HandMiddle1"})
    drives.update({
        "Hips": JointDrive("pelvis"),
        "Spine1": JointDrive("pelvis", "torso_link", 1.0 / 3.0),
        "Spine2": JointDrive("pelvis", "torso_link", 2.0 / 3.0),
        "Chest": JointDrive("torso_link"),
    })
    return HumanSkeleton(
        names=tuple(rest.skeleton.joint_names),
        parents=rest.skeleton.parents,
        rest_pos_m=pos,
        rest_quat=quat,
        drives=drives,
        pelvis="Hips",
        ankles=("LeftFoot", "RightFoot"),
    )


@dataclass
class HumanMotion:
    """World poses of a human skeleton's joints over a clip (z-up metres, wxyz)."""

    skeleton: HumanSkeleton
    fps: float
    joint_pos_m: np.ndarray   # (T, J, 3)
    joint_quat: np.ndarray    # (T, J, 4) joint frame -> world

    def positions(self, names: tuple[str, ...] | list[str]) -> np.ndarray:
        return self.joint_pos_m[:, [self.skeleton.index(n) for n in names]]


def retarget_to_human(
    skeleton: HumanSkeleton,
    root_pos: np.ndarray,
    root_quat: np.ndarray,
    dof_pos: np.ndarray,
    stance: np.ndarray,
    fps: float,
) -> HumanMotion:
    """Drive a human skeleton with a G1 motion: joint rotations from the matching G1 bodies,
    bones at human length, feet on the floor and anchored while the G1's feet are planted."""
    gm = _shared_model()
    kin = gm.kin
    n = len(root_pos)
    _, body_quat = kin.forward(torch.as_tensor(root_pos, dtype=_DTYPE), torch.as_tensor(root_quat, dtype=_DTYPE),
                               torch.as_tensor(dof_pos, dtype=_DTYPE))
    zero_pos, zero_quat = kin.forward(torch.zeros(3, dtype=_DTYPE), torch.tensor([1.0, 0, 0, 0], dtype=_DTYPE),
                                      torch.zeros(29, dtype=_DTYPE))
    rel = quat_mul(body_quat, quat_conjugate(zero_quat).expand_as(body_quat))  # (T, B, 4) vs the zero pose

    def body_rel(name: str) -> torch.Tensor:
        return rel[:, kin.body_names.index(name)]

    rest_pos = torch.as_tensor(skeleton.rest_pos_m, dtype=_DTYPE)
    rest_quat = torch.as_tensor(skeleton.rest_quat, dtype=_DTYPE)
    num_joints = len(skeleton.names)
    world_q = torch.zeros(n, num_joints, 4, dtype=_DTYPE)
    local_p = torch.zeros(n, num_joints, 3, dtype=_DTYPE)   # positions relative to the pelvis joint
    pelvis = skeleton.index(skeleton.pelvis)
    for j, name in enumerate(skeleton.names):
        parent = int(skeleton.parents[j])
        drive = skeleton.drives.get(name)
        if drive is not None:
            r = body_rel(drive.body)
            if drive.blend_body is not None:
                r = quat_slerp(r, body_rel(drive.blend_body), torch.full((n,), drive.blend, dtype=_DTYPE))
            align = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=_DTYPE)
            if drive.bone_child is not None:
                bone_h = skeleton.rest_pos_m[skeleton.index(drive.bone_child)] - skeleton.rest_pos_m[j]
                a, b = (kin.body_names.index(x) for x in drive.g1_bone)
                align = torch.as_tensor(_min_rotation(bone_h, (zero_pos[b] - zero_pos[a]).numpy()), dtype=_DTYPE)
            world_q[:, j] = quat_mul(r, quat_mul(align, rest_quat[j]).expand(n, 4))
        elif parent < 0:
            world_q[:, j] = rest_quat[j]
        else:
            rest_local = quat_mul(quat_conjugate(rest_quat[parent]), rest_quat[j])
            world_q[:, j] = quat_mul(world_q[:, parent], rest_local.expand(n, 4))
        if parent >= 0 and j != pelvis:
            offset_local = quat_apply(quat_conjugate(rest_quat[parent]), rest_pos[j] - rest_pos[parent])
            local_p[:, j] = local_p[:, parent] + quat_apply(world_q[:, parent], offset_local.expand(n, 3))
    # Translation: the lower ankle at its rest height; horizontally, planted feet do not slide.
    ankles = [skeleton.index(a) for a in skeleton.ankles]
    rest_ankle_z = float(skeleton.rest_pos_m[ankles, 2].min())
    ankle_rel = local_p[:, ankles].numpy()                       # (T, 2, 3)
    weights = stance.T.astype(np.float64)                        # (T, 2)
    weights = np.where(weights.sum(1, keepdims=True) > 0, weights, 1.0)
    weights = weights / weights.sum(1, keepdims=True)
    step = -(weights[1:, :, None] * np.diff(ankle_rel[..., :2], axis=0)).sum(1)
    first_pos, _ = kin.forward(torch.as_tensor(root_pos[0], dtype=_DTYPE), torch.as_tensor(root_quat[0], dtype=_DTYPE),
                               torch.as_tensor(dof_pos[0], dtype=_DTYPE))
    g1_feet_xy = first_pos[[gm.leg_bodies[0][-1], gm.leg_bodies[1][-1]], :2].numpy()
    start_xy = g1_feet_xy.mean(0) - ankle_rel[0, :, :2].mean(0)
    pelvis_pos = np.zeros((n, 3))
    pelvis_pos[:, :2] = start_xy + np.concatenate([np.zeros((1, 2)), np.cumsum(step, axis=0)])
    pelvis_pos[:, 2] = rest_ankle_z - ankle_rel[..., 2].min(1)
    joint_pos = local_p.numpy() + pelvis_pos[:, None]
    outside = np.ones(num_joints, dtype=bool)
    outside[pelvis] = False
    for j in range(num_joints):  # joints above the pelvis (e.g. SOMA's virtual Root) stay at the origin
        k = j
        while k >= 0 and k != pelvis:
            k = int(skeleton.parents[k])
        outside[j] = k != pelvis
    joint_pos[:, outside] = 0.0
    return HumanMotion(skeleton=skeleton, fps=fps, joint_pos_m=joint_pos.astype(np.float64),
                       joint_quat=world_q.numpy())


_Z_UP_TO_Y_UP_QUAT = _quat_from_matrix_np(_Y_UP_TO_Z_UP.T)


def smpl_npz_arrays(motion: HumanMotion) -> dict[str, np.ndarray]:
    """SMPL side-file arrays in SMPL's y-up convention: joints, transl (the pelvis joint), and
    pose_aa (root orientation, then each joint's rotation relative to its parent, axis-angle)."""
    skeleton = motion.skeleton
    joints_y_up = motion.joint_pos_m @ _Y_UP_TO_Z_UP  # row vectors: z-up -> y-up is the transpose map
    global_y_up = quat_mul(
        torch.as_tensor(_Z_UP_TO_Y_UP_QUAT, dtype=_DTYPE).expand(motion.joint_quat.shape),
        torch.as_tensor(motion.joint_quat, dtype=_DTYPE),
    )
    parents = torch.as_tensor(np.maximum(skeleton.parents, 0))
    local = quat_mul(quat_conjugate(global_y_up[:, parents]), global_y_up)
    local[:, skeleton.parents < 0] = global_y_up[:, skeleton.parents < 0]
    return {
        "smpl_joints": joints_y_up.astype(np.float32),
        "transl": joints_y_up[:, skeleton.index(skeleton.pelvis)].astype(np.float32),
        "pose_aa": quat_to_axis_angle(local).numpy().astype(np.float32),
    }


def soma_bvh_motion(motion: HumanMotion, bvh_skeleton_path: str | None = None):
    """A SOMA BVH motion (the real skeleton's hierarchy and offsets) posed like `motion`."""
    from gear_sonic.data.bvh import world_to_local_rotations
    from gear_sonic.data.soma import make_soma_motion, soma_skeleton

    bvh_skeleton = soma_skeleton(bvh_skeleton_path)
    skeleton = motion.skeleton
    if tuple(bvh_skeleton.joint_names) != skeleton.names:
        raise ValueError("the SOMA BVH skeleton does not match the skeleton the motion was made for")
    world_y_up = quat_mul(
        torch.as_tensor(_Z_UP_TO_Y_UP_QUAT, dtype=_DTYPE).expand(motion.joint_quat.shape),
        torch.as_tensor(motion.joint_quat, dtype=_DTYPE),
    ).numpy()
    pelvis = skeleton.index(skeleton.pelvis)
    above = []
    k = int(skeleton.parents[pelvis])
    while k >= 0:
        above.append(k)
        k = int(skeleton.parents[k])
    world_y_up[:, above] = np.array([1.0, 0.0, 0.0, 0.0])  # SOMA's virtual Root stays unrotated
    local = world_to_local_rotations(bvh_skeleton, world_y_up)
    return make_soma_motion(local, motion.joint_pos_m[:, pelvis], motion.fps, bvh_skeleton)


# --------------------------------------------------------------------------------------------
# Plausibility checks on any G1 motion, with MuJoCo's own kinematics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroundContactReport:
    """Floor contact of a G1 motion, measured on the compiled model's collision geometry."""

    max_penetration_m: float        # deepest point of any collision geom below z = 0 (0 if none)
    max_contact_slide_m: float      # largest horizontal drift of a foot over one floor contact
    max_contact_speed_m_s: float    # largest horizontal foot speed while touching the floor
    frames_without_support: int     # frames where neither foot is within `touch_m` of the floor
    lowest_point_m: np.ndarray      # (T,) lowest point of the whole robot per frame
    foot_lowest_m: np.ndarray       # (2, T) lowest point of each foot per frame


def ground_contact_report(
    root_pos: np.ndarray,
    root_quat: np.ndarray,
    dof_pos: np.ndarray,
    fps: float,
    touch_m: float = 0.01,
    model: mujoco.MjModel | None = None,
) -> GroundContactReport:
    """Penetration, foot sliding and support of a motion; a foot "touches" within `touch_m`."""
    from gear_sonic.robots.mjcf import joint_qpos_indices

    model = model if model is not None else build_g1_model(add_actuators=False)
    data = mujoco.MjData(model)
    ground = model.geom("ground").id if "ground" in [model.geom(i).name for i in range(model.ngeom)] else -1
    geoms = [g for g in range(model.ngeom)
             if g != ground and (model.geom_contype[g] or model.geom_conaffinity[g])]
    unsupported = [g for g in geoms if model.geom_type[g] not in (mujoco.mjtGeom.mjGEOM_CAPSULE, mujoco.mjtGeom.mjGEOM_SPHERE)]
    if unsupported:
        raise ValueError(f"collision geom types {sorted({int(model.geom_type[g]) for g in unsupported})} not handled")
    feet = [model.body(f"{s}_ankle_roll_link").id for s in SIDES]
    is_capsule = np.array([model.geom_type[g] == mujoco.mjtGeom.mjGEOM_CAPSULE for g in geoms])
    radius = model.geom_size[geoms, 0]
    half = np.where(is_capsule, model.geom_size[geoms, 1], 0.0)
    on_foot = [np.array([model.geom_bodyid[g] == b for g in geoms]) for b in feet]
    qadr = joint_qpos_indices(model)
    n = len(root_pos)
    lowest = np.empty((n, len(geoms)))
    foot_xy = np.empty((2, n, 2))
    for t in range(n):
        data.qpos[:3] = root_pos[t]
        data.qpos[3:7] = root_quat[t]
        data.qpos[qadr] = dof_pos[t]
        mujoco.mj_kinematics(model, data)
        axis_z = data.geom_xmat[geoms, 8]  # z component of each geom's local z axis
        lowest[t] = data.geom_xpos[geoms, 2] - half * np.abs(axis_z) - radius
        foot_xy[:, t] = data.xpos[feet, :2]
    foot_lowest = np.stack([lowest[:, m].min(1) for m in on_foot])
    touching = foot_lowest < touch_m
    slide, speed = 0.0, 0.0
    for k in range(2):
        both = touching[k, 1:] & touching[k, :-1]
        step = np.linalg.norm(np.diff(foot_xy[k], axis=0), axis=-1)
        if both.any():
            speed = max(speed, float(step[both].max() * fps))
        start = None
        for t in range(n):
            if touching[k, t] and start is None:
                start = t
            if start is not None and (not touching[k, t] or t == n - 1):
                end = t if touching[k, t] else t - 1
                span = foot_xy[k, start : end + 1]
                slide = max(slide, float(np.linalg.norm(span - span[0], axis=-1).max()))
                start = None
    return GroundContactReport(
        max_penetration_m=float(max(0.0, -lowest.min())),
        max_contact_slide_m=slide,
        max_contact_speed_m_s=speed,
        frames_without_support=int((~touching.any(0)).sum()),
        lowest_point_m=lowest.min(1),
        foot_lowest_m=foot_lowest,
    )


def support_margin_m(
    root_pos: np.ndarray, root_quat: np.ndarray, dof_pos: np.ndarray, touch_m: float = 0.01
) -> np.ndarray:
    """(T,) signed distance (m) of the CoM's floor projection inside the support polygon (the convex
    hull of the soles of the feet touching the floor); negative means outside."""
    gm = _shared_model()
    body_pos, body_quat = gm.kin.forward(torch.as_tensor(root_pos, dtype=_DTYPE),
                                         torch.as_tensor(root_quat, dtype=_DTYPE), torch.as_tensor(dof_pos, dtype=_DTYPE))
    com = gm.com(body_pos, body_quat)[:, :2].numpy()
    sole = torch.as_tensor(np.concatenate([gm.foot.support_points_xy_m, np.full((len(gm.foot.support_points_xy_m), 1),
                                                                               -gm.foot.sole_height_m)], 1), dtype=_DTYPE)
    corners, touching = [], []
    for k in range(2):
        end = gm.leg_bodies[k][-1]
        pts = body_pos[:, end, None] + quat_apply(body_quat[:, end, None].expand(-1, len(sole), 4), sole.expand(len(com), -1, 3))
        corners.append(pts.numpy())
        touching.append(pts[..., 2].amin(-1).numpy() < touch_m)
    margins = np.empty(len(com))
    for t in range(len(com)):
        pts = np.concatenate([corners[k][t, :, :2] for k in range(2) if touching[k][t]] or [np.zeros((0, 2))])
        margins[t] = _convex_margin(pts, com[t]) if len(pts) >= 3 else -np.inf
    return margins


def _convex_margin(points: np.ndarray, query: np.ndarray) -> float:
    """Signed distance from `query` to the boundary of the convex hull of `points` (positive inside)."""
    from scipy.spatial import ConvexHull

    hull = ConvexHull(points)
    # hull.equations rows: (normal, offset) with normal . x + offset <= 0 inside.
    return float(-(hull.equations[:, :2] @ query + hull.equations[:, 2]).max())
