"""push_to_hub against a recording stand-in for `HfApi` (the Hub is never contacted), the model
card, and loading the uploaded folder back."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard

from gear_sonic.hub import push_to_hub, render_model_card, save_for_hub
from gear_sonic.layout import group
from gear_sonic.model import SonicConfig, SonicModel


class RecordingHfApi(HfApi):
    """Records calls and keeps a copy of each uploaded folder instead of talking to the Hub."""

    def __init__(self, store: Path):
        super().__init__(token="hf_offline_test_token")
        self.store = store
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        self.calls.append(("upload_folder", {"repo_id": repo_id, "folder_path": folder_path, **kwargs}))
        target = self.store / repo_id.replace("/", "__")
        shutil.copytree(folder_path, target)
        return f"https://huggingface.co/{repo_id}/commit/0"

    def upload_file(self, **kwargs):  # push_to_hub must not fall back to file-by-file uploads
        raise AssertionError("unexpected upload_file call")


@pytest.fixture(scope="module")
def model() -> SonicModel:
    torch.manual_seed(0)
    m = SonicModel(SonicConfig.from_preset("sonic_cpu"))
    m.update_normalizer(torch.randn(20, group("critic").width))
    return m


def _obs(n: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return {k: torch.randn(n, group(k).width, generator=g) for k in ("proprioception", "g1", "teleop", "smpl", "critic")}


def test_push_uploads_config_weights_card_and_onnx(tmp_path, model):
    api = RecordingHfApi(tmp_path / "hub")
    url = push_to_hub(model, "someone/sonic-small", api=api, private=True, metrics={"success_rate": 0.975, "mpjpe_l": 29.4},
                      training_data="sample_data clips (synthetic)")
    assert url.endswith("/commit/0")
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]
    create = api.calls[0][1]
    assert create["repo_id"] == "someone/sonic-small" and create["exist_ok"] and create["private"] is True
    assert create["repo_type"] == "model"
    uploaded = tmp_path / "hub" / "someone__sonic-small"
    files = {p.name for p in uploaded.iterdir()}
    kinds = ("g1", "teleop", "smpl", "encoder", "decoder")
    assert files == {"config.json", "model.safetensors", "README.md"} | {f"sonic_{k}.onnx" for k in kinds} | {
        f"sonic_{k}.onnx.layout.json" for k in kinds
    }
    # The uploaded weights load back and act exactly like the pushed model.
    loaded = SonicModel.from_pretrained(uploaded)
    obs = _obs()
    assert torch.equal(loaded.act_inference(obs, "smpl"), model.act_inference(obs, "smpl"))
    assert torch.equal(loaded.evaluate_value(obs), model.evaluate_value(obs))
    card = ModelCard.load(uploaded / "README.md")
    assert card.data.library_name == "gear_sonic" and "robotics" in card.data.tags
    for text in ("## Architecture", "## Modalities", "## Observation layout", "## Training data", "## Metrics",
                 "## Usage", "| success_rate | 0.975 |", "sample_data clips (synthetic)", "`sonic_g1.onnx`",
                 "| `command_joint_pos` | 0 | 290 | 10 | rad |", 'SonicModel.from_pretrained("someone/sonic-small")'):
        assert text in card.content, text


def test_model_method_delegates_to_hub(tmp_path, model):
    api = RecordingHfApi(tmp_path / "hub")
    model.push_to_hub("someone/other", api=api, onnx_prefix=None, commit_message="weights only")
    upload = dict(api.calls)["upload_folder"]
    assert upload["commit_message"] == "weights only"
    assert {p.name for p in (tmp_path / "hub" / "someone__other").iterdir()} == {
        "config.json", "model.safetensors", "README.md"
    }


def test_card_without_metrics_and_local_folder(tmp_path, model):
    card = render_model_card(model, "me/x")
    assert "Not evaluated yet." in card and "Not recorded." in card
    assert f"**{model.parameter_counts()['actor']:,}**" in card
    folder = save_for_hub(model, tmp_path / "repo", onnx_prefix=None)
    assert (folder / "README.md").exists()
    with pytest.raises(FileExistsError, match="repo exists"):
        save_for_hub(model, tmp_path / "repo", onnx_prefix=None)
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no staging folders left behind
