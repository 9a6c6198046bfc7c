"""Training checkpoints: a `save_pretrained` folder plus the full training state, written atomically.

Layout of one checkpoint folder (so `SonicModel.from_pretrained(folder)` works directly):
    config.json, model.safetensors          the model (Hugging Face format)
    training_state.safetensors              optimizer moments, RNG states, env sampling statistics
    training_state.json                     iteration, learning rate, optimizer hyperparameters, numpy RNG

Every folder is first written under a temporary name and renamed when complete. `last` is a symlink
swapped atomically to the newest `last_XXXXXX` folder, so a SIGKILL at any moment leaves the previous
checkpoint loadable. Nothing here unpickles.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gear_sonic.model.folders import LAST_LINK, resolve_checkpoint

TRAINING_STATE_TENSORS = "training_state.safetensors"
TRAINING_STATE_JSON = "training_state.json"


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing or inconsistent."""


@dataclass
class TrainingState:
    iteration: int
    learning_rate: float
    optimizer: dict
    rng: dict[str, torch.Tensor]
    env_state: dict[str, torch.Tensor] = field(default_factory=dict)
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
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    with _quiet_hub_progress():
        model.save_pretrained(tmp)
    opt_tensors, opt_meta = _flatten_optimizer(state.optimizer)
    tensors = dict(opt_tensors)
    tensors.update({f"rng.{k}": v.contiguous().cpu() for k, v in state.rng.items()})
    tensors.update({f"env.{k}": v.contiguous().cpu() for k, v in state.env_state.items()})
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
    _fsync_dir(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    _fsync_dir(folder.parent)
    return folder


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
    tensors = load_file(str(folder / TRAINING_STATE_TENSORS))
    return TrainingState(
        iteration=int(meta["iteration"]),
        learning_rate=float(meta["learning_rate"]),
        optimizer=_unflatten_optimizer({k: v for k, v in tensors.items() if k.startswith("optimizer.")}, meta["optimizer"]),
        rng={k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")},
        env_state={k.removeprefix("env."): v for k, v in tensors.items() if k.startswith("env.")},
        extra=meta.get("extra", {}),
    )


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
