"""SOMA skeleton: the 26 encoder joints, extraction from BVH, and building SOMA BVH motions.

SOMA BVH files (Bones-SEED, ``soma_zero_frame0.bvh``) are y-up and in centimetres, with a
virtual ``Root`` at the origin above 77 real joints (``Hips``, ``Spine1``, ...). The character's
rest pose faces +z with its left side at +x.

Our frames (DESIGN.md): z-up metres, ``(x, y, z)_bvh -> (x, -z, y)_ours / 100`` (+90 degrees
about x, the same map as SMPL's y-up data). The rest pose therefore faces -y.

``root_quat`` is the orientation of a *body frame* fixed to the Hips joint: x forward, y left,
z up, in the z-up world, wxyz. It is the identity for an upright character facing +x (as for the
G1 pelvis) and a -90 degree yaw for the SOMA rest pose. ``root_pos`` is the Hips joint's world
position. ``soma_joints`` are world positions (not root-relative).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from gear_sonic.data.bvh import (
    BvhFormatError,
    BvhMotion,
    BvhSkeleton,
    bvh_world_transforms,
    parse_bvh,
)
from gear_sonic.data.clip import MotionFormatError, atomic_write

__all__ = [
    "SOMA_ENCODER_JOINT_NAMES",
    "SOMA_NUM_SKELETON_JOINTS",
    "SOMA_SKELETON_ENV_VAR",
    "SOMA_SKELETON_DEFAULT_PATH",
    "SOMA_ROOT_JOINT",
    "SOMA_HIPS_JOINT",
    "CENTIMETRES_TO_METRES",
    "SomaJoints",
    "soma_skeleton_path",
    "soma_skeleton",
    "soma_rest_motion",
    "bvh_yup_to_zup",
    "zup_to_bvh_yup",
    "hips_rotation_from_root_quat",
    "make_soma_motion",
    "extract_soma_joints",
    "extract_soma_file",
    "load_soma_joints_npz",
]

# The encoder's 26 joints, in the order the soma observation (and a SONIC release) expects.
SOMA_ENCODER_JOINT_NAMES: tuple[str, ...] = (
    "Hips",
    "Spine1",
    "Spine2",
    "Chest",
    "Neck1",
    "Head",
    "LeftShoulder",
    "LeftArm",
    "LeftForeArm",
    "LeftHand",
    "LeftHandThumb1",
    "LeftHandMiddle1",
    "RightShoulder",
    "RightArm",
    "RightForeArm",
    "RightHand",
    "RightHandThumb1",
    "RightHandMiddle1",
    "LeftLeg",
    "LeftShin",
    "LeftFoot",
    "LeftToeBase",
    "RightLeg",
    "RightShin",
    "RightFoot",
    "RightToeBase",
)
SOMA_NUM_SKELETON_JOINTS = 77
"""Real joints of the SOMA skeleton; its BVH has one more, the virtual ``Root``."""
SOMA_ROOT_JOINT = "Root"
SOMA_HIPS_JOINT = "Hips"
SOMA_SKELETON_ENV_VAR = "GEAR_SONIC_SOMA_BVH"
SOMA_SKELETON_DEFAULT_PATH = Path(__file__).resolve().parents[2] / "sample_data" / "soma_skeleton" / "soma_zero_frame0.bvh"
CENTIMETRES_TO_METRES = 0.01
# Rest rotation of Hips (Z, Y, X degrees, y-up) in soma_zero_frame0.bvh; used when a file's OFFSETs omit it.
SOMA_HIPS_REST_ZYX_DEG = (89.99999998162323, 0.19044625881393973, 89.99999999993892)

# Rotation taking y-up coordinates to z-up ones: +90 degrees about x, (x, y, z) -> (x, -z, y).
_Y_UP_TO_Z_UP = Rotation.from_matrix(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]))
# Body frame of a y-up character facing +z with its left at +x, expressed in the y-up world:
# body x (forward) = +z, body y (left) = +x, body z (up) = +y.
_REST_BODY_IN_Y_UP = Rotation.from_matrix(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))


def _wxyz(rot: Rotation) -> np.ndarray:
    q = rot.as_quat()
    return np.concatenate([q[..., 3:4], q[..., :3]], axis=-1)


def _rotation(quat_wxyz: np.ndarray) -> Rotation:
    q = np.asarray(quat_wxyz, dtype=np.float64)
    return Rotation.from_quat(np.concatenate([q[..., 1:4], q[..., 0:1]], axis=-1).reshape(-1, 4))


def bvh_yup_to_zup(points_cm: np.ndarray, unit_to_m: float = CENTIMETRES_TO_METRES) -> np.ndarray:
    """Points (..., 3) from a y-up BVH world in file units to our z-up world in metres."""
    p = np.asarray(points_cm, dtype=np.float64) * unit_to_m
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)


def zup_to_bvh_yup(points_m: np.ndarray, unit_to_m: float = CENTIMETRES_TO_METRES) -> np.ndarray:
    """Inverse of :func:`bvh_yup_to_zup`: z-up metres to y-up BVH file units."""
    p = np.asarray(points_m, dtype=np.float64) / unit_to_m
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def soma_skeleton_path(path: str | os.PathLike | None = None) -> Path:
    """Where the SOMA skeleton BVH is: ``path``, else $GEAR_SONIC_SOMA_BVH, else sample_data/soma_skeleton/."""
    candidate = path or os.environ.get(SOMA_SKELETON_ENV_VAR) or SOMA_SKELETON_DEFAULT_PATH
    candidate = Path(candidate)
    if not candidate.is_file():
        raise FileNotFoundError(
            f"SOMA skeleton BVH not found at {candidate}. Fetch it with "
            f"`python data_process/fetch_soma_skeleton.py --output {SOMA_SKELETON_DEFAULT_PATH}` "
            f"or point ${SOMA_SKELETON_ENV_VAR} at soma_zero_frame0.bvh."
        )
    return candidate


def soma_rest_motion(path: str | os.PathLike | None = None) -> BvhMotion:
    """The SOMA zero pose as a one-frame motion (the real ``soma_zero_frame0.bvh``)."""
    motion = parse_bvh(soma_skeleton_path(path))
    missing = [n for n in (SOMA_ROOT_JOINT,) + SOMA_ENCODER_JOINT_NAMES if n not in motion.skeleton.joint_names]
    if missing:
        raise BvhFormatError(f"not a SOMA skeleton: missing joints {missing}", motion.skeleton.source)
    return motion


def soma_skeleton(path: str | os.PathLike | None = None) -> BvhSkeleton:
    """The SOMA hierarchy and offsets (78 BVH joints: virtual Root + 77), read from the real file."""
    return soma_rest_motion(path).skeleton


def _hips_rest_world(skeleton: BvhSkeleton) -> Rotation:
    """World rotation (y-up) of the Hips joint in the skeleton's rest pose.

    Taken from the six-number OFFSETs when the file has them, else SOMA's published rest value.
    """
    if skeleton.joints[skeleton.index(SOMA_HIPS_JOINT)].rest_rotation_deg is None:
        return Rotation.from_euler("ZYX", SOMA_HIPS_REST_ZYX_DEG, degrees=True)
    rest = skeleton.rest_local_rotations_wxyz()
    parents = skeleton.parents
    chain = []
    j = skeleton.index(SOMA_HIPS_JOINT)
    while j >= 0:
        chain.append(j)
        j = parents[j]
    world = Rotation.identity()
    for j in reversed(chain):
        world = world * _rotation(rest[j])[0]
    return world


def _hips_to_body(skeleton: BvhSkeleton) -> Rotation:
    """Constant rotation from the Hips joint frame to the body frame (x forward, y left, z up)."""
    return _hips_rest_world(skeleton).inv() * _REST_BODY_IN_Y_UP


def hips_rotation_from_root_quat(root_quat_wxyz: np.ndarray, skeleton: BvhSkeleton) -> np.ndarray:
    """Local Hips rotations (T, 4 wxyz, y-up BVH) that give body-frame orientations ``root_quat_wxyz`` (z-up).

    Assumes the Root joint is unrotated (as in SOMA files). Inverse of the root orientation that
    :func:`extract_soma_joints` reports, so a G1 pelvis quaternion can drive a SOMA character.
    """
    body_zup = _rotation(root_quat_wxyz)
    hips_yup = _Y_UP_TO_Z_UP.inv() * body_zup * _hips_to_body(skeleton).inv()
    return _wxyz(hips_yup)


def make_soma_motion(
    local_rotations_wxyz: np.ndarray,
    root_pos_m: np.ndarray,
    fps: float,
    skeleton: BvhSkeleton | None = None,
) -> BvhMotion:
    """A SOMA BVH motion from per-frame local joint rotations and the Hips position.

    ``local_rotations_wxyz``: (T, 78, 4) in the skeleton's joint order (BVH y-up local frames;
    start from ``soma_skeleton().rest_local_rotations_wxyz()``; set the Hips entry with
    :func:`hips_rotation_from_root_quat`). ``root_pos_m``: (T, 3) Hips position in our z-up world,
    metres. Other joints keep their bone offsets.
    """
    skeleton = skeleton or soma_skeleton()
    rotations = np.asarray(local_rotations_wxyz, dtype=np.float64)
    root_pos_m = np.asarray(root_pos_m, dtype=np.float64)
    if rotations.ndim != 3 or rotations.shape[1:] != (skeleton.num_joints, 4):
        raise ValueError(f"local_rotations_wxyz must have shape (T, {skeleton.num_joints}, 4), got {rotations.shape}")
    if root_pos_m.shape != (rotations.shape[0], 3):
        raise ValueError(f"root_pos_m must have shape ({rotations.shape[0]}, 3), got {root_pos_m.shape}")
    translations = np.broadcast_to(skeleton.offsets, (rotations.shape[0], skeleton.num_joints, 3)).copy()
    hips = skeleton.index(SOMA_HIPS_JOINT)
    if skeleton.parents[hips] >= 0 and not np.allclose(rotations[:, skeleton.parents[hips]], [1.0, 0.0, 0.0, 0.0]):
        raise ValueError("the Root joint must stay unrotated; put the body orientation on Hips")
    translations[:, hips] = zup_to_bvh_yup(root_pos_m) - _ancestor_origin(skeleton, hips)
    return BvhMotion.from_local_transforms(skeleton, rotations, 1.0 / float(fps), translations)


def _ancestor_origin(skeleton: BvhSkeleton, joint: int) -> np.ndarray:
    """World position (file units) of a joint's parent in the rest pose when all ancestors are unrotated."""
    origin = np.zeros(3)
    j = skeleton.parents[joint]
    while j >= 0:
        origin += skeleton.joints[j].offset
        j = skeleton.parents[j]
    return origin


@dataclass
class SomaJoints:
    """The 26 encoder joints of one clip, z-up metres, and the body-frame root pose."""

    soma_joints: np.ndarray
    """(T, 26, 3) float32 world positions, m, z-up, order ``joint_names``."""
    root_quat: np.ndarray
    """(T, 4) float32 body-frame orientation (x forward, y left, z up), wxyz."""
    root_pos: np.ndarray
    """(T, 3) float32 Hips world position, m."""
    fps: float
    joint_names: tuple[str, ...] = SOMA_ENCODER_JOINT_NAMES

    @property
    def num_frames(self) -> int:
        return int(self.soma_joints.shape[0])

    def save_npz(self, path: str | os.PathLike) -> Path:
        """Write the per-clip npz read by ``MotionLibrary.open(..., soma_path=)``; atomic, no pickle."""
        arrays = {
            "soma_joints": self.soma_joints.astype(np.float32),
            "root_quat": self.root_quat.astype(np.float32),
            "root_pos": self.root_pos.astype(np.float32),
            "fps": np.asarray(float(self.fps)),
            "joint_names": np.asarray(self.joint_names, dtype=np.str_),
        }

        def write(temp: Path) -> None:
            with open(temp, "wb") as f:
                np.savez(f, **arrays)

        return atomic_write(Path(path), write)


def extract_soma_joints(
    motion: BvhMotion,
    fps: float | None = None,
    joint_names: Sequence[str] = SOMA_ENCODER_JOINT_NAMES,
    unit_to_m: float = CENTIMETRES_TO_METRES,
) -> SomaJoints:
    """Encoder joints and root pose of a SOMA BVH motion, optionally resampled to ``fps``.

    Resampling happens on the local joint rotations (slerp) and translations (lerp) before forward
    kinematics, at times k / fps up to the last source frame.
    """
    source = motion.skeleton.source
    motion.skeleton.indices(list(joint_names) + [SOMA_HIPS_JOINT])
    if motion.num_frames < 1:
        raise BvhFormatError("motion has no frames", source)
    if fps is not None and float(fps) != motion.fps:
        motion = motion.resampled(float(fps))
    out_fps = float(fps) if fps is not None else motion.fps
    names = list(joint_names)
    positions, rotations = bvh_world_transforms(motion, names + [SOMA_HIPS_JOINT])
    joints_m = bvh_yup_to_zup(positions[:, : len(names)], unit_to_m)
    hips_world_yup = _rotation(rotations[:, -1])
    body = _Y_UP_TO_Z_UP * hips_world_yup * _hips_to_body(motion.skeleton)
    root_quat = _wxyz(body)
    root_quat = np.where(root_quat[:, :1] < 0, -root_quat, root_quat)
    flips = np.cumprod(np.concatenate([[1.0], np.where(np.sum(root_quat[1:] * root_quat[:-1], axis=1) < 0, -1.0, 1.0)]))
    root_quat = root_quat * flips[:, None]
    hips_pos = bvh_yup_to_zup(positions[:, -1], unit_to_m)
    return SomaJoints(
        soma_joints=joints_m.astype(np.float32),
        root_quat=root_quat.astype(np.float32),
        root_pos=hips_pos.astype(np.float32),
        fps=out_fps,
        joint_names=tuple(names),
    )


def load_soma_joints_npz(path: str | os.PathLike) -> SomaJoints:
    """Read a file written by :meth:`SomaJoints.save_npz` (allow_pickle=False), checking shapes."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("soma_joints", "root_quat", "root_pos", "fps", "joint_names") if k not in data.files]
            if missing:
                raise MotionFormatError(f"{path}: not a SOMA joints npz (missing {', '.join(missing)})")
            arrays = {k: data[k] for k in data.files}
    except MotionFormatError:
        raise
    except (OSError, ValueError) as error:
        raise MotionFormatError(f"{path}: cannot read as npz without pickle ({error})") from error
    joints = arrays["soma_joints"]
    names = tuple(str(n) for n in arrays["joint_names"])
    count = joints.shape[0] if joints.ndim == 3 else -1
    if joints.ndim != 3 or joints.shape[1:] != (len(names), 3):
        raise MotionFormatError(f"{path}: soma_joints has shape {joints.shape}, expected (T, {len(names)}, 3)")
    for key, tail in (("root_quat", 4), ("root_pos", 3)):
        if arrays[key].shape != (count, tail):
            raise MotionFormatError(f"{path}: {key} has shape {arrays[key].shape}, expected ({count}, {tail})")
    return SomaJoints(
        soma_joints=joints.astype(np.float32),
        root_quat=arrays["root_quat"].astype(np.float32),
        root_pos=arrays["root_pos"].astype(np.float32),
        fps=float(arrays["fps"]),
        joint_names=names,
    )


def extract_soma_file(task: tuple[str, str, float | None]) -> int:
    """Batch worker: ``(bvh_path, npz_path, fps)`` -> write the clip's SOMA joints npz, return its frame count."""
    bvh_path, npz_path, fps = task
    joints = extract_soma_joints(parse_bvh(bvh_path), fps=fps)
    if joints.num_frames < 2:
        raise BvhFormatError(f"only {joints.num_frames} frame(s) at {joints.fps:g} fps; a clip needs at least 2", bvh_path)
    joints.save_npz(npz_path)
    return joints.num_frames
