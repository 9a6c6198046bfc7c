"""Readers for SONIC's pickled data (motion-lib PKLs and SMPL PKLs), only on explicit request.

Unpickling a file runs code chosen by whoever wrote it, so every function here refuses unless
called with `trust_pickle=True` (the scripts' `--trust-pickle`). SONIC writes these files with
joblib; plain pickles are read too.

Motion-lib PKL: `{clip_key: entry}` with `root_trans_offset` (T, 3) m, `root_rot` (T, 4)
**xyzw**, `dof` (T, 29) rad in MuJoCo order, `fps`; optional `smpl_joints` (T, 24, 3).
SMPL PKL: `pose_aa` (T, 24, 3), `smpl_joints` (T, 24, 3) y-up m, `transl` (T, 3) y-up, `fps`,
either at the top level or under a single clip key.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from gear_sonic.data.clip import MotionClip, MotionFormatError
from gear_sonic.data.side_files import y_up_to_z_up

SMPL_JOINTS_FRAMES = ("ignore", "z-up", "y-up")


class UntrustedPickleError(PermissionError):
    """Refused to unpickle a file without an explicit trust flag."""


def load_trusted_pickle(path: str | os.PathLike, *, trust_pickle: bool = False) -> Any:
    """Unpickle a joblib or plain pickle file; refuses unless `trust_pickle` is True."""
    path = Path(path)
    if not trust_pickle:
        raise UntrustedPickleError(
            f"{path}: refusing to unpickle (loading a pickle runs code from the file); "
            "pass --trust-pickle (trust_pickle=True) only for files you trust"
        )
    try:
        import joblib
    except ImportError:
        joblib = None
    try:
        if joblib is not None:
            return joblib.load(path)
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception as error:  # unpickling can fail in many ways; all mean "not a readable PKL"
        raise MotionFormatError(f"{path}: cannot unpickle ({type(error).__name__}: {error})") from error


def _array(path: Path, key: str, entry: dict, value_key: str, tail: tuple[int, ...]) -> np.ndarray:
    if value_key not in entry:
        raise MotionFormatError(f"{path}: entry {key!r} has no {value_key!r} (has {', '.join(map(str, entry))})")
    value = np.asarray(entry[value_key], dtype=np.float64)
    if value.ndim == len(tail) + 2 and value.shape[-1] == 1:  # (T, 29, 1) as some exporters write it
        value = value[..., 0]
    if value.ndim != len(tail) + 1 or value.shape[1:] != tail:
        raise MotionFormatError(f"{path}: entry {key!r}: {value_key} has shape {value.shape}, expected (T, {tail})")
    return value


def _fps(path: Path, key: str, entry: dict) -> float:
    if "fps" not in entry:
        raise MotionFormatError(f"{path}: entry {key!r} has no 'fps'")
    return float(np.asarray(entry["fps"]).reshape(-1)[0])


def sonic_motion_clips(data: Any, path: Path, base_name: str, smpl_joints: str = "ignore") -> list[MotionClip]:
    """Clips from an unpickled motion-lib dict; quaternions converted xyzw -> wxyz.

    One entry is named `base_name`; several are named `base_name/<key>`. `smpl_joints` says
    how to read entries' `smpl_joints`: "ignore", "z-up" (kept) or "y-up" (rotated to z-up).
    """
    if smpl_joints not in SMPL_JOINTS_FRAMES:
        raise ValueError(f"smpl_joints must be one of {SMPL_JOINTS_FRAMES}, got {smpl_joints!r}")
    if not isinstance(data, dict) or not data:
        raise MotionFormatError(f"{path}: expected a non-empty {{clip_name: entry}} dict, got {type(data).__name__}")
    clips = []
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise MotionFormatError(f"{path}: entry {key!r} is a {type(entry).__name__}, expected a dict")
        root_rot_xyzw = _array(path, key, entry, "root_rot", (4,))
        side = {}
        if smpl_joints != "ignore" and entry.get("smpl_joints") is not None:
            joints = _array(path, key, entry, "smpl_joints", (24, 3))
            side["smpl_joints"] = y_up_to_z_up(joints) if smpl_joints == "y-up" else joints
        clip = MotionClip(
            name=base_name if len(data) == 1 else f"{base_name}/{key}",
            fps=_fps(path, key, entry),
            root_pos=_array(path, key, entry, "root_trans_offset", (3,)),
            root_quat=root_rot_xyzw[:, [3, 0, 1, 2]],
            dof_pos=_array(path, key, entry, "dof", (29,)),
            **side,
        )
        clips.append(clip.validated(f"{path} (entry {key!r})"))
    return clips


def load_sonic_motion_pkl(
    path: str | os.PathLike, *, trust_pickle: bool = False, name: str | None = None, smpl_joints: str = "ignore"
) -> list[MotionClip]:
    """The clips of one SONIC motion-lib PKL (see `sonic_motion_clips`)."""
    path = Path(path)
    data = load_trusted_pickle(path, trust_pickle=trust_pickle)
    return sonic_motion_clips(data, path, name or path.stem, smpl_joints)


def load_smpl_pkl(path: str | os.PathLike, *, trust_pickle: bool = False) -> dict[str, np.ndarray | float]:
    """An SMPL PKL as arrays in SMPL's own y-up frame: smpl_joints, transl, fps, pose_aa (if present)."""
    path = Path(path)
    data = load_trusted_pickle(path, trust_pickle=trust_pickle)
    if isinstance(data, dict) and "smpl_joints" not in data and len(data) == 1:
        (data,) = data.values()  # {clip_name: entry}
    if not isinstance(data, dict):
        raise MotionFormatError(f"{path}: expected a dict with smpl_joints, got {type(data).__name__}")
    joints = _array(path, "smpl", data, "smpl_joints", (24, 3))
    out: dict[str, np.ndarray | float] = {"smpl_joints": joints, "fps": _fps(path, "smpl", data)}
    out["transl"] = _array(path, "smpl", data, "transl", (3,)) if "transl" in data else joints[:, 0]
    if "pose_aa" in data:
        pose_aa = np.asarray(data["pose_aa"], dtype=np.float64)
        out["pose_aa"] = pose_aa.reshape(pose_aa.shape[0], -1, 3)
    if joints.shape[0] < 2:
        raise MotionFormatError(f"{path}: {joints.shape[0]} frame(s); need at least 2")
    return out
