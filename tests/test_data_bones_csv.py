"""Bones-SEED G1 CSV: exact recovery through the converter, and every bad-input case."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gear_sonic.data import MotionFormatError, MotionLibrary, load_clip_npz, read_bones_csv, write_bones_csv
from gear_sonic.data.bones_csv import BONES_COLUMNS
from gear_sonic.data.convert_csv import convert_csv_tree


def known_motion(num_frames: int = 481, fps: float = 120.0, seed: int = 0):
    """A 4 s motion at 120 fps that turns past +-180 degrees of yaw and pitches and rolls."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / fps
    root_pos = np.stack([1.2 * t, 0.3 * np.sin(t), 0.75 + 0.05 * np.sin(4 * t)], axis=1)
    rotvec = np.stack([0.4 * np.sin(2 * t), 0.3 * np.cos(t), 2.0 * t], axis=1)
    root_quat = Rotation.from_rotvec(rotvec).as_quat(scalar_first=True)
    dof = rng.uniform(-1.0, 1.0, 29)[None] + 0.5 * np.sin(t[:, None] * rng.uniform(0.5, 4.0, 29)[None])
    return root_pos, root_quat, dof


def same_rotation(a, b) -> float:
    return float(np.max(1.0 - np.abs(np.sum(a * b, axis=-1))))


def test_csv_round_trip_is_exact(tmp_path):
    root_pos, root_quat, dof = known_motion()
    path = write_bones_csv(tmp_path / "clip.csv", root_pos, root_quat, dof)
    header = path.read_text().splitlines()[0].split(",")
    assert tuple(header) == BONES_COLUMNS and header[7] == "left_hip_pitch_joint_dof"
    clip = read_bones_csv(path)
    assert clip.fps == 120.0 and clip.num_frames == 481 and clip.name == "clip"
    assert np.abs(clip.root_pos - root_pos).max() < 1e-6
    assert same_rotation(clip.root_quat, root_quat) < 1e-6
    assert np.abs(clip.dof_pos - dof).max() < 1e-6


def test_converter_recovers_root_and_joints_at_requested_fps(tmp_path):
    root_pos, root_quat, dof = known_motion()
    write_bones_csv(tmp_path / "csv" / "walks" / "clip_001.csv", root_pos, root_quat, dof)
    other = known_motion(num_frames=241, seed=1)
    write_bones_csv(tmp_path / "csv" / "clip_002.csv", *other)

    report = convert_csv_tree(tmp_path / "csv", tmp_path / "lib30", fps=30, fps_source=120, show_progress=False)
    assert report.exit_code == 0 and sorted(report.converted) == ["clip_002", "walks/clip_001"]
    lib = MotionLibrary.open(tmp_path / "lib30")
    clip = lib["walks/clip_001"]
    assert clip.fps == 30.0 and clip.num_frames == 121  # 4 s at 30 fps
    assert np.abs(clip.root_pos - root_pos[::4]).max() < 1e-6
    assert same_rotation(clip.root_quat, root_quat[::4]) < 1e-6
    assert np.abs(clip.dof_pos - dof[::4]).max() < 1e-6
    assert lib["clip_002"].num_frames == 61

    # 50 fps does not divide 120: every 5th output frame (0.1 s) lands on every 12th input frame.
    convert_csv_tree(tmp_path / "csv", tmp_path / "lib50", fps=50, fps_source=120, show_progress=False)
    clip = MotionLibrary.open(tmp_path / "lib50")["walks/clip_001"]
    assert clip.fps == 50.0 and clip.num_frames == 201
    assert np.abs(clip.root_pos[::5] - root_pos[::12]).max() < 1e-6
    assert same_rotation(clip.root_quat[::5], root_quat[::12]) < 1e-6
    assert np.abs(clip.dof_pos[::5] - dof[::12]).max() < 1e-6

    report = convert_csv_tree(tmp_path / "csv", tmp_path / "per_clip", fps=30, individual=True, show_progress=False)
    assert report.exit_code == 0
    single = load_clip_npz(tmp_path / "per_clip" / "walks" / "clip_001.npz")
    assert single.name == "walks/clip_001" and np.abs(single.dof_pos - dof[::4]).max() < 1e-6


def good_csv_lines(tmp_path, frames: int = 4) -> list[str]:
    path = write_bones_csv(tmp_path / "good.csv", *[a[:frames] for a in known_motion()])
    return path.read_text().splitlines()


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_csv_errors_name_file_and_line(tmp_path):
    lines = good_csv_lines(tmp_path)
    header = lines[0].split(",")
    cases = {}
    cases["missing"] = ([",".join(header[:-1])] + [",".join(l.split(",")[:-1]) for l in lines[1:]],
                        r"missing\.csv: line 1: missing columns right_wrist_yaw_joint_dof")
    cases["extra"] = ([lines[0] + ",speed"] + [l + ",1" for l in lines[1:]], r"extra\.csv: line 1: unexpected columns speed")
    renamed = lines[0].replace("left_knee_joint_dof", "left_knee_jiont_dof")
    cases["unknown"] = ([renamed] + lines[1:], r"unknown\.csv: line 1: unknown joint names left_knee_jiont")
    row = lines[3].split(",")
    row[9] = "nan"
    cases["nan"] = (lines[:3] + [",".join(row)] + lines[4:], r"nan\.csv: line 4, column left_hip_yaw_joint_dof: value is nan")
    row[9] = "12..5"
    cases["text"] = (lines[:3] + [",".join(row)] + lines[4:], r"text\.csv: line 4, column left_hip_yaw_joint_dof: '12\.\.5' is not a number")
    cases["short_row"] = (lines[:2] + [",".join(lines[2].split(",")[:-3])] + lines[3:], r"short_row\.csv: line 3: expected 36 values, found 33")
    cases["one_frame"] = (lines[:2], r"one_frame\.csv: 1 frame\(s\); a clip needs at least 2")
    cases["empty"] = ([""], r"empty\.csv: empty file")
    for name, (content, message) in cases.items():
        path = write_lines(tmp_path / f"{name}.csv", content)
        with pytest.raises(MotionFormatError, match=message):
            read_bones_csv(path)


def test_batch_skips_bad_files_and_fails_when_nothing_converts(tmp_path):
    lines = good_csv_lines(tmp_path, frames=20)
    (tmp_path / "csv").mkdir()
    write_lines(tmp_path / "csv" / "ok.csv", lines)
    write_lines(tmp_path / "csv" / "broken.csv", lines[:5] + ["1,2,3"] + lines[6:])
    report = convert_csv_tree(tmp_path / "csv", tmp_path / "lib", fps=30, show_progress=False)
    assert report.converted == ["ok"]
    assert report.skipped == [("broken", f"{tmp_path / 'csv' / 'broken.csv'}: line 6: expected 36 values, found 3")]
    assert report.exit_code == 0
    summary = report.summary_text()
    assert "converted: 1 of 2" in summary and "skipped broken" in summary

    (tmp_path / "csv" / "ok.csv").unlink()
    report = convert_csv_tree(tmp_path / "csv", tmp_path / "nothing", fps=30, show_progress=False)
    assert report.exit_code == 1 and "nothing converted" in report.summary_text()
    assert not (tmp_path / "nothing").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csv", "good.csv", "lib"]  # no temporary leftovers
    with pytest.raises(FileExistsError):
        convert_csv_tree(tmp_path / "csv", tmp_path / "lib", fps=30, show_progress=False)


def test_converter_attaches_side_files_by_clip_name(tmp_path):
    from gear_sonic.data import write_smpl_npz
    from gear_sonic.data.side_files import y_up_to_z_up

    write_bones_csv(tmp_path / "csv" / "walks" / "clip_001.csv", *known_motion(num_frames=121))
    write_bones_csv(tmp_path / "csv" / "walks" / "clip_002.csv", *known_motion(num_frames=121, seed=4))
    joints = np.random.default_rng(2).normal(size=(31, 24, 3)).astype(np.float32)  # 1 s at 30 fps, y-up
    write_smpl_npz(tmp_path / "smpl" / "walks" / "clip_001.npz", joints, fps=30.0)
    report = convert_csv_tree(tmp_path / "csv", tmp_path / "lib", fps=30, smpl_dir=tmp_path / "smpl", show_progress=False)
    assert report.exit_code == 0
    lib = MotionLibrary.open(tmp_path / "lib")
    assert lib.has_smpl and list(lib.smpl_available) == [True, False]
    assert np.allclose(lib["walks/clip_001"].smpl_joints, y_up_to_z_up(joints), atol=1e-6)
    assert lib["walks/clip_002"].smpl_joints is None
