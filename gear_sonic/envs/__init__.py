"""Motion-tracking task over the simulator interface (see DESIGN.md and docs/environment.md)."""

from gear_sonic.envs.config import (
    EnvConfig,
    EnvConfigError,
    compose_config,
    config_dir,
    env_config_from_dict,
    make_env_config,
)
from gear_sonic.layout.routing import sample_encoder_routing
from gear_sonic.envs.sampling import AdaptiveSampler
from gear_sonic.envs.tracking_env import ClipResult, EnvSetupError, TrackingEnv

__all__ = [
    "AdaptiveSampler",
    "ClipResult",
    "EnvConfig",
    "EnvConfigError",
    "EnvSetupError",
    "TrackingEnv",
    "compose_config",
    "config_dir",
    "env_config_from_dict",
    "make_env_config",
    "sample_encoder_routing",
]
