"""Launching real training runs (subprocesses of the real entry point) for the training tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
SCRIPT = "gear_sonic/train_agent_trl.py"
# A tiny run of the CPU preset on the bundled sample data: a few envs, short rollouts.
SMALL = [
    "+exp=manager/universal_token/all_modes/sonic_cpu", "use_wandb=false", "num_envs=4", "sim.num_threads=1",
    "++algo.config.num_steps_per_env=8", "++algo.config.num_learning_epochs=2", "++algo.config.num_mini_batches=2",
]


def environment(**extra: str) -> dict[str, str]:
    # One thread per process: the tests share 2 cores with other work.
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", WANDB_MODE="disabled", **extra)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_cmd(logs_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, SCRIPT, *SMALL, f"logs_dir={logs_dir}", *overrides]


def accelerate_cmd(launch_args: list[str], logs_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--cpu", *launch_args, SCRIPT, *SMALL,
            f"logs_dir={logs_dir}", *overrides]


def run(cmd: list[str], timeout_s: float = 120, **env: str) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=REPO, env=environment(**env), capture_output=True, text=True, timeout=timeout_s)
    return out


def start(cmd: list[str], log: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=REPO, env=environment(**env), stdout=open(log, "w"), stderr=subprocess.STDOUT)


def wait_for(predicate, timeout_s: float, proc: subprocess.Popen | None = None, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited (code {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def worker_with_rank(launcher: subprocess.Popen, rank: int) -> psutil.Process:
    """The training worker of global rank `rank` among the launcher's descendants."""
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "train_agent_trl" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no worker with RANK={rank} under process {launcher.pid}")


def run_folder(logs_dir: Path) -> Path:
    runs = sorted((logs_dir / "TRL_G1_Track").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def kill_tree(proc: subprocess.Popen) -> None:
    """Clean up a launcher and every process it started (test teardown)."""
    try:
        procs = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
