"""Env steps per second of full training iterations, and where the time goes.

For the CPU preset (`+exp=.../sonic_cpu`, small model) and the release model (`+exp=.../sonic_release`)
at small env counts, one process each builds the real env, model and Trainer on the bundled sample data
and runs complete PPO iterations (rollout of `num_steps_per_env` steps with policy inference, critic
normalisation, PPO + auxiliary-loss update). All configurations are built first and then run in
alternating rounds, so a change of machine load hits them alike. Reported per configuration: env
steps/s over the timed iterations (the first is a warm-up) and the share of iteration time spent in
simulation (`env.step`: physics, rewards, observations, resets), policy inference (rollout forward
passes) and the PPO update. Checkpoint writing is left out.

    python benchmarks/train_throughput.py [--envs 16 64] [--iterations 1] [--rounds 1] [--threads 0]

Last line: train_env_steps_per_s_cpu_preset_64=<steps/s> (the largest env count given).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as importing gear_sonic does (see gear_sonic/__init__.py)

import torch  # noqa: E402

from gear_sonic.cli.common import RunOptions, trainer_config_from
from gear_sonic.cli.train import build_env, build_model
from gear_sonic.envs.config import compose_config
from gear_sonic.rl.distributed import ProcessGroup
from gear_sonic.rl.trainer import Trainer

PRESETS = {"cpu_preset": "sonic_cpu", "release": "sonic_release"}


def build(name: str, exp: str, num_envs: int, threads: int, run_dir: Path) -> Trainer:
    overrides = [f"+exp=manager/universal_token/all_modes/{exp}", f"num_envs={num_envs}", "use_wandb=false",
                 f"sim.num_threads={threads}"]
    cfg = compose_config(overrides, "base")
    options = RunOptions.from_config(cfg)
    torch.manual_seed(0)
    env = build_env(cfg, 0, "cpu", num_local_processes=1)
    model = build_model(options, None, env.encoder_names)
    trainer_cfg = trainer_config_from(cfg, seed=0, use_wandb=False, wandb_project="bench", wandb_entity=None)
    trainer_cfg.num_learning_iterations = 0
    trainer = Trainer(env, model, trainer_cfg, ProcessGroup(1, 0), run_dir / name)
    trainer._checkpoint_if_due = lambda final: None  # measure training, not checkpoint writing
    return trainer


def summarise(run_dir: Path, warmup: int) -> dict[str, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["iteration"] >= warmup]
    total = sum(r["time/iteration_s"] for r in rows)
    steps = sum(r["world/env_steps_per_iteration"] for r in rows)
    return {
        "iterations": len(rows),
        "env_steps_per_s": steps / total,
        "iteration_s": total / len(rows),
        "sim_share": sum(r["time/sim_s"] for r in rows) / total,
        "policy_share": sum(r["time/policy_s"] for r in rows) / total,
        "update_share": sum(r["time/update_s"] for r in rows) / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--iterations", type=int, default=1, help="timed iterations per configuration and round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="physics threads (0: one per core)")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        trainers = {}
        for name in args.presets:
            for n in args.envs:
                key = f"{name}_{n}"
                trainers[key] = build(key, PRESETS[name], n, args.threads, tmp_dir)
                counts = trainers[key].model.parameter_counts()
                print(f"built {key}: {n} envs, actor {counts['actor'] / 1e6:.2f}M + critic {counts['critic'] / 1e6:.2f}M "
                      f"parameters, {trainers[key].cfg.ppo.num_steps_per_env} steps per env per iteration", flush=True)
        for key, trainer in trainers.items():  # warm-up iteration (allocations, first-touch)
            trainer.cfg.num_learning_iterations = 1
            trainer.train()
        for _ in range(args.rounds):
            for key, trainer in trainers.items():
                trainer.cfg.num_learning_iterations += args.iterations
                trainer.train()
        results = {key: summarise(tmp_dir / key, warmup=1) for key in trainers}
        for trainer in trainers.values():
            trainer.env.close()

    print()
    print(f"{'configuration':<18}{'env steps/s':>12}{'s/iteration':>13}{'sim':>8}{'policy':>8}{'update':>8}")
    for key, r in results.items():
        print(f"{key:<18}{r['env_steps_per_s']:>12.1f}{r['iteration_s']:>13.2f}"
              f"{r['sim_share']:>8.0%}{r['policy_share']:>8.0%}{r['update_share']:>8.0%}")
    if "cpu_preset" in args.presets and "release" in args.presets:
        for n in args.envs:
            ratio = results[f"cpu_preset_{n}"]["env_steps_per_s"] / results[f"release_{n}"]["env_steps_per_s"]
            print(f"cpu preset / release throughput at {n} envs: {ratio:.2f}x")
    name = args.presets[0]
    n = max(args.envs)
    print(f"train_env_steps_per_s_{name}_{n}={results[f'{name}_{n}']['env_steps_per_s']:.1f}")


if __name__ == "__main__":
    main()
