"""Publishing a `SonicModel`: config, weights, model card and ONNX files in one Hub commit."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from huggingface_hub import HfApi

from gear_sonic.export import export_onnx
from gear_sonic.hub.model_card import render_model_card
from gear_sonic.model import SonicModel


def save_for_hub(
    model: SonicModel,
    folder: str | Path,
    *,
    repo_id: str = "gear_sonic/model",
    metrics: Mapping[str, float] | None = None,
    training_data: str | None = None,
    onnx_prefix: str | None = "sonic",
    overwrite: bool = False,
) -> Path:
    """Write everything a Hub repository holds into a local `folder` (works offline).

    `onnx_prefix=None` skips the ONNX export. The folder appears complete or not at all: it is
    assembled under a temporary name beside it and renamed.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(staging)
        if onnx_prefix is not None:
            export_onnx(model, staging, prefix=onnx_prefix, verify=False)
        card = render_model_card(
            model, repo_id, metrics=metrics, training_data=training_data, onnx_prefix=onnx_prefix
        )
        (staging / "README.md").write_text(card)
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def push_to_hub(
    model: SonicModel,
    repo_id: str,
    *,
    api: HfApi | None = None,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload gear_sonic model",
    metrics: Mapping[str, float] | None = None,
    training_data: str | None = None,
    onnx_prefix: str | None = "sonic",
    create_pr: bool = False,
):
    """Create `repo_id` if needed and upload config.json, model.safetensors, README.md and the ONNX
    + layout files in one commit. `api` defaults to `HfApi(token=token)`; tests pass a stand-in."""
    api = api if api is not None else HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="gear_sonic_push_") as tmp:
        folder = save_for_hub(
            model, Path(tmp) / "upload", repo_id=repo_id, metrics=metrics,
            training_data=training_data, onnx_prefix=onnx_prefix,
        )
        api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True, token=token)
        return api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
            commit_message=commit_message, token=token, create_pr=create_pr,
        )
