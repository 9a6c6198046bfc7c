"""Motion data: clips, the memory-mapped motion library, and readers/writers for source formats."""

from gear_sonic.data.bones_csv import read_bones_csv, write_bones_csv
from gear_sonic.data.clip import (
    MotionClip,
    MotionFormatError,
    derive_velocities,
    load_clip_npz,
    resample_clip,
    save_clip_npz,
)
from gear_sonic.data.library import MotionLibrary, MotionState, is_motion_library, write_motion_library
from gear_sonic.data.side_files import attach_side_data, load_smpl_npz, load_soma_npz, write_smpl_npz

__all__ = [
    "MotionClip",
    "MotionFormatError",
    "MotionLibrary",
    "MotionState",
    "attach_side_data",
    "derive_velocities",
    "is_motion_library",
    "load_clip_npz",
    "load_smpl_npz",
    "load_soma_npz",
    "read_bones_csv",
    "resample_clip",
    "save_clip_npz",
    "write_bones_csv",
    "write_motion_library",
    "write_smpl_npz",
]
