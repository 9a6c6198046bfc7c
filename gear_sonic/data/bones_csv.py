"""Bones-SEED G1 CSV: one clip per file, the layout Bones-SEED ships its G1 retargets in.

Columns: `Frame`, `root_translateX/Y/Z` (cm), `root_rotateX/Y/Z` (degrees, scipy
`Rotation.as_euler("xyz", degrees=True)` of the root quaternion, i.e. extrinsic x-y-z), then
29 `<joint>_dof` columns (degrees) named after the G1's MuJoCo joints. The files carry no time
column; Bones-SEED records at 120 fps.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from gear_sonic.data.clip import MotionClip, MotionFormatError, atomic_write
from gear_sonic.robots.g1 import JOINT_NAMES_MUJOCO

BONES_FPS = 120.0
ROOT_POSITION_COLUMNS = ("root_translateX", "root_translateY", "root_translateZ")
ROOT_ROTATION_COLUMNS = ("root_rotateX", "root_rotateY", "root_rotateZ")
JOINT_COLUMNS = tuple(f"{name}_dof" for name in JOINT_NAMES_MUJOCO)
BONES_COLUMNS: tuple[str, ...] = ("Frame", *ROOT_POSITION_COLUMNS, *ROOT_ROTATION_COLUMNS, *JOINT_COLUMNS)
EULER_ORDER = "xyz"  # scipy lower case: extrinsic rotations about x, then y, then z


def write_bones_csv(
    path: str | os.PathLike,
    root_pos_m: np.ndarray,
    root_quat_wxyz: np.ndarray,
    dof_pos_rad: np.ndarray,
    fps: float = BONES_FPS,
) -> Path:
    """Write one clip in the Bones-SEED G1 CSV layout (atomic).

    `fps` is the rate the arrays are sampled at. The layout has no time column, so it is only
    checked, not stored: readers are told the rate (`read_bones_csv(fps=)`, `--fps_source`).
    """
    root_pos_m = np.asarray(root_pos_m, dtype=np.float64)
    root_quat_wxyz = np.asarray(root_quat_wxyz, dtype=np.float64)
    dof_pos_rad = np.asarray(dof_pos_rad, dtype=np.float64)
    count = root_pos_m.shape[0]
    if root_pos_m.shape != (count, 3) or root_quat_wxyz.shape != (count, 4) or dof_pos_rad.shape != (count, 29):
        raise ValueError(
            f"{path}: expected root_pos (T,3), root_quat (T,4), dof_pos (T,29); got "
            f"{root_pos_m.shape}, {root_quat_wxyz.shape}, {dof_pos_rad.shape}"
        )
    if not fps > 0:
        raise ValueError(f"{path}: fps must be positive, got {fps}")
    euler_deg = Rotation.from_quat(root_quat_wxyz, scalar_first=True).as_euler(EULER_ORDER, degrees=True)
    table = np.concatenate(
        [np.arange(count, dtype=np.float64)[:, None], root_pos_m * 100.0, euler_deg, np.rad2deg(dof_pos_rad)], axis=1
    )

    def write(temp: Path) -> None:
        np.savetxt(temp, table, delimiter=",", header=",".join(BONES_COLUMNS), comments="", fmt=["%d"] + ["%.10g"] * 35)

    return atomic_write(Path(path), write)


def _check_header(path: Path, header_line: str) -> list[str]:
    columns = [c.strip() for c in header_line.lstrip("\ufeff").split(",")]
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise MotionFormatError(f"{path}: line 1: duplicate columns {', '.join(duplicates)}")
    unknown_joints = [c for c in columns if c.endswith("_dof") and c not in JOINT_COLUMNS]
    if unknown_joints:
        raise MotionFormatError(
            f"{path}: line 1: unknown joint names {', '.join(c[: -len('_dof')] for c in unknown_joints)} "
            "(expected the G1's 29 MuJoCo joint names)"
        )
    missing = [c for c in BONES_COLUMNS if c not in columns]
    extra = [c for c in columns if c not in BONES_COLUMNS]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing columns {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected columns {', '.join(extra)}")
        raise MotionFormatError(f"{path}: line 1: {'; '.join(parts)}")
    return columns


def _locate_bad_value(path: Path, columns: list[str], rows: list[tuple[int, str]]) -> MotionFormatError:
    """Find the first row that fails to parse and say where (slow path, only after a failure)."""
    for line_no, text in rows:
        fields = text.split(",")
        if len(fields) != len(columns):
            return MotionFormatError(f"{path}: line {line_no}: expected {len(columns)} values, found {len(fields)}")
        for column, field in zip(columns, fields):
            try:
                float(field)
            except ValueError:
                return MotionFormatError(f"{path}: line {line_no}, column {column}: {field.strip()!r} is not a number")
    return MotionFormatError(f"{path}: cannot parse the numeric table")


def read_bones_csv(path: str | os.PathLike, fps: float = BONES_FPS, name: str | None = None) -> MotionClip:
    """Read a Bones-SEED G1 CSV into a clip at `fps` (default 120) named `name` (default: file stem).

    Columns are matched by name, so their order does not matter. Raises MotionFormatError naming
    the file and line for missing/extra/unknown columns, non-numeric or NaN values and clips
    with fewer than 2 frames.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise MotionFormatError(f"{path}: not a UTF-8 text file ({error})") from error
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise MotionFormatError(f"{path}: empty file (expected a header line with {len(BONES_COLUMNS)} columns)")
    columns = _check_header(path, lines[0])
    rows = [(i + 1, line) for i, line in enumerate(lines) if i > 0 and line.strip()]
    if len(rows) < 2:
        raise MotionFormatError(f"{path}: {len(rows)} frame(s); a clip needs at least 2")
    try:
        table = np.loadtxt([line for _, line in rows], delimiter=",", dtype=np.float64, ndmin=2)
        if table.shape[1] != len(columns):
            raise ValueError("column count")
    except ValueError:
        raise _locate_bad_value(path, columns, rows) from None
    finite = np.isfinite(table)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise MotionFormatError(f"{path}: line {rows[row][0]}, column {columns[col]}: value is {table[row, col]}")
    column_of = {c: i for i, c in enumerate(columns)}
    root_pos_m = table[:, [column_of[c] for c in ROOT_POSITION_COLUMNS]] / 100.0
    euler_deg = table[:, [column_of[c] for c in ROOT_ROTATION_COLUMNS]]
    root_quat = Rotation.from_euler(EULER_ORDER, euler_deg, degrees=True).as_quat(scalar_first=True)
    dof_pos_rad = np.deg2rad(table[:, [column_of[c] for c in JOINT_COLUMNS]])
    clip = MotionClip(name=name or path.stem, fps=float(fps), root_pos=root_pos_m, root_quat=root_quat, dof_pos=dof_pos_rad)
    return clip.validated(path)
