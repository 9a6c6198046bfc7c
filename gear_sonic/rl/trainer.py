"""The on-policy training loop: rollouts over the vectorised tracking env, PPO + auxiliary losses, checkpoints, logs.

One code path for one process and many (`accelerate launch`): each process owns its environments and
seeds them with base seed + process index; gradients, advantage statistics, observation-normaliser
statistics and adaptive-sampling statistics are combined across processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gear_sonic.rl.checkpoint import TrainingState, load_training_state, save_checkpoint, update_last_link
from gear_sonic.rl.distributed import ProcessGroup
from gear_sonic.rl.logger import TrainingLogger
from gear_sonic.rl.ppo import PPO, PPOConfig
from gear_sonic.rl.storage import RolloutStorage


@dataclass
class TrainerConfig:
    num_learning_iterations: int = 100_000
    save_interval: int = 2000
    last_save_interval: int = 50
    sampling_sync_interval: int = 200
    seed: int = 0
    use_wandb: bool = True
    wandb_project: str = "gear_sonic"
    wandb_entity: str | None = None
    ppo: PPOConfig = field(default_factory=PPOConfig)


class Trainer:
    def __init__(
        self,
        env,
        model: torch.nn.Module,
        cfg: TrainerConfig,
        group: ProcessGroup,
        run_dir: Path,
        *,
        extra_files: dict[str, str] | None = None,
        wandb_config: dict | None = None,
    ):
        self.env = env
        self.model = model
        self.cfg = cfg
        self.group = group
        self.run_dir = Path(run_dir)
        self.extra_files = extra_files
        self.wandb_config = wandb_config
        self.generator = torch.Generator().manual_seed(cfg.seed + group.process_index)
        self.ppo = PPO(model, cfg.ppo, group, self.generator)
        self.iteration = 0
        self._obs = None

    # ----------------------------------------------------------------- checkpoints
    def _rng_state(self) -> dict[str, torch.Tensor]:
        return {"torch": torch.get_rng_state(), "trainer": self.generator.get_state()}

    def save(self, folder_name: str) -> Path:
        state = TrainingState(
            iteration=self.iteration,
            learning_rate=self.ppo.learning_rate,
            optimizer=self.ppo.optimizer.state_dict(),
            rng=self._rng_state(),
            env_state=self.env.state_dict(),
            extra={"num_processes": self.group.num_processes},
        )
        return save_checkpoint(self.model, state, self.run_dir / folder_name, self.extra_files)

    def resume(self, checkpoint: str | Path) -> None:
        """Restore optimizer, learning rate, iteration, RNG, env (sampling statistics and, when saved, physics)."""
        state = load_training_state(checkpoint)
        self.ppo.optimizer.load_state_dict(state.optimizer)
        self.ppo.set_learning_rate(state.learning_rate)
        self.iteration = state.iteration
        torch.set_rng_state(state.rng["torch"])
        self.generator.set_state(state.rng["trainer"])
        if state.env_state:
            self.env.load_state_dict(state.env_state)

    def _checkpoint_if_due(self, final: bool) -> None:
        if not self.group.is_main:
            return
        it = self.iteration
        if it % self.cfg.save_interval == 0 or final:
            self.save(f"model_step_{it:06d}")
        if it % self.cfg.last_save_interval == 0 or final:
            target = self.save(f"last_{it:06d}")
            previous = (self.run_dir / "last").resolve() if (self.run_dir / "last").is_symlink() else None
            update_last_link(self.run_dir, target)
            if previous is not None and previous != target.resolve() and previous.exists():
                import shutil

                shutil.rmtree(previous)

    # ----------------------------------------------------------------- training
    def _rollout(self, storage: RolloutStorage) -> dict[str, float]:
        env, model, cfg = self.env, self.model, self.cfg.ppo
        episode_terms: dict[str, list[float]] = {}
        obs = self._obs
        for _ in range(cfg.num_steps_per_env):
            with torch.no_grad():
                model.update_normalizer(obs)
                out = model(obs, env.encoder_index, env.encoder_active)
            encoder_index, encoder_active = env.encoder_index.clone(), env.encoder_active.clone()
            next_obs, reward, terminated, truncated, info = env.step(out.actions)
            reward = reward.clone()
            # Time-outs are not failures: bootstrap them with the value estimate.
            reward += cfg.gamma * out.value * truncated.float()
            storage.add(
                obs, encoder_index, encoder_active, out.actions, out.log_prob, out.value,
                out.action_mean, out.action_std, reward, terminated | truncated,
            )
            for key, value in info.get("log", {}).items():
                episode_terms.setdefault(key, []).append(float(value))
            obs = next_obs
        with torch.no_grad():
            last_value = model.evaluate_value(obs)
        stats = {k: float(np.mean(v)) for k, v in episode_terms.items()}
        stats["reward/per_step"] = float(storage.rewards.mean())
        storage.compute_returns(last_value, cfg.gamma, cfg.lam)
        self._obs = obs
        return stats

    def train(self) -> dict[str, float]:
        cfg = self.cfg
        self.group.broadcast_module_(self.model)
        if self._obs is None:
            self._obs = self.env.reset()
        widths = {k: v.shape[-1] for k, v in self._obs.items()}
        storage = RolloutStorage(
            cfg.ppo.num_steps_per_env, self.env.num_envs, widths, self.env.encoder_active.shape[-1], self.env.num_actions
        )
        logger = TrainingLogger(
            self.run_dir, cfg.num_learning_iterations, self.iteration, enabled=self.group.is_main,
            use_wandb=cfg.use_wandb, wandb_project=cfg.wandb_project, wandb_entity=cfg.wandb_entity,
            run_name=self.run_dir.name, config=self.wandb_config,
        )
        start_time = time.perf_counter()
        stats: dict[str, float] = {}
        try:
            while self.iteration < cfg.num_learning_iterations:
                t0 = time.perf_counter()
                env_stats = self._rollout(storage)
                t1 = time.perf_counter()
                self.model.sync_normalizer(self.group)
                update_stats = self.ppo.update(storage)
                t2 = time.perf_counter()
                if (self.iteration + 1) % cfg.sampling_sync_interval == 0:
                    self.env.sync_sampling_statistics(self.group)
                local_steps = cfg.ppo.num_steps_per_env * self.env.num_envs
                stats = self.group.mean_scalars({**env_stats, **update_stats})
                stats["throughput/env_steps_per_s"] = local_steps * self.group.num_processes / (t2 - t0)
                stats["time/rollout_s"] = t1 - t0
                stats["time/update_s"] = t2 - t1
                logger.log(self.iteration, stats, cfg.num_learning_iterations, time.perf_counter() - start_time)
                self.iteration += 1
                self._checkpoint_if_due(final=self.iteration == cfg.num_learning_iterations)
        finally:
            logger.close()
        return stats
