"""The MuJoCo CPU backend behind the simulator protocol: state reading, resets, instability
handling, per-env physical parameters and thread-count independence."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from gear_sonic.robots import g1
from gear_sonic.sim import SimState, Simulator, make_simulator
from gear_sonic.sim.mujoco_backend import MujocoSimulator
from gear_sonic.utils.rotations import quat_apply, quat_from_axis_angle

HOLD = torch.tensor(g1.DEFAULT_JOINT_POS_RAD, dtype=torch.float32)


def _standing(sim: MujocoSimulator, steps: int) -> None:
    sim.set_joint_targets(HOLD.expand(sim.num_envs, 29))
    for _ in range(steps):
        sim.step()


def test_protocol_and_factory():
    sim = make_simulator("mujoco", 2, points=(("head", "torso_link", (0.0, 0.0, 0.5)),), num_threads=1)
    assert isinstance(sim, Simulator)
    assert isinstance(sim.state, SimState)
    assert sim.state.body_pos.shape == (2, 14, 3)
    assert sim.state.contact_force.shape == (2, len(sim.contact_body_names), 3)
    with pytest.raises(ValueError, match="unknown simulator backend"):
        make_simulator("isaacgym", 2)
    sim.close()


def test_state_matches_mujoco_and_contacts_carry_the_weight():
    sim = MujocoSimulator(2, points=(("head", "torso_link", (0.0, 0.0, 0.5)),), num_threads=1)
    _standing(sim, 25)  # 0.5 s of standing on the default pose
    state = sim.state
    model, data = sim.mj_model, sim._datas[0]
    velocity = np.zeros(6)
    for k, name in enumerate(sim.body_names):
        body = model.body(name).id
        mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_XBODY, body, velocity, 0)
        np.testing.assert_allclose(state.body_lin_vel[0, k].numpy(), velocity[3:], atol=1e-4)
        np.testing.assert_allclose(state.body_ang_vel[0, k].numpy(), velocity[:3], atol=1e-4)
        np.testing.assert_allclose(state.body_pos[0, k].numpy(), data.xpos[body], atol=1e-5)
    np.testing.assert_allclose(state.root_ang_vel[0].numpy(), state.body_ang_vel[0, 0].numpy(), atol=1e-6)
    torso = sim.body_names.index("torso_link")
    head = state.body_pos[0, torso] + quat_apply(state.body_quat[0, torso], torch.tensor([0.0, 0.0, 0.5]))
    np.testing.assert_allclose(state.point_pos[0, 0].numpy(), head.numpy(), atol=1e-5)
    # Standing still: the ground pushes up on the feet with the robot's weight.
    weight_n = float(model.body_subtreemass[1]) * 9.81
    feet = [sim.contact_body_names.index(n) for n in g1.FEET_BODY_NAMES]
    vertical = state.contact_force[0, feet, 2].sum()
    assert abs(float(state.root_pos[0, 2]) - g1.DEFAULT_ROOT_HEIGHT_M) < 0.05
    assert vertical == pytest.approx(weight_n, rel=0.15)
    others = [i for i in range(len(sim.contact_body_names)) if i not in feet]
    assert float(state.contact_force[0, others].norm(dim=-1).max()) < 1.0
    sim.close()


def test_reset_envs_writes_the_state_exactly():
    sim = MujocoSimulator(3, num_threads=2)
    ids = torch.tensor([0, 2])
    quat = quat_from_axis_angle(torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), torch.tensor([0.7, 0.2]))
    pos = torch.tensor([[1.0, 2.0, 0.9], [-1.0, 0.5, 0.8]])
    lin, ang = torch.tensor([[0.1, 0.2, 0.3], [0.0, -0.2, 0.1]]), torch.tensor([[0.3, -0.1, 0.5], [0.0, 0.4, 0.0]])
    joints = HOLD.expand(2, 29) + 0.05
    joint_vel = torch.full((2, 29), 0.2)
    sim.reset_envs(ids, pos, quat, lin, ang, joints, joint_vel)
    s = sim.state
    torch.testing.assert_close(s.root_pos[ids], pos)
    torch.testing.assert_close(s.root_quat[ids], quat)
    torch.testing.assert_close(s.root_lin_vel[ids], lin)
    torch.testing.assert_close(s.root_ang_vel[ids], ang, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(s.joint_pos[ids], joints)
    torch.testing.assert_close(s.joint_vel[ids], joint_vel)
    assert float(s.root_pos[1, 2]) == pytest.approx(g1.DEFAULT_ROOT_HEIGHT_M)  # untouched env
    sim.close()


def _trajectory(sim: MujocoSimulator, steps: int, poison: int | None = None) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    out = []
    for k in range(steps):
        if poison is not None and k == 2:
            s = sim.state
            ids = torch.tensor([poison])
            bad = s.joint_vel[ids].clone()
            bad[0, 3] = float("nan")
            sim.reset_envs(ids, s.root_pos[ids].clone(), s.root_quat[ids].clone(), s.root_lin_vel[ids].clone(),
                           s.root_ang_vel[ids].clone(), s.joint_pos[ids].clone(), bad)
        targets = HOLD + 0.2 * torch.randn(sim.num_envs, 29, generator=generator)
        sim.set_joint_targets(targets)
        unstable = sim.step()
        out.append((sim.state.joint_pos.clone(), unstable.clone()))
    return out


def test_nan_in_one_env_resets_only_that_env_and_is_counted():
    clean = MujocoSimulator(4, num_threads=2)
    poisoned = MujocoSimulator(4, num_threads=2)
    reference = _trajectory(clean, 6)
    result = _trajectory(poisoned, 6, poison=1)
    flagged = torch.stack([u for _, u in result])
    assert flagged[2].tolist() == [False, True, False, False]
    assert int(flagged.sum()) == 1
    assert poisoned.unstable_reset_count.tolist() == [0, 1, 0, 0]
    for (ref_pos, _), (pos, _) in zip(reference, result):
        assert torch.isfinite(pos).all()
        others = [0, 2, 3]
        assert torch.equal(ref_pos[others], pos[others])  # the other envs never noticed
    # The reset env restarts from the default standing pose.
    assert float(poisoned.state.root_pos[1, 2]) > 0.5
    clean.close()
    poisoned.close()


def test_exploding_velocity_is_caught():
    sim = MujocoSimulator(2, num_threads=1)
    s = sim.state
    ids = torch.tensor([0])
    sim.reset_envs(ids, s.root_pos[ids].clone(), s.root_quat[ids].clone(), torch.tensor([[0.0, 0.0, 5.0e3]]),
                   torch.zeros(1, 3), s.joint_pos[ids].clone(), torch.zeros(1, 29))
    unstable = sim.step()
    assert unstable.tolist() == [True, False]
    assert sim.unstable_reset_count.tolist() == [1, 0]
    sim.close()


def test_thread_count_does_not_change_results():
    one = MujocoSimulator(5, num_threads=1)
    two = MujocoSimulator(5, num_threads=2)
    for a, b in zip(_trajectory(one, 5), _trajectory(two, 5)):
        assert torch.equal(a[0], b[0])
    one.close()
    two.close()


def test_heavier_torso_changes_joint_torques_at_rest():
    sim = MujocoSimulator(3, num_threads=2)
    ids = torch.arange(3)
    sim.set_body_mass_scale(ids, ("torso_link",), torch.tensor([[1.0], [2.5], [1.0]]))
    sim.set_com_offset(ids, ("torso_link",), torch.tensor([[[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]], [[0.025, 0.0, 0.0]]]))
    _standing(sim, 15)
    torque = sim.state.joint_torque
    knees = [g1.JOINT_NAMES_MUJOCO.index(n) for n in ("left_knee_joint", "right_knee_joint")]
    waist_pitch = g1.JOINT_NAMES_MUJOCO.index("waist_pitch_joint")
    # More weight above the knees needs more knee torque to hold the pose.
    assert float(torque[1, knees].abs().sum()) > 1.3 * float(torque[0, knees].abs().sum())
    # A centre of mass moved forward needs a different waist torque.
    assert abs(float(torque[2, waist_pitch] - torque[0, waist_pitch])) > 0.5
    sim.close()


def test_friction_reaches_the_contacts():
    sim = MujocoSimulator(2, num_threads=1)
    sim.set_friction(torch.arange(2), torch.tensor([0.05, 1.5]))
    ids = torch.arange(2)
    s = sim.state
    left_foot = sim.body_names.index("left_ankle_roll_link")
    foot_start = s.body_pos[:, left_foot].clone()
    # Shove both standing robots sideways: on a slippery floor the feet slide much further.
    sim.reset_envs(ids, s.root_pos.clone(), s.root_quat.clone(), torch.tensor([[0.0, 0.5, 0.0]] * 2),
                   torch.zeros(2, 3), s.joint_pos.clone(), torch.zeros(2, 29))
    _standing(sim, 10)
    slide = (sim.state.body_pos[:, left_foot, 1] - foot_start[:, 1]).abs()
    assert float(slide[0]) > 2.0 * float(slide[1]) + 0.02
    sim.close()
