"""The bundled sample data: plausible G1 clips with SMPL and SOMA joints, built by the real pipeline."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gear_sonic.data import MotionLibrary
from gear_sonic.data.bvh import parse_bvh, write_bvh
from gear_sonic.data.soma import SOMA_ENCODER_JOINT_NAMES, extract_soma_joints
from gear_sonic.data.synthesis import (
    SAMPLE_CLIP_NAMES,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    InfeasibleMotionError,
    ground_contact_report,
    joint_limits_rad,
    make_plan,
    retarget_to_human,
    smpl_npz_arrays,
    smpl_skeleton,
    soma_bvh_motion,
    soma_human_skeleton,
    solve_plan,
    support_margin_m,
    synthesize_clip,
)
from gear_sonic.robots import build_g1_model

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
SOMA = {name: i for i, name in enumerate(SOMA_ENCODER_JOINT_NAMES)}
SMPL = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


@pytest.fixture(scope="module")
def library() -> MotionLibrary:
    return MotionLibrary.open(
        SAMPLE / "robot_filtered", smpl_path=SAMPLE / "smpl_filtered", soma_path=SAMPLE / "soma_filtered"
    )


@pytest.fixture(scope="module")
def model():
    return build_g1_model(add_actuators=False)


@pytest.fixture(scope="module")
def clips(library):
    return [library[i] for i in range(len(library))]


def test_library_holds_the_catalogue_with_smpl_and_soma(library, clips):
    assert 10 <= len(library) <= 20
    assert sorted(library.names) == sorted(SAMPLE_CLIP_NAMES)
    assert library.has_smpl and library.has_soma
    assert np.all(library.fps == 30.0)
    assert np.all((library.durations_s >= 5.0) & (library.durations_s <= 15.0)), library.durations_s
    for clip in clips:
        assert clip.smpl_joints.shape == (clip.num_frames, 24, 3)
        assert clip.soma_joints.shape == (clip.num_frames, 26, 3)
        assert clip.soma_root_quat.shape == (clip.num_frames, 4)
    manifest = json.loads((SAMPLE / "manifest.json").read_text())
    assert [c["name"] for c in manifest["clips"]] == list(SAMPLE_CLIP_NAMES)
    for record in manifest["clips"]:
        assert record["frames_30fps"] == library.num_frames[library.names.index(record["name"])]


def test_joint_limits_hold_in_every_frame(clips, model):
    limits = joint_limits_rad(model)
    for clip in clips:
        assert np.all(clip.dof_pos >= limits[:, 0] - 1e-5), clip.name
        assert np.all(clip.dof_pos <= limits[:, 1] + 1e-5), clip.name


def test_stance_feet_stay_on_the_floor_without_sliding(clips, model):
    # Measured on the committed data: 0.000 mm penetration and 0.000 mm stance slide.
    for clip in clips:
        report = ground_contact_report(clip.root_pos, clip.root_quat, clip.dof_pos, clip.fps, model=model)
        assert report.max_penetration_m <= 0.001, (clip.name, report.max_penetration_m)
        assert report.max_contact_slide_m <= 0.002, (clip.name, report.max_contact_slide_m)
        assert report.frames_without_support == 0, clip.name
        # Feet rest on the floor: the lower foot touches in every frame (not hovering).
        assert np.all(report.foot_lowest_m.min(0) <= 0.002), clip.name


def test_contact_check_catches_sinking_and_sliding(clips, model):
    clip = next(c for c in clips if c.name == "idle_stand_sway")
    sunk = clip.root_pos.copy()
    sunk[:, 2] -= 0.02
    report = ground_contact_report(sunk, clip.root_quat, clip.dof_pos, clip.fps, model=model)
    assert report.max_penetration_m == pytest.approx(0.02, abs=1e-4)
    slid = clip.root_pos.copy()
    slid[:, 0] += np.linspace(0.0, 0.1, clip.num_frames)
    report = ground_contact_report(slid, clip.root_quat, clip.dof_pos, clip.fps, model=model)
    assert report.max_contact_slide_m > 0.09


def test_centre_of_mass_stays_over_the_support_polygon(clips):
    for clip in clips:
        margin = support_margin_m(clip.root_pos, clip.root_quat, clip.dof_pos)
        assert margin.min() >= 0.01, (clip.name, margin.min())


def test_stepping_clips_lift_their_feet(clips, model):
    for name in ("step_in_place", "walk_forward_slow", "turn_in_place"):
        clip = next(c for c in clips if c.name == name)
        report = ground_contact_report(clip.root_pos, clip.root_quat, clip.dof_pos, clip.fps, model=model)
        assert report.foot_lowest_m.max(1).min() > 0.03, name  # each foot swings clear of the floor
    walk = next(c for c in clips if c.name == "walk_forward_slow")
    assert walk.root_pos[-1, 0] - walk.root_pos[0, 0] > 1.0


def test_smpl_and_soma_joints_have_human_heights_and_constant_bones(clips):
    for clip in clips:
        smpl, soma = clip.smpl_joints, clip.soma_joints
        assert 1.40 < smpl[0, SMPL["head"], 2] < 1.75, clip.name
        assert 0.80 < smpl[0, SMPL["pelvis"], 2] < 1.05, clip.name
        assert smpl[:, [SMPL["left_ankle"], SMPL["right_ankle"]], 2].min() == pytest.approx(0.085, abs=1e-3)
        assert 1.45 < soma[0, SOMA["Head"], 2] < 1.80, clip.name
        assert 0.85 < soma[0, SOMA["Hips"], 2] < 1.10, clip.name
        assert soma[:, [SOMA["LeftFoot"], SOMA["RightFoot"]], 2].min() > 0.0
        bones = np.linalg.norm(smpl[:, 1:] - smpl[:, SMPL_PARENTS[1:]], axis=-1)
        assert np.ptp(bones, axis=0).max() < 1e-4, clip.name  # rigid human bones
        upper_arm = np.linalg.norm(soma[:, SOMA["LeftForeArm"]] - soma[:, SOMA["LeftArm"]], axis=-1)
        assert np.ptp(upper_arm) < 1e-4 and 0.25 < upper_arm[0] < 0.33
    # Human wrists follow the robot's: the waving hand is raised above the head.
    wave = next(c for c in clips if c.name == "wave_right_hand")
    middle = wave.num_frames // 2
    assert wave.soma_joints[middle, SOMA["RightHand"], 2] > wave.soma_joints[middle, SOMA["Head"], 2] - 0.2
    assert wave.smpl_joints[middle, SMPL["right_wrist"], 2] > wave.smpl_joints[0, SMPL["right_wrist"], 2] + 0.4


def test_soma_bvh_and_smpl_pose_reproduce_the_retargeted_joints(tmp_path):
    clip = synthesize_clip("reach_forward")
    frames = slice(None, None, 8)
    args = (clip.root_pos[frames], clip.root_quat[frames], clip.dof_pos[frames], clip.stance[:, frames], 15.0)
    soma = retarget_to_human(soma_human_skeleton(), *args)
    path = write_bvh(tmp_path / "reach.bvh", soma_bvh_motion(soma), precision=6)
    extracted = extract_soma_joints(parse_bvh(path))
    np.testing.assert_allclose(extracted.soma_joints, soma.positions(SOMA_ENCODER_JOINT_NAMES), atol=1e-4)
    np.testing.assert_allclose(np.abs(extracted.root_quat[0]), [1.0, 0.0, 0.0, 0.0], atol=0.05)  # faces +x like the G1

    from scipy.spatial.transform import Rotation

    smpl = smpl_npz_arrays(retarget_to_human(smpl_skeleton(), *args))
    rest = smpl_skeleton().rest_pos_m @ np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # z-up -> y-up rows
    pose = smpl["pose_aa"].astype(np.float64)
    world = [Rotation.from_rotvec(pose[:, 0])]
    joints = np.zeros_like(smpl["smpl_joints"], dtype=np.float64)
    joints[:, 0] = smpl["transl"]
    canonical = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # undo the 90 deg turn to face +x
    for j in range(1, 24):
        p = SMPL_PARENTS[j]
        world.append(world[p] * Rotation.from_rotvec(pose[:, j]))
        offset = canonical @ (rest[j] - rest[p])
        joints[:, j] = joints[:, p] + world[p].apply(offset)
    np.testing.assert_allclose(joints, smpl["smpl_joints"], atol=1e-4)


def test_synthesis_is_deterministic_and_seeded():
    a, b = make_plan("idle_stand_sway", seed=1), make_plan("idle_stand_sway", seed=1)
    c = make_plan("idle_stand_sway", seed=2)
    np.testing.assert_array_equal(a.com_xy_m, b.com_xy_m)
    assert not np.allclose(a.com_xy_m, c.com_xy_m)
    with pytest.raises(KeyError, match="unknown sample clip"):
        make_plan("backflip")


def test_infeasible_plans_are_refused():
    plan = make_plan("weight_shift_sagittal")
    plan.foot_pos_m[0, :, 0] += 0.8  # left foot far in front: out of reach
    with pytest.raises(InfeasibleMotionError, match="weight_shift_sagittal"):
        solve_plan(plan)
    plan = make_plan("weight_shift_sagittal")
    plan.upper_dof_rad[:, 0] = 3.0  # waist yaw beyond its 2.618 rad range
    with pytest.raises(InfeasibleMotionError, match="waist_yaw_joint"):
        solve_plan(plan)


def test_regenerating_a_clip_through_the_real_pipeline_matches_the_committed_data(tmp_path, library):
    out = tmp_path / "sample"
    result = subprocess.run(
        [sys.executable, str(REPO / "data_process" / "make_sample_data.py"), "--output", str(out),
         "--clips", "wave_right_hand", "--num_workers", "1", "--raw_dir", str(tmp_path / "raw")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "raw" / "csv" / "wave_right_hand.csv").is_file()
    assert (tmp_path / "raw" / "bvh" / "wave_right_hand.bvh").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    fresh = MotionLibrary.open(out / "robot_filtered", smpl_path=out / "smpl_filtered", soma_path=out / "soma_filtered")
    assert fresh.names == ["wave_right_hand"]
    new, old = fresh["wave_right_hand"], library["wave_right_hand"]
    assert new.num_frames == old.num_frames
    for field in ("root_pos", "root_quat", "dof_pos", "smpl_joints", "soma_joints", "soma_root_quat"):
        np.testing.assert_allclose(getattr(new, field), getattr(old, field), atol=1e-4, err_msg=field)


def test_no_self_collision(clips, model):
    import mujoco

    from gear_sonic.robots.mjcf import joint_qpos_indices

    data = mujoco.MjData(model)
    qpos_index = joint_qpos_indices(model)
    for clip in clips:
        for t in range(0, clip.num_frames, 3):
            data.qpos[:3], data.qpos[3:7], data.qpos[qpos_index] = clip.root_pos[t], clip.root_quat[t], clip.dof_pos[t]
            mujoco.mj_forward(model, data)
            for contact in data.contact[: data.ncon]:
                bodies = {model.body(model.geom_bodyid[g]).name for g in (contact.geom1, contact.geom2)}
                if "world" in bodies:
                    continue
                assert contact.dist > -0.005, (clip.name, t, bodies, contact.dist)
