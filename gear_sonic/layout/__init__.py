"""Data shared by the environment, the model and the export: the observation layout."""

from gear_sonic.layout.observations import (
    CRITIC,
    DECODER_INPUT_WIDTH,
    ENCODER_NAMES_BONES_SEED,
    ENCODER_NAMES_RELEASE,
    PROPRIOCEPTION,
    TOKEN_DIM,
    TOKENIZER_GROUPS,
    ObsGroup,
    ObsTerm,
    encoder_union_width,
    group,
)

__all__ = [
    "CRITIC", "DECODER_INPUT_WIDTH", "ENCODER_NAMES_BONES_SEED", "ENCODER_NAMES_RELEASE", "PROPRIOCEPTION",
    "TOKEN_DIM", "TOKENIZER_GROUPS", "ObsGroup", "ObsTerm", "encoder_union_width", "group",
]
