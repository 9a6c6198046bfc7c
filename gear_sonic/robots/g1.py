"""Unitree G1 (29 DoF): joint orders, default pose, actuators, tracked bodies, VR points.

Numbers follow the SONIC release (see SONIC_FACTS.md), including its choice of the 7520_22
motor on the hip pitch joints. Arrays indexed by joint are in MuJoCo order unless their name
says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NUM_JOINTS = 29

# Depth-first order of the MJCF tree: what MuJoCo, Bones-SEED CSVs and SONIC PKLs use.
JOINT_NAMES_MUJOCO: tuple[str, ...] = (
    "left_hip_pitch_joint",
    "left_hip_roll_joint",
    "left_hip_yaw_joint",
    "left_knee_joint",
    "left_ankle_pitch_joint",
    "left_ankle_roll_joint",
    "right_hip_pitch_joint",
    "right_hip_roll_joint",
    "right_hip_yaw_joint",
    "right_knee_joint",
    "right_ankle_pitch_joint",
    "right_ankle_roll_joint",
    "waist_yaw_joint",
    "waist_roll_joint",
    "waist_pitch_joint",
    "left_shoulder_pitch_joint",
    "left_shoulder_roll_joint",
    "left_shoulder_yaw_joint",
    "left_elbow_joint",
    "left_wrist_roll_joint",
    "left_wrist_pitch_joint",
    "left_wrist_yaw_joint",
    "right_shoulder_pitch_joint",
    "right_shoulder_roll_joint",
    "right_shoulder_yaw_joint",
    "right_elbow_joint",
    "right_wrist_roll_joint",
    "right_wrist_pitch_joint",
    "right_wrist_yaw_joint",
)

# Breadth-first order that Isaac Lab (and so SONIC's policy I/O) uses.
JOINT_NAMES_ISAACLAB: tuple[str, ...] = (
    "left_hip_pitch_joint",
    "right_hip_pitch_joint",
    "waist_yaw_joint",
    "left_hip_roll_joint",
    "right_hip_roll_joint",
    "waist_roll_joint",
    "left_hip_yaw_joint",
    "right_hip_yaw_joint",
    "waist_pitch_joint",
    "left_knee_joint",
    "right_knee_joint",
    "left_shoulder_pitch_joint",
    "right_shoulder_pitch_joint",
    "left_ankle_pitch_joint",
    "right_ankle_pitch_joint",
    "left_shoulder_roll_joint",
    "right_shoulder_roll_joint",
    "left_ankle_roll_joint",
    "right_ankle_roll_joint",
    "left_shoulder_yaw_joint",
    "right_shoulder_yaw_joint",
    "left_elbow_joint",
    "right_elbow_joint",
    "left_wrist_roll_joint",
    "right_wrist_roll_joint",
    "left_wrist_pitch_joint",
    "right_wrist_pitch_joint",
    "left_wrist_yaw_joint",
    "right_wrist_yaw_joint",
)

# x_isaaclab = x_mujoco[..., MUJOCO_TO_ISAACLAB]; x_mujoco = x_isaaclab[..., ISAACLAB_TO_MUJOCO]
MUJOCO_TO_ISAACLAB: np.ndarray = np.array([JOINT_NAMES_MUJOCO.index(n) for n in JOINT_NAMES_ISAACLAB])
ISAACLAB_TO_MUJOCO: np.ndarray = np.array([JOINT_NAMES_ISAACLAB.index(n) for n in JOINT_NAMES_MUJOCO])


def mujoco_to_isaaclab(x: np.ndarray) -> np.ndarray:
    """Reorder the last axis from MuJoCo joint order to Isaac Lab joint order."""
    return x[..., MUJOCO_TO_ISAACLAB]


def isaaclab_to_mujoco(x: np.ndarray) -> np.ndarray:
    """Reorder the last axis from Isaac Lab joint order to MuJoCo joint order."""
    return x[..., ISAACLAB_TO_MUJOCO]


# Leg joints (6 per side), used by the teleop encoder's lower-body inputs, in MuJoCo order.
LOWER_BODY_JOINT_NAMES: tuple[str, ...] = JOINT_NAMES_MUJOCO[:12]
WRIST_JOINT_NAMES: tuple[str, ...] = (
    "left_wrist_roll_joint",
    "left_wrist_pitch_joint",
    "left_wrist_yaw_joint",
    "right_wrist_roll_joint",
    "right_wrist_pitch_joint",
    "right_wrist_yaw_joint",
)
ANKLE_JOINT_NAMES: tuple[str, ...] = (
    "left_ankle_pitch_joint",
    "left_ankle_roll_joint",
    "right_ankle_pitch_joint",
    "right_ankle_roll_joint",
)

DEFAULT_ROOT_HEIGHT_M = 0.76
_DEFAULT_POSE_BY_NAME = {
    "left_hip_pitch_joint": -0.312,
    "right_hip_pitch_joint": -0.312,
    "left_knee_joint": 0.669,
    "right_knee_joint": 0.669,
    "left_ankle_pitch_joint": -0.363,
    "right_ankle_pitch_joint": -0.363,
    "left_elbow_joint": 0.6,
    "right_elbow_joint": 0.6,
    "left_shoulder_pitch_joint": 0.2,
    "right_shoulder_pitch_joint": 0.2,
    "left_shoulder_roll_joint": 0.2,
    "right_shoulder_roll_joint": -0.2,
}
DEFAULT_JOINT_POS_RAD: np.ndarray = np.array([_DEFAULT_POSE_BY_NAME.get(n, 0.0) for n in JOINT_NAMES_MUJOCO])


@dataclass(frozen=True)
class Motor:
    """One Unitree actuator type (per joint; parallel pairs already doubled)."""

    name: str
    armature_kg_m2: float
    effort_limit_nm: float
    velocity_limit_rad_s: float


NATURAL_FREQUENCY_RAD_S = 2.0 * math.pi * 10.0
DAMPING_RATIO = 2.0

_ARMATURE_5020 = 0.003609725
_ARMATURE_7520_14 = 0.010177520
_ARMATURE_7520_22 = 0.025101925
_ARMATURE_4010 = 0.00425

MOTOR_5020 = Motor("5020", _ARMATURE_5020, 25.0, 37.0)
MOTOR_5020_PAIR = Motor("2x5020", 2 * _ARMATURE_5020, 50.0, 37.0)
MOTOR_7520_14 = Motor("7520_14", _ARMATURE_7520_14, 88.0, 32.0)
MOTOR_7520_22 = Motor("7520_22", _ARMATURE_7520_22, 139.0, 20.0)
MOTOR_4010 = Motor("4010", _ARMATURE_4010, 5.0, 22.0)


def _motor_for(joint: str) -> Motor:
    if any(k in joint for k in ("hip_pitch", "hip_roll", "knee")):
        return MOTOR_7520_22
    if "hip_yaw" in joint or joint == "waist_yaw_joint":
        return MOTOR_7520_14
    if "ankle" in joint or joint in ("waist_roll_joint", "waist_pitch_joint"):
        return MOTOR_5020_PAIR
    if "wrist_pitch" in joint or "wrist_yaw" in joint:
        return MOTOR_4010
    return MOTOR_5020  # shoulders, elbows, wrist roll


JOINT_MOTORS: tuple[Motor, ...] = tuple(_motor_for(n) for n in JOINT_NAMES_MUJOCO)
ARMATURE: np.ndarray = np.array([m.armature_kg_m2 for m in JOINT_MOTORS])
EFFORT_LIMIT_NM: np.ndarray = np.array([m.effort_limit_nm for m in JOINT_MOTORS])
VELOCITY_LIMIT_RAD_S: np.ndarray = np.array([m.velocity_limit_rad_s for m in JOINT_MOTORS])
STIFFNESS_NM_PER_RAD: np.ndarray = ARMATURE * NATURAL_FREQUENCY_RAD_S**2
DAMPING_NMS_PER_RAD: np.ndarray = 2.0 * DAMPING_RATIO * ARMATURE * NATURAL_FREQUENCY_RAD_S
# q_target = q_default + action * ACTION_SCALE
ACTION_SCALE: np.ndarray = 0.25 * EFFORT_LIMIT_NM / STIFFNESS_NM_PER_RAD

# Bodies whose poses are tracked by rewards, terminations, critic inputs and MPJPE.
TRACKED_BODY_NAMES: tuple[str, ...] = (
    "pelvis",
    "left_hip_roll_link",
    "left_knee_link",
    "left_ankle_roll_link",
    "right_hip_roll_link",
    "right_knee_link",
    "right_ankle_roll_link",
    "torso_link",
    "left_shoulder_roll_link",
    "left_elbow_link",
    "left_wrist_yaw_link",
    "right_shoulder_roll_link",
    "right_elbow_link",
    "right_wrist_yaw_link",
)
ANCHOR_BODY_NAME = "pelvis"
FEET_BODY_NAMES: tuple[str, ...] = ("left_ankle_roll_link", "right_ankle_roll_link")
WRIST_BODY_NAMES: tuple[str, ...] = ("left_wrist_yaw_link", "right_wrist_yaw_link")
# Bodies allowed to touch things without the undesired-contact penalty.
ALLOWED_CONTACT_BODY_NAMES: tuple[str, ...] = (
    "left_ankle_roll_link",
    "right_ankle_roll_link",
    "left_wrist_yaw_link",
    "right_wrist_yaw_link",
    "left_elbow_link",
    "right_elbow_link",
)


@dataclass(frozen=True)
class VRPoint:
    """A VR tracker modelled as a fixed offset (metres, body frame) from a robot body."""

    name: str
    body: str
    offset_m: tuple[float, float, float]


# The teleop encoder's three points: wrists and a head proxy above the torso.
VR_POINTS_TELEOP: tuple[VRPoint, ...] = (
    VRPoint("left_wrist", "left_wrist_yaw_link", (0.18, -0.025, 0.0)),
    VRPoint("right_wrist", "right_wrist_yaw_link", (0.18, 0.025, 0.0)),
    VRPoint("head", "torso_link", (0.0, 0.0, 0.35)),
)
# The VR-points reward uses a higher head proxy (torso + 0.5 m) and the wrist bodies.
VR_POINTS_REWARD: tuple[VRPoint, ...] = (
    VRPoint("head", "torso_link", (0.0, 0.0, 0.5)),
    VRPoint("left_wrist", "left_wrist_yaw_link", (0.0, 0.0, 0.0)),
    VRPoint("right_wrist", "right_wrist_yaw_link", (0.0, 0.0, 0.0)),
)

# Evaluation regions (indices into TRACKED_BODY_NAMES) for per-region MPJPE.
REGION_BODY_NAMES: dict[str, tuple[str, ...]] = {
    "legs": (
        "left_hip_roll_link", "left_knee_link", "left_ankle_roll_link",
        "right_hip_roll_link", "right_knee_link", "right_ankle_roll_link",
    ),
    "feet": FEET_BODY_NAMES,
    "vr_3points": ("torso_link", "left_wrist_yaw_link", "right_wrist_yaw_link"),
    "other_upper": (
        "left_shoulder_roll_link", "left_elbow_link", "right_shoulder_roll_link", "right_elbow_link",
    ),
}

PHYSICS_DT_S = 0.005
DECIMATION = 4
CONTROL_DT_S = PHYSICS_DT_S * DECIMATION
