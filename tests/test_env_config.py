"""The Hydra config tree and its typed form: SONIC-style overrides reach the environment."""

from __future__ import annotations

import pytest
import torch

from gear_sonic.envs import EnvConfigError, env_config_from_dict, make_env_config, sample_encoder_routing
from gear_sonic.envs.config import compose_config

RELEASE = "+exp=manager/universal_token/all_modes/sonic_release"


def test_sonic_training_command_overrides():
    cfg = make_env_config([
        RELEASE, "num_envs=16", "headless=True",
        "++manager_env.commands.motion.motion_lib_cfg.motion_file=sample_data/robot_filtered",
        "++manager_env.commands.motion.motion_lib_cfg.smpl_motion_file=sample_data/smpl_filtered",
        "++algo.config.num_learning_iterations=3",
    ])
    assert cfg.num_envs == 16
    assert cfg.encoders == ("g1", "teleop", "smpl")
    lib = cfg.commands.motion.motion_lib_cfg
    assert lib.motion_file == "sample_data/robot_filtered" and lib.smpl_motion_file == "sample_data/smpl_filtered"
    assert cfg.terminations.anchor_height_m == 0.15 and cfg.terminations.foot_pos_m == 0.2
    assert cfg.rewards["tracking_vr_5point_local"].weight == 2.0
    assert cfg.rewards["tracking_anchor_ori"].sigma == 0.4
    assert cfg.events.friction_static == (0.3, 1.6)
    assert cfg.observations.noise_joint_vel_rad_s == 0.5
    # Keys owned by other layers stay in the composed tree.
    assert compose_config([RELEASE, "++algo.config.num_learning_iterations=3"]).algo.config.num_learning_iterations == 3


def test_release_sizes_and_cpu_config():
    assert make_env_config([RELEASE]).num_envs == 4096
    cpu = make_env_config(["+exp=manager/universal_token/all_modes/sonic_cpu"])
    assert cpu.num_envs < 4096 and cpu.episode_length_s < 10 and cpu.commands.motion.motion_lib_cfg.max_unique_motions
    soma = make_env_config(["+exp=manager/universal_token/all_modes/sonic_bones_seed"])
    assert soma.encoders == ("g1", "teleop", "smpl", "soma")


def test_eval_terminations_and_motion_cap():
    cfg = make_env_config([
        RELEASE, "+manager_env/terminations=tracking/eval", "++num_envs=128",
        "++manager_env.commands.motion.motion_lib_cfg.max_unique_motions=512",
    ])
    t = cfg.terminations
    assert (t.anchor_height_m, t.end_effector_height_m, t.anchor_ori_sq_rad) == (0.25, 0.25, 1.0)
    assert t.foot_pos_m is None and t.low_pelvis_height_m is None
    assert cfg.num_envs == 128 and cfg.commands.motion.motion_lib_cfg.max_unique_motions == 512
    train = make_env_config(["+manager_env/terminations=tracking/train"])
    assert train.terminations == make_env_config([]).terminations


def test_sonic_evaluation_commands_compose():
    metrics = make_env_config([
        "+headless=True", "++eval_callbacks=im_eval", "++run_eval_loop=False", "++num_envs=128",
        "+manager_env/terminations=tracking/eval",
        "++manager_env.commands.motion.motion_lib_cfg.max_unique_motions=512", "+checkpoint=run/last.pt",
    ], config_name="eval")
    assert metrics.num_envs == 128 and metrics.terminations.anchor_ori_sq_rad == 1.0
    render = compose_config([
        "+headless=True", "++num_envs=8", "++manager_env.config.render_results=True",
        "++manager_env.config.save_rendering_dir=/tmp/renders", "++manager_env.config.env_spacing=10.0",
        "~manager_env/recorders=empty", "+manager_env/recorders=render",
    ], config_name="eval")
    assert render.manager_env.recorders.render and render.manager_env.config.save_rendering_dir == "/tmp/renders"
    assert make_env_config(["++replay=True", "num_envs=4"]).replay


def test_reward_terms_can_be_removed_and_bad_keys_are_named():
    cfg = make_env_config(["++manager_env.rewards.ankle_joint_acc_l2=null"])
    assert "ankle_joint_acc_l2" not in cfg.rewards
    with pytest.raises(EnvConfigError, match="manager_env.rewards.not_a_term"):
        make_env_config(["++manager_env.rewards.not_a_term.weight=1.0"])
    with pytest.raises(EnvConfigError, match=r"config.terminations: unknown key\(s\) \['anchor_heigth_m'\]"):
        make_env_config(["++manager_env.terminations.anchor_heigth_m=0.3"])
    with pytest.raises(EnvConfigError, match="expected a mapping"):
        env_config_from_dict({"manager_env": {"events": 3}})


def test_routing_rule():
    generator = torch.Generator().manual_seed(0)
    names = ("g1", "teleop", "smpl")
    index, active = sample_encoder_routing(names, 30000, generator)
    counts = torch.bincount(index, minlength=3).float() / 30000
    assert torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.02)
    assert active[torch.arange(30000), index].all()
    smpl = index == 2
    assert active[smpl, 0].all()  # g1 runs beside smpl
    teleop_share = active[smpl, 1].float().mean()
    assert abs(float(teleop_share) - 0.5) < 0.03
    assert active[~smpl].sum(1).eq(1).all()  # g1 or teleop episodes run one encoder
    index4, active4 = sample_encoder_routing(("g1", "teleop", "smpl", "soma"), 1000, generator)
    assert active4[index4 == 3, 0].all()
