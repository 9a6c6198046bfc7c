"""BVH motion files: parse, write, and forward kinematics (numpy, vectorised over frames).

A BVH file has a HIERARCHY (a tree of ``ROOT``/``JOINT`` blocks, each with an ``OFFSET`` and a
``CHANNELS`` list, leaves closed by ``End Site``) and a MOTION block (``Frames:``, ``Frame Time:``
and one line of channel values per frame). Conventions used here, which match SOMA's files:

- Rotation channels are Euler angles in degrees, composed in the order they are listed
  (``Zrotation Yrotation Xrotation`` means ``R = Rz @ Ry @ Rx``, an intrinsic rotation).
- A joint with position channels takes its local translation from them (they *replace* the
  OFFSET; SOMA writes its OFFSET values into those channels), otherwise from its OFFSET.
- Lengths stay in the file's unit (SOMA: centimetres); callers convert.
- SOMA writes six numbers per joint OFFSET: the translation and then the joint's rest rotation as
  X, Y, Z angles in degrees. They are kept (``BvhJoint.rest_rotation_deg``) so files round-trip.

Every malformed input raises :class:`BvhFormatError` naming the file and, where one applies,
the line.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from gear_sonic.data.clip import MotionFormatError, atomic_write

__all__ = [
    "BvhFormatError",
    "UnknownJointError",
    "BvhJoint",
    "BvhSkeleton",
    "BvhMotion",
    "parse_bvh",
    "parse_bvh_text",
    "write_bvh",
    "format_bvh",
    "bvh_world_transforms",
    "bvh_world_positions",
    "world_to_local_rotations",
    "euler_deg_to_quat_wxyz",
]

POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")
ROTATION_CHANNELS = ("Xrotation", "Yrotation", "Zrotation")
_KNOWN_CHANNELS = frozenset(POSITION_CHANNELS + ROTATION_CHANNELS)


class BvhFormatError(MotionFormatError):
    """A BVH file is malformed, truncated or inconsistent; the message names file and line."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = self.path if self.path is not None else "<bvh text>"
        if line is not None:
            where = f"{where}, line {line}"
        super().__init__(f"{where}: {message}")


class UnknownJointError(ValueError):
    """Joint names were asked for that the skeleton does not have."""

    def __init__(self, names: Sequence[str], known: Sequence[str], source: str | None = None):
        self.names = list(names)
        hints = []
        for name in self.names:
            close = difflib.get_close_matches(name, known, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        origin = f" in {source}" if source else ""
        super().__init__(f"unknown joint name(s){origin}: {', '.join(hints)}; the skeleton has {len(known)} joints")


@dataclass(frozen=True)
class BvhJoint:
    """One ``ROOT``/``JOINT`` of a hierarchy. Lengths are in the file's unit."""

    name: str
    parent: int
    """Index of the parent joint, -1 for the root."""
    offset: np.ndarray
    """(3,) translation from the parent joint, file units."""
    channels: tuple[str, ...]
    rest_rotation_deg: np.ndarray | None = None
    """(3,) X, Y, Z rest angles in degrees when the OFFSET line carries six numbers (SOMA), else None."""
    end_site: np.ndarray | None = None
    """(3,) OFFSET of the ``End Site`` below this joint, if it has one."""

    @property
    def rotation_order(self) -> str:
        """Rotation channel axes in listed order, e.g. ``"ZYX"`` (empty if no rotation channels)."""
        return "".join(c[0] for c in self.channels if c in ROTATION_CHANNELS)


@dataclass
class BvhSkeleton:
    """A BVH joint hierarchy; joints are stored in file (depth-first) order, parents first."""

    joints: list[BvhJoint]
    source: str | None = None
    """Where it was read from, for error messages."""
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {}
        for i, joint in enumerate(self.joints):
            if joint.name in self._index:
                raise BvhFormatError(f"joint name {joint.name!r} appears twice", self.source)
            if joint.parent >= i or (joint.parent < 0 and i > 0):
                raise BvhFormatError(f"joint {joint.name!r} has parent index {joint.parent}; parents must come first", self.source)
            unknown = [c for c in joint.channels if c not in _KNOWN_CHANNELS]
            if unknown:
                raise BvhFormatError(f"joint {joint.name!r} has unknown channel(s) {unknown}", self.source)
            self._index[joint.name] = i

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def joint_names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def parents(self) -> np.ndarray:
        """(J,) int parent indices, -1 for the root."""
        return np.array([j.parent for j in self.joints], dtype=np.int64)

    @property
    def offsets(self) -> np.ndarray:
        """(J, 3) OFFSET translations, file units."""
        return np.stack([j.offset for j in self.joints]).astype(np.float64)

    @property
    def num_channels(self) -> int:
        return sum(len(j.channels) for j in self.joints)

    @property
    def channel_starts(self) -> np.ndarray:
        """(J,) column of each joint's first channel in a motion row."""
        sizes = np.array([len(j.channels) for j in self.joints], dtype=np.int64)
        return np.concatenate([[0], np.cumsum(sizes)[:-1]])

    def index(self, name: str) -> int:
        """Index of one joint; raises :class:`UnknownJointError`."""
        try:
            return self._index[name]
        except KeyError:
            raise UnknownJointError([name], self.joint_names, self.source) from None

    def indices(self, names: Iterable[str]) -> np.ndarray:
        """Indices of several joints, in the order given; reports every unknown name at once."""
        names = list(names)
        missing = [n for n in names if n not in self._index]
        if missing:
            raise UnknownJointError(missing, self.joint_names, self.source)
        return np.array([self._index[n] for n in names], dtype=np.int64)

    def rest_local_rotations_wxyz(self) -> np.ndarray:
        """(J, 4) rest rotations from six-number OFFSETs (identity where absent), composed in channel order."""
        quats = np.tile(np.array([1.0, 0.0, 0.0, 0.0]), (self.num_joints, 1))
        for i, joint in enumerate(self.joints):
            if joint.rest_rotation_deg is None or not joint.rotation_order:
                continue
            by_axis = dict(zip("XYZ", joint.rest_rotation_deg))
            quats[i] = euler_deg_to_quat_wxyz(np.array([by_axis[a] for a in joint.rotation_order]), joint.rotation_order)
        return quats


@dataclass
class BvhMotion:
    """A skeleton plus per-frame channel values (degrees and file length units)."""

    skeleton: BvhSkeleton
    frame_time_s: float
    channel_values: np.ndarray
    """(T, C) float64, columns in the skeleton's channel order."""

    def __post_init__(self) -> None:
        self.channel_values = np.asarray(self.channel_values, dtype=np.float64)
        expected = self.skeleton.num_channels
        if self.channel_values.ndim != 2 or self.channel_values.shape[1] != expected:
            raise BvhFormatError(
                f"channel values have shape {self.channel_values.shape}; expected (frames, {expected})", self.skeleton.source
            )
        if not (np.isfinite(self.frame_time_s) and self.frame_time_s > 0):
            raise BvhFormatError(f"frame time must be a positive number of seconds, got {self.frame_time_s}", self.skeleton.source)

    @property
    def num_frames(self) -> int:
        return int(self.channel_values.shape[0])

    @property
    def fps(self) -> float:
        """Frames per second; snapped to the nearest integer when a file rounds its frame time (0.008333 -> 120)."""
        rate = 1.0 / self.frame_time_s
        nearest = round(rate)
        return float(nearest) if nearest > 0 and abs(rate - nearest) < 2e-4 * nearest else rate

    @property
    def duration_s(self) -> float:
        return (self.num_frames - 1) / self.fps if self.num_frames else 0.0

    def local_translations(self) -> np.ndarray:
        """(T, J, 3) local translations in file units: position channels where a joint has them, else OFFSET."""
        num_frames = self.num_frames
        out = np.broadcast_to(self.skeleton.offsets, (num_frames, self.skeleton.num_joints, 3)).copy()
        for j, (joint, start) in enumerate(zip(self.skeleton.joints, self.skeleton.channel_starts)):
            for axis, channel in enumerate(POSITION_CHANNELS):
                if channel in joint.channels:
                    out[:, j, axis] = self.channel_values[:, start + joint.channels.index(channel)]
        return out

    def local_rotations_wxyz(self) -> np.ndarray:
        """(T, J, 4) local rotations as unit quaternions (wxyz); identity for joints without rotation channels."""
        num_frames, num_joints = self.num_frames, self.skeleton.num_joints
        out = np.zeros((num_frames, num_joints, 4))
        out[..., 0] = 1.0
        for order, joint_ids, columns in _rotation_groups(self.skeleton):
            angles = self.channel_values[:, columns.reshape(-1)].reshape(num_frames, len(joint_ids), len(order))
            out[:, joint_ids] = euler_deg_to_quat_wxyz(angles, order)
        return out

    @classmethod
    def from_local_transforms(
        cls,
        skeleton: BvhSkeleton,
        rotations_wxyz: np.ndarray,
        frame_time_s: float,
        translations: np.ndarray | None = None,
    ) -> "BvhMotion":
        """Build a motion from per-frame local rotations (T, J, 4 wxyz) and optional translations (T, J, 3).

        Rotations become Euler angles in each joint's channel order; joints without rotation channels
        must be given identity. Translations fill position channels (file units); when omitted, joints
        with position channels keep their OFFSET.
        """
        rotations_wxyz = np.asarray(rotations_wxyz, dtype=np.float64)
        num_joints = skeleton.num_joints
        if rotations_wxyz.ndim != 3 or rotations_wxyz.shape[1:] != (num_joints, 4):
            raise ValueError(f"rotations_wxyz must have shape (frames, {num_joints}, 4), got {rotations_wxyz.shape}")
        num_frames = rotations_wxyz.shape[0]
        if translations is None:
            translations = np.broadcast_to(skeleton.offsets, (num_frames, num_joints, 3))
        translations = np.asarray(translations, dtype=np.float64)
        if translations.shape != (num_frames, num_joints, 3):
            raise ValueError(f"translations must have shape ({num_frames}, {num_joints}, 3), got {translations.shape}")
        values = np.zeros((num_frames, skeleton.num_channels))
        for order, joint_ids, columns in _rotation_groups(skeleton):
            quats = rotations_wxyz[:, joint_ids].reshape(-1, 4)
            full_order = order + "".join(a for a in "XYZ" if a not in order)
            angles = Rotation.from_quat(_wxyz_to_xyzw(quats)).as_euler(full_order, degrees=True)
            if len(order) < 3 and np.abs(angles[:, len(order) :]).max(initial=0.0) > 1e-6:
                names = [skeleton.joints[j].name for j in joint_ids]
                raise ValueError(f"joints {names} only have {order} rotation channels but were given other rotations")
            values[:, columns.reshape(-1)] = angles[:, : len(order)].reshape(num_frames, -1)
        for j, (joint, start) in enumerate(zip(skeleton.joints, skeleton.channel_starts)):
            if not joint.rotation_order and not np.allclose(rotations_wxyz[:, j], [1.0, 0.0, 0.0, 0.0], atol=1e-6):
                raise ValueError(f"joint {joint.name!r} has no rotation channels but was given a non-identity rotation")
            for axis, channel in enumerate(POSITION_CHANNELS):
                if channel in joint.channels:
                    values[:, start + joint.channels.index(channel)] = translations[:, j, axis]
        return cls(skeleton=skeleton, frame_time_s=float(frame_time_s), channel_values=values)

    def resampled(self, fps: float) -> "BvhMotion":
        """This motion at ``fps``: frames at k / fps up to the last source frame.

        Three-axis rotations are slerped (then written back as Euler channels); positions, and
        rotations of joints with fewer than three rotation channels, are interpolated linearly.
        """
        if not (np.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be positive, got {fps}")
        if self.num_frames == 0:
            raise BvhFormatError("cannot resample a motion with no frames", self.skeleton.source)
        src_fps = self.fps
        num_out = int(np.floor((self.num_frames - 1) * fps / src_fps + 1e-9)) + 1
        src_pos = np.arange(num_out) * (src_fps / fps)
        lo = np.minimum(np.floor(src_pos + 1e-9).astype(np.int64), self.num_frames - 1)
        hi = np.minimum(lo + 1, self.num_frames - 1)
        alpha = np.clip(src_pos - lo, 0.0, 1.0)
        values = self.channel_values[lo] + (self.channel_values[hi] - self.channel_values[lo]) * alpha[:, None]
        for order, _, columns in _rotation_groups(self.skeleton):
            if len(order) < 3:
                continue
            angles = self.channel_values[:, columns.reshape(-1)].reshape(self.num_frames, -1, 3)
            quats = euler_deg_to_quat_wxyz(angles, order)
            blended = _slerp_wxyz(quats[lo], quats[hi], alpha[:, None])
            euler = Rotation.from_quat(_wxyz_to_xyzw(blended.reshape(-1, 4))).as_euler(order, degrees=True)
            values[:, columns.reshape(-1)] = euler.reshape(num_out, -1)
        return BvhMotion(skeleton=self.skeleton, frame_time_s=1.0 / fps, channel_values=values)


def _rotation_groups(skeleton: BvhSkeleton) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Group joints by rotation order: (order, joint indices (G,), channel columns (G, len(order)))."""
    groups: dict[str, tuple[list[int], list[list[int]]]] = {}
    for j, (joint, start) in enumerate(zip(skeleton.joints, skeleton.channel_starts)):
        order = joint.rotation_order
        if not order:
            continue
        columns = [int(start) + i for i, c in enumerate(joint.channels) if c in ROTATION_CHANNELS]
        ids, cols = groups.setdefault(order, ([], []))
        ids.append(j)
        cols.append(columns)
    return [(order, np.array(ids), np.array(cols)) for order, (ids, cols) in groups.items()]


def _quat_mul_wxyz(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def _quat_apply_wxyz(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors (..., 3) by unit quaternions (..., 4 wxyz)."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    vx, vy, vz = np.moveaxis(v, -1, 0)
    tx, ty, tz = 2.0 * (y * vz - z * vy), 2.0 * (z * vx - x * vz), 2.0 * (x * vy - y * vx)
    return np.stack(
        [vx + w * tx + (y * tz - z * ty), vy + w * ty + (z * tx - x * tz), vz + w * tz + (x * ty - y * tx)], axis=-1
    )


def euler_deg_to_quat_wxyz(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """BVH Euler angles (..., len(order)) in degrees, composed in listed order (intrinsic), to wxyz quaternions."""
    half = np.deg2rad(np.asarray(angles_deg, dtype=np.float64)) * 0.5
    out = np.zeros(half.shape[:-1] + (4,))
    out[..., 0] = 1.0
    for k, axis in enumerate(order.upper()):
        elementary = np.zeros(half.shape[:-1] + (4,))
        elementary[..., 0] = np.cos(half[..., k])
        elementary[..., 1 + "XYZ".index(axis)] = np.sin(half[..., k])
        out = _quat_mul_wxyz(out, elementary)
    return out


def _wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    return np.concatenate([q[..., 1:4], q[..., 0:1]], axis=-1)


def _slerp_wxyz(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Shortest-path slerp between unit quaternions, broadcasting ``t`` over the leading dims."""
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0.0, -q1, q1)
    dot = np.abs(dot)
    t = np.asarray(t)[..., None] if np.ndim(t) == q0.ndim - 1 else np.asarray(t)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    small = sin_theta < 1e-8
    safe = np.where(small, 1.0, sin_theta)
    w0 = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    w1 = np.where(small, t, np.sin(t * theta) / safe)
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# Parsing


class _Lines:
    """Token cursor over the HIERARCHY section that remembers 1-based line numbers."""

    def __init__(self, lines: list[str], path: str | None):
        self.lines = lines
        self.path = path
        self.row = 0

    def next_tokens(self, what: str) -> tuple[list[str], int]:
        while self.row < len(self.lines):
            tokens = self.lines[self.row].split()
            self.row += 1
            if tokens:
                return tokens, self.row
        raise BvhFormatError(f"file ends while expecting {what}", self.path, len(self.lines))


def _floats(tokens: Sequence[str], what: str, path: str | None, line: int) -> np.ndarray:
    try:
        values = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        raise BvhFormatError(f"{what} must be numbers, got {' '.join(tokens)!r}", path, line) from None
    if not np.all(np.isfinite(values)):
        raise BvhFormatError(f"{what} contains non-finite values: {' '.join(tokens)!r}", path, line)
    return values


def _parse_joint(cur: _Lines, name: str, parent: int, joints: list[BvhJoint], header_line: int) -> None:
    """Parse one ``{ ... }`` joint block (the ROOT/JOINT keyword line has been consumed)."""
    path = cur.path
    tokens, line = cur.next_tokens(f"'{{' after joint {name!r}")
    if tokens != ["{"]:
        raise BvhFormatError(f"expected '{{' after joint {name!r} (line {header_line}), got {' '.join(tokens)!r}", path, line)
    offset: np.ndarray | None = None
    rest: np.ndarray | None = None
    channels: tuple[str, ...] | None = None
    end_site: np.ndarray | None = None
    my_index = len(joints)
    joints.append(None)  # type: ignore[arg-type]  # placeholder keeps depth-first order; filled below
    while True:
        tokens, line = cur.next_tokens(f"'}}' closing joint {name!r} (opened at line {header_line})")
        key = tokens[0]
        if key == "OFFSET":
            if offset is not None:
                raise BvhFormatError(f"joint {name!r} has a second OFFSET", path, line)
            if len(tokens) not in (4, 7):
                raise BvhFormatError(f"OFFSET of joint {name!r} needs 3 (or 6, SOMA) numbers, got {len(tokens) - 1}", path, line)
            values = _floats(tokens[1:], f"OFFSET of joint {name!r}", path, line)
            offset, rest = values[:3], (values[3:] if len(values) == 6 else None)
        elif key == "CHANNELS":
            if channels is not None:
                raise BvhFormatError(f"joint {name!r} has a second CHANNELS line", path, line)
            if len(tokens) < 2 or not tokens[1].isdigit():
                raise BvhFormatError(f"CHANNELS of joint {name!r} must start with a channel count", path, line)
            count = int(tokens[1])
            listed = tuple(tokens[2:])
            if count != len(listed):
                raise BvhFormatError(f"CHANNELS of joint {name!r} declares {count} channels but lists {len(listed)}", path, line)
            unknown = [c for c in listed if c not in _KNOWN_CHANNELS]
            if unknown:
                raise BvhFormatError(
                    f"unknown channel(s) {unknown} on joint {name!r}; known: {sorted(_KNOWN_CHANNELS)}", path, line
                )
            if len(set(listed)) != len(listed):
                raise BvhFormatError(f"CHANNELS of joint {name!r} lists a channel twice: {list(listed)}", path, line)
            channels = listed
        elif key == "JOINT":
            if len(tokens) != 2:
                raise BvhFormatError("JOINT needs exactly one name", path, line)
            _check_joint_header(name, offset, channels, path, line)
            _parse_joint(cur, tokens[1], my_index, joints, line)
        elif key == "End" and len(tokens) == 2 and tokens[1] == "Site":
            _check_joint_header(name, offset, channels, path, line)
            if end_site is not None:
                raise BvhFormatError(f"joint {name!r} has a second End Site", path, line)
            end_site = _parse_end_site(cur, name, line)
        elif key == "}":
            _check_joint_header(name, offset, channels, path, line)
            joints[my_index] = BvhJoint(
                name=name, parent=parent, offset=offset, channels=channels, rest_rotation_deg=rest, end_site=end_site
            )
            return
        elif key in ("MOTION", "ROOT", "HIERARCHY"):
            raise BvhFormatError(
                f"unbalanced braces: {key} found while joint {name!r} (opened at line {header_line}) is still open", path, line
            )
        else:
            raise BvhFormatError(f"unexpected {' '.join(tokens)!r} inside joint {name!r}", path, line)


def _check_joint_header(name: str, offset, channels, path: str | None, line: int) -> None:
    if offset is None:
        raise BvhFormatError(f"joint {name!r} has no OFFSET before its children or closing brace", path, line)
    if channels is None:
        raise BvhFormatError(f"joint {name!r} has no CHANNELS line (missing channels)", path, line)


def _parse_end_site(cur: _Lines, parent_name: str, header_line: int) -> np.ndarray:
    path = cur.path
    tokens, line = cur.next_tokens("'{' after End Site")
    if tokens != ["{"]:
        raise BvhFormatError(f"expected '{{' after End Site of {parent_name!r}, got {' '.join(tokens)!r}", path, line)
    tokens, line = cur.next_tokens("End Site OFFSET")
    if tokens[0] != "OFFSET" or len(tokens) != 4:
        raise BvhFormatError(f"End Site of {parent_name!r} needs an OFFSET with 3 numbers, got {' '.join(tokens)!r}", path, line)
    offset = _floats(tokens[1:], f"End Site OFFSET of {parent_name!r}", path, line)
    tokens, line = cur.next_tokens(f"'}}' closing End Site of {parent_name!r} (opened at line {header_line})")
    if tokens != ["}"]:
        raise BvhFormatError(f"unbalanced braces: End Site of {parent_name!r} is not closed, got {' '.join(tokens)!r}", path, line)
    return offset


def parse_bvh_text(text: str, source: str | os.PathLike | None = None) -> BvhMotion:
    """Parse BVH text; ``source`` names the file in error messages."""
    path = None if source is None else str(source)
    lines = text.splitlines()
    cur = _Lines(lines, path)
    tokens, line = cur.next_tokens("HIERARCHY")
    if tokens != ["HIERARCHY"]:
        raise BvhFormatError(f"a BVH file starts with HIERARCHY, got {' '.join(tokens)!r}", path, line)
    tokens, line = cur.next_tokens("ROOT")
    if tokens[0] != "ROOT" or len(tokens) != 2:
        raise BvhFormatError(f"expected 'ROOT <name>', got {' '.join(tokens)!r}", path, line)
    joints: list[BvhJoint] = []
    _parse_joint(cur, tokens[1], -1, joints, line)
    tokens, line = cur.next_tokens("MOTION")
    if tokens[0] == "}":
        raise BvhFormatError("unbalanced braces: '}' after the root joint was closed", path, line)
    if tokens[0] == "ROOT":
        raise BvhFormatError("more than one ROOT is not supported", path, line)
    if tokens != ["MOTION"]:
        raise BvhFormatError(f"expected MOTION after the hierarchy, got {' '.join(tokens)!r}", path, line)
    skeleton = BvhSkeleton(joints=joints, source=path)

    tokens, line = cur.next_tokens("'Frames: <count>'")
    if len(tokens) != 2 or tokens[0] != "Frames:" or not tokens[1].isdigit():
        raise BvhFormatError(f"expected 'Frames: <count>', got {' '.join(tokens)!r}", path, line)
    num_frames = int(tokens[1])
    tokens, line = cur.next_tokens("'Frame Time: <seconds>'")
    if len(tokens) != 3 or tokens[:2] != ["Frame", "Time:"]:
        raise BvhFormatError(f"expected 'Frame Time: <seconds>', got {' '.join(tokens)!r}", path, line)
    frame_time = float(_floats(tokens[2:], "Frame Time", path, line)[0])
    if frame_time <= 0:
        raise BvhFormatError(f"Frame Time must be positive, got {frame_time}", path, line)

    width = skeleton.num_channels
    first_row = cur.row
    rows: list[list[str]] = []
    row_lines: list[int] = []
    for offset, raw in enumerate(lines[first_row:]):
        tokens = raw.split()
        if not tokens:
            continue
        line_no = first_row + offset + 1
        if len(rows) == num_frames:
            raise BvhFormatError(f"more motion lines than the {num_frames} frames declared", path, line_no)
        if len(tokens) != width:
            raise BvhFormatError(
                f"motion line for frame {len(rows)} has {len(tokens)} values; the hierarchy declares {width} channels",
                path,
                line_no,
            )
        rows.append(tokens)
        row_lines.append(line_no)
    if len(rows) < num_frames:
        raise BvhFormatError(
            f"file is truncated: 'Frames: {num_frames}' declared but only {len(rows)} motion lines found", path, len(lines)
        )
    try:
        values = np.array(rows, dtype=np.float64).reshape(num_frames, width)
    except ValueError:
        for tokens, line_no in zip(rows, row_lines):
            _floats(tokens, "motion values", path, line_no)
        raise
    bad = ~np.isfinite(values)
    if bad.any():
        frame = int(np.argwhere(bad)[0, 0])
        raise BvhFormatError("motion values contain NaN or infinity", path, row_lines[frame])
    return BvhMotion(skeleton=skeleton, frame_time_s=frame_time, channel_values=values)


def parse_bvh(path: str | os.PathLike) -> BvhMotion:
    """Read and parse a BVH file; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BvhFormatError(f"not a text file ({exc.reason} at byte {exc.start})", path) from None
    return parse_bvh_text(text, source=path)


# ----------------------------------------------------------------------------------------------
# Writing


def _fmt(values: Iterable[float], precision: int | None) -> str:
    if precision is None:
        return " ".join(repr(float(v)) for v in values)
    return " ".join(f"{v:.{precision}f}" for v in values)


def format_bvh(motion: BvhMotion, precision: int | None = None) -> str:
    """BVH text for a motion. ``precision=None`` writes shortest exact floats (lossless round trip)."""
    skeleton = motion.skeleton
    children: dict[int, list[int]] = {i: [] for i in range(skeleton.num_joints)}
    for i, joint in enumerate(skeleton.joints):
        if joint.parent >= 0:
            children[joint.parent].append(i)
    out: list[str] = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        joint = skeleton.joints[j]
        pad = "\t" * depth
        out.append(f"{pad}{'ROOT' if joint.parent < 0 else 'JOINT'} {joint.name}")
        out.append(f"{pad}{{")
        offset = list(joint.offset) + ([] if joint.rest_rotation_deg is None else list(joint.rest_rotation_deg))
        out.append(f"{pad}\tOFFSET {_fmt(offset, precision)}")
        out.append(f"{pad}\tCHANNELS {len(joint.channels)}" + "".join(f" {c}" for c in joint.channels))
        for child in children[j]:
            emit(child, depth + 1)
        if joint.end_site is not None:
            out.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\tOFFSET {_fmt(joint.end_site, precision)}", f"{pad}\t}}"])
        out.append(f"{pad}}}")

    emit(0, 0)
    out.append("MOTION")
    out.append(f"Frames: {motion.num_frames}")
    out.append(f"Frame Time: {motion.frame_time_s!r}")
    out.extend(_fmt(row, precision) for row in motion.channel_values.tolist())
    return "\n".join(out) + "\n"


def write_bvh(path: str | os.PathLike, motion: BvhMotion, precision: int | None = None) -> Path:
    """Write a BVH file atomically (temporary file in the same directory, then rename)."""
    text = format_bvh(motion, precision)
    return atomic_write(Path(path), lambda temp: temp.write_text(text, encoding="utf-8"))


# ----------------------------------------------------------------------------------------------
# Forward kinematics


def bvh_world_transforms(motion: BvhMotion, joint_names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """World positions (T, K, 3, file units) and rotations (T, K, 4 wxyz) of the named joints (default all).

    Walks the hierarchy once, each step vectorised over all frames; only the requested joints'
    ancestors are evaluated.
    """
    skeleton = motion.skeleton
    wanted = np.arange(skeleton.num_joints) if joint_names is None else skeleton.indices(joint_names)
    parents = skeleton.parents
    needed = np.zeros(skeleton.num_joints, dtype=bool)
    for j in wanted:
        while j >= 0 and not needed[j]:
            needed[j] = True
            j = parents[j]
    local_rot = motion.local_rotations_wxyz()
    local_pos = motion.local_translations()
    world_rot = np.empty_like(local_rot)
    world_pos = np.empty_like(local_pos)
    for j in np.flatnonzero(needed):
        p = parents[j]
        if p < 0:
            world_rot[:, j] = local_rot[:, j]
            world_pos[:, j] = local_pos[:, j]
        else:
            world_rot[:, j] = _quat_mul_wxyz(world_rot[:, p], local_rot[:, j])
            world_pos[:, j] = world_pos[:, p] + _quat_apply_wxyz(world_rot[:, p], local_pos[:, j])
    quat = world_rot[:, wanted]
    quat = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
    return world_pos[:, wanted], np.where(quat[..., :1] < 0, -quat, quat)


def bvh_world_positions(motion: BvhMotion, joint_names: Sequence[str] | None = None) -> np.ndarray:
    """World positions (T, K, 3) in file units of the named joints (default all joints)."""
    return bvh_world_transforms(motion, joint_names)[0]


def world_to_local_rotations(skeleton: BvhSkeleton, world_rotations_wxyz: np.ndarray) -> np.ndarray:
    """Local rotations (..., J, 4 wxyz) whose forward kinematics give these world rotations (..., J, 4).

    ``local_j = conj(world_parent(j)) * world_j``; the root's local rotation is its world rotation.
    Handy for posing a skeleton from world-frame bone orientations.
    """
    world = np.asarray(world_rotations_wxyz, dtype=np.float64)
    if world.shape[-2:] != (skeleton.num_joints, 4):
        raise ValueError(f"world_rotations_wxyz must end in ({skeleton.num_joints}, 4), got {world.shape}")
    parents = skeleton.parents
    parent_world = world[..., np.maximum(parents, 0), :]
    conj = parent_world * np.array([1.0, -1.0, -1.0, -1.0])
    local = _quat_mul_wxyz(conj, world)
    local[..., parents < 0, :] = world[..., parents < 0, :]
    return local
