"""The motion library: many clips in one directory, memory-mapped, no pickle.

Layout of a library directory:
- `index.json`: format name and version, clip names, fps, frame counts, frame offsets, which
  arrays exist and their shapes, and which clips carry SMPL / SOMA data.
- One `.npy` file per array, frames of all clips concatenated (clip i owns rows
  `frame_offsets[i] : frame_offsets[i] + num_frames[i]`): `root_pos` (F, 3) m, `root_quat`
  (F, 4) wxyz, `dof_pos` (F, 29) rad, and the velocities derived at build time `root_lin_vel`
  (F, 3) m/s world, `root_ang_vel` (F, 3) rad/s world, `dof_vel` (F, 29) rad/s; optionally
  `smpl_joints` (F, 24, 3), `soma_joints` (F, 26, 3), `soma_root_quat` (F, 4).

Opening reads only the index and the .npy headers; rows are paged in as they are sampled.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gear_sonic.data.clip import (
    FRAME_SNAP_TOLERANCE,
    NUM_SMPL_JOINTS,
    NUM_SOMA_JOINTS,
    MotionClip,
    MotionFormatError,
    derive_velocities,
    load_clip_npz,
)
from gear_sonic.data.side_files import (
    find_side_file,
    index_side_files,
    load_smpl_npz,
    load_soma_npz,
    side_data_on_frames,
)
from gear_sonic.robots.g1 import NUM_JOINTS
from gear_sonic.utils.rotations import quat_slerp

FORMAT_NAME = "gear_sonic.motion_library"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"

# Array name -> per-frame shape. Required arrays first; velocities are derived when writing.
REQUIRED_ARRAYS: dict[str, tuple[int, ...]] = {
    "root_pos": (3,),
    "root_quat": (4,),
    "dof_pos": (NUM_JOINTS,),
    "root_lin_vel": (3,),
    "root_ang_vel": (3,),
    "dof_vel": (NUM_JOINTS,),
}
OPTIONAL_ARRAYS: dict[str, tuple[int, ...]] = {
    "smpl_joints": (NUM_SMPL_JOINTS, 3),
    "soma_joints": (NUM_SOMA_JOINTS, 3),
    "soma_root_quat": (4,),
}
# Which per-clip availability flag covers each optional array.
_SIDE_GROUP = {"smpl_joints": "smpl", "soma_joints": "soma", "soma_root_quat": "soma"}
_QUATERNION_ARRAYS = ("root_quat", "soma_root_quat")


@dataclass
class MotionState:
    """Reference state at sampled times; leading dims match the query. Torch float32."""

    root_pos: torch.Tensor  # (..., 3) m, world
    root_quat: torch.Tensor  # (..., 4) wxyz
    root_lin_vel: torch.Tensor  # (..., 3) m/s, world
    root_ang_vel: torch.Tensor  # (..., 3) rad/s, world
    dof_pos: torch.Tensor  # (..., 29) rad, MuJoCo order
    dof_vel: torch.Tensor  # (..., 29) rad/s
    smpl_joints: torch.Tensor | None = None  # (..., 24, 3) m, z-up world
    soma_joints: torch.Tensor | None = None  # (..., 26, 3) m, z-up world
    soma_root_quat: torch.Tensor | None = None  # (..., 4) wxyz


# ---------------------------------------------------------------------------------------------
# Writing


class _NpyStream:
    """An .npy file written row-block by row-block; the header is fixed up on close.

    The header slot is reserved up front and padded with spaces (the .npy format allows that),
    so the final shape can be filled in without rewriting the data.
    """

    HEADER_BYTES = 256

    def __init__(self, path: Path, row_shape: tuple[int, ...]):
        self.path = path
        self.row_shape = row_shape
        self.rows = 0
        self._file = open(path, "wb")
        self._file.write(b"\0" * self.HEADER_BYTES)

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype="<f4")
        assert block.shape[1:] == self.row_shape
        self._file.write(block.tobytes())
        self.rows += block.shape[0]

    def close(self) -> None:
        shape = (self.rows,) + self.row_shape
        header = "{'descr': '<f4', 'fortran_order': False, 'shape': %r, }" % (shape,)
        body_len = self.HEADER_BYTES - 10
        header = header.ljust(body_len - 1) + "\n"
        if len(header) != body_len:
            raise ValueError(f"{self.path}: shape {shape} too large for the reserved .npy header")
        self._file.seek(0)
        self._file.write(b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little") + header.encode("latin1"))
        self._file.close()

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()


def _filler(name: str, rows: int) -> np.ndarray:
    """Rows for clips without an optional array: zeros, identity for quaternions."""
    block = np.zeros((rows,) + OPTIONAL_ARRAYS[name], np.float32)
    if name in _QUATERNION_ARRAYS:
        block[:, 0] = 1.0
    return block


class _FrameArrays:
    """Accumulates clips' per-frame arrays into sinks (streamed .npy files or in-memory lists)."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        self.sinks: dict[str, _NpyStream | list[np.ndarray]] = {}
        self.names: list[str] = []
        self.fps: list[float] = []
        self.num_frames: list[int] = []
        self.available: dict[str, list[bool]] = {"smpl": [], "soma": []}
        self.total_frames = 0
        self._seen: set[str] = set()

    def _sink(self, name: str, row_shape: tuple[int, ...]):
        if name not in self.sinks:
            if self.directory is None:
                self.sinks[name] = []
            else:
                self.sinks[name] = _NpyStream(self.directory / f"{name}.npy", row_shape)
            if name in OPTIONAL_ARRAYS and self.total_frames:  # fill rows of earlier clips
                self._write(name, _filler(name, self.total_frames))
        return self.sinks[name]

    def _write(self, name: str, block: np.ndarray) -> None:
        sink = self.sinks[name]
        if isinstance(sink, list):
            sink.append(np.asarray(block, np.float32))
        else:
            sink.write(block)

    def add(self, clip: MotionClip) -> None:
        clip = clip.validated()
        if clip.name in self._seen:
            raise MotionFormatError(f"duplicate clip name {clip.name!r}")
        self._seen.add(clip.name)
        root_lin_vel, root_ang_vel, dof_vel = derive_velocities(clip)
        values = {
            "root_pos": clip.root_pos,
            "root_quat": clip.root_quat,
            "dof_pos": clip.dof_pos,
            "root_lin_vel": root_lin_vel,
            "root_ang_vel": root_ang_vel,
            "dof_vel": dof_vel,
        }
        for name, row_shape in REQUIRED_ARRAYS.items():
            self._sink(name, row_shape)
            self._write(name, values[name])
        for name, row_shape in OPTIONAL_ARRAYS.items():
            value = getattr(clip, name)
            if value is not None:
                self._sink(name, row_shape)
                self._write(name, value)
            elif name in self.sinks:
                self._write(name, _filler(name, clip.num_frames))
        self.available["smpl"].append(clip.smpl_joints is not None)
        self.available["soma"].append(clip.soma_joints is not None)
        self.names.append(clip.name)
        self.fps.append(float(clip.fps))
        self.num_frames.append(clip.num_frames)
        self.total_frames += clip.num_frames

    def index(self) -> dict:
        offsets = np.concatenate([[0], np.cumsum(self.num_frames, dtype=np.int64)])[:-1]
        shapes = {**REQUIRED_ARRAYS, **OPTIONAL_ARRAYS}
        present = list(REQUIRED_ARRAYS) + [n for n in OPTIONAL_ARRAYS if n in self.sinks]
        arrays = {n: {"file": f"{n}.npy", "shape": [self.total_frames, *shapes[n]], "dtype": "float32"} for n in present}
        index = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "num_clips": len(self.names),
            "num_frames_total": self.total_frames,
            "names": self.names,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "frame_offsets": offsets.tolist(),
            "arrays": arrays,
        }
        if "smpl_joints" in self.sinks:
            index["smpl_clips"] = self.available["smpl"]
        if "soma_joints" in self.sinks:
            index["soma_clips"] = self.available["soma"]
        return index

    def close_files(self) -> None:
        for name, row_shape in REQUIRED_ARRAYS.items():  # an empty library still has every required array
            self._sink(name, row_shape)
        for sink in self.sinks.values():
            if isinstance(sink, _NpyStream):
                sink.close()

    def abort(self) -> None:
        for sink in self.sinks.values():
            if isinstance(sink, _NpyStream):
                sink.abort()

    def in_memory_arrays(self) -> dict[str, np.ndarray]:
        shapes = {**REQUIRED_ARRAYS, **OPTIONAL_ARRAYS}
        out = {}
        for name in list(REQUIRED_ARRAYS) + [n for n in OPTIONAL_ARRAYS if n in self.sinks]:
            blocks = self.sinks.get(name) or []
            out[name] = np.concatenate(blocks) if blocks else np.zeros((0,) + shapes[name], np.float32)
        return out


def write_motion_library(path: str | os.PathLike, clips: Iterable[MotionClip], *, overwrite: bool = False) -> Path:
    """Write clips (any iterable, consumed once and streamed to disk) as a library directory.

    Velocities are derived here. The library is assembled in a temporary directory beside
    `path` and renamed into place when complete, so a failure never leaves a partial library.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    frames = _FrameArrays(temp)
    try:
        for clip in clips:
            frames.add(clip)
        frames.close_files()
        index_text = json.dumps(frames.index())
        (temp / INDEX_FILE).write_text(index_text)
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
            os.replace(temp, path)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            os.replace(temp, path)
    except BaseException:
        frames.abort()
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return path


def is_motion_library(path: str | os.PathLike) -> bool:
    """Whether `path` is a library directory (has an index.json)."""
    return (Path(path) / INDEX_FILE).is_file()


# ---------------------------------------------------------------------------------------------
# Reading


class MotionLibrary:
    """Read access to a library: clip lookup, vectorised sampling at arbitrary times, FK.

    Open with `MotionLibrary.open(path)`, where `path` is a library directory, a directory
    tree of per-clip .npz files (as written by the converter's `--individual`; loaded into
    memory), or a single clip .npz.
    """

    def __init__(
        self,
        path: Path,
        names: list[str],
        fps: np.ndarray,
        num_frames: np.ndarray,
        arrays: dict[str, np.ndarray],
        available: dict[str, np.ndarray],
    ):
        self.path = path
        self.names: list[str] = names
        self.fps: np.ndarray = fps.astype(np.float64)
        self.num_frames: np.ndarray = num_frames.astype(np.int64)
        self.frame_offsets: np.ndarray = np.concatenate([[0], np.cumsum(self.num_frames)])[:-1].astype(np.int64)
        self.durations_s: np.ndarray = (self.num_frames - 1) / self.fps
        self._arrays = arrays
        # Per clip: does it carry SMPL / SOMA joints (clips without them hold zeros there).
        self.smpl_available: np.ndarray = available.get("smpl", np.zeros(len(names), bool))
        self.soma_available: np.ndarray = available.get("soma", np.zeros(len(names), bool))
        self._name_to_index = {n: i for i, n in enumerate(names)}
        self._kinematics = None

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        smpl_path: str | os.PathLike | None = None,
        soma_path: str | os.PathLike | None = None,
    ) -> "MotionLibrary":
        """Open a library; `smpl_path` / `soma_path` attach per-clip side files by clip name."""
        path = Path(path)
        if not path.exists():
            raise MotionFormatError(f"{path}: does not exist")
        if path.is_dir() and is_motion_library(path):
            lib = cls._open_directory(path)
        elif path.is_file() and path.suffix == ".npz":
            lib = cls._from_clips(path, [load_clip_npz(path)])
        elif path.is_dir():
            files = sorted(path.rglob("*.npz"))
            if not files:
                raise MotionFormatError(
                    f"{path}: not a motion library (no {INDEX_FILE}, and no per-clip .npz files under it)"
                )
            clips = (load_clip_npz(f, name=f.relative_to(path).with_suffix("").as_posix()) for f in files)
            lib = cls._from_clips(path, clips)
        else:
            raise MotionFormatError(f"{path}: not a motion library (expected a library directory or a clip .npz)")
        if smpl_path is not None:
            lib._attach(Path(smpl_path), "smpl")
        if soma_path is not None:
            lib._attach(Path(soma_path), "soma")
        return lib

    @classmethod
    def _open_directory(cls, path: Path) -> "MotionLibrary":
        index_path = path / INDEX_FILE
        try:
            index = json.loads(index_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise MotionFormatError(f"{index_path}: cannot read the library index ({error})") from error
        if not isinstance(index, dict) or index.get("format") != FORMAT_NAME:
            raise MotionFormatError(f"{index_path}: not a gear_sonic motion library index")
        if index.get("version") != FORMAT_VERSION:
            raise MotionFormatError(f"{index_path}: format version {index.get('version')}, this code reads {FORMAT_VERSION}")
        try:
            names = list(index["names"])
            fps = np.asarray(index["fps"], dtype=np.float64)
            num_frames = np.asarray(index["num_frames"], dtype=np.int64)
            array_specs = dict(index["arrays"])
        except (KeyError, TypeError, ValueError) as error:
            raise MotionFormatError(f"{index_path}: malformed index ({error!r})") from error
        if not (len(names) == len(fps) == len(num_frames)):
            raise MotionFormatError(f"{index_path}: names, fps and num_frames differ in length")
        total = int(num_frames.sum())
        arrays = {}
        for name in REQUIRED_ARRAYS:
            if name not in array_specs:
                raise MotionFormatError(f"{index_path}: required array {name!r} missing from the index")
        known = {**REQUIRED_ARRAYS, **OPTIONAL_ARRAYS}
        for name, spec in array_specs.items():
            if name not in known:
                raise MotionFormatError(f"{index_path}: unknown array {name!r}")
            file = path / spec["file"]
            try:
                array = np.load(file, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as error:
                raise MotionFormatError(f"{file}: cannot memory-map ({error})") from error
            if array.shape != (total,) + known[name] or array.dtype != np.float32:
                raise MotionFormatError(
                    f"{file}: shape {array.shape} {array.dtype}, index expects {(total,) + known[name]} float32"
                )
            arrays[name] = array
        available = {}
        for group in ("smpl", "soma"):
            flags = index.get(f"{group}_clips")
            if flags is not None:
                available[group] = np.asarray(flags, dtype=bool)
        return cls(path, names, fps, num_frames, arrays, available)

    @classmethod
    def _from_clips(cls, path: Path, clips: Iterable[MotionClip]) -> "MotionLibrary":
        frames = _FrameArrays(None)
        for clip in clips:
            frames.add(clip)
        available = {g: np.asarray(v, bool) for g, v in frames.available.items()}
        return cls(
            path,
            frames.names,
            np.asarray(frames.fps),
            np.asarray(frames.num_frames, dtype=np.int64),
            frames.in_memory_arrays(),
            available,
        )

    def _attach(self, directory: Path, group: str) -> None:
        """Load per-clip side files into memory, resampled onto each clip's frames."""
        files = index_side_files(directory)
        fields = ("smpl_joints",) if group == "smpl" else ("soma_joints", "soma_root_quat")
        loader = load_smpl_npz if group == "smpl" else load_soma_npz
        total = int(self.num_frames.sum())
        buffers = {}
        for field in fields:
            existing = self._arrays.get(field)
            buffers[field] = np.array(existing) if existing is not None else _filler(field, total)
        available = getattr(self, f"{group}_available").copy()
        for i, name in enumerate(self.names):
            file = find_side_file(files, name)
            if file is None:
                continue
            side = side_data_on_frames(loader(file), int(self.num_frames[i]), float(self.fps[i]))
            rows = slice(self.frame_offsets[i], self.frame_offsets[i] + self.num_frames[i])
            for field in fields:
                buffers[field][rows] = getattr(side, field)
            available[i] = True
        self._arrays.update(buffers)
        setattr(self, f"{group}_available", available)

    # -- clip access -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._name_to_index

    def index_of(self, name_or_index: str | int) -> int:
        if isinstance(name_or_index, str):
            if name_or_index not in self._name_to_index:
                raise KeyError(f"{self.path}: no clip named {name_or_index!r}")
            return self._name_to_index[name_or_index]
        index = int(name_or_index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.path}: clip index {index} out of range for {len(self)} clips")
        return index % len(self)

    def _rows(self, clip: str | int) -> tuple[int, slice]:
        i = self.index_of(clip)
        start = int(self.frame_offsets[i])
        return i, slice(start, start + int(self.num_frames[i]))

    def __getitem__(self, clip: str | int) -> MotionClip:
        i, rows = self._rows(clip)
        side = {}
        if self.smpl_available[i] and "smpl_joints" in self._arrays:
            side["smpl_joints"] = np.array(self._arrays["smpl_joints"][rows])
        if self.soma_available[i] and "soma_joints" in self._arrays:
            side["soma_joints"] = np.array(self._arrays["soma_joints"][rows])
            if "soma_root_quat" in self._arrays:
                side["soma_root_quat"] = np.array(self._arrays["soma_root_quat"][rows])
        return MotionClip(
            name=self.names[i],
            fps=float(self.fps[i]),
            root_pos=np.array(self._arrays["root_pos"][rows]),
            root_quat=np.array(self._arrays["root_quat"][rows]),
            dof_pos=np.array(self._arrays["dof_pos"][rows]),
            **side,
        )

    def clips(self) -> Iterable[MotionClip]:
        """Every clip in order (for rewriting or filtering a library)."""
        return (self[i] for i in range(len(self)))

    def velocities(self, clip: str | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stored (root_lin_vel m/s world, root_ang_vel rad/s world, dof_vel rad/s) of one clip."""
        _, rows = self._rows(clip)
        return tuple(np.array(self._arrays[n][rows]) for n in ("root_lin_vel", "root_ang_vel", "dof_vel"))

    @property
    def has_smpl(self) -> bool:
        return "smpl_joints" in self._arrays and bool(self.smpl_available.any())

    @property
    def has_soma(self) -> bool:
        return "soma_joints" in self._arrays and bool(self.soma_available.any())

    @property
    def total_frames(self) -> int:
        return int(self.num_frames.sum())

    def array(self, name: str) -> np.ndarray:
        """The raw (memory-mapped) frame array `name`, all clips concatenated."""
        return self._arrays[name]

    def body_poses(self, clip: str | int) -> tuple[torch.Tensor, torch.Tensor]:
        """World poses of all G1 bodies for every frame of a clip, by forward kinematics.

        Returns body_pos (T, nbody, 3) m and body_quat (T, nbody, 4) wxyz; body order is
        `G1Kinematics().body_names`.
        """
        if self._kinematics is None:
            from gear_sonic.robots.kinematics import G1Kinematics

            self._kinematics = G1Kinematics()
        motion = self[clip]
        return self._kinematics.forward(
            torch.from_numpy(motion.root_pos), torch.from_numpy(motion.root_quat), torch.from_numpy(motion.dof_pos)
        )

    # -- sampling --------------------------------------------------------------------------

    def sample(self, clip_ids: torch.Tensor, times_s: torch.Tensor) -> MotionState:
        """Interpolated reference state of clips `clip_ids` at `times_s` (broadcast together).

        Times are clamped to [0, duration]. Positions, joint angles and velocities are linearly
        interpolated between neighbouring frames, rotations slerped. Output tensors are float32
        on `times_s`'s device with the broadcast shape of the inputs as leading dims.
        """
        clip_ids, times_s = torch.broadcast_tensors(torch.as_tensor(clip_ids), torch.as_tensor(times_s))
        shape = clip_ids.shape
        device = times_s.device
        ids = clip_ids.reshape(-1).cpu().numpy().astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise IndexError(f"{self.path}: clip ids must lie in [0, {len(self)}), got [{ids.min()}, {ids.max()}]")
        num_frames = self.num_frames[ids]
        position = np.clip(times_s.reshape(-1).cpu().numpy().astype(np.float64) * self.fps[ids], 0.0, num_frames - 1)
        nearest = np.round(position)
        position = np.where(np.abs(position - nearest) < FRAME_SNAP_TOLERANCE, nearest, position)
        frame0 = np.floor(position).astype(np.int64)
        alpha = torch.from_numpy((position - frame0).astype(np.float32))
        row0 = self.frame_offsets[ids] + frame0
        row1 = self.frame_offsets[ids] + np.minimum(frame0 + 1, num_frames - 1)

        def lerp(name: str) -> torch.Tensor:
            array = self._arrays[name]
            a = torch.from_numpy(np.asarray(array[row0]))
            b = torch.from_numpy(np.asarray(array[row1]))
            w = alpha.reshape((-1,) + (1,) * (a.dim() - 1))
            return (a + (b - a) * w).reshape(shape + a.shape[1:]).to(device)

        def slerp(name: str) -> torch.Tensor:
            array = self._arrays[name]
            a = torch.from_numpy(np.asarray(array[row0]))
            b = torch.from_numpy(np.asarray(array[row1]))
            return quat_slerp(a, b, alpha).reshape(shape + (4,)).to(device)

        return MotionState(
            root_pos=lerp("root_pos"),
            root_quat=slerp("root_quat"),
            root_lin_vel=lerp("root_lin_vel"),
            root_ang_vel=lerp("root_ang_vel"),
            dof_pos=lerp("dof_pos"),
            dof_vel=lerp("dof_vel"),
            smpl_joints=lerp("smpl_joints") if self.has_smpl else None,
            soma_joints=lerp("soma_joints") if self.has_soma else None,
            soma_root_quat=slerp("soma_root_quat") if self.has_soma and "soma_root_quat" in self._arrays else None,
        )

    def __repr__(self) -> str:
        return f"MotionLibrary({str(self.path)!r}, clips={len(self)}, frames={self.total_frames})"
