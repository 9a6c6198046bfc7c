"""SonicModel: presets and parameter counts, routing, the PPO forward, auxiliary losses and the
critic's running normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gear_sonic.layout import DECODER_INPUT_WIDTH, group
from gear_sonic.model import SonicConfig, SonicModel
from gear_sonic.layout.routing import sample_encoder_routing, single_encoder_routing

GROUPS = ("proprioception", "g1", "teleop", "smpl", "critic")


def random_obs(num_envs: int, seed: int = 0, groups=GROUPS) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(num_envs, group(name).width, generator=generator) for name in groups}


class PeerSum:
    """What the trainer's process group offers (an in-place `sum_`) for two processes: each call adds
    the other process's next tensor, in the order its collectives are issued."""

    def __init__(self, peer_tensors: list[torch.Tensor]):
        self.peer_tensors = list(peer_tensors)

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        return t.add_(self.peer_tensors.pop(0))


@pytest.fixture(scope="module")
def cpu_model() -> SonicModel:
    torch.manual_seed(0)
    return SonicModel(SonicConfig.from_preset("sonic_cpu"))


def test_release_parameter_counts_match_sonic():
    with torch.device("meta"):  # shapes only: no 150 MB of weights to initialise
        model = SonicModel(SonicConfig.from_preset("sonic_release"))
    counts = model.parameter_counts()
    print(f"sonic_release actor parameters {counts['actor']:,} (encoders g1/teleop/smpl + g1_dyn decoder + g1_kin "
          f"decoder + action std), critic {counts['critic']:,}; parts: {counts}")
    assert abs(counts["actor"] - 25.9e6) / 25.9e6 < 0.01
    assert abs(counts["critic"] - 11.5e6) / 11.5e6 < 0.01
    assert counts["actor"] == sum(v for k, v in counts.items() if k not in ("actor", "critic"))
    assert counts["actor"] + counts["critic"] == sum(p.numel() for p in model.parameters())


def test_presets():
    release = SonicConfig.from_preset("sonic_release")
    assert release.encoder_names == ["g1", "teleop", "smpl"]
    assert release.encoder_hidden_dims == [2048, 1024, 512, 512]
    assert release.decoder_hidden_dims == [2048, 2048, 1024, 1024, 512, 512]
    assert release.fsq_levels == [32] * 32 and release.num_tokens == 2 and release.token_dim == 64
    assert release.aux_loss_coefs["g1_recon"] == 0.01 and release.aux_loss_coefs["align_g1_smpl"] == 1.0
    bones = SonicConfig.from_preset("sonic_bones_seed")
    assert bones.encoder_names == ["g1", "teleop", "smpl", "soma"]
    assert bones.decoder_hidden_dims == bones.critic_hidden_dims == [4096, 4096, 2048, 2048, 1024, 1024, 512, 512]
    assert bones.observation_widths["soma"] == 900
    with torch.device("meta"):
        cpu_counts = SonicModel(SonicConfig.from_preset("sonic_cpu")).parameter_counts()
    assert cpu_counts["actor"] < 2e6
    with pytest.raises(ValueError, match="unknown SonicConfig preset"):
        SonicConfig.from_preset("sonic_gpu")
    with pytest.raises(ValueError, match="unknown encoder names"):
        SonicConfig(encoder_names=["g1", "mocap"])
    with pytest.raises(ValueError, match="64-D token"):
        SonicConfig(num_tokens=3)


def test_routing_follows_sonic_rule():
    names = ("g1", "teleop", "smpl")
    generator = torch.Generator().manual_seed(0)
    index, active = sample_encoder_routing(names, 30000, generator)
    assert index.dtype == torch.long and active.dtype == torch.bool and active.shape == (30000, 3)
    fractions = torch.bincount(index, minlength=3).float() / 30000
    assert torch.allclose(fractions, torch.full((3,), 1 / 3), atol=0.015)
    assert active[torch.arange(30000), index].all()
    smpl = index == 2
    assert active[smpl, 0].all()  # g1 always runs beside smpl
    assert abs(active[smpl, 1].float().mean().item() - 0.5) < 0.03  # teleop with p = 0.5
    assert active[~smpl].sum(1).eq(1).all()  # g1 and teleop run alone
    again = sample_encoder_routing(names, 30000, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], index) and torch.equal(again[1], active)

    index4, active4 = sample_encoder_routing(("g1", "teleop", "smpl", "soma"), 4000, generator)
    soma = index4 == 3
    assert active4[soma, 0].all() and not active4[soma, 1].any() and not active4[soma, 2].any()
    idx, act = single_encoder_routing(names, "teleop", 5)
    assert idx.tolist() == [1] * 5 and act.sum().item() == 5 and act[:, 1].all()


def test_forward_shapes_log_prob_and_std(cpu_model):
    n = 16
    obs = random_obs(n)
    generator = torch.Generator().manual_seed(1)
    index, active = cpu_model.sample_encoder_routing(n, generator)
    out = cpu_model(obs, index, active, generator=generator)
    assert out.action_mean.shape == out.actions.shape == out.action_std.shape == (n, 29)
    assert out.log_prob.shape == out.entropy.shape == out.value.shape == (n,)
    assert out.tokens.shape == (n, 64) and out.latents.shape == (n, 3, 64)
    std = cpu_model.config.init_action_std
    assert torch.allclose(out.action_std, torch.full((n, 29), std))
    expected = torch.distributions.Normal(out.action_mean, std).log_prob(out.actions).sum(-1)
    assert torch.allclose(out.log_prob, expected, atol=1e-5)
    assert torch.allclose(out.entropy, torch.full((n,), 29 * (0.5 + 0.5 * math.log(2 * math.pi) + math.log(std))))
    # Scoring given actions reproduces the sampled log-probabilities.
    again = cpu_model(obs, index, active, actions=out.actions)
    assert torch.allclose(again.log_prob, out.log_prob) and torch.equal(again.actions, out.actions)
    # Quantised token values lie on the FSQ grid in [-1, 1).
    assert out.tokens.min() >= -1 and out.tokens.max() < 1
    assert torch.allclose(out.tokens * 16, (out.tokens * 16).round(), atol=1e-5)
    # The driving encoder's token feeds the decoder; act_inference gives the same means.
    per_env = torch.stack([cpu_model.encode_tokens(obs, int(i))[k] for k, i in enumerate(index)])
    assert torch.allclose(out.tokens, per_env)
    assert torch.allclose(cpu_model.act_inference(obs, index), out.action_mean, atol=1e-6)
    assert torch.allclose(cpu_model.evaluate_value(obs), out.value)
    # The std is clamped to [0.001, 0.5].
    with torch.no_grad():
        cpu_model.action_head.std.copy_(torch.linspace(-1.0, 1.0, 29))
    try:
        std = cpu_model(obs, index, active).action_std[0].detach()
        assert float(std.min()) == pytest.approx(0.001) and float(std.max()) == pytest.approx(0.5)
    finally:
        cpu_model.action_head.reset()


def test_encoder_only_runs_where_active(cpu_model):
    obs = random_obs(4)
    index = torch.tensor([0, 1, 2, 2])
    active = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 1], [1, 1, 1]], dtype=torch.bool)
    latents, tokens = cpu_model.encode(obs, active)
    assert (latents[~active] == 0).all() and (tokens[~active] == 0).all()
    full = cpu_model.encoders["smpl"](obs["smpl"])
    assert torch.allclose(latents[2:, 2], full[2:], atol=1e-6)
    # An env whose driving encoder is not active is refused; so are wrong widths.
    with pytest.raises(ValueError, match="driving encoder"):
        cpu_model(obs, index, torch.eye(3, dtype=torch.bool)[[0, 0, 0, 0]])
    bad = dict(obs, g1=obs["g1"][:, :-1])
    with pytest.raises(ValueError, match="'g1' has shape"):
        cpu_model(bad, index, active)
    with pytest.raises(KeyError, match="'smpl' missing"):
        cpu_model({k: v for k, v in obs.items() if k != "smpl"}, index, active)


def test_aux_losses_weights_masks_and_gradients(cpu_model):
    n = 12
    obs = random_obs(n, seed=3)
    index = torch.tensor([2] * 6 + [0] * 3 + [1] * 3)
    active = torch.zeros(n, 3, dtype=torch.bool)
    active[torch.arange(n), index] = True
    active[:6, 0] = True  # smpl envs pair with g1; envs 0..2 also with teleop
    active[:3, 1] = True
    cpu_model.zero_grad()
    out = cpu_model(obs, index, active, compute_aux=True)
    assert set(out.aux_losses) == {"g1_recon", "align_g1_smpl", "align_g1_teleop", "align_teleop_smpl", "cycle_smpl_g1"}
    coefs = cpu_model.config.aux_loss_coefs
    for name, raw in out.aux_losses.items():
        assert torch.allclose(out.aux_losses_weighted[name], raw * coefs[name])
    assert torch.allclose(out.aux_loss_total, sum(out.aux_losses_weighted.values()))
    lat = out.latents
    expect_g1_smpl = (lat[:6, 0] - lat[:6, 2]).pow(2).mean()
    assert torch.allclose(out.aux_losses["align_g1_smpl"], expect_g1_smpl, rtol=1e-5)
    expect_teleop_smpl = (lat[:3, 1] - lat[:3, 2]).pow(2).mean()
    assert torch.allclose(out.aux_losses["align_teleop_smpl"], expect_teleop_smpl, rtol=1e-5)
    g1_rows = active[:, 0]
    recon = cpu_model.kin_decoder(cpu_model.encode(obs, active)[1][:, 0])
    expect_recon = (recon[g1_rows] - obs["g1"][g1_rows]).pow(2).mean()
    assert torch.allclose(out.aux_losses["g1_recon"], expect_recon, rtol=1e-5)
    out.aux_loss_total.backward()
    for name in ("g1", "teleop", "smpl"):  # straight-through FSQ lets every encoder learn
        assert cpu_model.encoders[name][0].weight.grad.abs().sum() > 0
    assert cpu_model.kin_decoder[0].weight.grad.abs().sum() > 0
    cpu_model.zero_grad()
    # Without any pairs the alignment terms are zero (not NaN).
    lonely = cpu_model(obs, torch.zeros(n, dtype=torch.long), torch.eye(3, dtype=torch.bool)[[0] * n], compute_aux=True)
    assert lonely.aux_losses["align_g1_smpl"] == 0 and lonely.aux_losses["cycle_smpl_g1"] == 0
    assert torch.isfinite(lonely.aux_loss_total)


def test_critic_normalizer_matches_numpy_and_syncs():
    torch.manual_seed(0)
    model = SonicModel(SonicConfig.from_preset("sonic_cpu"))
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(64, group("critic").width)).astype(np.float32) for _ in range(3)]
    for b in batches:
        model.update_normalizer(torch.from_numpy(b))  # a tensor: the critic's observations
    everything = np.concatenate(batches)
    state = model.normalizer_state()
    assert state["count"].item() == 192
    np.testing.assert_allclose(state["mean"].numpy(), everything.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state["var"].numpy(), everything.var(0), rtol=1e-4)
    x = torch.from_numpy(batches[0])
    expected = (x - torch.from_numpy(everything.mean(0))) / (torch.from_numpy(everything.std(0)) + 0.01)
    assert torch.allclose(model.critic_normalizer(x), expected, atol=1e-4)

    # Two "processes" that sum their batch moments end with the statistics of the union.
    a = SonicModel(SonicConfig.from_preset("sonic_cpu"))
    b = SonicModel(SonicConfig.from_preset("sonic_cpu"))
    xa, xb = torch.from_numpy(batches[0]), torch.from_numpy(batches[1])
    def moments(x):
        x = x.to(torch.float64)
        return torch.cat([x.new_tensor([x.shape[0]]), x.sum(0), (x * x).sum(0)])
    a.update_normalizer(xa, all_reduce_sum=lambda t: t + moments(xb))
    b.update_normalizer(xb, all_reduce_sum=lambda t: t + moments(xa))
    for key in ("count", "mean", "var"):
        assert torch.equal(a.normalizer_state()[key], b.normalizer_state()[key])
    np.testing.assert_allclose(a.normalizer_state()["mean"].numpy(), np.concatenate(batches[:2]).mean(0), atol=1e-5)
    # Local updates during a rollout, then one sync: the union of both processes' batches.
    # (no decoder-input normaliser here: the peer below offers the critic's moments only)
    a2 = SonicModel(SonicConfig.from_preset("sonic_cpu", normalize_decoder_inputs=False))
    b2 = SonicModel(SonicConfig.from_preset("sonic_cpu", normalize_decoder_inputs=False))
    a2.update_normalizer(xa)  # an earlier, already synced batch on both
    b2.update_normalizer(xa)
    a2.sync_normalizer(lambda t: t)  # single-process sum: the identity
    b2.sync_normalizer(lambda t: t)
    xc = torch.from_numpy(batches[2])
    a2.update_normalizer(xb[:40])
    a2.update_normalizer(xb[40:])
    b2.update_normalizer(xc)
    pending_a, pending_b = a2.critic_normalizer._pending.clone(), b2.critic_normalizer._pending.clone()
    a2.sync_normalizer(PeerSum([pending_b]))
    b2.sync_normalizer(PeerSum([pending_a]))
    union = np.concatenate([batches[0], batches[1], batches[2]])
    for m in (a2, b2):
        assert m.normalizer_state()["count"].item() == 192
        np.testing.assert_allclose(m.normalizer_state()["mean"].numpy(), union.mean(0), atol=1e-5)
        np.testing.assert_allclose(m.normalizer_state()["var"].numpy(), union.var(0), rtol=1e-4)
    assert torch.equal(a2.critic_normalizer.mean, b2.critic_normalizer.mean)

    c = SonicModel(SonicConfig.from_preset("sonic_cpu"))
    c.load_normalizer_state(a.normalizer_state())
    assert torch.equal(c.evaluate_value(random_obs(3)), c.evaluate_value(random_obs(3)))
    assert torch.equal(c.critic_normalizer.mean, a.critic_normalizer.mean)


def test_decoder_width_is_release_width(cpu_model):
    first_linear = next(m for m in cpu_model.decoder if isinstance(m, torch.nn.Linear))
    assert first_linear.in_features == DECODER_INPUT_WIDTH == 994
    assert cpu_model.decoder[0].dim == 994  # the CPU preset normalises the decoder's inputs


def test_routing_module_imports_without_transformers_for_the_env():
    import subprocess
    import sys

    code = "import sys, gear_sonic.layout.routing; print('transformers' in sys.modules, 'vector_quantize_pytorch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_latent_norm_and_encoder_input_normalisers():
    torch.manual_seed(0)
    plain = SonicModel(SonicConfig.from_preset("sonic_cpu", normalize_latents=False, normalize_encoder_inputs=False,
                                               normalize_decoder_inputs=False))
    model = SonicModel(SonicConfig.from_preset("sonic_cpu", normalize_latents=True, normalize_encoder_inputs=True,
                                               normalize_decoder_inputs=True))
    # None adds trainable parameters; without them the encoders and decoder keep SONIC's key names.
    assert plain.parameter_counts() == model.parameter_counts()
    assert {"encoders.g1.0.weight", "decoder.0.weight"} <= set(plain.state_dict())
    assert {"encoders.g1.0.mean", "decoder.0.mean"} <= set(model.state_dict())

    generator = torch.Generator().manual_seed(3)
    # Inputs that differ little between envs compared with their common offset, as motion commands do.
    obs = {name: torch.randn(64, group(name).width, generator=generator) * 0.05 + 1.0 for name in GROUPS}
    with pytest.raises(ValueError, match="pass encoder_index"):
        model.update_normalizer(obs)  # the decoder-input normaliser needs each env's driving encoder
    model.update_normalizer(obs, encoder_index=torch.zeros(64, dtype=torch.long))
    model.sync_normalizer(lambda t: t)
    normalizer = model.encoders["g1"][0]
    np.testing.assert_allclose(normalizer.mean.numpy(), obs["g1"].mean(0).numpy(), rtol=1e-5, atol=1e-5)
    assert normalizer.count.item() == 64 and model.critic_normalizer.count.item() == 64

    active = torch.ones(64, 3, dtype=torch.bool)
    latents, _ = model.encode(obs, active)
    per_token = latents.reshape(64, 3, 2, 32)
    assert per_token.mean(-1).abs().max() < 1e-5
    assert (per_token.var(-1, unbiased=False) - 1).abs().max() < 1e-2  # layer-norm eps 1e-5 vs raw variance ~3e-3
    # The encoder is exactly: normalise inputs -> MLP -> per-token layer norm.
    x = obs["teleop"]
    normed_in = (x - model.encoders["teleop"][0].mean) / (model.encoders["teleop"][0].var.sqrt() + 0.01)
    mlp_out = torch.nn.Sequential(*list(model.encoders["teleop"])[1:-1])(normed_in).reshape(64, 2, 32)
    expected = torch.nn.functional.layer_norm(mlp_out, (32,)).reshape(64, 64)
    assert torch.allclose(latents[:, 1], expected, atol=1e-5)

    # Raw latents of such inputs stay within one FSQ level across envs; normalised ones span several.
    with torch.no_grad():
        raw_tokens = plain.encode_tokens(obs, "g1")
        tokens = model.encode_tokens(obs, "g1")
    step = 1 / 16  # FSQ spacing of 32 levels on [-1, 1)
    print(f"token std across envs: plain {raw_tokens.std(0).mean():.4f}, normalised {tokens.std(0).mean():.4f}")
    assert tokens.std(0).mean() > 2 * step and raw_tokens.std(0).mean() < step / 2

    # Two processes (identical weights) with different local batches end with the union's
    # encoder-input and decoder-input statistics.
    config = SonicConfig.from_preset("sonic_cpu", normalize_encoder_inputs=True, normalize_decoder_inputs=True)
    a, b = (SonicModel(config), SonicModel(config))
    b.load_state_dict(a.state_dict())
    driving = torch.arange(64) % 3
    a.update_normalizer({k: v[:40] for k, v in obs.items()}, encoder_index=driving[:40])
    b.update_normalizer({k: v[40:] for k, v in obs.items()}, encoder_index=driving[40:])
    heads = ["critic_normalizer", *(f"encoders.{n}.0" for n in a.encoder_names), "decoder.0"]
    pending = {id(m): [m.get_submodule(h)._pending.clone() for h in heads] for m in (a, b)}
    a.sync_normalizer(PeerSum(pending[id(b)]))
    b.sync_normalizer(PeerSum(pending[id(a)]))
    for head in heads:
        assert torch.equal(a.get_submodule(head).mean, b.get_submodule(head).mean), head
    for name in a.encoder_names:
        np.testing.assert_allclose(a.encoders[name][0].mean.numpy(), obs[name].mean(0).numpy(), rtol=1e-5, atol=1e-5)
    # The decoder's inputs are [token | proprioception]; the tokens were taken with each process's
    # pre-sync encoder statistics, so only the proprioception half has a closed form here.
    np.testing.assert_allclose(a.decoder[0].mean[64:].numpy(), obs["proprioception"].mean(0).numpy(), rtol=1e-5,
                               atol=1e-5)
    assert a.decoder[0].count.item() == 64 and a.decoder[0].var[:64].mean() > 0
