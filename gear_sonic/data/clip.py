"""One motion clip in memory: the unit every reader produces and every writer consumes.

Conventions (see DESIGN.md): metres, radians, z-up world, quaternions wxyz, joint angles in
`gear_sonic.robots.g1.JOINT_NAMES_MUJOCO` order. Arrays are float32 once validated.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from gear_sonic.robots.g1 import NUM_JOINTS
from gear_sonic.utils.rotations import quat_conjugate, quat_mul, quat_slerp, quat_to_axis_angle

NUM_SMPL_JOINTS = 24
NUM_SOMA_JOINTS = 26
# A sample time this close (in frames) to an integer frame reads that frame exactly.
FRAME_SNAP_TOLERANCE = 1e-6


class MotionFormatError(ValueError):
    """Input motion data is malformed; the message names the file (and line where it applies)."""


@dataclass
class MotionClip:
    """One clip sampled at `fps`: root pose and joint angles, optional human-skeleton joints."""

    name: str
    fps: float
    root_pos: np.ndarray  # (T, 3) m, z-up world
    root_quat: np.ndarray  # (T, 4) wxyz
    dof_pos: np.ndarray  # (T, 29) rad, MuJoCo joint order
    smpl_joints: np.ndarray | None = None  # (T, 24, 3) m, z-up world
    soma_joints: np.ndarray | None = None  # (T, 26, 3) m, z-up world
    soma_root_quat: np.ndarray | None = None  # (T, 4) wxyz

    @property
    def num_frames(self) -> int:
        return int(self.root_pos.shape[0])

    @property
    def duration_s(self) -> float:
        return (self.num_frames - 1) / float(self.fps)

    def validated(self, source: str | os.PathLike | None = None) -> "MotionClip":
        """A float32 copy with shapes, frame counts and finiteness checked.

        `source` names the file in error messages (defaults to the clip name).
        """
        where = str(source) if source is not None else f"clip {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise MotionFormatError(f"{where}: clip name must be a non-empty string")
        fps = float(self.fps)
        if not np.isfinite(fps) or fps <= 0:
            raise MotionFormatError(f"{where}: fps must be a positive number, got {self.fps!r}")
        required = {"root_pos": (3,), "root_quat": (4,), "dof_pos": (NUM_JOINTS,)}
        optional = {"smpl_joints": (NUM_SMPL_JOINTS, 3), "soma_joints": (NUM_SOMA_JOINTS, 3), "soma_root_quat": (4,)}
        num_frames = None
        arrays: dict[str, np.ndarray | None] = {}
        for field, tail in {**required, **optional}.items():
            value = getattr(self, field)
            if value is None:
                if field in required:
                    raise MotionFormatError(f"{where}: missing {field}")
                arrays[field] = None
                continue
            value = np.asarray(value)
            if value.ndim != 1 + len(tail) or value.shape[1:] != tail:
                raise MotionFormatError(f"{where}: {field} has shape {value.shape}, expected (T, {', '.join(map(str, tail))})")
            if num_frames is None:
                num_frames = value.shape[0]
            elif value.shape[0] != num_frames:
                raise MotionFormatError(f"{where}: {field} has {value.shape[0]} frames but root_pos has {num_frames}")
            value = value.astype(np.float32)
            bad = ~np.isfinite(value).reshape(num_frames, -1).all(axis=1)
            if bad.any():
                raise MotionFormatError(f"{where}: {field} has a NaN or infinite value at frame {int(np.argmax(bad))}")
            arrays[field] = value
        if num_frames < 2:
            raise MotionFormatError(f"{where}: {num_frames} frame(s); a clip needs at least 2")
        for field in ("root_quat", "soma_root_quat"):
            if arrays[field] is not None:
                arrays[field] = continuous_quaternions(arrays[field], where, field)
        return MotionClip(name=self.name, fps=fps, **arrays)


def continuous_quaternions(quat_wxyz: np.ndarray, where: str = "", field: str = "quaternion") -> np.ndarray:
    """Normalise and flip signs so consecutive quaternions lie in the same hemisphere."""
    norm = np.linalg.norm(quat_wxyz, axis=-1, keepdims=True)
    if (norm < 1e-6).any():
        raise MotionFormatError(f"{where}: {field} has a zero-length quaternion at frame {int(np.argmax(norm[:, 0] < 1e-6))}")
    # Leave unit quaternions bit-identical so validating twice changes nothing.
    q = np.where(np.abs(norm - 1.0) > 1e-6, quat_wxyz / norm, quat_wxyz)
    dots = np.einsum("ij,ij->i", q[1:], q[:-1])
    flips = np.concatenate([[1.0], np.cumprod(np.where(dots < 0, -1.0, 1.0))])
    return (q * flips[:, None]).astype(np.float32)


def frame_coordinates(num_frames: int, fps: float, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbouring frame indices and blend weight for times (clamped to the clip)."""
    position = np.clip(np.asarray(times_s, dtype=np.float64) * fps, 0.0, num_frames - 1)
    nearest = np.round(position)
    position = np.where(np.abs(position - nearest) < FRAME_SNAP_TOLERANCE, nearest, position)
    frame0 = np.floor(position).astype(np.int64)
    frame1 = np.minimum(frame0 + 1, num_frames - 1)
    return frame0, frame1, position - frame0


def _lerp(values: np.ndarray, f0: np.ndarray, f1: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.reshape((-1,) + (1,) * (values.ndim - 1))
    return (values[f0] * (1.0 - a) + values[f1] * a).astype(np.float32)


def _slerp(quat_wxyz: np.ndarray, f0: np.ndarray, f1: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    q = torch.from_numpy(quat_wxyz.astype(np.float64))
    out = quat_slerp(q[f0], q[f1], torch.from_numpy(alpha))
    return out.numpy().astype(np.float32)


def sample_clip_at(clip: MotionClip, times_s: np.ndarray, name: str | None = None, fps: float | None = None) -> MotionClip:
    """The clip's state at the given times (lerp positions and joints, slerp rotations)."""
    f0, f1, alpha = frame_coordinates(clip.num_frames, clip.fps, times_s)
    return MotionClip(
        name=name or clip.name,
        fps=fps if fps is not None else clip.fps,
        root_pos=_lerp(clip.root_pos, f0, f1, alpha),
        root_quat=_slerp(clip.root_quat, f0, f1, alpha),
        dof_pos=_lerp(clip.dof_pos, f0, f1, alpha),
        smpl_joints=None if clip.smpl_joints is None else _lerp(clip.smpl_joints, f0, f1, alpha),
        soma_joints=None if clip.soma_joints is None else _lerp(clip.soma_joints, f0, f1, alpha),
        soma_root_quat=None if clip.soma_root_quat is None else _slerp(clip.soma_root_quat, f0, f1, alpha),
    )


def resampled_frame_count(num_frames: int, fps_source: float, fps: float) -> int:
    """Frames at `fps` that fit in a clip of `num_frames` at `fps_source` (first frame kept)."""
    duration_s = (num_frames - 1) / fps_source
    return int(np.floor(duration_s * fps + FRAME_SNAP_TOLERANCE)) + 1


def resample_clip(clip: MotionClip, fps: float) -> MotionClip:
    """The clip at a new frame rate over the same duration (frame 0 kept; slerp for rotations)."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if float(fps) == float(clip.fps):
        return replace(clip)
    count = resampled_frame_count(clip.num_frames, clip.fps, fps)
    times_s = np.arange(count, dtype=np.float64) / fps
    return sample_clip_at(clip, times_s, fps=float(fps))


def derive_velocities(clip: MotionClip) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Root linear velocity (m/s, world), root angular velocity (rad/s, world), joint velocity (rad/s).

    Central differences inside the clip, one-sided at its ends; the angular velocity at a frame
    averages the rotation rates of the two segments that meet there.
    """
    dt = 1.0 / float(clip.fps)
    root_lin_vel = np.gradient(clip.root_pos.astype(np.float64), dt, axis=0)
    dof_vel = np.gradient(clip.dof_pos.astype(np.float64), dt, axis=0)
    q = torch.from_numpy(clip.root_quat.astype(np.float64))
    segment_rate = quat_to_axis_angle(quat_mul(q[1:], quat_conjugate(q[:-1]))).numpy() / dt
    root_ang_vel = np.empty_like(root_lin_vel)
    root_ang_vel[0] = segment_rate[0]
    root_ang_vel[-1] = segment_rate[-1]
    root_ang_vel[1:-1] = 0.5 * (segment_rate[1:] + segment_rate[:-1])
    return root_lin_vel.astype(np.float32), root_ang_vel.astype(np.float32), dof_vel.astype(np.float32)


CLIP_NPZ_FIELDS = ("root_pos", "root_quat", "dof_pos", "smpl_joints", "soma_joints", "soma_root_quat")


def atomic_write(path: Path, write) -> Path:
    """Call write(temp_path) for a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name that `write` creates itself, so the file gets the usual permissions (umask).
    temp_name = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.partial"
    try:
        write(temp_name)
        os.replace(temp_name, path)
    except BaseException:
        if temp_name.exists():
            temp_name.unlink()
        raise
    return path


def save_clip_npz(path: str | os.PathLike, clip: MotionClip) -> Path:
    """Write one clip as an uncompressed .npz (no pickled objects); atomic."""
    clip = clip.validated()
    arrays = {k: getattr(clip, k) for k in CLIP_NPZ_FIELDS if getattr(clip, k) is not None}
    arrays["fps"] = np.asarray(clip.fps, dtype=np.float64)
    arrays["name"] = np.asarray(clip.name)

    def write(temp: Path) -> None:
        with open(temp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(Path(path), write)


def load_clip_npz(path: str | os.PathLike, name: str | None = None) -> MotionClip:
    """Read a clip written by `save_clip_npz` (allow_pickle=False); `name` overrides the stored one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("root_pos", "root_quat", "dof_pos", "fps") if k not in data.files]
            if missing:
                raise MotionFormatError(f"{path}: not a motion clip npz (missing {', '.join(missing)})")
            fields = {k: data[k] for k in CLIP_NPZ_FIELDS if k in data.files}
            stored_name = str(data["name"]) if "name" in data.files else path.stem
            fps = float(data["fps"])
    except MotionFormatError:
        raise
    except (OSError, ValueError) as error:
        raise MotionFormatError(f"{path}: cannot read as npz ({error})") from error
    return MotionClip(name=name or stored_name, fps=fps, **fields).validated(path)
