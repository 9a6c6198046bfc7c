"""Robot descriptions: the Unitree G1's constants, MuJoCo model and kinematics."""

from gear_sonic.robots import g1
from gear_sonic.robots.kinematics import G1Kinematics
from gear_sonic.robots.mjcf import build_g1_model, default_qpos, g1_mjcf_path, g1_spec

__all__ = ["g1", "G1Kinematics", "build_g1_model", "default_qpos", "g1_mjcf_path", "g1_spec"]
