"""Learning, not just running: a few PPO iterations of the CPU preset on real MuJoCo rollouts of two
sample clips must make the critic predict returns better and the policy favour better-than-expected
actions. Both checks fail if the optimiser, the losses' signs, GAE or the update plumbing break.
"""

import copy

import torch
from omegaconf import OmegaConf

from gear_sonic.cli.common import trainer_config_from
from gear_sonic.envs import TrackingEnv
from gear_sonic.envs.config import compose_config, env_config_from_dict
from gear_sonic.model import SonicConfig, SonicModel
from gear_sonic.rl.distributed import ProcessGroup
from gear_sonic.rl.storage import RolloutStorage, compute_gae
from gear_sonic.rl.trainer import Trainer

NUM_ENVS = 16
ITERATIONS = 8


def _cpu_preset(overrides: list[str]):
    return compose_config(
        ["+exp=manager/universal_token/all_modes/sonic_cpu", f"num_envs={NUM_ENVS}", "sim.num_threads=1",
         "++manager_env.commands.motion.motion_lib_cfg.max_unique_motions=2", *overrides],
        "base",
    )


def _env(cfg, seed: int) -> TrackingEnv:
    env_dict = OmegaConf.to_container(cfg, resolve=True)
    env_dict["seed"] = seed
    return TrackingEnv(env_config_from_dict(env_dict))


@torch.no_grad()
def _rollout(env: TrackingEnv, policy: SonicModel, steps: int):
    """Observations, rewards and dones of `steps` control steps driven by `policy`'s sampled actions."""
    obs = env.reset()
    observations, rewards, dones = [], [], []
    generator = torch.Generator().manual_seed(123)
    for _ in range(steps):
        out = policy(obs, env.encoder_index, env.encoder_active, generator=generator)
        observations.append(obs)
        obs, reward, terminated, truncated, _ = env.step(out.actions)
        rewards.append(reward.clone())
        dones.append(terminated | truncated)
    return observations, torch.stack(rewards), torch.stack(dones)


@torch.no_grad()
def _critic_error(model: SonicModel, observations, returns: torch.Tensor, steps: int) -> float:
    values = torch.stack([model.evaluate_value(obs) for obs in observations[:steps]])
    return float((values - returns[:steps]).square().mean())


def test_cpu_preset_learns_within_a_few_iterations(tmp_path):
    torch.manual_seed(0)
    cfg = _cpu_preset([f"++algo.config.num_learning_iterations={ITERATIONS}", "++algo.config.last_save_interval=1000"])
    env = _env(cfg, seed=0)
    model = SonicModel(SonicConfig.from_preset("sonic_cpu"))
    untrained = copy.deepcopy(model)
    trainer_cfg = trainer_config_from(cfg, seed=0, use_wandb=False, wandb_project="gear_sonic", wandb_entity=None)
    trainer = Trainer(env, model, trainer_cfg, ProcessGroup(1, 0), tmp_path / "run")
    trainer.train()

    # Fresh episodes of the trained policy on the same clips; Monte Carlo returns (reward-to-go, cut
    # at episode ends) over a window long enough that its first half hardly depends on the cut.
    observations, rewards, dones = _rollout(env, model, steps=48)
    zeros = torch.zeros_like(rewards[0])
    _, returns = compute_gae(rewards, torch.zeros_like(rewards), dones, zeros, gamma=0.99, lam=1.0)
    error_before = _critic_error(untrained, observations, returns, steps=24)
    error_after = _critic_error(model, observations, returns, steps=24)

    # Policy improvement on fresh data: one more PPO update raises the likelihood of
    # better-than-expected actions relative to worse-than-expected ones.
    policy_gap = _advantage_likelihood_shift(trainer)
    env.close()
    assert error_after < 0.5 * error_before, (error_before, error_after)
    assert policy_gap > 0.0, policy_gap


def _advantage_likelihood_shift(trainer: Trainer) -> float:
    """Collect one rollout, run one PPO update on it; return the mean log-prob change of the
    positive-advantage samples minus that of the negative-advantage ones (> 0: the right way)."""
    env, model, ppo_cfg = trainer.env, trainer.model, trainer.cfg.ppo
    obs = env.reset()
    widths = {k: v.shape[-1] for k, v in obs.items()}
    storage = RolloutStorage(ppo_cfg.num_steps_per_env, env.num_envs, widths, env.encoder_active.shape[-1], env.num_actions)
    with torch.no_grad():
        for _ in range(ppo_cfg.num_steps_per_env):
            out = model(obs, env.encoder_index, env.encoder_active)
            index, active = env.encoder_index.clone(), env.encoder_active.clone()
            next_obs, reward, terminated, truncated, _ = env.step(out.actions)
            storage.add(obs, index, active, out.actions, out.log_prob, out.value, out.action_mean, out.action_std,
                        reward, terminated | truncated)
            obs = next_obs
        storage.compute_returns(model.evaluate_value(obs), ppo_cfg.gamma, ppo_cfg.lam)
    flat = lambda x: x.flatten(0, 1)  # noqa: E731
    batch_obs = {k: flat(v) for k, v in storage.obs.items()}
    index, active, actions = flat(storage.encoder_index), flat(storage.encoder_active), flat(storage.actions)
    advantages = flat(storage.advantages).clone()
    with torch.no_grad():
        before = model(batch_obs, index, active, actions=actions).log_prob
    trainer.ppo.update(storage)
    with torch.no_grad():
        after = model(batch_obs, index, active, actions=actions).log_prob
    change = after - before
    return float(change[advantages > 0].mean() - change[advantages < 0].mean())
