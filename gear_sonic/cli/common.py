"""Shared pieces of the entry points: Hydra overrides, accelerate set-up, seeding, typed run options."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from gear_sonic.envs.config import config_dir
from gear_sonic.rl.distributed import ProcessGroup
from gear_sonic.rl.ppo import PPOConfig
from gear_sonic.rl.trainer import TrainerConfig


@dataclass
class ModelOptions:
    preset: str = "sonic_release"
    overrides: dict = field(default_factory=dict)


@dataclass
class RunOptions:
    """The root keys the entry points read (besides `manager_env`, which the env reads)."""

    seed: int = 0
    project_name: str = "TRL_G1_Track"
    experiment_name: str = "sonic_release"
    logs_dir: str = "logs_rl"
    use_wandb: bool = True
    wandb_project: str = "gear_sonic"
    wandb_entity: str | None = None
    dist_timeout_s: float = 120.0
    checkpoint: str | None = None
    replay: bool = False
    model: ModelOptions = field(default_factory=ModelOptions)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> RunOptions:
        wandb_cfg = cfg.get("wandb") or {}
        model_cfg = cfg.get("model") or {}
        return cls(
            seed=int(cfg.get("seed", 0)),
            project_name=str(cfg.get("project_name", cls.project_name)),
            experiment_name=str(cfg.get("experiment_name", cls.experiment_name)),
            logs_dir=str(cfg.get("logs_dir", cls.logs_dir)),
            use_wandb=_as_bool(cfg.get("use_wandb", True)),
            wandb_project=str(wandb_cfg.get("wandb_project", cls.wandb_project)),
            wandb_entity=wandb_cfg.get("wandb_entity"),
            dist_timeout_s=float(cfg.get("dist_timeout_s", cls.dist_timeout_s)),
            checkpoint=str(cfg.checkpoint) if cfg.get("checkpoint") else None,
            replay=_as_bool(cfg.get("replay", False)),
            model=ModelOptions(
                preset=str(model_cfg.get("preset", "sonic_release")),
                overrides=_container(model_cfg.get("overrides")),
            ),
        )


def trainer_config_from(cfg: DictConfig, seed: int, use_wandb: bool, wandb_project: str, wandb_entity) -> TrainerConfig:
    """`algo.config` -> TrainerConfig (with its PPOConfig); unknown keys are an error, not ignored."""
    algo = OmegaConf.to_container(cfg.algo.config, resolve=True)
    trainer_keys = {"num_learning_iterations", "save_interval", "last_save_interval", "sampling_sync_interval"}
    ppo_fields = set(PPOConfig.__dataclass_fields__)
    unknown = set(algo) - trainer_keys - ppo_fields
    if unknown:
        raise ValueError(f"algo.config: unknown keys {sorted(unknown)}; known: {sorted(trainer_keys | ppo_fields)}")
    ppo = PPOConfig(**{k: v for k, v in algo.items() if k in ppo_fields})
    return TrainerConfig(
        **{k: int(v) for k, v in algo.items() if k in trainer_keys},
        seed=seed, use_wandb=use_wandb, wandb_project=wandb_project, wandb_entity=wandb_entity, ppo=ppo,
    )


def _container(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def normalized_overrides(overrides: list[str]) -> list[str]:
    """Rewrite key overrides as force-add (`++key=value`) so a training run's overrides and the user's
    can be replayed on another root config in order, later ones winning. Config-group selections
    (`+exp=...`, `+manager_env/terminations=...`) and deletions (`~...`) keep their form."""
    out = []
    root = config_dir()
    for item in overrides:
        if item.startswith("~") or "=" not in item:
            out.append(item)
            continue
        key = item.split("=", 1)[0].lstrip("+")
        if (root / key).is_dir():
            out.append(item)
        else:
            out.append("++" + item.lstrip("+"))
    return out


def init_accelerate(timeout_s: float):
    """accelerate's process group (gloo on CPU, NCCL on GPUs) with a bounded collective timeout."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    accelerator = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=timeout_s))])
    group = ProcessGroup(accelerator.num_processes, accelerator.process_index, timeout_s=timeout_s)
    return accelerator, group


def quiet_library_progress_bars() -> None:
    """transformers draws a progress bar for every weight load/save; our own progress output is enough."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def share_cores(num_local_processes: int) -> int:
    """Threads per process when several processes share one machine's cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = max(1, cores // max(num_local_processes, 1))
    torch.set_num_threads(per_process)
    return per_process


def say(group: ProcessGroup, message: str) -> None:
    if group.is_main:
        print(message, flush=True)
