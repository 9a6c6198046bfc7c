"""The on-policy training loop: rollouts over the vectorised tracking env, PPO + auxiliary losses, checkpoints, logs.

One code path for one process and many (`accelerate launch`): each process owns its environments and
seeds them with base seed + process index; gradients, advantage statistics, observation-normaliser
statistics and adaptive-sampling statistics are combined across processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gear_sonic.rl.checkpoint import (
    TrainingState,
    link_checkpoint,
    load_training_state,
    remove_stale_temporaries,
    save_checkpoint,
    update_last_link,
)
from gear_sonic.rl.distributed import ProcessGroup
from gear_sonic.rl.logger import TrainingLogger
from gear_sonic.rl.ppo import PPO, PPOConfig
from gear_sonic.rl.storage import RolloutStorage


PARAMETER_DIGESTS_FILE = "parameter_digests.json"
# Fresh random streams for processes that cannot restore their own (see Trainer.resume).
_RESEED_STRIDE = 1_000_003


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer (name, dtype, shape, raw bytes), in name order: equal
    digests mean bit-identical models."""
    h = hashlib.sha256()
    tensors = dict(model.named_parameters())
    tensors.update(dict(model.named_buffers()))
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class ProcessesDivergedError(RuntimeError):
    """Processes that must hold identical parameters do not."""


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
    """PPO over one process's envs; collectives through `group` keep every process's model identical."""

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
        self.last_timing: dict[str, float] = {}

    # ----------------------------------------------------------------- checkpoints
    def _rng_state(self) -> dict[str, torch.Tensor]:
        state = {"torch": torch.get_rng_state(), "trainer": self.generator.get_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # action noise is drawn on the GPU there
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def _env_state(self) -> tuple[dict[str, torch.Tensor], str]:
        """The env's complete state when its simulator can capture it, else its sampling statistics."""
        try:
            return self.env.full_state_dict(), "full"
        except (AttributeError, NotImplementedError):
            return self.env.state_dict(), "sampling"

    def save(self, folder_name: str) -> Path:
        """Write a checkpoint of this process's state (called on the main process only)."""
        env_state, env_kind = self._env_state()
        state = TrainingState(
            iteration=self.iteration,
            learning_rate=self.ppo.learning_rate,
            optimizer=self.ppo.optimizer.state_dict(),
            rng=self._rng_state(),
            env_state=env_state,
            observations={k: v.detach().cpu() for k, v in (self._obs or {}).items()} if env_kind == "full" else {},
            extra={
                "num_processes": self.group.num_processes,
                "process_index": self.group.process_index,
                "num_envs": self.env.num_envs,
                "seed": self.cfg.seed,
                "env_state": env_kind,
            },
        )
        return save_checkpoint(self.model, state, self.run_dir / folder_name, self.extra_files)

    def resume(self, checkpoint: str | Path) -> str:
        """Restore optimizer, learning rate, iteration and adaptive-sampling statistics everywhere, and,
        where possible, this process's exact state (env physics and episodes, last observations, RNG).

        Checkpoints hold the main process's exact state. The main process restores it when the env
        count matches, so a one-process run resumes bit-exactly. Other processes (and a main process
        whose env count changed) keep the shared statistics but start fresh episodes with fresh random
        streams (seeded by seed, process index and iteration). Returns a one-line description."""
        state = load_training_state(checkpoint)
        self.ppo.optimizer.load_state_dict(state.optimizer)
        self.ppo.set_learning_rate(state.learning_rate)
        self.iteration = state.iteration
        env_state = state.env_state
        full = bool(env_state) and hasattr(self.env, "is_full_state") and self.env.is_full_state(env_state)
        exact = (
            full and self.group.is_main and bool(state.observations)
            and self.env.full_state_num_envs(env_state) == self.env.num_envs
        )
        if exact:
            self.env.load_full_state_dict(env_state)
            self._obs = {k: v.to(self.env.device) for k, v in state.observations.items()}
            torch.set_rng_state(state.rng["torch"])
            self.generator.set_state(state.rng["trainer"])
            if "cuda" in state.rng and torch.cuda.is_available():
                torch.cuda.set_rng_state(state.rng["cuda"])
            return "exact (env physics, episodes, observations and random streams restored)"
        if env_state:
            sampling = {k.removeprefix("sampler."): v for k, v in env_state.items() if k.startswith("sampler.")}
            self.env.load_state_dict(sampling if full else env_state)
        stream = (self.cfg.seed + self.group.process_index) * _RESEED_STRIDE + self.iteration
        torch.manual_seed(stream)
        self.generator.manual_seed(stream + 1)
        self.env.generator.manual_seed(stream + 2)
        self._obs = None
        return "statistics only (fresh episodes and random streams on this process)"

    def _checkpoint_if_due(self, final: bool) -> None:
        if not self.group.is_main:
            return
        it = self.iteration
        step_folder = None
        if it % self.cfg.save_interval == 0 or final:
            step_folder = self.save(f"model_step_{it:06d}")
        if it % self.cfg.last_save_interval == 0 or final:
            name = f"last_{it:06d}"
            target = link_checkpoint(step_folder, self.run_dir / name) if step_folder else self.save(name)
            link = self.run_dir / "last"
            previous = link.resolve() if link.is_symlink() else None
            update_last_link(self.run_dir, target)
            if previous is not None and previous != target.resolve() and previous.exists():
                shutil.rmtree(previous)

    def _check_identical_parameters(self) -> list[str]:
        """Collective: every process's parameter digest; the main process records them in the run folder.
        Raises ProcessesDivergedError if they differ (gradients or statistics were not combined)."""
        digests = [d.decode() for d in self.group.all_gather_bytes(parameter_digest(self.model).encode())]
        if self.group.is_main:
            record = {"iteration": self.iteration, "num_processes": self.group.num_processes, "digests": digests,
                      "identical": len(set(digests)) == 1}
            tmp = self.run_dir / f".{PARAMETER_DIGESTS_FILE}.tmp"
            tmp.write_text(json.dumps(record, indent=1))
            os.replace(tmp, self.run_dir / PARAMETER_DIGESTS_FILE)
        if len(set(digests)) != 1:
            raise ProcessesDivergedError(
                f"parameters differ between processes after iteration {self.iteration}: digests {digests}"
            )
        return digests

    # ----------------------------------------------------------------- training
    def _rollout(self, storage: RolloutStorage) -> dict[str, float]:
        env, model, cfg = self.env, self.model, self.cfg.ppo
        episode_terms: dict[str, list[float]] = {}
        obs = self._obs
        policy_s = sim_s = 0.0
        for _ in range(cfg.num_steps_per_env):
            t0 = time.perf_counter()
            with torch.no_grad():
                model.update_normalizer(obs, encoder_index=env.encoder_index)
                out = model(obs, env.encoder_index, env.encoder_active)
            t1 = time.perf_counter()
            encoder_index, encoder_active = env.encoder_index.clone(), env.encoder_active.clone()
            next_obs, reward, terminated, truncated, info = env.step(out.actions)
            sim_s += time.perf_counter() - t1
            policy_s += t1 - t0
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
        self.last_timing = {"time/sim_s": sim_s, "time/policy_s": policy_s}
        return stats

    def train(self) -> dict[str, float]:
        """Train up to `num_learning_iterations`; ends by checking that every process holds the same
        parameters (digests in the run folder's parameter_digests.json)."""
        cfg = self.cfg
        self.group.broadcast_module_(self.model)
        if self.group.is_main:
            remove_stale_temporaries(self.run_dir)
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
                swapped = self.env.on_iteration_end(self.iteration + 1) if hasattr(self.env, "on_iteration_end") else None
                if swapped is not None:  # a new resident clip subset: every env was reset
                    self._obs = swapped
                stats = self.group.mean_scalars({**env_stats, **update_stats})
                # Global throughput: every process's env steps over the slowest process's iteration time.
                totals = torch.tensor([cfg.ppo.num_steps_per_env * self.env.num_envs], dtype=torch.float64)
                self.group.sum_(totals)
                slowest = self.group.max_(torch.tensor([t2 - t0], dtype=torch.float64))
                stats["throughput/env_steps_per_s"] = float(totals[0] / slowest[0])
                stats["world/num_processes"] = float(self.group.num_processes)
                stats["world/env_steps_per_iteration"] = float(totals[0])
                stats["time/iteration_s"] = float(slowest[0])
                stats["time/rollout_s"] = t1 - t0
                stats["time/update_s"] = t2 - t1
                stats.update(self.last_timing)
                logger.log(self.iteration, stats, cfg.num_learning_iterations, time.perf_counter() - start_time)
                self.iteration += 1
                self._checkpoint_if_due(final=self.iteration == cfg.num_learning_iterations)
            self._check_identical_parameters()
        finally:
            logger.close()
        return stats
