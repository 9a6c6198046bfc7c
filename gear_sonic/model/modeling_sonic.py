"""`SonicModel`: per-modality encoders -> FSQ token -> action decoder, plus the kinematic decoder,
the critic and the auxiliary token losses. A Hugging Face `PreTrainedModel` (config.json +
model.safetensors) that knows nothing of simulators: it consumes the named observation groups of
`gear_sonic.layout` and returns actions, log-probabilities, values, tokens and auxiliary losses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel

from gear_sonic.layout import CRITIC, PROPRIOCEPTION, TOKENIZER_GROUPS
from gear_sonic.model.configuration_sonic import SonicConfig
from gear_sonic.model.layers import MLP, GaussianActionHead, RunningMeanStd, TokenLayerNorm, TokenQuantizer
from gear_sonic.layout.routing import sample_encoder_routing, single_encoder_routing

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"

# Latent pairs aligned by the auxiliary losses: loss name -> (encoder a, encoder b).
ALIGNMENT_PAIRS: dict[str, tuple[str, str]] = {
    "align_g1_smpl": ("g1", "smpl"),
    "align_g1_teleop": ("g1", "teleop"),
    "align_teleop_smpl": ("teleop", "smpl"),
    "align_g1_soma": ("g1", "soma"),
}


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the model its config.json describes."""


@dataclass
class SonicOutput:
    """What `SonicModel.forward` returns (N envs, A = 29 actions, E encoders).

    `action_std` is the clamped state-independent std expanded to (N, A) without copying.
    `aux_losses` holds the unweighted losses, `aux_losses_weighted` the same times their config
    coefficients, and `aux_loss_total` their sum (zero when `compute_aux` is False).
    """

    action_mean: torch.Tensor
    action_std: torch.Tensor
    actions: torch.Tensor
    log_prob: torch.Tensor
    entropy: torch.Tensor
    value: torch.Tensor
    tokens: torch.Tensor
    latents: torch.Tensor
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    aux_losses_weighted: dict[str, torch.Tensor] = field(default_factory=dict)
    aux_loss_total: torch.Tensor | None = None


def _masked_mean(per_env: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(per_env.dtype)
    return (per_env * mask).sum() / mask.sum().clamp_min(1.0)


class SonicModel(PreTrainedModel):
    """The universal-token controller.

    Sub-modules (the names are the safetensors key prefixes):
    - `encoders[name]`: MLP from that modality's layout group to `num_tokens` x FSQ-dim latents
      (with `normalize_latents`, ending in a parameter-free per-token layer norm);
    - `quantizer`: FSQ, latents -> quantised token (N, 64);
    - `decoder` (SONIC's `g1_dyn`): token + proprioception (994) -> 29 action means;
    - `kin_decoder` (SONIC's `g1_kin`, training only): token -> the g1 encoder's 640 inputs;
    - `action_head`: state-independent Gaussian std;
    - `critic` on the running-normalised (`critic_normalizer`) privileged observations.
    """

    config_class = SonicConfig
    base_model_prefix = "sonic"
    main_input_name = "obs"
    _no_split_modules: list[str] = []
    supports_gradient_checkpointing = False

    def __init__(self, config: SonicConfig):
        super().__init__(config)
        token_dim = config.token_dim
        self.encoder_names: tuple[str, ...] = tuple(config.encoder_names)
        self.encoders = nn.ModuleDict(
            {
                name: MLP(TOKENIZER_GROUPS[name].width, config.encoder_hidden_dims, token_dim, config.activation)
                for name in self.encoder_names
            }
        )
        for name, encoder in self.encoders.items():
            if config.normalize_encoder_inputs:
                encoder.insert(0, RunningMeanStd(TOKENIZER_GROUPS[name].width, config.critic_normalizer_eps))
            if config.normalize_latents:
                encoder.append(TokenLayerNorm(config.num_tokens, config.fsq_dim))
        self.quantizer = TokenQuantizer(config.fsq_levels, config.num_tokens)
        self.decoder = MLP(token_dim + PROPRIOCEPTION.width, config.decoder_hidden_dims, config.action_dim, config.activation)
        if config.normalize_decoder_inputs:
            self.decoder.insert(0, RunningMeanStd(token_dim + PROPRIOCEPTION.width, config.critic_normalizer_eps))
        self.kin_decoder = MLP(token_dim, config.kin_decoder_hidden_dims, TOKENIZER_GROUPS["g1"].width, config.activation)
        self.action_head = GaussianActionHead(
            config.action_dim, config.init_action_std, config.min_action_std, config.max_action_std
        )
        self.critic = MLP(CRITIC.width, config.critic_hidden_dims, 1, config.activation)
        self.critic_normalizer = RunningMeanStd(CRITIC.width, config.critic_normalizer_eps)
        self.post_init()

    # ------------------------------------------------------------------ Hugging Face plumbing
    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's default Linear init (as rsl_rl/SONIC); reset std, normaliser and FSQ buffers."""
        if isinstance(module, nn.Linear):
            module.reset_parameters()
        elif isinstance(module, GaussianActionHead):
            module.reset()
        elif isinstance(module, RunningMeanStd):
            module.reset()
        elif isinstance(module, TokenQuantizer):
            module.reset_buffers()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, refusing any checkpoint whose weights do not match its
        config exactly (transformers would only warn and re-initialise the missing parts)."""
        folder = Path(str(pretrained_model_name_or_path))
        if folder.is_dir():
            check_checkpoint_folder(folder, cls)
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs)
        # FSQ's level buffers are non-persistent; transformers leaves them uninitialised after a meta-device load.
        model.quantizer.reset_buffers()
        # Loaded tensors may sit at unaligned addresses inside the memory-mapped file, which makes BLAS
        # pick other kernels and round differently; fresh copies make outputs bit-identical to the saved model.
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                tensor.data = tensor.data.clone()
        problems = {k: sorted(map(str, info.get(k) or [])) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        problems = {k: v for k, v in problems.items() if v}
        if problems or info.get("error_msgs"):
            raise CheckpointMismatchError(
                f"checkpoint {pretrained_model_name_or_path}: weights do not match its config: "
                f"{problems or info.get('error_msgs')}"
            )
        return (model, info) if want_info else model

    def push_to_hub(self, repo_id: str, **kwargs):  # type: ignore[override]
        """Upload config, weights, model card and ONNX files (see `gear_sonic.hub.push_to_hub`)."""
        from gear_sonic.hub import push_to_hub  # the hub layer sits above the model layer

        return push_to_hub(self, repo_id, **kwargs)

    # ------------------------------------------------------------------ inputs
    def _group(self, obs: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        if name not in obs:
            raise KeyError(f"observation group '{name}' missing; got {sorted(obs)}")
        x = obs[name]
        width = self.config.observation_widths[name]
        if x.ndim != 2 or x.shape[1] != width:
            raise ValueError(f"observation group '{name}' has shape {tuple(x.shape)}, expected (N, {width})")
        return x

    def _check_routing(self, encoder_index: torch.Tensor, encoder_active: torch.Tensor, num_envs: int) -> None:
        num_enc = len(self.encoder_names)
        if encoder_index.shape != (num_envs,) or encoder_active.shape != (num_envs, num_enc):
            raise ValueError(
                f"routing shapes {tuple(encoder_index.shape)}, {tuple(encoder_active.shape)}; expected ({num_envs},) "
                f"and ({num_envs}, {num_enc}) for encoders {list(self.encoder_names)}"
            )
        if ((encoder_index < 0) | (encoder_index >= num_enc)).any():
            raise ValueError(f"encoder_index out of range [0, {num_enc}) for encoders {list(self.encoder_names)}")
        if not encoder_active.gather(1, encoder_index[:, None]).all():
            raise ValueError("encoder_active must include each env's driving encoder (encoder_index)")

    # ------------------------------------------------------------------ routing
    def sample_encoder_routing(
        self, num_envs: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SONIC's per-episode routing for this model's encoders (see `gear_sonic.model.routing`)."""
        return sample_encoder_routing(
            self.encoder_names, num_envs, generator,
            sample_weights=self.config.encoder_sample_weights, pair_prob=self.config.pair_prob, device=device,
        )

    # ------------------------------------------------------------------ encoding
    def encode(
        self, obs: dict[str, torch.Tensor], encoder_active: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run each encoder on the envs where it is active.

        Returns pre-quantisation latents and quantised tokens, both (N, E, token_dim), zero where
        an encoder is inactive.
        """
        num_envs = encoder_active.shape[0]
        token_dim = self.config.token_dim
        latents, tokens = [], []
        for e, name in enumerate(self.encoder_names):
            active = encoder_active[:, e]
            latent = None
            if bool(active.all()):
                latent = self.encoders[name](self._group(obs, name))
                token = self.quantizer(latent)
            elif bool(active.any()):
                rows = active.nonzero().squeeze(1)
                sub_latent = self.encoders[name](self._group(obs, name)[rows])
                sub_token = self.quantizer(sub_latent)
                zeros = sub_latent.new_zeros(num_envs, token_dim)
                latent = zeros.index_copy(0, rows, sub_latent)
                token = zeros.index_copy(0, rows, sub_token)
            if latent is None:
                ref = next(self.decoder.parameters())
                latent = token = ref.new_zeros(num_envs, token_dim)
            latents.append(latent)
            tokens.append(token)
        return torch.stack(latents, dim=1), torch.stack(tokens, dim=1)

    def encode_tokens(self, obs: dict[str, torch.Tensor], encoder: str | torch.Tensor) -> torch.Tensor:
        """Quantised tokens (N, 64) of one named encoder (or per-env encoder indices)."""
        num_envs = next(iter(obs.values())).shape[0]
        index, active = single_encoder_routing(self.encoder_names, encoder, num_envs, self.device)
        _, tokens = self.encode(obs, active)
        return tokens[torch.arange(num_envs, device=tokens.device), index]

    def decode_action_mean(self, token: torch.Tensor, proprioception: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([token, proprioception], dim=-1))

    # ------------------------------------------------------------------ PPO interface
    def forward(
        self,
        obs: dict[str, torch.Tensor],
        encoder_index: torch.Tensor,
        encoder_active: torch.Tensor,
        actions: torch.Tensor | None = None,
        compute_aux: bool = False,
        generator: torch.Generator | None = None,
    ) -> SonicOutput:
        """Policy, value and (optionally) auxiliary losses for a batch of envs.

        The driving encoder's token (`encoder_index`) feeds the decoder; every encoder marked in
        `encoder_active` runs so its latent can enter the auxiliary losses. With `actions=None`
        actions are sampled from the Gaussian policy; otherwise the given actions are scored.
        """
        proprio = self._group(obs, "proprioception")
        num_envs = proprio.shape[0]
        self._check_routing(encoder_index, encoder_active, num_envs)
        latents, tokens = self.encode(obs, encoder_active)
        rows = torch.arange(num_envs, device=tokens.device)
        token = tokens[rows, encoder_index]
        action_mean = self.decode_action_mean(token, proprio)
        action_std = self.action_head().expand_as(action_mean)
        if actions is None:
            noise = torch.randn(action_mean.shape, generator=generator, device=action_mean.device, dtype=action_mean.dtype)
            actions = (action_mean + action_std * noise).detach()
        dist = torch.distributions.Normal(action_mean, action_std)
        output = SonicOutput(
            action_mean=action_mean,
            action_std=action_std,
            actions=actions,
            log_prob=dist.log_prob(actions).sum(-1),
            entropy=dist.entropy().sum(-1),
            value=self.evaluate_value(obs),
            tokens=token,
            latents=latents,
        )
        if compute_aux:
            raw = self.aux_losses(obs, latents, tokens, encoder_active)
            coefs = self.config.aux_loss_coefs
            output.aux_losses = raw
            output.aux_losses_weighted = {k: v * coefs.get(k, 0.0) for k, v in raw.items()}
            output.aux_loss_total = sum(output.aux_losses_weighted.values(), action_mean.new_zeros(()))
        else:
            output.aux_loss_total = action_mean.new_zeros(())
        return output

    def aux_losses(
        self,
        obs: dict[str, torch.Tensor],
        latents: torch.Tensor,
        tokens: torch.Tensor,
        encoder_active: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Unweighted auxiliary losses (mean squared errors averaged over the envs where they apply).

        - `g1_recon`: kinematic decoder(g1 token) vs the g1 encoder's inputs;
        - `align_<a>_<b>`: pre-quantisation latents of encoders a and b where both run;
        - `cycle_smpl_g1`: g1 encoder(kinematic decoder(smpl token)) vs the (detached) g1 latent.
        """
        names = self.encoder_names
        g1 = names.index("g1")
        losses: dict[str, torch.Tensor] = {}
        g1_active = encoder_active[:, g1]
        if bool(g1_active.any()):
            rows = g1_active.nonzero().squeeze(1)
            recon = self.kin_decoder(tokens[rows, g1])
            losses["g1_recon"] = (recon - self._group(obs, "g1")[rows]).pow(2).mean()
        else:
            losses["g1_recon"] = latents.new_zeros(())
        for loss_name, (a, b) in ALIGNMENT_PAIRS.items():
            if a in names and b in names:
                ia, ib = names.index(a), names.index(b)
                both = encoder_active[:, ia] & encoder_active[:, ib]
                losses[loss_name] = _masked_mean((latents[:, ia] - latents[:, ib]).pow(2).mean(-1), both)
        if "smpl" in names:
            smpl = names.index("smpl")
            both = encoder_active[:, smpl] & g1_active
            if bool(both.any()):
                rows = both.nonzero().squeeze(1)
                cycled = self.encoders["g1"](self.kin_decoder(tokens[rows, smpl]))
                losses["cycle_smpl_g1"] = (cycled - latents[rows, g1].detach()).pow(2).mean()
            else:
                losses["cycle_smpl_g1"] = latents.new_zeros(())
        return losses

    @torch.no_grad()
    def act_inference(self, obs: dict[str, torch.Tensor], encoder_index: torch.Tensor | str) -> torch.Tensor:
        """Deterministic action means (N, 29) for evaluation and export; only the driving encoder runs."""
        proprio = self._group(obs, "proprioception")
        token = self.encode_tokens(obs, encoder_index)
        return self.decode_action_mean(token, proprio)

    def evaluate_value(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Critic value (N,) of the running-normalised privileged observations."""
        return self.critic(self.critic_normalizer(self._group(obs, "critic"))).squeeze(-1)

    # ------------------------------------------------------------------ running normalisation
    def _actor_input_normalizers(self) -> dict[str, RunningMeanStd]:
        """The optional running normalisers at the head of the encoders and the decoder, by module name."""
        heads = {f"encoders.{name}": enc[0] for name, enc in self.encoders.items()}
        heads["decoder"] = self.decoder[0]
        return {name: head for name, head in heads.items() if isinstance(head, RunningMeanStd)}

    @torch.no_grad()
    def update_normalizer(
        self,
        obs: dict[str, torch.Tensor] | torch.Tensor,
        all_reduce_sum=None,
        encoder_index: torch.Tensor | None = None,
    ) -> None:
        """Merge a batch into the running statistics (see `RunningMeanStd.update`): the critic's
        observations and, when the model has them, every encoder's inputs present in `obs` and the
        decoder's inputs (the token of each env's driving encoder `encoder_index` + proprioception)."""
        normalizers = self._actor_input_normalizers() if isinstance(obs, dict) else {}
        if "decoder" in normalizers and encoder_index is None:
            raise ValueError("update_normalizer: this model normalises its decoder inputs, whose token depends on "
                             "each env's driving encoder; pass encoder_index")
        critic_obs = obs["critic"] if isinstance(obs, dict) else obs
        self.critic_normalizer.update(critic_obs, all_reduce_sum)
        for name in self.encoder_names:
            if f"encoders.{name}" in normalizers and name in obs:
                normalizers[f"encoders.{name}"].update(obs[name], all_reduce_sum)
        if "decoder" in normalizers:
            token = self.encode_tokens(obs, encoder_index)
            normalizers["decoder"].update(torch.cat([token, self._group(obs, "proprioception")], -1), all_reduce_sum)

    def sync_normalizer(self, all_reduce_sum) -> None:
        """Collective: combine every process's local `update_normalizer` calls since the last sync.

        `all_reduce_sum` is a function summing a tensor over processes, or an object with such a
        `sum_` method (e.g. the trainer's process group). Every process must call it.
        """
        reduce = getattr(all_reduce_sum, "sum_", all_reduce_sum)
        self.critic_normalizer.sync(reduce)
        for normalizer in self._actor_input_normalizers().values():
            normalizer.sync(reduce)

    def normalizer_state(self) -> dict[str, torch.Tensor]:
        """{"count": () float64, "mean": (1645,), "var": (1645,)} copies of the critic statistics."""
        return self.critic_normalizer.state()

    def load_normalizer_state(self, state: dict[str, torch.Tensor]) -> None:
        self.critic_normalizer.load_state(state)

    # ------------------------------------------------------------------ bookkeeping
    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per part. "actor" = every encoder + action decoder + kinematic decoder
        + action std: everything the policy and auxiliary losses train (FSQ has no parameters);
        "critic" = the value MLP (its normaliser statistics are buffers, not parameters)."""

        def count(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters())

        counts = {f"encoder_{name}": count(self.encoders[name]) for name in self.encoder_names}
        counts["decoder"] = count(self.decoder)
        counts["kin_decoder"] = count(self.kin_decoder)
        counts["action_std"] = count(self.action_head)
        counts["actor"] = sum(counts.values())
        counts["critic"] = count(self.critic)
        return counts

    def actor_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("critic.")]

    def critic_parameters(self) -> list[nn.Parameter]:
        return list(self.critic.parameters())


def _checkpoint_tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    index = folder / WEIGHTS_INDEX_NAME
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else [WEIGHTS_NAME]
    )
    shapes: dict[str, tuple[int, ...]] = {}
    for name in files:
        path = folder / name
        if not path.exists():
            raise CheckpointMismatchError(f"{path}: weights file missing (expected safetensors weights next to config.json)")
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    shapes[key] = tuple(f.get_slice(key).get_shape())
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise CheckpointMismatchError(f"{path}: not a readable safetensors file ({err})") from err
    return shapes


def check_checkpoint_folder(folder: Path | str, model_class: type[SonicModel] = SonicModel) -> None:
    """Raise `CheckpointMismatchError` unless the folder's weights have exactly the tensors (names
    and shapes) that its config.json describes."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise CheckpointMismatchError(f"{config_path}: missing; not a save_pretrained checkpoint folder")
    try:
        config = model_class.config_class.from_pretrained(str(folder))
    except (ValueError, TypeError, json.JSONDecodeError) as err:
        raise CheckpointMismatchError(f"{config_path}: invalid SonicConfig: {err}") from err
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in model_class(config).state_dict().items()}
    found = _checkpoint_tensor_shapes(folder)
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(f"{k}: weights {found[k]} vs config {expected[k]}" for k in set(expected) & set(found)
                        if expected[k] != found[k])
    if missing or unexpected or mismatched:
        detail = "; ".join(
            f"{label} ({len(items)}): {items[:6]}{' ...' if len(items) > 6 else ''}"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
            if items
        )
        raise CheckpointMismatchError(f"{folder / WEIGHTS_NAME} does not match {config_path}: {detail}")


AutoConfig.register(SonicConfig.model_type, SonicConfig, exist_ok=True)
AutoModel.register(SonicConfig, SonicModel, exist_ok=True)
