"""The user-facing commands end to end: train a few iterations, evaluate, export ONNX, replay."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXP = "+exp=manager/universal_token/all_modes/sonic_cpu"


def _run(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(REPO / "gear_sonic" / script), *args],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    logs = tmp_path_factory.mktemp("logs")
    out = _run(
        "train_agent_trl.py", EXP, "num_envs=8", "headless=True", "use_wandb=false", f"logs_dir={logs}",
        "++algo.config.num_learning_iterations=2", "++algo.config.num_steps_per_env=8",
        "++manager_env.commands.motion.motion_lib_cfg.max_unique_motions=4",
    )
    assert "it 2/2" in out and "run folder:" in out
    runs = list((logs / "TRL_G1_Track").glob("sonic_cpu-*"))
    assert len(runs) == 1
    return runs[0]


def test_training_writes_checkpoints_logs_and_curve(trained_run):
    last = trained_run / "last"
    assert last.is_symlink() and (last / "config.json").is_file() and (last / "model.safetensors").is_file()
    assert (last / "training_state.json").is_file() and (last / "config.yaml").is_file()
    assert json.loads((last / "training_state.json").read_text())["iteration"] == 2
    # The final iteration is due for both names: written once, published twice.
    step = trained_run / "model_step_000002"
    for name in ("model.safetensors", "training_state.safetensors", "config.yaml"):
        assert (step / name).samefile(last / name)
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [0, 1]
    assert all("loss/value" in r and "throughput/env_steps_per_s" in r for r in records)
    assert (trained_run / "learning_curve.png").stat().st_size > 1000


def test_evaluation_reports_sonic_metrics(trained_run):
    out = _run(
        "eval_agent_trl.py", f"+checkpoint={trained_run}/last", "+headless=True", "++eval_callbacks=im_eval",
        "++num_envs=4", "+manager_env/terminations=tracking/eval", "++use_encoder=teleop",
    )
    assert "success_rate" in out and "mpjpe_l" in out
    report = json.loads(((trained_run / "last").resolve() / "eval" / "metrics_teleop.json").read_text())
    metrics = report["metrics"]
    assert report["encoder"] == "teleop" and metrics["num_clips"] == 4  # the training run's max_unique_motions
    for key in ("success_rate", "progress_rate", "mpjpe_g", "mpjpe_l", "mpjpe_pa", "vel_dist", "accel_dist", "mpjpe_l_legs"):
        assert metrics[key] == metrics[key], key  # not NaN
    assert 0.0 <= metrics["success_rate"] <= 1.0 and metrics["mpjpe_g"] > 0


def test_export_onnx_only_writes_every_modality(trained_run):
    _run("eval_agent_trl.py", f"+checkpoint={trained_run}/last", "+headless=True", "++num_envs=1", "+export_onnx_only=true")
    exported = (trained_run / "last").resolve() / "exported"
    names = sorted(p.name for p in exported.glob("*.onnx"))
    assert [n.rsplit("_", 1)[-1] for n in names] == ["decoder.onnx", "encoder.onnx", "g1.onnx", "smpl.onnx", "teleop.onnx"]
    assert len(list(exported.glob("*.layout.json"))) == 5


def test_unknown_encoder_is_a_clear_error(trained_run):
    proc = subprocess.run(
        [sys.executable, str(REPO / "gear_sonic" / "eval_agent_trl.py"), f"+checkpoint={trained_run}/last",
         "+headless=True", "++use_encoder=soma"], cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0 and "use_encoder=soma" in proc.stderr


def test_replay_tracks_the_reference():
    out = _run("train_agent_trl.py", EXP, "++replay=True", "num_envs=2", "use_wandb=false",
               "++manager_env.config.episode_length_s=1.0")
    terms = {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if line.startswith("  tracking_")}
    # Rewards are per step (weight * dt * exp(-err/sigma^2)); a perfect match gives weight * 0.02.
    assert terms["tracking_relative_body_pos"] > 0.95 * 1.0 * 0.02
    assert terms["tracking_anchor_pos"] > 0.95 * 0.5 * 0.02
