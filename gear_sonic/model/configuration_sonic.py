"""`SonicConfig`: the hyperparameters of the universal-token model, saved as config.json.

Sizes of the `sonic_release` preset follow SONIC's release (see SONIC_FACTS.md); observation
widths come from `gear_sonic.layout` and are recorded in config.json so a checkpoint made with a
different layout is refused on load instead of silently mis-slicing observations.
"""

from __future__ import annotations

import copy
from dataclasses import field

from transformers import PreTrainedConfig

from gear_sonic.layout import (
    CRITIC,
    ENCODER_NAMES_BONES_SEED,
    ENCODER_NAMES_RELEASE,
    PROPRIOCEPTION,
    TOKEN_DIM,
    TOKENIZER_GROUPS,
)

RELEASE_ENCODER_HIDDEN = [2048, 1024, 512, 512]
RELEASE_DECODER_HIDDEN = [2048, 2048, 1024, 1024, 512, 512]
BONES_SEED_DECODER_HIDDEN = [4096, 4096, 2048, 2048, 1024, 1024, 512, 512]

# Auxiliary loss names -> SONIC's coefficients. Alignment and cycle losses act on pre-quantisation
# latents; `g1_recon` compares the kinematic decoder's output with the g1 encoder's inputs.
DEFAULT_AUX_LOSS_COEFS: dict[str, float] = {
    "g1_recon": 0.01,
    "align_g1_smpl": 1.0,
    "align_g1_teleop": 1.0,
    "align_teleop_smpl": 1.0,
    "cycle_smpl_g1": 1.0,
    "align_g1_soma": 1.0,
}

PRESET_NAMES = ("sonic_release", "sonic_bones_seed", "sonic_cpu")


def _observation_widths(encoder_names: list[str]) -> dict[str, int]:
    widths = {"proprioception": PROPRIOCEPTION.width, "critic": CRITIC.width}
    widths.update({name: TOKENIZER_GROUPS[name].width for name in encoder_names})
    return widths


class SonicConfig(PreTrainedConfig):
    """Configuration of `SonicModel` (model_type "gear_sonic").

    Token: `num_tokens` tokens of `len(fsq_levels)` FSQ dimensions each, flattened to
    `token_dim` (64 for the release). Action std is state independent, initialised to
    `init_action_std` and clamped to [`min_action_std`, `max_action_std`].
    `normalize_latents` ends every encoder with a parameter-free per-token layer norm
    (`TokenLayerNorm`); `normalize_encoder_inputs` / `normalize_decoder_inputs` start every
    encoder / the action decoder with a running mean/std normaliser of its inputs (statistics kept
    like the critic's, eps `critic_normalizer_eps`). All three are off in the release presets,
    whose encoders and decoder are plain MLPs as SONIC's.
    """

    model_type = "gear_sonic"

    encoder_names: list[str] = field(default_factory=lambda: list(ENCODER_NAMES_RELEASE))
    encoder_hidden_dims: list[int] = field(default_factory=lambda: list(RELEASE_ENCODER_HIDDEN))
    decoder_hidden_dims: list[int] = field(default_factory=lambda: list(RELEASE_DECODER_HIDDEN))
    kin_decoder_hidden_dims: list[int] = field(default_factory=lambda: list(RELEASE_ENCODER_HIDDEN))
    critic_hidden_dims: list[int] = field(default_factory=lambda: list(RELEASE_DECODER_HIDDEN))
    activation: str = "silu"
    num_tokens: int = 2
    fsq_levels: list[int] = field(default_factory=lambda: [32] * 32)
    normalize_latents: bool = False
    normalize_encoder_inputs: bool = False
    normalize_decoder_inputs: bool = False
    action_dim: int = 29
    init_action_std: float = 0.05
    min_action_std: float = 0.001
    max_action_std: float = 0.5
    critic_normalizer_eps: float = 1e-2
    aux_loss_coefs: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_AUX_LOSS_COEFS))
    encoder_sample_weights: list[float] | None = None
    pair_prob: float = 0.5
    observation_widths: dict[str, int] | None = None
    preset: str | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.encoder_names = list(self.encoder_names)
        unknown = [n for n in self.encoder_names if n not in TOKENIZER_GROUPS]
        if unknown or not self.encoder_names:
            raise ValueError(f"SonicConfig: unknown encoder names {unknown}; known: {sorted(TOKENIZER_GROUPS)}")
        if len(set(self.encoder_names)) != len(self.encoder_names):
            raise ValueError(f"SonicConfig: duplicate encoder names {self.encoder_names}")
        if "g1" not in self.encoder_names:
            raise ValueError("SonicConfig: the g1 encoder is required (the kinematic decoder reconstructs its inputs)")
        if self.token_dim != TOKEN_DIM:
            raise ValueError(
                f"SonicConfig: num_tokens x len(fsq_levels) = {self.token_dim}, but the observation layout and the "
                f"exported decoder expect a {TOKEN_DIM}-D token"
            )
        if not 0.0 < self.min_action_std <= self.init_action_std <= self.max_action_std:
            raise ValueError(
                "SonicConfig: need 0 < min_action_std <= init_action_std <= max_action_std, got "
                f"{self.min_action_std}, {self.init_action_std}, {self.max_action_std}"
            )
        unknown_aux = sorted(set(self.aux_loss_coefs) - set(DEFAULT_AUX_LOSS_COEFS))
        if unknown_aux:
            raise ValueError(f"SonicConfig: unknown aux losses {unknown_aux}; known: {sorted(DEFAULT_AUX_LOSS_COEFS)}")
        if self.encoder_sample_weights is not None and len(self.encoder_sample_weights) != len(self.encoder_names):
            raise ValueError(
                f"SonicConfig: encoder_sample_weights has {len(self.encoder_sample_weights)} entries for "
                f"encoders {self.encoder_names}"
            )
        expected = _observation_widths(self.encoder_names)
        if self.observation_widths is None:
            self.observation_widths = expected
        elif dict(self.observation_widths) != expected:
            raise ValueError(
                f"SonicConfig: observation widths {dict(self.observation_widths)} (saved with the checkpoint) differ "
                f"from this gear_sonic's layout {expected}; the checkpoint was made for another observation layout"
            )

    @property
    def token_dim(self) -> int:
        return self.num_tokens * len(self.fsq_levels)

    @property
    def fsq_dim(self) -> int:
        return len(self.fsq_levels)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> SonicConfig:
        """Named configurations: `sonic_release` (SONIC's sizes), `sonic_bones_seed` (+ soma encoder,
        wider decoder and critic) and `sonic_cpu` (small enough to train in minutes on 2 cores)."""
        if name == "sonic_release":
            kwargs: dict = {}
        elif name == "sonic_bones_seed":
            kwargs = {
                "encoder_names": list(ENCODER_NAMES_BONES_SEED),
                "decoder_hidden_dims": list(BONES_SEED_DECODER_HIDDEN),
                "critic_hidden_dims": list(BONES_SEED_DECODER_HIDDEN),
            }
        elif name == "sonic_cpu":
            kwargs = {
                "encoder_hidden_dims": [256, 256],
                "decoder_hidden_dims": [256, 256, 128],
                "kin_decoder_hidden_dims": [256, 256],
                "critic_hidden_dims": [256, 256, 128],
                # Wider exploration than the release's 0.05: with few samples per iteration the
                # KL-bounded policy steps scale with the std, so 0.05 barely moves in 30 minutes.
                "init_action_std": 0.3,
                # The small encoders' raw latents vary between motions by ~0.01, a sixth of an FSQ
                # step, so every env got the same token and the decoder learnt to ignore it.
                "normalize_latents": True,
                # The token varies between envs by ~0.1 against proprioception of order 1; normalised
                # decoder inputs let the policy gradient reach the token's weights.
                "normalize_decoder_inputs": True,
                # At SONIC's weights (reconstruction 0.01, alignment 1.0) the alignment terms pull every
                # latent onto one code within ~100 iterations at this scale; reconstruction 1.0 and
                # alignment 0.1 keep the token carrying the motion.
                "aux_loss_coefs": {
                    **DEFAULT_AUX_LOSS_COEFS,
                    "g1_recon": 1.0,
                    "align_g1_smpl": 0.1,
                    "align_g1_teleop": 0.1,
                    "align_teleop_smpl": 0.1,
                    "cycle_smpl_g1": 0.1,
                    "align_g1_soma": 0.1,
                },
            }
        else:
            raise ValueError(f"unknown SonicConfig preset '{name}'; known: {list(PRESET_NAMES)}")
        overrides = copy.deepcopy(overrides)
        if "aux_loss_coefs" in overrides:  # a partial dict adjusts the preset's coefficients
            overrides["aux_loss_coefs"] = {**kwargs.get("aux_loss_coefs", DEFAULT_AUX_LOSS_COEFS),
                                           **overrides["aux_loss_coefs"]}
        kwargs.update(overrides)
        return cls(preset=name, **kwargs)
