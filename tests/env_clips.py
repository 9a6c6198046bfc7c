"""Small motion clips for the environment tests, written with the real library writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gear_sonic.data import MotionClip, write_motion_library
from gear_sonic.robots import g1
from gear_sonic.robots.kinematics import G1Kinematics

# 24 G1 bodies standing in for SMPL joints (their positions move like a human skeleton would).
_SMPL_PROXY_BODIES = (
    "pelvis", "left_hip_pitch_link", "right_hip_pitch_link", "waist_yaw_link", "left_knee_link", "right_knee_link",
    "waist_roll_link", "left_ankle_pitch_link", "right_ankle_pitch_link", "torso_link", "left_ankle_roll_link",
    "right_ankle_roll_link", "torso_link", "left_shoulder_pitch_link", "right_shoulder_pitch_link", "torso_link",
    "left_shoulder_roll_link", "right_shoulder_roll_link", "left_elbow_link", "right_elbow_link",
    "left_wrist_roll_link", "right_wrist_roll_link", "left_wrist_yaw_link", "right_wrist_yaw_link",
)


def make_clip(name: str, seconds: float, amplitude_rad: float, fps: float = 30.0, seed: int = 0) -> MotionClip:
    """A standing clip whose joints swing in smooth sinusoids around the default pose."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fps) + 1) / fps
    phase = rng.uniform(0, 2 * np.pi, 29)
    freq = rng.uniform(0.3, 0.8, 29)
    dof = g1.DEFAULT_JOINT_POS_RAD[None] + amplitude_rad * np.sin(2 * np.pi * freq[None] * t[:, None] + phase[None])
    root_pos = np.zeros((len(t), 3))
    root_pos[:, 2] = g1.DEFAULT_ROOT_HEIGHT_M
    root_pos[:, 0] = 0.05 * np.sin(0.5 * t) if amplitude_rad else 0.0
    yaw = 0.2 * np.sin(0.4 * t) if amplitude_rad else np.zeros_like(t)
    root_quat = np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], 1)
    kin = G1Kinematics()
    body_pos, _ = kin.forward(
        torch.tensor(root_pos, dtype=torch.float32), torch.tensor(root_quat, dtype=torch.float32),
        torch.tensor(dof, dtype=torch.float32),
    )
    smpl = body_pos[:, kin.body_index(_SMPL_PROXY_BODIES)].numpy()
    return MotionClip(name=name, fps=fps, root_pos=root_pos, root_quat=root_quat, dof_pos=dof, smpl_joints=smpl)


def write_test_library(path: Path, num_clips: int = 2, seconds: float = 3.0) -> Path:
    clips = [make_clip("stand", seconds, 0.0)] + [
        make_clip(f"swing_{i}", seconds, 0.25, seed=i) for i in range(num_clips - 1)
    ]
    return write_motion_library(path, clips)
