"""The tracking environment on real MuJoCo physics and real motion libraries written to disk."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from env_clips import make_clip, write_test_library  # noqa: E402

from gear_sonic.data import MotionClip, write_motion_library  # noqa: E402
from gear_sonic.envs import EnvSetupError, TrackingEnv, make_env_config  # noqa: E402
from gear_sonic.envs.tracking_env import TRACKING_TERMS  # noqa: E402
from gear_sonic.layout import CRITIC, PROPRIOCEPTION, TOKENIZER_GROUPS  # noqa: E402
from gear_sonic.robots import g1  # noqa: E402
from gear_sonic.utils.rotations import quat_from_axis_angle, quat_mul  # noqa: E402

DEFAULT = torch.tensor(g1.DEFAULT_JOINT_POS_RAD, dtype=torch.float32)
SCALE = torch.tensor(g1.ACTION_SCALE, dtype=torch.float32)
QUIET = [  # no randomisation, pushes, noise or reset noise: the robot starts exactly on the reference
    "++manager_env.events.randomize=false", "++manager_env.events.push=false", "++manager_env.observations.noise=false",
    "++manager_env.commands.motion.reset_noise.root_xy_m=0", "++manager_env.commands.motion.reset_noise.root_z_m=0",
    "++manager_env.commands.motion.reset_noise.root_roll_pitch_rad=0",
    "++manager_env.commands.motion.reset_noise.root_yaw_rad=0",
    "++manager_env.commands.motion.reset_noise.joint_pos_rad=0",
]


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return write_test_library(tmp_path_factory.mktemp("lib") / "robot", num_clips=3, seconds=3.0)


@pytest.fixture(scope="module")
def stand_library(tmp_path_factory) -> Path:
    return write_motion_library(tmp_path_factory.mktemp("stand") / "robot", [make_clip("stand", 4.0, 0.0)])


def _env(motion_file: Path, *overrides: str, num_envs: int = 4) -> TrackingEnv:
    cfg = make_env_config([
        f"num_envs={num_envs}", "sim.num_threads=2",
        f"++manager_env.commands.motion.motion_lib_cfg.motion_file={motion_file}",
        *overrides,
    ])
    return TrackingEnv(cfg)


def _hold_reference(obs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Actions whose joint targets are the reference's current joint angles."""
    return (obs["g1"][:, :29] - DEFAULT) / SCALE


def test_observation_widths_follow_the_declared_layout(library):
    env = _env(library, num_envs=2)
    obs = env.reset()
    assert list(obs) == ["proprioception", "g1", "teleop", "smpl", "critic"]
    expected = {"proprioception": 930, "g1": 640, "teleop": 267, "smpl": 840, "critic": 1645}
    for name, tensor in obs.items():
        assert tensor.shape == (2, expected[name])
        layout = {"proprioception": PROPRIOCEPTION, "critic": CRITIC, **TOKENIZER_GROUPS}[name]
        assert layout.width == expected[name]
        assert torch.isfinite(tensor).all()
    step_obs, reward, terminated, truncated, info = env.step(torch.zeros(2, 29))
    assert {k: v.shape[1] for k, v in step_obs.items()} == expected
    assert reward.shape == terminated.shape == truncated.shape == (2,)
    assert set(info["reward_terms"]) == set(env.reward_term_names)
    env.close()


def test_observation_terms_hold_the_right_values(stand_library):
    env = _env(stand_library, *QUIET, num_envs=2)
    obs = env.reset()
    # Reference joint angles lead the g1 and critic inputs (10 frames of the standing clip).
    g1_pos = obs["g1"][:, TOKENIZER_GROUPS["g1"].slice("command_joint_pos")].view(2, 10, 29)
    torch.testing.assert_close(g1_pos, DEFAULT.expand(2, 10, 29), atol=1e-5, rtol=0)
    # Robot on the reference: anchor orientation relative to the robot is the identity (1,0,0,1,0,0).
    anchor = obs["g1"][:, TOKENIZER_GROUPS["g1"].slice("command_anchor_ori_rot6d")].view(2, 10, 6)
    torch.testing.assert_close(anchor, torch.tensor([1.0, 0, 0, 1, 0, 0]).expand(2, 10, 6), atol=1e-5, rtol=0)
    # Proprioception: gravity points down in the pelvis frame, joints at the default pose.
    gravity = obs["proprioception"][:, PROPRIOCEPTION.slice("projected_gravity")].view(2, 10, 3)
    torch.testing.assert_close(gravity, torch.tensor([0.0, 0, -1]).expand(2, 10, 3), atol=1e-4, rtol=0)
    joints = obs["proprioception"][:, PROPRIOCEPTION.slice("joint_pos_rel")]
    assert float(joints.abs().max()) < 1e-5
    # The teleop head point sits 0.35 m above the torso origin, in the pelvis frame.
    vr = obs["teleop"][:, TOKENIZER_GROUPS["teleop"].slice("vr_points_pos")].view(2, 3, 3)
    assert 0.3 < float(vr[0, 2, 2]) < 1.0 and float(vr[0, 0, 1]) > 0.05 > -0.05 > float(vr[0, 1, 1])
    # Last actions enter the histories after a step.
    action = torch.full((2, 29), 0.1)
    obs, *_ = env.step(action)
    last = obs["proprioception"][:, PROPRIOCEPTION.slice("last_action")].view(2, 10, 29)
    torch.testing.assert_close(last[:, -1], action)
    assert float(last[:, 0].abs().max()) == 0.0
    env.close()


def test_replay_tracks_perfectly_and_never_terminates(library):
    env = _env(library, "replay=true", num_envs=3)
    env.reset()
    tracking_cols = [env.reward_term_names.index(t) for t in TRACKING_TERMS]
    steps = 0
    while steps < 60:
        _, _, terminated, truncated, info = env.step(torch.zeros(3, 29))
        assert not terminated.any()
        assert (env.last_reward_terms[:, tracking_cols] > 0.97).all(), env.last_reward_terms[:, tracking_cols]
        steps += 1
    assert float(info["metrics"]["body_pos_err"].max()) < 1e-3
    env.close()


def test_perturbing_lowers_each_tracking_reward_and_trips_its_termination(stand_library):
    env = _env(stand_library, *QUIET, num_envs=6)
    obs = env.reset()
    s = env.sim.state
    pos, quat, joints = s.root_pos.clone(), s.root_quat.clone(), s.joint_pos.clone()
    lin, ang = torch.zeros(6, 3), torch.zeros(6, 3)
    pos[1, 2] += 0.3  # env 1: pelvis 0.3 m too high
    tilt = quat_from_axis_angle(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0.7]))
    quat[2] = quat_mul(tilt, quat[2:3])[0]  # env 2: pelvis tilted 0.7 rad
    joints[3, g1.JOINT_NAMES_MUJOCO.index("left_hip_pitch_joint")] -= 1.2  # env 3: left leg swung forward
    joints[4, g1.JOINT_NAMES_MUJOCO.index("left_shoulder_pitch_joint")] -= 2.0  # env 4: left arm raised
    lin[5] = torch.tensor([1.5, 0.0, 0.0])  # env 5: moving fast
    ang[5] = torch.tensor([0.0, 0.0, 3.0])
    env.sim.reset_envs(torch.arange(6), pos, quat, lin, ang, joints, torch.zeros(6, 29))
    _, _, terminated, _, info = env.step(_hold_reference(obs))
    terms = {name: env.last_reward_terms[:, env.reward_term_names.index(name)] for name in TRACKING_TERMS}
    reasons = info["terminations"]

    assert not terminated[0] and float(terms["tracking_anchor_pos"][0]) > 0.95
    assert terms["tracking_anchor_pos"][1] < 0.5 * terms["tracking_anchor_pos"][0]
    assert reasons["anchor_height"].tolist() == [False, True, False, False, False, False]
    assert terms["tracking_anchor_ori"][2] < 0.5 * terms["tracking_anchor_ori"][0]
    assert reasons["anchor_ori"][2] and not reasons["anchor_ori"][0]
    for env_id in (3, 4):  # displaced limbs: body positions, orientations and VR points suffer
        for name in ("tracking_relative_body_pos", "tracking_relative_body_ori"):
            assert terms[name][env_id] < 0.95 * terms[name][0], name
    assert terms["tracking_vr_5point_local"][4] < 0.5 * terms["tracking_vr_5point_local"][0]
    assert reasons["foot_pos"][3] and not reasons["foot_pos"][4]
    assert reasons["end_effector_height"][4] and not reasons["end_effector_height"][0]
    for name in ("tracking_body_linvel", "tracking_body_angvel"):
        assert terms[name][5] < 0.8 * terms[name][0], name
    assert terminated[1:5].all()
    env.close()


def test_same_seed_same_actions_identical_trajectories(library):
    runs = []
    for seed in (7, 7, 8):
        env = _env(library, f"seed={seed}", num_envs=3)
        generator = torch.Generator().manual_seed(0)
        obs = env.reset()
        trace = []
        for _ in range(25):  # zero-ish actions: robots fall, so resets happen on the way
            obs, reward, terminated, truncated, _ = env.step(0.3 * torch.randn(3, 29, generator=generator))
            trace.append(torch.cat([obs["critic"], obs["proprioception"], reward[:, None]], 1))
        runs.append(torch.stack(trace))
        env.close()
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_domain_randomisation_reaches_physics(stand_library):
    env = _env(stand_library, *QUIET[1:], "++manager_env.events.randomize=true", num_envs=4)
    obs = env.reset()
    masses = np.stack([env.sim._body_mass[i] for i in range(4)])
    assert len({round(float(m), 6) for m in masses[:, env.sim.mj_model.body("torso_link").id]}) == 4
    assert env.default_joint_offset.abs().max() <= 0.01 and env.default_joint_offset.abs().max() > 0
    for _ in range(5):
        obs, *_ = env.step(_hold_reference(obs))
    torque = env.sim.state.joint_torque[:, g1.JOINT_NAMES_MUJOCO.index("left_knee_joint")]
    assert float(torque.max() - torque.min()) > 1.0  # different torsos, different knee torques
    env.close()


def test_nan_in_one_env_resets_only_that_env(stand_library):
    env = _env(stand_library, *QUIET, num_envs=3)
    obs = env.reset()
    for _ in range(3):
        obs, *_ = env.step(_hold_reference(obs))
    s = env.sim.state
    ids = torch.tensor([1])
    bad = s.joint_vel[ids].clone()
    bad[0, 0] = float("nan")
    env.sim.reset_envs(ids, s.root_pos[ids].clone(), s.root_quat[ids].clone(), s.root_lin_vel[ids].clone(),
                       s.root_ang_vel[ids].clone(), s.joint_pos[ids].clone(), bad)
    steps_before = env.episode_step.clone()
    obs, reward, terminated, truncated, info = env.step(_hold_reference(obs))
    assert info["terminations"]["sim_unstable"].tolist() == [False, True, False]
    assert terminated.tolist() == [False, True, False]
    assert int(info["unstable_resets"].sum()) == 1
    assert env.episode_step.tolist() == [int(steps_before[0]) + 1, 0, int(steps_before[2]) + 1]
    assert all(torch.isfinite(v).all() for v in obs.values()) and torch.isfinite(reward).all()
    env.close()


def test_eval_mode_plays_every_clip_once_from_frame_zero(library):
    env = _env(library, "+manager_env/terminations=tracking/eval", "++manager_env.config.eval_mode=true", num_envs=2)
    obs = env.reset()
    assert env.frame.tolist() == [0, 0] and env.eval_clip.tolist() == [0, 1]
    for _ in range(400):
        obs, _, terminated, truncated, info = env.step(_hold_reference(obs))
        assert not info["terminations"]["time_out"].any()
        if env.eval_finished:
            break
    assert env.eval_finished
    results = env.eval_results
    assert sorted(results) == [0, 1, 2]
    for clip, result in results.items():
        assert result.name == env.library.names[clip]
        assert result.num_frames == 151  # 3 s at 50 Hz
        assert result.terminated == (result.frames_played < result.num_frames)
    env.close()


def test_adaptive_sampling_state_saves_loads_and_merges(library):
    env = _env(library, num_envs=4)
    env.reset()
    sampler = env.sampler
    # Fail repeatedly in bin 1 of clip 2; visits in other bins without failures.
    clips = torch.tensor([2] * 20 + [0] * 20)
    start = torch.tensor([50] * 20 + [0] * 20)
    end = torch.tensor([60] * 20 + [120] * 20)
    failed = torch.tensor([True] * 20 + [False] * 20)
    sampler.record(clips, start, end, failed)
    state = env.state_dict()
    probs = sampler.bin_probabilities()
    hot = int(sampler.clip_bin_offset[2]) + 1
    assert float(probs[hot]) > 0.9 * 0.9  # the failing bin takes the adaptive share
    resident, starts = sampler.sample(2000, torch.Generator().manual_seed(0))
    hits = ((resident == 2) & (starts >= 50 - 200) & (starts < 100)).float().mean()
    assert float(hits) > 0.8

    # Two processes resume from the same checkpoint, see different episodes, then merge.
    processes = [_env(library, num_envs=4), _env(library, num_envs=4)]
    for process in processes:
        process.load_state_dict(state)
        torch.testing.assert_close(process.sampler.bin_probabilities(), probs)
    first_bin_clip1 = int(sampler.clip_bin_offset[1])
    processes[0].sampler.record(torch.tensor([1]), torch.tensor([0]), torch.tensor([10]), torch.tensor([True]))
    processes[1].sampler.record(torch.tensor([1, 2]), torch.tensor([0, 50]), torch.tensor([10, 55]),
                                torch.tensor([True, True]))
    merged = TrackingEnv.merge_state_dicts([p.state_dict() for p in processes])
    assert float(merged["bin_failures"][hot]) == 21.0
    assert float(merged["bin_failures"][first_bin_clip1]) == 2.0
    assert float(merged["bin_visits"][first_bin_clip1]) == 2.0 + 0.0
    for process in processes:
        process.load_state_dict(merged)
        assert float(process.state_dict()["bin_failures"][first_bin_clip1]) == 2.0
    # A second merge right after counts nothing twice.
    again = TrackingEnv.merge_state_dicts([p.state_dict() for p in processes])
    torch.testing.assert_close(again["bin_failures"], merged["bin_failures"])
    with pytest.raises(ValueError, match="different motion library"):
        broken = dict(state, library_digest=torch.zeros(20, dtype=torch.uint8))
        processes[0].load_state_dict(broken)
    for e in [env, *processes]:
        e.close()


def test_resident_subset_swaps_every_n_iterations(library):
    env = _env(library, "++manager_env.commands.motion.motion_lib_cfg.max_unique_motions=1",
               "++manager_env.commands.motion.motion_lib_cfg.resample_motions_every_iters=2", num_envs=2)
    env.reset()
    assert len(env.cache.clip_ids) == 1
    seen = {int(env.cache.clip_ids[0])}
    assert env.on_iteration_end(1) is None
    for iteration in range(2, 14, 2):
        obs = env.on_iteration_end(iteration)
        assert obs is not None and obs["g1"].shape == (2, 640)
        seen.add(int(env.cache.clip_ids[0]))
    assert len(seen) > 1
    env.close()


def test_encoder_routing_is_resampled_per_episode(library):
    env = _env(library, num_envs=64)
    env.reset()
    index, active = env.encoder_index, env.encoder_active
    assert active[torch.arange(64), index].all()
    smpl = index == env.encoder_names.index("smpl")
    assert active[smpl, env.encoder_names.index("g1")].all()
    assert not active[~smpl].sum(1).gt(1).any()
    assert 0 < int(smpl.sum()) < 64
    env.close()


def test_soma_group_appears_with_soma_data(tmp_path):
    clip = make_clip("soma_clip", 2.0, 0.1)
    frames = clip.num_frames
    rng = np.random.default_rng(0)
    soma = MotionClip(
        name=clip.name, fps=clip.fps, root_pos=clip.root_pos, root_quat=clip.root_quat, dof_pos=clip.dof_pos,
        smpl_joints=clip.smpl_joints, soma_joints=rng.normal(0, 0.3, (frames, 26, 3)).astype(np.float32),
        soma_root_quat=clip.root_quat,
    )
    path = write_motion_library(tmp_path / "robot", [soma])
    env = _env(path, "++manager_env.config.encoders=[g1,teleop,smpl,soma]", num_envs=2)
    obs = env.reset()
    assert list(obs) == ["proprioception", "g1", "teleop", "smpl", "soma", "critic"]
    assert obs["soma"].shape == (2, 900)
    env.close()


def test_missing_smpl_data_is_a_clear_error(tmp_path):
    clip = make_clip("no_smpl", 1.0, 0.0)
    clip.smpl_joints = None
    path = write_motion_library(tmp_path / "robot", [clip])
    with pytest.raises(EnvSetupError, match="smpl_motion_file"):
        _env(path, num_envs=1)
    env = _env(path, "++manager_env.config.encoders=[g1,teleop]", num_envs=1)
    assert "smpl" not in env.reset()
    env.close()


def test_windows_and_histories_line_up_with_the_clip(library):
    env = _env(library, *QUIET, num_envs=3)
    obs = env.reset()
    for k in range(12):  # action 0.01 k at step k: the last-action history must read 0.02 .. 0.11, oldest first
        obs, *_ = env.step(torch.full((3, 29), 0.01 * k))
    alive = ~torch.zeros(3, dtype=torch.bool)
    last = obs["proprioception"][:, PROPRIOCEPTION.slice("last_action")].view(3, 10, 29)[:, :, 0]
    for e in range(3):
        if int(env.episode_step[e]) >= 10:
            torch.testing.assert_close(last[e], 0.01 * torch.arange(2, 12, dtype=torch.float32))
        else:
            alive[e] = False
    assert alive.any()
    critic_actions = obs["critic"][:, CRITIC.slice("last_action")].view(3, 10, 29)[:, :, 0]
    torch.testing.assert_close(critic_actions[alive], last[alive])
    # Command windows: reference joints at t + 0.0 .. 0.9 s, from the library itself.
    clip_ids = env.cache.clip_ids[env.resident_clip]
    times = (env.frame[:, None] + torch.arange(10) * 5).clamp(max=(env._clip_last - env._clip_start)[:, None]) / 50.0
    expected = env.library.sample(clip_ids[:, None].expand(-1, 10), times)
    g1_pos = obs["g1"][:, TOKENIZER_GROUPS["g1"].slice("command_joint_pos")].view(3, 10, 29)
    torch.testing.assert_close(g1_pos, expected.dof_pos, atol=1e-5, rtol=0)
    g1_vel = obs["g1"][:, TOKENIZER_GROUPS["g1"].slice("command_joint_vel")].view(3, 10, 29)
    torch.testing.assert_close(g1_vel, expected.dof_vel, atol=1e-4, rtol=0)
    teleop = obs["teleop"][:, TOKENIZER_GROUPS["teleop"].slice("command_lower_body_joint_pos")].view(3, 10, 12)
    torch.testing.assert_close(teleop, expected.dof_pos[..., :12], atol=1e-5, rtol=0)
    # SMPL window: 10 consecutive frames, joints relative to the pelvis joint.
    times = (env.frame[:, None] + torch.arange(10)).clamp(max=(env._clip_last - env._clip_start)[:, None]) / 50.0
    human = env.library.sample(clip_ids[:, None].expand(-1, 10), times)
    smpl = obs["smpl"][:, TOKENIZER_GROUPS["smpl"].slice("smpl_joints_local")].view(3, 10, 24, 3)
    distances = (human.smpl_joints - human.smpl_joints[:, :, :1]).norm(dim=-1)
    torch.testing.assert_close(smpl.norm(dim=-1), distances, atol=1e-5, rtol=0)
    wrists = obs["smpl"][:, TOKENIZER_GROUPS["smpl"].slice("command_wrist_joint_pos")].view(3, 10, 6)
    wrist_cols = [g1.JOINT_NAMES_MUJOCO.index(n) for n in g1.WRIST_JOINT_NAMES]
    torch.testing.assert_close(wrists, human.dof_pos[..., wrist_cols], atol=1e-5, rtol=0)
    env.close()
