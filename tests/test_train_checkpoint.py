"""Crash-safe checkpoints: SIGKILL while a checkpoint is being written leaves the previous one loadable
(as weights and for resuming); damaged or weights-only folders give clear errors."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from train_runs import kill_tree, run, run_folder, start, train_cmd, wait_for  # noqa: E402

from gear_sonic.model import SonicConfig, SonicModel  # noqa: E402
from gear_sonic.rl.checkpoint import (  # noqa: E402
    PAUSE_ENV_VAR,
    PAUSE_MARKER,
    TRAINING_STATE_JSON,
    TRAINING_STATE_TENSORS,
    CheckpointError,
    TrainingState,
    load_training_state,
    save_checkpoint,
)


def test_sigkill_during_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    logs, log = tmp_path / "logs", tmp_path / "train.log"
    every_iteration = ["++algo.config.last_save_interval=1", "++algo.config.save_interval=100"]
    proc = start(train_cmd(logs, "++algo.config.num_learning_iterations=4", *every_iteration), log,
                 **{PAUSE_ENV_VAR: "last_000002"})
    try:
        def paused() -> bool:
            return (logs / "TRL_G1_Track").is_dir() and any((logs / "TRL_G1_Track").glob(f"*/.last_000002.tmp-*/{PAUSE_MARKER}"))

        wait_for(paused, 180, proc, "the paused checkpoint write")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_tree(proc)
    run_dir = run_folder(logs)
    partial = next(run_dir.glob(".last_000002.tmp-*"))
    assert (partial / "model.safetensors").is_file() and not (partial / TRAINING_STATE_JSON).exists()
    assert not (run_dir / "last_000002").exists()
    assert (run_dir / "last").resolve().name == "last_000001"

    model = SonicModel.from_pretrained(run_dir / "last")  # the previous checkpoint loads as weights
    assert model.config.encoder_names
    assert load_training_state(run_dir / "last").iteration == 1

    out = run(train_cmd(logs, "++algo.config.num_learning_iterations=2", *every_iteration, f"+checkpoint={run_dir}"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed from" in out.stdout and "at iteration 1: exact" in out.stdout
    assert not partial.exists()  # the killed write's leftovers are cleaned up
    assert (run_dir / "last").resolve().name == "last_000002"
    assert not (run_dir / "last_000001").exists()  # superseded `last_` folders are removed
    assert load_training_state(run_dir / "last").iteration == 2


def _small_checkpoint(folder: Path) -> Path:
    model = SonicModel(SonicConfig.from_preset("sonic_cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(  # one step so the optimizer has moments to save
        {"proprioception": torch.zeros(2, 930), "g1": torch.zeros(2, 640), "teleop": torch.zeros(2, 267),
         "smpl": torch.zeros(2, 840), "critic": torch.zeros(2, 1645)},
        torch.zeros(2, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool),
    ).action_mean.sum().backward()
    optimizer.step()
    state = TrainingState(iteration=5, learning_rate=1e-3, optimizer=optimizer.state_dict(),
                          rng={"torch": torch.get_rng_state()}, observations={"critic": torch.ones(2, 3)})
    return save_checkpoint(model, state, folder)


def test_checkpoint_round_trip_and_clear_errors(tmp_path):
    folder = _small_checkpoint(tmp_path / "ckpt")
    state = load_training_state(folder)
    assert state.iteration == 5 and torch.equal(state.observations["critic"], torch.ones(2, 3))
    assert not list(tmp_path.glob(".*tmp-*"))  # nothing temporary left behind

    weights_only = tmp_path / "weights"
    SonicModel.from_pretrained(folder).save_pretrained(weights_only)
    with pytest.raises(CheckpointError, match="weights only"):
        load_training_state(weights_only)

    data = (folder / TRAINING_STATE_TENSORS).read_bytes()
    (folder / TRAINING_STATE_TENSORS).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=TRAINING_STATE_TENSORS):
        load_training_state(folder)
    (folder / TRAINING_STATE_JSON).write_text("{ not json")
    with pytest.raises(CheckpointError, match=f"{TRAINING_STATE_JSON}: not valid JSON"):
        load_training_state(folder)
