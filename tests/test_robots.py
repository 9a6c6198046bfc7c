"""G1 robot model: joint orders, actuator constants, MuJoCo model and forward kinematics."""

import mujoco
import numpy as np
import pytest
import torch

from gear_sonic.robots import G1Kinematics, build_g1_model, default_qpos, g1
from gear_sonic.robots.mjcf import body_indices, joint_qpos_indices


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return build_g1_model()


def test_joint_orders_are_inverse_permutations():
    x = np.arange(29)
    assert sorted(g1.JOINT_NAMES_ISAACLAB) == sorted(g1.JOINT_NAMES_MUJOCO)
    assert np.array_equal(g1.isaaclab_to_mujoco(g1.mujoco_to_isaaclab(x)), x)
    named = np.array(g1.JOINT_NAMES_MUJOCO)
    assert list(g1.mujoco_to_isaaclab(named)) == list(g1.JOINT_NAMES_ISAACLAB)


def test_mujoco_order_matches_compiled_model(model):
    hinge_names = [model.joint(j).name for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    assert tuple(hinge_names) == g1.JOINT_NAMES_MUJOCO
    assert [model.actuator(i).trntype == 0 for i in range(model.nu)] == [True] * 29
    assert [model.joint(model.actuator_trnid[i, 0]).name for i in range(model.nu)] == list(g1.JOINT_NAMES_MUJOCO)


def test_actuator_constants_follow_sonic():
    w = 2 * np.pi * 10
    idx = {n: i for i, n in enumerate(g1.JOINT_NAMES_MUJOCO)}
    cases = {
        "left_hip_pitch_joint": (0.025101925, 139.0),
        "right_knee_joint": (0.025101925, 139.0),
        "left_hip_yaw_joint": (0.010177520, 88.0),
        "waist_yaw_joint": (0.010177520, 88.0),
        "left_ankle_pitch_joint": (2 * 0.003609725, 50.0),
        "waist_pitch_joint": (2 * 0.003609725, 50.0),
        "right_elbow_joint": (0.003609725, 25.0),
        "left_wrist_roll_joint": (0.003609725, 25.0),
        "right_wrist_yaw_joint": (0.00425, 5.0),
    }
    for name, (armature, effort) in cases.items():
        i = idx[name]
        assert g1.ARMATURE[i] == pytest.approx(armature)
        assert g1.EFFORT_LIMIT_NM[i] == effort
        assert g1.STIFFNESS_NM_PER_RAD[i] == pytest.approx(armature * w**2)
        assert g1.DAMPING_NMS_PER_RAD[i] == pytest.approx(4 * armature * w)
        assert g1.ACTION_SCALE[i] == pytest.approx(0.25 * effort / (armature * w**2))
    assert g1.VELOCITY_LIMIT_RAD_S[idx["left_hip_pitch_joint"]] == 20.0


def test_compiled_model_uses_gains_timestep_and_ground(model):
    assert model.opt.timestep == pytest.approx(0.005)
    assert model.nu == 29
    assert model.geom("ground").type == mujoco.mjtGeom.mjGEOM_PLANE
    np.testing.assert_allclose(model.actuator_gainprm[:, 0], g1.STIFFNESS_NM_PER_RAD)
    np.testing.assert_allclose(model.actuator_biasprm[:, 1], -g1.STIFFNESS_NM_PER_RAD)
    np.testing.assert_allclose(model.actuator_biasprm[:, 2], -g1.DAMPING_NMS_PER_RAD)
    np.testing.assert_allclose(model.actuator_forcerange[:, 1], g1.EFFORT_LIMIT_NM)
    dof = [model.jnt_dofadr[model.joint(n).id] for n in g1.JOINT_NAMES_MUJOCO]
    np.testing.assert_allclose(model.dof_armature[dof], g1.ARMATURE)


def test_position_actuators_drive_joints_to_targets(model):
    """Zero gravity isolates the PD loop: joints released at zero converge to the default pose."""
    model = build_g1_model()
    model.opt.gravity[:] = 0.0
    data = mujoco.MjData(model)
    data.qpos[:] = default_qpos(model)
    data.qpos[joint_qpos_indices(model)] = 0.0
    data.qpos[2] = 2.0  # away from the floor
    data.ctrl[:] = g1.DEFAULT_JOINT_POS_RAD
    for _ in range(200):  # 1 s
        mujoco.mj_step(model, data)
    np.testing.assert_allclose(data.qpos[joint_qpos_indices(model)], g1.DEFAULT_JOINT_POS_RAD, atol=0.02)


def test_default_pose_feet_rest_on_ground(model):
    data = mujoco.MjData(model)
    data.qpos[:] = default_qpos(model)
    mujoco.mj_kinematics(model, data)
    foot_geoms = [i for i in range(model.ngeom) if "foot" in model.geom(i).name]
    lowest = min(data.geom_xpos[i][2] - model.geom_size[i][0] for i in foot_geoms)
    assert -0.01 < lowest < 0.01


def test_fk_default_pose_matches_mujoco(model):
    data = mujoco.MjData(model)
    data.qpos[:] = default_qpos(model)
    mujoco.mj_kinematics(model, data)
    kin = G1Kinematics(model, dtype=torch.float64)
    qpos = torch.tensor(data.qpos)
    body_pos, body_quat = kin.forward(qpos[:3], qpos[3:7], qpos[joint_qpos_indices(model)])
    np.testing.assert_allclose(body_pos.numpy(), data.xpos[1:], atol=1e-10)
    np.testing.assert_allclose(body_quat.numpy(), data.xquat[1:], atol=1e-10)


def test_fk_batched_random_poses_match_mujoco(model):
    rng = np.random.default_rng(0)
    kin = G1Kinematics(model, dtype=torch.float64)
    qidx = joint_qpos_indices(model)
    lo, hi = model.jnt_range[[model.joint(n).id for n in g1.JOINT_NAMES_MUJOCO]].T
    batch = 8
    qpos = np.zeros((batch, model.nq))
    qpos[:, :3] = rng.normal(size=(batch, 3))
    quat = rng.normal(size=(batch, 4))
    qpos[:, 3:7] = quat / np.linalg.norm(quat, axis=1, keepdims=True)
    qpos[:, qidx] = rng.uniform(lo, hi, size=(batch, 29))
    q = torch.tensor(qpos)
    body_pos, body_quat = kin.forward(q[:, :3], q[:, 3:7], q[:, qidx])
    data = mujoco.MjData(model)
    tracked = body_indices(model, g1.TRACKED_BODY_NAMES) - 1
    for b in range(batch):
        data.qpos[:] = qpos[b]
        mujoco.mj_kinematics(model, data)
        np.testing.assert_allclose(body_pos[b].numpy(), data.xpos[1:], atol=1e-10)
        np.testing.assert_allclose(body_pos[b, tracked].numpy(), data.xpos[1:][tracked], atol=1e-10)
        dots = np.abs(np.sum(body_quat[b].numpy() * data.xquat[1:], axis=-1))
        np.testing.assert_allclose(dots, 1.0, atol=1e-10)


def test_tracked_bodies_and_vr_points_exist(model):
    assert len(g1.TRACKED_BODY_NAMES) == 14
    for name in g1.TRACKED_BODY_NAMES + tuple(p.body for p in g1.VR_POINTS_TELEOP):
        assert model.body(name).id > 0
    for region, bodies in g1.REGION_BODY_NAMES.items():
        assert set(bodies) <= set(g1.TRACKED_BODY_NAMES), region


def test_missing_mjlab_gives_clear_error(monkeypatch):
    import importlib.util

    from gear_sonic.robots import mjcf

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(mjcf.RobotAssetError, match="pip install --no-deps"):
        mjcf.g1_mjcf_path()
