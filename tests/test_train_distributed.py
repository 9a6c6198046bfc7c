"""Multi-process training under `accelerate launch --cpu` (real processes, gloo): identical parameters,
global statistics, the two-machine launch, and a dead or stalled process ending the run promptly."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from train_runs import (  # noqa: E402
    accelerate_cmd,
    free_port,
    kill_tree,
    metrics,
    run,
    run_folder,
    start,
    wait_for,
    worker_with_rank,
)

from gear_sonic.model import SonicModel  # noqa: E402
from gear_sonic.rl.trainer import PARAMETER_DIGESTS_FILE, parameter_digest  # noqa: E402


def _two_machines(tmp_path: Path, logs: Path, *overrides: str) -> list:
    port = free_port()
    procs = []
    for rank in (0, 1):
        launch = ["--num_machines", "2", "--num_processes", "2", "--machine_rank", str(rank),
                  "--main_process_ip", "127.0.0.1", "--main_process_port", str(port)]
        procs.append(start(accelerate_cmd(launch, logs, *overrides), tmp_path / f"machine{rank}.log"))
    return procs


def _check_identical(run_dir: Path, num_processes: int) -> None:
    record = json.loads((run_dir / PARAMETER_DIGESTS_FILE).read_text())
    assert record["num_processes"] == num_processes and len(record["digests"]) == num_processes
    assert len(set(record["digests"])) == 1 and record["identical"]
    # The digest the processes agreed on is that of the weights saved in the final checkpoint.
    assert record["digests"][0] == parameter_digest(SonicModel.from_pretrained(run_dir / "last"))


def test_two_processes_keep_bit_identical_parameters_and_log_global_statistics(tmp_path):
    logs = tmp_path / "logs"
    out = run(accelerate_cmd(["--num_processes", "2"], logs, "++algo.config.num_learning_iterations=3"), timeout_s=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "processes: 2, envs per process: 4" in out.stdout
    run_dir = run_folder(logs)
    _check_identical(run_dir, 2)
    rows = metrics(run_dir)
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    for r in rows:
        assert r["world/num_processes"] == 2.0
        assert r["world/env_steps_per_iteration"] == 2 * 4 * 8  # both processes' envs x steps
        # Throughput counts every process's steps over the slowest process's iteration time.
        assert r["throughput/env_steps_per_s"] == pytest.approx(64 / r["time/iteration_s"], rel=1e-6)
    assert "num_processes=2" in out.stdout  # the console line names the process count


def test_two_machine_launch_trains(tmp_path):
    logs = tmp_path / "logs"
    procs = _two_machines(tmp_path, logs, "++algo.config.num_learning_iterations=2")
    try:
        codes = [p.wait(timeout=240) for p in procs]
    finally:
        for p in procs:
            kill_tree(p)
    logs_text = [(tmp_path / f"machine{r}.log").read_text() for r in (0, 1)]
    assert codes == [0, 0], logs_text[0][-3000:] + logs_text[1][-3000:]
    assert "starting 1 worker process(es) on machine 1 of 2 (2 in all)" in logs_text[1]
    assert "processes: 2, envs per process: 4" in logs_text[0]
    _check_identical(run_folder(logs), 2)


def test_killed_process_stops_the_run_with_an_error(tmp_path):
    """kill -9 one of two processes on one machine: torchrun's agent stops the other, the launch fails."""
    logs, log = tmp_path / "logs", tmp_path / "launch.log"
    proc = start(accelerate_cmd(["--num_processes", "2"], logs, "++algo.config.num_learning_iterations=100"), log)
    try:
        wait_for(lambda: "it 1/100" in log.read_text(), 180, proc, "the first iteration")
        worker_with_rank(proc, 1).send_signal(signal.SIGKILL)
        killed = time.monotonic()
        code = proc.wait(timeout=60)
        elapsed = time.monotonic() - killed
    finally:
        kill_tree(proc)
    text = log.read_text()
    assert code != 0 and elapsed < 45, (code, elapsed)
    assert "Signal 9 (SIGKILL)" in text and "rank      : 1" in text
    assert "ERROR: training failed on machine 0" in text


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_dead_or_stalled_peer_on_another_machine_ends_the_run_within_the_timeout(tmp_path, how):
    """Two machines: machine 1's worker is killed (connection closes) or stalled (nothing arrives);
    machine 0's worker reports the lost peer and exits non-zero within dist_timeout_s."""
    timeout_s = 8
    logs = tmp_path / "logs"
    procs = _two_machines(tmp_path, logs, "++algo.config.num_learning_iterations=100", f"dist_timeout_s={timeout_s}")
    log0 = tmp_path / "machine0.log"
    try:
        wait_for(lambda: "it 1/100" in log0.read_text(), 180, procs[0], "the first iteration")
        victim = worker_with_rank(procs[1], 1)
        victim.send_signal(getattr(signal, how))
        hit = time.monotonic()
        code = procs[0].wait(timeout=90)
        elapsed = time.monotonic() - hit
    finally:
        for p in procs:
            kill_tree(p)
    text = log0.read_text()
    assert code != 0, text[-3000:]
    assert "ERROR [process 0 of 2]: lost contact with the other training processes" in text
    assert "exitcode  : 3" in text  # our worker's own exit, not a hang killed from outside
    if how == "SIGKILL":
        assert "by peer" in text and elapsed < 30, elapsed  # "Connection closed/reset by peer"
    else:
        assert "Timed out" in text and timeout_s - 1 < elapsed < timeout_s + 30, elapsed
