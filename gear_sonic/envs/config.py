"""Typed configuration of the tracking environment, composed from the Hydra tree in `configs/`.

The YAML keys follow SONIC's override paths (`num_envs=`,
`++manager_env.commands.motion.motion_lib_cfg.motion_file=...`,
`"+manager_env/terminations=tracking/eval"`); `make_env_config` composes the tree and turns
the `manager_env` part plus the root keys into an `EnvConfig`. Numbers are from SONIC_FACTS.md.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gear_sonic.layout import ENCODER_NAMES_RELEASE

CONFIG_DIR_ENV = "GEAR_SONIC_CONFIG_DIR"


@dataclass
class MotionLibConfig:
    motion_file: str = "sample_data/robot_filtered"  # motion library directory (or per-clip .npz tree)
    smpl_motion_file: str | None = None  # directory of per-clip SMPL .npz attached by clip name
    soma_motion_file: str | None = None  # directory of per-clip SOMA .npz attached by clip name
    max_unique_motions: int | None = None  # clips resident at once (None: all)
    resample_motions_every_iters: int = 0  # swap the resident subset every N iterations (0: never)
    fps: float = 50.0  # reference frames are resampled to the control rate


@dataclass
class ResetNoiseConfig:
    root_xy_m: float = 0.05
    root_z_m: float = 0.01
    root_roll_pitch_rad: float = 0.1
    root_yaw_rad: float = 0.2
    joint_pos_rad: float = 0.1


@dataclass
class MotionCommandConfig:
    motion_lib_cfg: MotionLibConfig = field(default_factory=MotionLibConfig)
    adaptive_sampling: bool = True
    bin_frames: int = 50  # frames (at `fps`) per failure-statistics bin
    adaptive_weight: float = 0.9  # probability mass given by failure rates; the rest is uniform
    failure_rate_cap: float = 200.0  # bin failure rates capped at this multiple of their mean
    start_shift_back_frames: int = 200  # start frame drawn in the bin then moved back up to this
    reset_noise: ResetNoiseConfig = field(default_factory=ResetNoiseConfig)


@dataclass
class CommandsConfig:
    motion: MotionCommandConfig = field(default_factory=MotionCommandConfig)


@dataclass
class RewardTermConfig:
    weight: float
    sigma: float | None = None  # tracking terms: exp(-error / sigma^2)
    threshold: float | None = None  # penalties with a threshold (contact force N, angular speed rad/s)


def _default_rewards() -> dict[str, RewardTermConfig]:
    return {
        "tracking_anchor_pos": RewardTermConfig(0.5, sigma=0.3),
        "tracking_anchor_ori": RewardTermConfig(0.5, sigma=0.4),
        "tracking_relative_body_pos": RewardTermConfig(1.0, sigma=0.3),
        "tracking_relative_body_ori": RewardTermConfig(1.0, sigma=0.4),
        "tracking_body_linvel": RewardTermConfig(1.0, sigma=1.0),
        "tracking_body_angvel": RewardTermConfig(1.0, sigma=3.14),
        "tracking_vr_5point_local": RewardTermConfig(2.0, sigma=0.1),
        "action_rate_l2": RewardTermConfig(-0.1),
        "joint_limit": RewardTermConfig(-10.0),
        "undesired_contacts": RewardTermConfig(-0.1, threshold=1.0),
        "anti_shake_ang_vel": RewardTermConfig(-5e-3, threshold=1.5),
        "ankle_joint_acc_l2": RewardTermConfig(-2.5e-6),
    }


@dataclass
class TerminationsConfig:
    """Thresholds; `None` switches a check off."""

    anchor_height_m: float | None = 0.15  # |reference - robot| pelvis height
    end_effector_height_m: float | None = 0.15  # ankles and wrists
    # While the reference pelvis height EMA is below `low_pelvis_height_m` (lying, crawling):
    low_pelvis_height_m: float | None = 0.5
    low_pelvis_anchor_height_m: float | None = 0.75
    low_pelvis_end_effector_height_m: float | None = 0.75
    pelvis_height_ema_alpha: float = 0.1  # per control step
    anchor_ori_sq_rad: float | None = 0.2  # squared pelvis rotation angle
    foot_pos_m: float | None = 0.2  # 3-D ankle error after re-anchoring
    motion_end: bool = True  # the clip ran out (reported as truncation)


@dataclass
class EventsConfig:
    """Domain randomisation (at start-up, training only), pushes and their ranges."""

    randomize: bool = True
    friction_static: tuple[float, float] = (0.3, 1.6)
    friction_dynamic: tuple[float, float] = (0.3, 1.2)
    default_joint_offset_rad: float = 0.01
    com_offset_bodies: tuple[str, ...] = ("torso_link",)
    com_offset_m: tuple[float, float, float] = (0.025, 0.05, 0.05)
    mass_scale_bodies: tuple[str, ...] = ("torso_link", "left_wrist_yaw_link", "right_wrist_yaw_link")
    mass_scale: tuple[float, float] = (0.8, 2.5)
    push: bool = True
    push_interval_s: tuple[float, float] = (4.0, 6.0)
    push_lin_vel_m_s: tuple[float, float, float] = (0.5, 0.5, 0.2)
    push_ang_vel_rad_s: tuple[float, float, float] = (0.52, 0.52, 0.78)


@dataclass
class ObservationsConfig:
    noise: bool = True  # uniform noise on the actor's proprioception (off in evaluation)
    noise_ang_vel_rad_s: float = 0.2
    noise_projected_gravity: float = 0.05
    noise_joint_pos_rad: float = 0.01
    noise_joint_vel_rad_s: float = 0.5


@dataclass
class SimConfig:
    backend: str = "mujoco"
    num_threads: int = 0  # 0: one per core
    # Per-step env maths on torch's intra-op threads (the physics threads idle meanwhile): faster
    # on a dedicated machine, much slower when other processes compete for the cores. Off: one
    # intra-op thread.
    parallel_env_maths: bool = False


@dataclass
class EnvConfig:
    num_envs: int = 16
    seed: int = 0
    device: str = "cpu"
    replay: bool = False  # drive the robots kinematically along the reference
    eval_mode: bool = False  # each clip once from frame 0, no noise or randomisation
    episode_length_s: float = 10.0
    encoders: tuple[str, ...] = ENCODER_NAMES_RELEASE
    sim: SimConfig = field(default_factory=SimConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    rewards: dict[str, RewardTermConfig] = field(default_factory=_default_rewards)
    terminations: TerminationsConfig = field(default_factory=TerminationsConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    observations: ObservationsConfig = field(default_factory=ObservationsConfig)


class EnvConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


def _build(cls: type, values: Any, where: str):
    """Recursively build dataclass `cls` from a plain mapping; unknown keys are errors."""
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise EnvConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise EnvConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in values.items():
        default = cls.__dataclass_fields__[name]
        has_factory = default.default_factory is not dataclasses.MISSING
        sub_default = default.default_factory() if has_factory else default.default
        if dataclasses.is_dataclass(sub_default):
            kwargs[name] = _build(type(sub_default), value, f"{where}.{name}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _rewards_from(values: Any, where: str) -> dict[str, RewardTermConfig]:
    known = _default_rewards()
    if values is None:
        return known
    out = {}
    for name, term in values.items():
        if name not in known:
            raise EnvConfigError(f"{where}.{name}: unknown reward term; known: {sorted(known)}")
        if term is None:  # `++manager_env.rewards.<term>=null` removes a term
            continue
        out[name] = _build(RewardTermConfig, {"weight": known[name].weight, **dict(term)}, f"{where}.{name}")
    return out


def env_config_from_dict(cfg: dict) -> EnvConfig:
    """Build an `EnvConfig` from a composed config (root keys plus `manager_env`), as plain dicts."""
    manager_env = dict(cfg.get("manager_env") or {})
    env_keys = dict(manager_env.pop("config", None) or {})
    rewards = _rewards_from(manager_env.pop("rewards", None), "manager_env.rewards")
    for drop in ("recorders",):  # sections owned by other layers
        manager_env.pop(drop, None)
    root = {k: cfg[k] for k in ("num_envs", "seed", "device", "replay") if k in cfg}
    if "sim" in cfg:
        root["sim"] = cfg["sim"]
    # `manager_env.config` is shared with the layers above (rendering, evaluation loops); the
    # environment reads its own keys and leaves the rest to them.
    known_env_keys = {"eval_mode", "episode_length_s", "encoders"}
    extra = {k: v for k, v in env_keys.items() if k in known_env_keys}
    merged = {**root, **extra, **manager_env}
    env_cfg = _build(EnvConfig, merged, "config")
    env_cfg.rewards = rewards
    env_cfg.encoders = tuple(env_cfg.encoders)
    return env_cfg


def config_dir() -> Path:
    """The Hydra config tree: $GEAR_SONIC_CONFIG_DIR, else `configs/` beside the package."""
    override = os.environ.get(CONFIG_DIR_ENV)
    path = Path(override) if override else Path(__file__).resolve().parents[2] / "configs"
    if not (path / "base.yaml").is_file():
        raise FileNotFoundError(f"{path / 'base.yaml'}: config tree not found (set {CONFIG_DIR_ENV})")
    return path


def compose_config(overrides: list[str] | None = None, config_name: str = "base"):
    """Compose the Hydra tree with command-line style overrides; returns an OmegaConf DictConfig."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name=config_name, overrides=list(overrides or []))


def make_env_config(overrides: list[str] | None = None, config_name: str = "base") -> EnvConfig:
    """Compose `configs/<config_name>.yaml` with overrides (e.g. ["num_envs=4",
    "+manager_env/terminations=tracking/eval"]) into an `EnvConfig`. `config_name="eval"` is the
    evaluation root, to which SONIC's evaluation commands add `+headless=True`."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose_config(overrides, config_name), resolve=True)
    return env_config_from_dict(cfg)
