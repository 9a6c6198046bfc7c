"""The declared observation layout: every group's terms, widths, frames and order.

This module is the single source of truth shared by the environment (which fills the
tensors), the model (which slices them) and the ONNX export (which writes a layout file per
exported model). Widths match the SONIC release exactly.

Conventions:
- A term with `frames > 1` is stored term-major: all frames of the term, oldest/nearest first,
  then the next term. Within a frame the values are contiguous.
- `rot6d`: the first two columns of a rotation matrix flattened row-major (r00, r01, r10, r11, r20, r21).
- Joint-indexed terms are in MuJoCo joint order (see `gear_sonic.robots.g1.JOINT_NAMES_MUJOCO`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

HISTORY_FRAMES = 10
FUTURE_FRAMES = 10
NUM_JOINTS = 29
NUM_LOWER_BODY_JOINTS = 12
NUM_TRACKED_BODIES = 14
NUM_SMPL_JOINTS = 24
NUM_SOMA_JOINTS = 26
TOKEN_DIM = 64
# g1 and teleop future frames are 0.1 s apart (0.0 .. 0.9 s); smpl and soma use 10 consecutive 50 Hz frames.
G1_FRAME_SPACING_S = 0.1
SMPL_FRAME_SPACING_S = 0.02


@dataclass(frozen=True)
class ObsTerm:
    name: str
    width_per_frame: int
    frames: int = 1
    units: str = ""
    description: str = ""

    @property
    def width(self) -> int:
        return self.width_per_frame * self.frames


@dataclass(frozen=True)
class ObsGroup:
    """An ordered list of terms concatenated into one flat tensor."""

    name: str
    terms: tuple[ObsTerm, ...]

    @cached_property
    def width(self) -> int:
        return sum(t.width for t in self.terms)

    @cached_property
    def offsets(self) -> dict[str, int]:
        out, offset = {}, 0
        for t in self.terms:
            out[t.name] = offset
            offset += t.width
        return out

    def slice(self, term: str) -> slice:
        """Columns of `term` in the flat group tensor."""
        start = self.offsets[term]
        return slice(start, start + self.term(term).width)

    def term(self, name: str) -> ObsTerm:
        for t in self.terms:
            if t.name == name:
                return t
        raise KeyError(f"observation group '{self.name}' has no term '{name}'; terms: {[t.name for t in self.terms]}")

    def describe(self, base_offset: int = 0) -> list[dict]:
        """Machine-readable description: one dict per term with its offset in the flat tensor."""
        return [
            {**asdict(t), "offset": base_offset + self.offsets[t.name], "width": t.width} for t in self.terms
        ]


def _history(name: str, width: int, units: str, description: str) -> ObsTerm:
    return ObsTerm(name, width, HISTORY_FRAMES, units, description + " (10-step history, oldest first)")


PROPRIOCEPTION = ObsGroup(
    "proprioception",
    (
        _history("base_ang_vel", 3, "rad/s", "pelvis angular velocity in the pelvis frame"),
        _history("joint_pos_rel", NUM_JOINTS, "rad", "joint positions minus the default pose"),
        _history("joint_vel", NUM_JOINTS, "rad/s", "joint velocities"),
        _history("last_action", NUM_JOINTS, "", "previous policy actions (unscaled)"),
        _history("projected_gravity", 3, "unit vector", "gravity direction in the pelvis frame"),
    ),
)

TOKENIZER_G1 = ObsGroup(
    "g1",
    (
        ObsTerm("command_joint_pos", NUM_JOINTS, FUTURE_FRAMES, "rad", "reference joint positions at t+0.0..0.9 s"),
        ObsTerm("command_joint_vel", NUM_JOINTS, FUTURE_FRAMES, "rad/s", "reference joint velocities at t+0.0..0.9 s"),
        ObsTerm(
            "command_anchor_ori_rot6d", 6, FUTURE_FRAMES, "rot6d",
            "reference pelvis orientation in the robot pelvis frame at t+0.0..0.9 s",
        ),
    ),
)

TOKENIZER_TELEOP = ObsGroup(
    "teleop",
    (
        ObsTerm(
            "command_lower_body_joint_pos", NUM_LOWER_BODY_JOINTS, FUTURE_FRAMES, "rad",
            "reference leg joint positions at t+0.0..0.9 s",
        ),
        ObsTerm(
            "command_lower_body_joint_vel", NUM_LOWER_BODY_JOINTS, FUTURE_FRAMES, "rad/s",
            "reference leg joint velocities at t+0.0..0.9 s",
        ),
        ObsTerm("vr_points_pos", 9, 1, "m", "left wrist, right wrist, head points in the reference pelvis frame"),
        ObsTerm("vr_points_quat", 12, 1, "wxyz", "orientations of the three points in the reference pelvis frame"),
        ObsTerm("command_anchor_ori_rot6d", 6, 1, "rot6d", "reference pelvis orientation in the robot pelvis frame"),
    ),
)


def _human_group(name: str, num_joints: int) -> ObsGroup:
    return ObsGroup(
        name,
        (
            ObsTerm(
                f"{name}_joints_local", num_joints * 3, FUTURE_FRAMES, "m",
                f"{num_joints} {name.upper()} joint positions in each frame's root frame, 10 frames 0.02 s apart",
            ),
            ObsTerm(f"{name}_root_ori_rot6d", 6, FUTURE_FRAMES, "rot6d", "root orientation relative to the robot pelvis"),
            ObsTerm("command_wrist_joint_pos", 6, FUTURE_FRAMES, "rad", "the six G1 wrist joint targets"),
        ),
    )


TOKENIZER_SMPL = _human_group("smpl", NUM_SMPL_JOINTS)
TOKENIZER_SOMA = _human_group("soma", NUM_SOMA_JOINTS)

CRITIC = ObsGroup(
    "critic",
    (
        ObsTerm("command_joint_pos", NUM_JOINTS, FUTURE_FRAMES, "rad", "reference joint positions at t+0.0..0.9 s"),
        ObsTerm("command_joint_vel", NUM_JOINTS, FUTURE_FRAMES, "rad/s", "reference joint velocities at t+0.0..0.9 s"),
        ObsTerm("anchor_pos_error", 3, 1, "m", "reference pelvis position in the robot pelvis frame"),
        ObsTerm("anchor_ori_error_rot6d", 6, 1, "rot6d", "reference pelvis orientation in the robot pelvis frame"),
        ObsTerm("body_pos", 3 * NUM_TRACKED_BODIES, 1, "m", "14 tracked body positions in the robot pelvis frame"),
        ObsTerm("body_ori_rot6d", 6 * NUM_TRACKED_BODIES, 1, "rot6d", "14 tracked body orientations, pelvis frame"),
        _history("base_lin_vel", 3, "m/s", "pelvis linear velocity in the pelvis frame"),
        _history("base_ang_vel", 3, "rad/s", "pelvis angular velocity in the pelvis frame"),
        _history("joint_pos_rel", NUM_JOINTS, "rad", "joint positions minus the default pose"),
        _history("joint_vel", NUM_JOINTS, "rad/s", "joint velocities"),
        _history("last_action", NUM_JOINTS, "", "previous policy actions"),
    ),
)

TOKENIZER_GROUPS: dict[str, ObsGroup] = {
    "g1": TOKENIZER_G1,
    "teleop": TOKENIZER_TELEOP,
    "smpl": TOKENIZER_SMPL,
    "soma": TOKENIZER_SOMA,
}
ENCODER_NAMES_RELEASE: tuple[str, ...] = ("g1", "teleop", "smpl")
ENCODER_NAMES_BONES_SEED: tuple[str, ...] = ("g1", "teleop", "smpl", "soma")

DECODER_INPUT_WIDTH = TOKEN_DIM + PROPRIOCEPTION.width


def encoder_union_width(encoders: tuple[str, ...]) -> int:
    """Width of the combined encoder ONNX input: index (1) + multi-hot (n) + every encoder's inputs."""
    return 1 + len(encoders) + sum(TOKENIZER_GROUPS[e].width for e in encoders)


def group(name: str) -> ObsGroup:
    groups = {"proprioception": PROPRIOCEPTION, "critic": CRITIC, **TOKENIZER_GROUPS}
    if name not in groups:
        raise KeyError(f"unknown observation group '{name}'; known: {sorted(groups)}")
    return groups[name]
