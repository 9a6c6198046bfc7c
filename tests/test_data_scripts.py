"""Data scripts: keyword filter, SONIC PKL import behind --trust-pickle, and the command lines."""

import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gear_sonic.data import MotionClip, MotionLibrary, load_clip_npz, write_bones_csv, write_motion_library
from gear_sonic.data.filtering import DEFAULT_FILTER_KEYWORDS, filter_motion_data, matching_keywords
from gear_sonic.data.sonic_pkl import UntrustedPickleError, load_sonic_motion_pkl

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("convert_soma_csv_to_motion_lib", "filter_and_copy_bones_data", "import_sonic_motion_lib", "convert_smpl_to_npz")


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "data_process" / f"{name}.py"), *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


def tiny_clip(name: str, frames: int = 12, fps: float = 30.0, seed: int = 0) -> MotionClip:
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / fps
    quat = Rotation.from_rotvec(np.outer(t, [0.1, 0.0, 1.0])).as_quat(scalar_first=True)
    return MotionClip(name, fps, np.outer(t, [0.5, 0, 0]) + [0, 0, 0.76], quat, rng.uniform(-0.5, 0.5, (frames, 29)))


CLIP_NAMES = [
    "locomotion/walk_forward_001",
    "locomotion/run_Stairs_up_002",      # stair (case-insensitive)
    "furniture/sit_on_chair_003",        # chair, sit_
    "misc/Handstand_FF_walk",            # handstand_ff_, handstand
    "dance/kozak_dance_01",              # kozak_dance
    "dance/salsa_basic_01",
    "bedroom/wave_hello",                # bed (in the parent directory)
]


def test_keyword_matching_follows_parent_and_filename():
    assert matching_keywords("locomotion/walk_forward_001", DEFAULT_FILTER_KEYWORDS) == []
    assert matching_keywords("furniture/sit_on_chair_003", DEFAULT_FILTER_KEYWORDS) == ["chair", "sit_"]
    assert set(matching_keywords("misc/Handstand_FF_walk", DEFAULT_FILTER_KEYWORDS)) == {"handstand_ff_", "handstand"}
    assert matching_keywords("bedroom/wave_hello", DEFAULT_FILTER_KEYWORDS) == ["bed"]
    # Only the parent directory and file name count, not directories further up.
    assert matching_keywords("chair_sessions/walks/walk_01", DEFAULT_FILTER_KEYWORDS) == []
    assert len(DEFAULT_FILTER_KEYWORDS) == 40


def test_filter_directory_of_files_and_library(tmp_path):
    src = tmp_path / "src"
    for name in CLIP_NAMES:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / f"{name}.csv").write_text(name)
    report = filter_motion_data(src, tmp_path / "dry", DEFAULT_FILTER_KEYWORDS, dry_run=True)
    assert report.total == 7 and len(report.dropped) == 5 and not (tmp_path / "dry").exists()
    assert report.keyword_counts == {"stair": 1, "chair": 1, "sit_": 1, "handstand_ff_": 1, "handstand": 1, "kozak_dance": 1, "bed": 1}
    assert "would drop 5 (71.4%)" in report.summary_text()

    keyword_file = tmp_path / "keywords.txt"
    keyword_file.write_text("# mine\nsalsa\n")
    result = run_script("filter_and_copy_bones_data", "--source", src, "--dest", tmp_path / "dst", "--workers", 2,
                        "--add-keywords", "wave", "--filter_file", keyword_file)
    assert result.returncode == 0, result.stderr
    kept = sorted(p.relative_to(tmp_path / "dst").as_posix() for p in (tmp_path / "dst").rglob("*.csv"))
    assert kept == ["locomotion/walk_forward_001.csv"]
    assert (tmp_path / "dst" / "locomotion" / "walk_forward_001.csv").read_text() == "locomotion/walk_forward_001"
    assert "kept 1, dropped 6" in result.stdout and "salsa: 1" in result.stdout and "wave: 1" in result.stdout

    lib = write_motion_library(tmp_path / "lib", [tiny_clip(n, seed=i) for i, n in enumerate(CLIP_NAMES)])
    report = filter_motion_data(lib, tmp_path / "lib_filtered", DEFAULT_FILTER_KEYWORDS)
    filtered = MotionLibrary.open(tmp_path / "lib_filtered")
    assert filtered.names == [n for n in CLIP_NAMES if n in report.kept]
    assert filtered.names == ["locomotion/walk_forward_001", "dance/salsa_basic_01"]
    assert np.array_equal(filtered["dance/salsa_basic_01"].dof_pos, MotionLibrary.open(lib)["dance/salsa_basic_01"].dof_pos)


def sonic_entry(clip: MotionClip) -> dict:
    xyzw = clip.root_quat[:, [1, 2, 3, 0]]
    return {"root_trans_offset": clip.root_pos, "root_rot": xyzw, "dof": clip.dof_pos,
            "pose_aa": np.zeros((clip.num_frames, 30, 3)), "smpl_joints": np.zeros((clip.num_frames, 24, 3)), "fps": 30}


def test_sonic_pkl_import_requires_trust_and_converts_xyzw(tmp_path):
    clips = [tiny_clip("a", seed=1).validated(), tiny_clip("b", frames=20, seed=2).validated()]
    (tmp_path / "pkl" / "sub").mkdir(parents=True)
    joblib.dump({"a_key": sonic_entry(clips[0])}, tmp_path / "pkl" / "sub" / "a.pkl")
    joblib.dump({"b_key": sonic_entry(clips[1])}, tmp_path / "pkl" / "b.pkl")

    with pytest.raises(UntrustedPickleError, match="a.pkl: refusing to unpickle"):
        load_sonic_motion_pkl(tmp_path / "pkl" / "sub" / "a.pkl")
    refused = run_script("import_sonic_motion_lib", "--input", tmp_path / "pkl", "--output", tmp_path / "lib", "--no_progress")
    assert refused.returncode == 2 and "--trust-pickle" in refused.stderr
    assert not (tmp_path / "lib").exists()

    result = run_script("import_sonic_motion_lib", "--input", tmp_path / "pkl", "--output", tmp_path / "lib",
                        "--trust-pickle", "--no_progress")
    assert result.returncode == 0, result.stderr
    lib = MotionLibrary.open(tmp_path / "lib")
    assert lib.names == ["b", "sub/a"]
    got = lib["sub/a"]
    assert np.allclose(got.root_quat, clips[0].root_quat, atol=1e-7)  # xyzw -> wxyz
    assert np.allclose(got.dof_pos, clips[0].dof_pos) and np.allclose(got.root_pos, clips[0].root_pos)


def test_smpl_pkl_conversion_requires_trust(tmp_path):
    rng = np.random.default_rng(3)
    joints = rng.normal(size=(15, 24, 3))
    (tmp_path / "smpl").mkdir()
    joblib.dump({"pose_aa": np.zeros((15, 72)), "smpl_joints": joints, "transl": joints[:, 0], "fps": 30},
                tmp_path / "smpl" / "clip.pkl")
    refused = run_script("convert_smpl_to_npz", "--input", tmp_path / "smpl", "--output", tmp_path / "npz")
    assert refused.returncode == 2 and not (tmp_path / "npz").exists()
    result = run_script("convert_smpl_to_npz", "--input", tmp_path / "smpl", "--output", tmp_path / "npz",
                        "--trust-pickle", "--no_progress")
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "npz" / "clip.npz", allow_pickle=False) as data:
        assert np.allclose(data["smpl_joints"], joints, atol=1e-6) and float(data["fps"]) == 30.0
        assert data["pose_aa"].shape == (15, 24, 3)


def test_scripts_show_help():
    for name in SCRIPTS:
        result = run_script(name, "--help")
        assert result.returncode == 0 and "usage:" in result.stdout, (name, result.stderr)


def test_converter_command_line_with_workers(tmp_path):
    t = np.arange(121) / 120.0
    quat = Rotation.from_rotvec(np.outer(t, [0, 0, 1.5])).as_quat(scalar_first=True)
    for name in ("a", "sub/b", "sub/c"):
        write_bones_csv(tmp_path / "csv" / f"{name}.csv", np.outer(t, [1, 0, 0]), quat, np.zeros((121, 29)) + 0.1)
    (tmp_path / "csv" / "bad.csv").write_text("Frame,root_translateX\n0,1\n1,2\n")
    result = run_script("convert_soma_csv_to_motion_lib", "--input", tmp_path / "csv", "--output", tmp_path / "out",
                        "--fps", 30, "--fps_source", 120, "--individual", "--num_workers", 2)
    assert result.returncode == 0, result.stderr
    assert "converted: 3 of 4" in result.stdout and "bad.csv: line 1: missing columns" in result.stdout
    assert "clip/s" in result.stderr  # the progress bar reports a rate
    clip = load_clip_npz(tmp_path / "out" / "sub" / "c.npz")
    assert clip.num_frames == 31 and clip.fps == 30.0
    lib = MotionLibrary.open(tmp_path / "out")  # a per-clip tree opens as a library too
    assert sorted(lib.names) == ["a", "sub/b", "sub/c"]
