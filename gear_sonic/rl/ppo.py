"""Clipped PPO with clipped value loss, adaptive-KL learning rate and the model's auxiliary token losses.

Defaults are SONIC's (SONIC_FACTS.md, "PPO"). The update is written against the model interface of
`gear_sonic.model.SonicModel.forward(obs, encoder_index, encoder_active, actions=..., compute_aux=True)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gear_sonic.rl.distributed import ProcessGroup
from gear_sonic.rl.storage import RolloutStorage


@dataclass
class PPOConfig:
    num_steps_per_env: int = 24
    num_learning_epochs: int = 5
    num_mini_batches: int = 4
    gamma: float = 0.99
    lam: float = 0.95
    clip_param: float = 0.2
    use_clipped_value_loss: bool = True
    value_loss_coef: float = 1.0
    entropy_coef: float = 0.01
    learning_rate: float = 2e-5
    schedule: str = "adaptive"  # "adaptive" (KL-driven) or "fixed"
    desired_kl: float = 0.01
    min_learning_rate: float = 1e-5
    max_learning_rate: float = 2e-4
    max_grad_norm: float = 0.1
    weight_decay: float = 0.0
    normalize_advantages: bool = True


def gaussian_kl(mean_old: torch.Tensor, std_old: torch.Tensor, mean_new: torch.Tensor, std_new: torch.Tensor) -> torch.Tensor:
    """KL(old || new) of diagonal Gaussians, summed over action dims: (B,)."""
    return torch.sum(
        torch.log(std_new / std_old) + (std_old.square() + (mean_old - mean_new).square()) / (2.0 * std_new.square()) - 0.5,
        dim=-1,
    )


def adapt_learning_rate(lr: float, kl: float, cfg: PPOConfig) -> float:
    """SONIC's rule: divide by 1.5 above 2x the target KL, multiply by 1.5 below half of it, within bounds."""
    if cfg.schedule != "adaptive":
        return lr
    if kl > 2.0 * cfg.desired_kl:
        lr /= 1.5
    elif 0.0 < kl < 0.5 * cfg.desired_kl:
        lr *= 1.5
    return min(max(lr, cfg.min_learning_rate), cfg.max_learning_rate)


def normalize_advantages_(storage: RolloutStorage, group: ProcessGroup) -> None:
    """Normalise advantages with the mean and std over every process's rollouts."""
    adv = storage.advantages
    stats = torch.stack([adv.sum(), adv.square().sum(), torch.tensor(float(adv.numel()))]).double()
    group.sum_(stats)
    mean = stats[0] / stats[2]
    var = (stats[1] / stats[2] - mean.square()).clamp_min(1e-12)
    storage.advantages = ((adv - mean) / var.sqrt().clamp_min(1e-8)).to(adv.dtype)


class PPO:
    """One optimizer over policy, value and auxiliary heads; gradients averaged across processes."""

    def __init__(self, model: torch.nn.Module, cfg: PPOConfig, group: ProcessGroup, generator: torch.Generator):
        self.model = model
        self.cfg = cfg
        self.group = group
        self.generator = generator
        self.learning_rate = cfg.learning_rate
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    def set_learning_rate(self, lr: float) -> None:
        self.learning_rate = lr
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    def update(self, storage: RolloutStorage) -> dict[str, float]:
        cfg = self.cfg
        if cfg.normalize_advantages:
            normalize_advantages_(storage, self.group)
        totals: dict[str, float] = {}
        num_updates = 0
        for batch in storage.minibatches(cfg.num_mini_batches, cfg.num_learning_epochs, self.generator):
            out = self.model(
                batch.obs, batch.encoder_index, batch.encoder_active, actions=batch.actions, compute_aux=True
            )
            with torch.no_grad():
                kl = gaussian_kl(batch.old_action_mean, batch.old_action_std, out.action_mean, out.action_std.expand_as(out.action_mean)).mean()
                kl_global = self.group.mean_(kl.clone()).item()
            self.set_learning_rate(adapt_learning_rate(self.learning_rate, kl_global, cfg))

            ratio = torch.exp(out.log_prob - batch.old_log_prob)
            surrogate = -batch.advantages * ratio
            surrogate_clipped = -batch.advantages * ratio.clamp(1.0 - cfg.clip_param, 1.0 + cfg.clip_param)
            policy_loss = torch.max(surrogate, surrogate_clipped).mean()
            if cfg.use_clipped_value_loss:
                value_clipped = batch.old_value + (out.value - batch.old_value).clamp(-cfg.clip_param, cfg.clip_param)
                value_loss = torch.max((out.value - batch.returns).square(), (value_clipped - batch.returns).square()).mean()
            else:
                value_loss = (out.value - batch.returns).square().mean()
            entropy = out.entropy.mean()
            aux_total = out.aux_loss_total if out.aux_loss_total is not None else torch.zeros(())
            loss = policy_loss + cfg.value_loss_coef * value_loss - cfg.entropy_coef * entropy + aux_total

            self.optimizer.zero_grad(set_to_none=False)
            loss.backward()
            self.group.average_gradients(self.model.parameters())
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            self.optimizer.step()

            stats = {
                "loss/policy": policy_loss.item(),
                "loss/value": value_loss.item(),
                "loss/entropy": entropy.item(),
                "loss/aux_total": float(aux_total.item()),
                "policy/kl": kl_global,
                "policy/clip_fraction": ((ratio - 1.0).abs() > cfg.clip_param).float().mean().item(),
            }
            for name, value in (out.aux_losses or {}).items():
                stats[f"loss/aux_{name}"] = float(value.item())
            for k, v in stats.items():
                totals[k] = totals.get(k, 0.0) + v
            num_updates += 1
        storage.clear()
        result = {k: v / max(num_updates, 1) for k, v in totals.items()}
        result["policy/learning_rate"] = self.learning_rate
        return result
