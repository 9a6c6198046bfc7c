"""save_pretrained / from_pretrained: bit-exact round trips and clear refusals of checkpoints
whose weights do not match their config."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from gear_sonic.layout import group
from gear_sonic.model import CheckpointMismatchError, SonicConfig, SonicModel


def random_obs(num_envs: int, groups, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(num_envs, group(name).width, generator=generator) for name in groups}


def trained_looking_model(preset: str = "sonic_cpu", **overrides) -> SonicModel:
    """A model whose std and normaliser differ from their initial values, as after training."""
    torch.manual_seed(0)
    model = SonicModel(SonicConfig.from_preset(preset, **overrides))
    with torch.no_grad():
        model.action_head.std.copy_(torch.linspace(0.01, 0.3, 29))
    names = [*model.encoder_names, "critic", "proprioception"]
    model.update_normalizer({n: torch.randn(50, group(n).width) * 3 + 1 for n in names},
                            encoder_index=torch.arange(50) % len(model.encoder_names))
    return model


def test_round_trip_is_bit_exact(tmp_path):
    model = trained_looking_model(encoder_names=["g1", "teleop", "smpl", "soma"], normalize_encoder_inputs=True,
                                  normalize_latents=True)
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = SonicModel.from_pretrained(tmp_path / "ckpt")
    def settings(config):
        return {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}

    assert settings(loaded.config) == settings(model.config)
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert original[key].dtype == restored[key].dtype and torch.equal(original[key], restored[key]), key
    assert torch.equal(loaded.quantizer.fsq._levels, model.quantizer.fsq._levels)
    # Same outputs, bit for bit, for every driving encoder and for the critic.
    obs = random_obs(32, ("proprioception", "g1", "teleop", "smpl", "soma", "critic"))
    index, active = model.sample_encoder_routing(32, torch.Generator().manual_seed(0))
    a = model(obs, index, active, compute_aux=True, generator=torch.Generator().manual_seed(1))
    b = loaded(obs, index, active, compute_aux=True, generator=torch.Generator().manual_seed(1))
    for field in ("action_mean", "action_std", "actions", "log_prob", "value", "tokens", "aux_loss_total"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    for name in ("g1", "teleop", "smpl", "soma"):
        assert torch.equal(model.act_inference(obs, name), loaded.act_inference(obs, name))


def test_mismatched_hidden_sizes_are_refused(tmp_path):
    model = trained_looking_model()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["decoder_hidden_dims"] = [512, 256, 128]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match=r"model\.safetensors does not match .*config\.json.*shape mismatch.*decoder"):
        SonicModel.from_pretrained(tmp_path)


def test_missing_and_unexpected_tensors_are_refused(tmp_path):
    model = trained_looking_model()
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["critic_normalizer.mean"]
    weights["encoders.soma.0.weight"] = torch.zeros(2, 2)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointMismatchError) as info:
        SonicModel.from_pretrained(tmp_path)
    message = str(info.value)
    assert "missing (1): ['critic_normalizer.mean']" in message
    assert "unexpected (1): ['encoders.soma.0.weight']" in message


def test_encoder_set_mismatch_is_refused(tmp_path):
    trained_looking_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["encoder_names"] = ["g1", "teleop"]
    config["observation_widths"].pop("smpl")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected \(\d+\): \['encoders\.smpl"):
        SonicModel.from_pretrained(tmp_path)


def test_other_observation_layout_and_broken_files_are_refused(tmp_path):
    trained_looking_model().save_pretrained(tmp_path)
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text())
    config["observation_widths"]["g1"] = 641
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match=r"config\.json: invalid SonicConfig: .*another observation layout"):
        SonicModel.from_pretrained(tmp_path)
    config["observation_widths"]["g1"] = 640
    config_path.write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointMismatchError, match=r"model\.safetensors: not a readable safetensors file"):
        SonicModel.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointMismatchError, match=r"model\.safetensors: weights file missing"):
        SonicModel.from_pretrained(tmp_path)
