"""Per-clip SMPL and SOMA joint files, matched to robot clips by name.

SMPL npz (`<clip_name>.npz`): `smpl_joints` (T, 24, 3) metres in SMPL's y-up frame, `transl`
(T, 3) y-up, `fps`; optional `pose_aa` (T, 24, 3). SOMA npz: `soma_joints` (T, 26, 3) metres
z-up, `root_quat` (T, 4) wxyz, `root_pos` (T, 3), `fps`, `joint_names` (26,). Both are read
with allow_pickle=False.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from gear_sonic.data.clip import (
    NUM_SMPL_JOINTS,
    NUM_SOMA_JOINTS,
    MotionClip,
    MotionFormatError,
    continuous_quaternions,
    sample_clip_at,
)

# Rotation of +90 degrees about x: SMPL's y-up world to our z-up world, (x, y, z) -> (x, -z, y).
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def y_up_to_z_up(points: np.ndarray) -> np.ndarray:
    """Points (..., 3) from a y-up frame to the z-up frame."""
    return np.stack([points[..., 0], -points[..., 2], points[..., 1]], axis=-1)


def _load_npz(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in required if k not in data.files]
            if missing:
                raise MotionFormatError(f"{path}: missing {', '.join(missing)} (has {', '.join(data.files) or 'nothing'})")
            return {k: data[k] for k in data.files}
    except MotionFormatError:
        raise
    except (OSError, ValueError) as error:
        raise MotionFormatError(f"{path}: cannot read as npz without pickle ({error})") from error


def _check_joints(path: Path, key: str, joints: np.ndarray, count: int) -> np.ndarray:
    if joints.ndim != 3 or joints.shape[1:] != (count, 3):
        raise MotionFormatError(f"{path}: {key} has shape {joints.shape}, expected (T, {count}, 3)")
    if joints.shape[0] < 2:
        raise MotionFormatError(f"{path}: {key} has {joints.shape[0]} frame(s); need at least 2")
    if not np.isfinite(joints).all():
        frame = int(np.argmax(~np.isfinite(joints).reshape(joints.shape[0], -1).all(axis=1)))
        raise MotionFormatError(f"{path}: {key} has a NaN or infinite value at frame {frame}")
    return joints


def _fps(path: Path, data: dict[str, np.ndarray]) -> float:
    fps = float(np.asarray(data["fps"]).reshape(-1)[0])
    if not np.isfinite(fps) or fps <= 0:
        raise MotionFormatError(f"{path}: fps must be positive, got {fps}")
    return fps


def load_smpl_npz(path: str | os.PathLike) -> MotionClip:
    """An SMPL joints file as a partial clip: `smpl_joints` converted to z-up, root from `transl`.

    Only `smpl_joints` and `fps` are meaningful; root/joint fields are placeholders so the
    clip can be resampled with the shared code.
    """
    path = Path(path)
    data = _load_npz(path, ("smpl_joints", "fps"))
    joints = _check_joints(path, "smpl_joints", np.asarray(data["smpl_joints"], dtype=np.float64), NUM_SMPL_JOINTS)
    count = joints.shape[0]
    return _partial_clip(path.stem, _fps(path, data), count, smpl_joints=y_up_to_z_up(joints).astype(np.float32))


def load_soma_npz(path: str | os.PathLike) -> MotionClip:
    """A SOMA joints file as a partial clip carrying `soma_joints` (z-up) and `soma_root_quat`."""
    path = Path(path)
    data = _load_npz(path, ("soma_joints", "root_quat", "fps"))
    joints = _check_joints(path, "soma_joints", np.asarray(data["soma_joints"], dtype=np.float64), NUM_SOMA_JOINTS)
    root_quat = np.asarray(data["root_quat"], dtype=np.float64)
    if root_quat.shape != (joints.shape[0], 4):
        raise MotionFormatError(f"{path}: root_quat has shape {root_quat.shape}, expected ({joints.shape[0]}, 4)")
    root_quat = continuous_quaternions(root_quat, str(path), "root_quat")
    return _partial_clip(
        path.stem, _fps(path, data), joints.shape[0], soma_joints=joints.astype(np.float32), soma_root_quat=root_quat
    )


def _partial_clip(name: str, fps: float, count: int, **fields: np.ndarray) -> MotionClip:
    identity = np.zeros((count, 4), np.float32)
    identity[:, 0] = 1.0
    return MotionClip(
        name=name,
        fps=fps,
        root_pos=np.zeros((count, 3), np.float32),
        root_quat=identity,
        dof_pos=np.zeros((count, 29), np.float32),
        **fields,
    )


def index_side_files(directory: str | os.PathLike) -> dict[str, Path]:
    """Clip name -> file for every .npz under `directory` (name = relative path without extension).

    Each file is also reachable by its bare stem when that stem is unique, so a flat directory
    matches clips stored under sub-directories.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MotionFormatError(f"{directory}: side-file directory does not exist")
    by_name: dict[str, Path] = {}
    stems: dict[str, list[Path]] = {}
    for file in sorted(directory.rglob("*.npz")):
        name = file.relative_to(directory).with_suffix("").as_posix()
        by_name[name] = file
        stems.setdefault(file.stem, []).append(file)
    for stem, files in stems.items():
        if len(files) == 1:
            by_name.setdefault(stem, files[0])
    return by_name


def find_side_file(index: dict[str, Path], clip_name: str) -> Path | None:
    """The side file for a clip: exact relative name first, then the bare file name."""
    return index.get(clip_name) or index.get(clip_name.rsplit("/", 1)[-1])


def side_data_on_frames(side: MotionClip, num_frames: int, fps: float) -> MotionClip:
    """Resample a side clip onto a robot clip's frame times (clamped at the side clip's end)."""
    times_s = np.arange(num_frames, dtype=np.float64) / fps
    return sample_clip_at(side, times_s, fps=fps)


def attach_side_data(
    clip: MotionClip, smpl_file: str | os.PathLike | None = None, soma_file: str | os.PathLike | None = None
) -> MotionClip:
    """The clip with SMPL and/or SOMA joints from per-clip files, on the clip's own frames."""
    fields = {}
    if smpl_file is not None:
        fields["smpl_joints"] = side_data_on_frames(load_smpl_npz(smpl_file), clip.num_frames, clip.fps).smpl_joints
    if soma_file is not None:
        soma = side_data_on_frames(load_soma_npz(soma_file), clip.num_frames, clip.fps)
        fields["soma_joints"] = soma.soma_joints
        fields["soma_root_quat"] = soma.soma_root_quat
    return replace(clip, **fields)


def write_smpl_npz(
    path: str | os.PathLike,
    smpl_joints_y_up: np.ndarray,
    fps: float,
    transl_y_up: np.ndarray | None = None,
    pose_aa: np.ndarray | None = None,
) -> Path:
    """Write an SMPL joints file in the format above (atomic; no pickled objects)."""
    from gear_sonic.data.clip import atomic_write

    joints = np.asarray(smpl_joints_y_up, dtype=np.float32)
    _check_joints(Path(path), "smpl_joints", joints, NUM_SMPL_JOINTS)
    arrays = {
        "smpl_joints": joints,
        "transl": np.asarray(transl_y_up if transl_y_up is not None else joints[:, 0], dtype=np.float32),
        "fps": np.asarray(float(fps)),
    }
    if pose_aa is not None:
        arrays["pose_aa"] = np.asarray(pose_aa, dtype=np.float32)

    def write(temp: Path) -> None:
        with open(temp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(Path(path), write)
