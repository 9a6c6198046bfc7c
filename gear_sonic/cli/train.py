"""`python gear_sonic/train_agent_trl.py [hydra overrides]`: train (or replay) with SONIC's interface.

Examples:
    python gear_sonic/train_agent_trl.py +exp=manager/universal_token/all_modes/sonic_cpu use_wandb=false
    accelerate launch --cpu --num_processes 2 gear_sonic/train_agent_trl.py +exp=.../sonic_cpu
    accelerate launch --cpu --num_machines 2 --num_processes 2 --machine_rank R \
        --main_process_ip HOST --main_process_port PORT gear_sonic/train_agent_trl.py +exp=...
    python gear_sonic/train_agent_trl.py +exp=.../sonic_release +checkpoint=logs_rl/.../last   # resume

See docs/training.md (multi-process launch, failure handling, checkpoints, exact resume).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from gear_sonic.cli.common import (
    quiet_library_progress_bars,
    RunOptions,
    init_accelerate,
    say,
    seed_everything,
    share_cores,
    trainer_config_from,
)
from gear_sonic.cli.cpu_launch import relaunch_as_workers
from gear_sonic.envs import TrackingEnv
from gear_sonic.envs.config import compose_config, env_config_from_dict
from gear_sonic.model.folders import resolve_checkpoint
from gear_sonic.rl.checkpoint import TRAINING_STATE_JSON
from gear_sonic.rl.distributed import PeerFailure, describe_peer_failure
from gear_sonic.rl.trainer import PARAMETER_DIGESTS_FILE, Trainer, parameter_digest

OVERRIDES_FILE = "overrides.yaml"


def build_env(cfg, seed: int, device, *, num_local_processes: int, eval_mode: bool = False) -> TrackingEnv:
    env_dict = OmegaConf.to_container(cfg, resolve=True)
    env_dict["seed"] = seed
    if eval_mode:
        env_dict["manager_env"].setdefault("config", {})["eval_mode"] = True
    sim = env_dict.setdefault("sim", {})
    if not sim.get("num_threads"):
        sim["num_threads"] = share_cores(num_local_processes)
    return TrackingEnv(env_config_from_dict(env_dict), device=device)


def build_model(options: RunOptions, checkpoint: Path | None, encoder_names: tuple[str, ...]):
    from gear_sonic.model import SonicConfig, SonicModel

    if checkpoint is not None:
        model = SonicModel.from_pretrained(checkpoint)
    else:
        model = SonicModel(SonicConfig.from_preset(options.model.preset, **options.model.overrides))
    if tuple(model.config.encoder_names) != tuple(encoder_names):
        raise ValueError(
            f"the model's encoders {list(model.config.encoder_names)} differ from the environment's "
            f"{list(encoder_names)} (manager_env.config.encoders)"
        )
    return model


def _run_dir(options: RunOptions, resume_from: Path | None, accelerator) -> Path:
    """Resuming continues in the checkpoint's run folder; otherwise a new timestamped one (named on rank 0)."""
    from accelerate.utils import broadcast_object_list

    if resume_from is not None:
        return resume_from.parent
    stamp = [time.strftime("%Y%m%d_%H%M%S")]
    broadcast_object_list(stamp, from_process=0)
    return Path(options.logs_dir) / options.project_name / f"{options.experiment_name}-{stamp[0]}"


def replay(env: TrackingEnv, steps: int) -> dict[str, float]:
    """Drive the robots kinematically along the references and report the mean of each reward term."""
    env.reset()
    sums: dict[str, float] = {}
    actions = torch.zeros(env.num_envs, env.num_actions)
    for _ in range(steps):
        _, _, terminated, _, info = env.step(actions)
        for name, value in info["reward_terms"].items():
            sums[name] = sums.get(name, 0.0) + float(value)
    return {k: v / steps for k, v in sums.items()}


EXIT_PEER_LOST = 3


def main(argv: list[str] | None = None) -> int:
    """Run training; a failed collective (a process died or stalled) ends this process promptly with
    a clear message and exit code EXIT_PEER_LOST instead of hanging."""
    overrides = list(sys.argv[1:] if argv is None else argv)
    if argv is None:
        code = relaunch_as_workers(sys.argv[0], overrides)
        if code is not None:
            return code
    try:
        run(overrides)
        return 0
    except PeerFailure as exc:
        print(describe_peer_failure(exc), file=sys.stderr, flush=True)
        # Skip interpreter shutdown: tearing down a process group whose peers are gone can block.
        os._exit(EXIT_PEER_LOST)


def run(overrides: list[str]) -> Path | None:
    """Train (or replay) with Hydra overrides in this process; returns the run folder (None for replay)."""
    quiet_library_progress_bars()
    cfg = compose_config(overrides, "base")
    options = RunOptions.from_config(cfg)
    accelerator, group = init_accelerate(options.dist_timeout_s)
    seed = options.seed + group.process_index
    seed_everything(seed)
    num_local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes if accelerator.num_processes else 1))
    env = build_env(cfg, seed, accelerator.device, num_local_processes=num_local)

    if options.replay:
        means = replay(env, steps=int(env.cfg.episode_length_s / env.step_dt_s))
        say(group, "replay (kinematic) mean reward terms per step:")
        for name, value in means.items():
            say(group, f"  {name:<32}{value:10.4f}")
        env.close()
        return None

    checkpoint = resolve_checkpoint(options.checkpoint) if options.checkpoint else None
    resume = checkpoint is not None and (checkpoint / TRAINING_STATE_JSON).is_file()
    model = build_model(options, checkpoint, env.encoder_names).to(accelerator.device)
    run_dir = _run_dir(options, checkpoint if resume else None, accelerator)
    trainer_cfg = trainer_config_from(cfg, seed=options.seed, use_wandb=options.use_wandb,
                                      wandb_project=options.wandb_project, wandb_entity=options.wandb_entity)
    resolved = OmegaConf.to_yaml(cfg, resolve=True)
    trainer = Trainer(
        env, model, trainer_cfg, group, run_dir,
        extra_files={"config.yaml": resolved, OVERRIDES_FILE: OmegaConf.to_yaml(OmegaConf.create({"overrides": overrides}))},
        wandb_config=OmegaConf.to_container(cfg, resolve=True),
    )
    if resume:
        how = trainer.resume(checkpoint)
        say(group, f"resumed from {checkpoint} at iteration {trainer.iteration}: {how}")
        if group.num_processes > 1:
            say(group, f"processes 1..{group.num_processes - 1}: shared state restored (weights, optimizer, sampling "
                       "statistics); fresh episodes and random streams (the checkpoint holds process 0's exact state)")
    elif checkpoint is not None:
        say(group, f"finetuning from the weights in {checkpoint}")
    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(resolved)
    n_actor, n_critic = model.parameter_counts()["actor"], model.parameter_counts()["critic"]
    say(group, f"run folder: {run_dir}")
    say(group, f"processes: {group.num_processes}, envs per process: {env.num_envs}, "
               f"model: {options.model.preset} (actor {n_actor / 1e6:.2f}M, critic {n_critic / 1e6:.2f}M parameters)")
    trainer.train()
    env.close()
    say(group, f"parameters identical on all {group.num_processes} process(es): digest "
               f"{parameter_digest(model)[:16]} (all digests in {run_dir / PARAMETER_DIGESTS_FILE})")
    say(group, f"checkpoints: {run_dir}/last (latest), {run_dir}/model_step_*; metrics: {run_dir}/metrics.jsonl, "
               f"curve: {run_dir}/learning_curve.png")
    accelerator.end_training()
    return run_dir


if __name__ == "__main__":
    raise SystemExit(main())
