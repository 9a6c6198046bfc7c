"""Rollout storage for on-policy PPO: fixed-size tensors filled step by step, then read as env-split minibatches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass
class Minibatch:
    obs: dict[str, torch.Tensor]
    encoder_index: torch.Tensor
    encoder_active: torch.Tensor
    actions: torch.Tensor
    old_log_prob: torch.Tensor
    old_value: torch.Tensor
    old_action_mean: torch.Tensor
    old_action_std: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over (T, N) tensors; `dones` marks steps after which the episode restarted.

    Time-outs are handled by the caller (bootstrapped into the reward), so every done cuts the return here.
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(steps)):
        not_done = 1.0 - dones[t].float()
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        next_adv = delta + gamma * lam * not_done * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    return advantages, advantages + values


class RolloutStorage:
    """(steps, envs, ...) buffers for one PPO iteration."""

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        obs_widths: dict[str, int],
        num_encoders: int,
        num_actions: int,
        device: torch.device | str = "cpu",
    ):
        self.num_steps, self.num_envs = num_steps, num_envs
        zeros = lambda *shape, dtype=torch.float32: torch.zeros(num_steps, num_envs, *shape, dtype=dtype, device=device)  # noqa: E731
        self.obs = {name: zeros(width) for name, width in obs_widths.items()}
        self.encoder_index = zeros(dtype=torch.long)
        self.encoder_active = zeros(num_encoders, dtype=torch.bool)
        self.actions = zeros(num_actions)
        self.log_prob = zeros()
        self.values = zeros()
        self.action_mean = zeros(num_actions)
        self.action_std = zeros(num_actions)
        self.rewards = zeros()
        self.dones = zeros(dtype=torch.bool)
        self.advantages = zeros()
        self.returns = zeros()
        self.step = 0

    def add(
        self,
        obs: dict[str, torch.Tensor],
        encoder_index: torch.Tensor,
        encoder_active: torch.Tensor,
        actions: torch.Tensor,
        log_prob: torch.Tensor,
        values: torch.Tensor,
        action_mean: torch.Tensor,
        action_std: torch.Tensor,
        rewards: torch.Tensor,
        dones: torch.Tensor,
    ) -> None:
        if self.step >= self.num_steps:
            raise RuntimeError("rollout storage is full; call clear() after each update")
        t = self.step
        for name, buf in self.obs.items():
            buf[t].copy_(obs[name])
        self.encoder_index[t].copy_(encoder_index)
        self.encoder_active[t].copy_(encoder_active)
        self.actions[t].copy_(actions)
        self.log_prob[t].copy_(log_prob)
        self.values[t].copy_(values)
        self.action_mean[t].copy_(action_mean)
        self.action_std[t].copy_(action_std.expand_as(action_mean))
        self.rewards[t].copy_(rewards)
        self.dones[t].copy_(dones)
        self.step += 1

    def clear(self) -> None:
        self.step = 0

    def compute_returns(self, last_value: torch.Tensor, gamma: float, lam: float) -> None:
        self.advantages, self.returns = compute_gae(self.rewards, self.values, self.dones, last_value, gamma, lam)

    def minibatches(self, num_mini_batches: int, num_epochs: int, generator: torch.Generator) -> Iterator[Minibatch]:
        """Each minibatch holds every step of a random subset of envs (SONIC splits minibatches over envs)."""
        if self.num_envs % num_mini_batches:
            raise ValueError(f"num_envs={self.num_envs} is not divisible by num_mini_batches={num_mini_batches}")
        per_batch = self.num_envs // num_mini_batches
        flat = lambda x, idx: x[:, idx].flatten(0, 1)  # noqa: E731
        for _ in range(num_epochs):
            perm = torch.randperm(self.num_envs, generator=generator).to(self.actions.device)
            for b in range(num_mini_batches):
                idx = perm[b * per_batch : (b + 1) * per_batch]
                yield Minibatch(
                    obs={k: flat(v, idx) for k, v in self.obs.items()},
                    encoder_index=flat(self.encoder_index, idx),
                    encoder_active=flat(self.encoder_active, idx),
                    actions=flat(self.actions, idx),
                    old_log_prob=flat(self.log_prob, idx),
                    old_value=flat(self.values, idx),
                    old_action_mean=flat(self.action_mean, idx),
                    old_action_std=flat(self.action_std, idx),
                    advantages=flat(self.advantages, idx),
                    returns=flat(self.returns, idx),
                )
