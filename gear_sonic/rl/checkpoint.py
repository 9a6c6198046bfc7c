"""Training checkpoints: a `save_pretrained` folder plus the full training state, written atomically.

Layout of one checkpoint folder (so `SonicModel.from_pretrained(folder)` works directly):
    config.json, model.safetensors          the model (Hugging Face format)
    training_state.safetensors              optimizer moments (`optimizer.`), RNG states (`rng.`), the env's
                                            complete state (`env.`: sampling statistics, episodes, MuJoCo
                                            physics) and the trainer's last observations (`obs.`)
    training_state.json                     iteration, learning rate, optimizer hyperparameters, run facts

Every folder is first written under a temporary name and renamed when complete. `last` is a symlink
swapped atomically to the newest `last_XXXXXX` folder, so a SIGKILL at any moment leaves the previous
checkpoint loadable. Nothing here unpickles.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gear_sonic.model.folders import LAST_LINK, resolve_checkpoint

TRAINING_STATE_TENSORS = "training_state.safetensors"
TRAINING_STATE_JSON = "training_state.json"
# Test hook (crash-safety tests only): when set to a checkpoint folder name, writing that folder
# stops half-way (weights written, training state not yet), creates PAUSE_MARKER in the temporary
# folder and sleeps, so a test can SIGKILL the process at a known point.
PAUSE_ENV_VAR = "GEAR_SONIC_TEST_PAUSE_IN_CHECKPOINT"
PAUSE_MARKER = "PAUSED"
_TMP_INFIX = ".tmp-"


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing or inconsistent."""


@dataclass
class TrainingState:
    iteration: int
    learning_rate: float
    optimizer: dict
    rng: dict[str, torch.Tensor]
    env_state: dict[str, torch.Tensor] = field(default_factory=dict)
    observations: dict[str, torch.Tensor] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    meta: dict = {"param_groups": state_dict["param_groups"], "state": {}}
    for pid, entries in state_dict["state"].items():
        meta["state"][str(pid)] = {}
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{pid}.{name}"] = value.detach().contiguous().cpu()
                meta["state"][str(pid)][name] = "tensor"
            else:
                meta["state"][str(pid)][name] = value
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state = {}
    for pid, entries in meta["state"].items():
        state[int(pid)] = {
            name: (tensors[f"optimizer.{pid}.{name}"] if kind == "tensor" else kind) for name, kind in entries.items()
        }
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(model, state: TrainingState, folder: str | Path, extra_files: dict[str, str] | None = None) -> Path:
    """Write `folder` atomically (temporary sibling, then rename); `extra_files` maps names to text
    written beside the weights (the resolved config, the command-line overrides)."""
    folder = Path(folder)
    tmp = _fresh_temporary(folder)
    tmp.mkdir(parents=True)
    with _quiet_hub_progress():
        model.save_pretrained(tmp)
    _pause_if_requested(folder, tmp)
    opt_tensors, opt_meta = _flatten_optimizer(state.optimizer)
    tensors = dict(opt_tensors)
    tensors.update({f"rng.{k}": v.contiguous().cpu() for k, v in state.rng.items()})
    tensors.update({f"env.{k}": v.contiguous().cpu() for k, v in state.env_state.items()})
    tensors.update({f"obs.{k}": v.contiguous().cpu() for k, v in state.observations.items()})
    save_file(tensors, str(tmp / TRAINING_STATE_TENSORS))
    meta = {
        "iteration": state.iteration,
        "learning_rate": state.learning_rate,
        "optimizer": opt_meta,
        "extra": state.extra,
    }
    (tmp / TRAINING_STATE_JSON).write_text(json.dumps(meta, indent=1))
    for name, text in (extra_files or {}).items():
        (tmp / name).write_text(text)
    _fsync_files(tmp)
    return _publish(tmp, folder)


def update_last_link(run_dir: str | Path, target: str | Path) -> Path:
    """Point `run_dir/last` at `target` by atomically replacing the symlink."""
    run_dir = Path(run_dir)
    link = run_dir / LAST_LINK
    tmp_link = run_dir / f".{LAST_LINK}.tmp-{os.getpid()}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    os.symlink(Path(target).name, tmp_link)
    os.replace(tmp_link, link)
    return link


def load_training_state(folder: str | Path) -> TrainingState:
    folder = resolve_checkpoint(folder)
    meta_path = folder / TRAINING_STATE_JSON
    if not meta_path.is_file():
        raise CheckpointError(
            f"{folder}: no {TRAINING_STATE_JSON}; this folder holds weights only "
            "(use it to finetune with SonicModel.from_pretrained, not to resume)"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{meta_path}: not valid JSON ({exc})") from exc
    tensors_path = folder / TRAINING_STATE_TENSORS
    if not tensors_path.is_file():
        raise CheckpointError(f"{tensors_path}: missing (the checkpoint is incomplete)")
    try:
        tensors = load_file(str(tensors_path))
    except Exception as exc:  # safetensors raises its own error types for truncated or corrupt files
        raise CheckpointError(f"{tensors_path}: not a readable safetensors file ({exc})") from exc
    return TrainingState(
        iteration=int(meta["iteration"]),
        learning_rate=float(meta["learning_rate"]),
        optimizer=_unflatten_optimizer({k: v for k, v in tensors.items() if k.startswith("optimizer.")}, meta["optimizer"]),
        rng={k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")},
        env_state={k.removeprefix("env."): v for k, v in tensors.items() if k.startswith("env.")},
        observations={k.removeprefix("obs."): v for k, v in tensors.items() if k.startswith("obs.")},
        extra=meta.get("extra", {}),
    )


def link_checkpoint(source: str | Path, folder: str | Path) -> Path:
    """Publish an already written checkpoint under a second name (hard links, then an atomic rename),
    so an iteration due for both `model_step_` and `last_` is serialised once. Checkpoint files are
    never modified in place, only replaced or deleted, so the two names cannot affect each other."""
    source, folder = Path(source), Path(folder)
    tmp = _fresh_temporary(folder)
    shutil.copytree(source, tmp, copy_function=os.link)
    return _publish(tmp, folder)


def _fresh_temporary(folder: Path) -> Path:
    """This process's temporary sibling of `folder` (hidden, marked for `remove_stale_temporaries`), emptied."""
    tmp = folder.with_name(f".{folder.name}{_TMP_INFIX}{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def _publish(tmp: Path, folder: Path) -> Path:
    """Make the complete `tmp` durable and rename it to `folder`, replacing any previous one."""
    _fsync_dir(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    _fsync_dir(folder.parent)
    return folder


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete temporary checkpoint folders and links left by a process killed while writing."""
    run_dir = Path(run_dir)
    removed = []
    if not run_dir.is_dir():
        return removed
    for child in run_dir.iterdir():
        if child.name.startswith(".") and _TMP_INFIX in child.name:
            if child.is_symlink() or child.is_file():
                child.unlink()
            else:
                shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


def _pause_if_requested(folder: Path, tmp: Path) -> None:
    if os.environ.get(PAUSE_ENV_VAR) != folder.name:
        return
    (tmp / PAUSE_MARKER).write_text(str(os.getpid()))
    time.sleep(3600.0)


@contextlib.contextmanager
def _quiet_hub_progress():
    """save_pretrained draws a progress bar per write; a checkpoint every few iterations makes that noise."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _fsync_files(path: Path) -> None:
    for child in path.iterdir():
        if child.is_file():
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
