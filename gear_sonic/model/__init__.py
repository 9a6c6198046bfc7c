"""The universal-token model (Hugging Face `SonicConfig` / `SonicModel`).

The model classes are loaded lazily so that importing this package stays cheap; the encoder
routing rule lives in `gear_sonic.layout.routing`, shared with the environment.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "SonicConfig": "gear_sonic.model.configuration_sonic",
    "PRESET_NAMES": "gear_sonic.model.configuration_sonic",
    "DEFAULT_AUX_LOSS_COEFS": "gear_sonic.model.configuration_sonic",
    "SonicModel": "gear_sonic.model.modeling_sonic",
    "SonicOutput": "gear_sonic.model.modeling_sonic",
    "CheckpointMismatchError": "gear_sonic.model.modeling_sonic",
    "check_checkpoint_folder": "gear_sonic.model.modeling_sonic",
    "sample_encoder_routing": "gear_sonic.layout.routing",
    "single_encoder_routing": "gear_sonic.layout.routing",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gear_sonic.model' has no attribute '{name}'")
