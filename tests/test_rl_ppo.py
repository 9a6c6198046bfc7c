"""PPO building blocks: GAE, KL-adaptive learning rate, env-split minibatches, advantage normalisation."""

import pytest
import torch

from gear_sonic.rl.distributed import ProcessGroup
from gear_sonic.rl.ppo import PPOConfig, adapt_learning_rate, gaussian_kl, normalize_advantages_
from gear_sonic.rl.storage import RolloutStorage, compute_gae


def _reference_gae(rewards, values, dones, last_value, gamma, lam):
    steps, envs = rewards.shape
    adv = torch.zeros_like(rewards)
    for e in range(envs):
        running, next_value = 0.0, last_value[e].item()
        for t in reversed(range(steps)):
            nd = 0.0 if dones[t, e] else 1.0
            delta = rewards[t, e].item() + gamma * next_value * nd - values[t, e].item()
            running = delta + gamma * lam * nd * running
            adv[t, e] = running
            next_value = values[t, e].item()
    return adv


def test_gae_matches_per_env_recursion():
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.rand(7, 5, generator=g), torch.rand(7, 5, generator=g)
    dones = torch.rand(7, 5, generator=g) < 0.3
    last = torch.rand(5, generator=g)
    adv, ret = compute_gae(rewards, values, dones, last, 0.99, 0.95)
    torch.testing.assert_close(adv, _reference_gae(rewards, values, dones, last, 0.99, 0.95))
    torch.testing.assert_close(ret, adv + values)


def test_adaptive_learning_rate_rule():
    cfg = PPOConfig()
    assert adapt_learning_rate(2e-5, 0.05, cfg) == pytest.approx(2e-5 / 1.5)
    assert adapt_learning_rate(2e-5, 0.001, cfg) == pytest.approx(3e-5)
    assert adapt_learning_rate(2e-5, 0.01, cfg) == pytest.approx(2e-5)
    assert adapt_learning_rate(1e-5, 1.0, cfg) == pytest.approx(1e-5)  # lower bound
    assert adapt_learning_rate(2e-4, 0.0001, cfg) == pytest.approx(2e-4)  # upper bound


def test_gaussian_kl_zero_for_identical_and_positive_otherwise():
    mean, std = torch.zeros(3, 29), torch.full((3, 29), 0.1)
    assert torch.allclose(gaussian_kl(mean, std, mean, std), torch.zeros(3))
    assert (gaussian_kl(mean, std, mean + 0.05, std) > 0).all()


def test_minibatches_split_over_envs_and_cover_all_data():
    storage = RolloutStorage(num_steps=3, num_envs=8, obs_widths={"proprioception": 2}, num_encoders=3, num_actions=29)
    for t in range(3):
        env_id = torch.arange(8, dtype=torch.float32)
        storage.add(
            {"proprioception": torch.stack([env_id, torch.full((8,), float(t))], -1)},
            torch.zeros(8, dtype=torch.long), torch.ones(8, 3, dtype=torch.bool), torch.zeros(8, 29),
            torch.zeros(8), torch.zeros(8), torch.zeros(8, 29), torch.ones(29), torch.zeros(8), torch.zeros(8, dtype=torch.bool),
        )
    storage.compute_returns(torch.zeros(8), 0.99, 0.95)
    batches = list(storage.minibatches(4, 1, torch.Generator().manual_seed(0)))
    assert len(batches) == 4
    seen = set()
    for b in batches:
        envs = set(b.obs["proprioception"][:, 0].tolist())
        assert len(envs) == 2 and b.obs["proprioception"].shape[0] == 6  # 2 envs x all 3 steps
        seen |= envs
    assert seen == set(range(8))
    with pytest.raises(ValueError, match="not divisible"):
        next(storage.minibatches(3, 1, torch.Generator()))


def test_advantage_normalisation_single_process():
    storage = RolloutStorage(4, 6, {}, 3, 29)
    storage.advantages = torch.randn(4, 6) * 3 + 2
    normalize_advantages_(storage, ProcessGroup(1, 0))
    assert storage.advantages.mean().abs() < 1e-5
    assert (storage.advantages.std(unbiased=False) - 1).abs() < 1e-4
