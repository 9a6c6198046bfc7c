"""Build the G1 MuJoCo model from the MJCF that ships inside the `mjlab` package.

We do not copy mjlab's meshes into this repository; the package is installed with
`pip install --no-deps mjlab` (its own dependencies would pull a CUDA torch build) and only
its asset folder is read, located without importing mjlab.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mujoco
import numpy as np

from gear_sonic.robots import g1

G1_XML_RELATIVE = Path("asset_zoo/robots/unitree_g1/xmls/g1.xml")
GROUND_GEOM_NAME = "ground"


class RobotAssetError(FileNotFoundError):
    """The packaged robot description could not be found."""


def g1_mjcf_path() -> Path:
    """Path of mjlab's packaged G1 MJCF (with meshes and capsule collision geometry)."""
    spec = importlib.util.find_spec("mjlab")
    if spec is None or spec.origin is None:
        raise RobotAssetError(
            "The G1 model is read from the 'mjlab' package, which is not installed. "
            "Install its assets with: pip install --no-deps 'mjlab==1.6.0'"
        )
    path = Path(spec.origin).parent / G1_XML_RELATIVE
    if not path.is_file():
        raise RobotAssetError(f"{path}: G1 MJCF missing from the installed mjlab package")
    return path


def g1_spec(
    *,
    timestep_s: float = g1.PHYSICS_DT_S,
    add_ground: bool = True,
    add_actuators: bool = True,
) -> mujoco.MjSpec:
    """The G1 as an editable MjSpec: SONIC's position actuators and armature, ground plane, 200 Hz."""
    spec = mujoco.MjSpec.from_file(str(g1_mjcf_path()))
    spec.option.timestep = timestep_s
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    if add_ground:
        spec.worldbody.add_geom(
            name=GROUND_GEOM_NAME,
            type=mujoco.mjtGeom.mjGEOM_PLANE,
            size=[0.0, 0.0, 0.05],
            friction=[1.0, 0.005, 0.0001],
            contype=1,
            conaffinity=1,
        )
        spec.worldbody.add_light(pos=[0, 0, 3.0], dir=[0, 0, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
    joints_by_name = {j.name: j for j in spec.joints}
    for idx, name in enumerate(g1.JOINT_NAMES_MUJOCO):
        if name not in joints_by_name:
            raise RobotAssetError(f"{g1_mjcf_path()}: joint '{name}' not found in the G1 MJCF")
        joints_by_name[name].armature = float(g1.ARMATURE[idx])
        if add_actuators:
            act = spec.add_actuator(name=name.removesuffix("_joint"), target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            act.set_to_position(kp=float(g1.STIFFNESS_NM_PER_RAD[idx]), kv=float(g1.DAMPING_NMS_PER_RAD[idx]))
            act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
            effort = float(g1.EFFORT_LIMIT_NM[idx])
            act.forcerange = [-effort, effort]
    return spec


def build_g1_model(**kwargs) -> mujoco.MjModel:
    """Compiled G1 model; see `g1_spec` for the options."""
    return g1_spec(**kwargs).compile()


def joint_qpos_indices(model: mujoco.MjModel) -> np.ndarray:
    """qpos address of each joint in `g1.JOINT_NAMES_MUJOCO` order."""
    return np.array([model.jnt_qposadr[model.joint(n).id] for n in g1.JOINT_NAMES_MUJOCO])


def joint_dof_indices(model: mujoco.MjModel) -> np.ndarray:
    """qvel address of each joint in `g1.JOINT_NAMES_MUJOCO` order."""
    return np.array([model.jnt_dofadr[model.joint(n).id] for n in g1.JOINT_NAMES_MUJOCO])


def body_indices(model: mujoco.MjModel, names: tuple[str, ...]) -> np.ndarray:
    return np.array([model.body(n).id for n in names])


def default_qpos(model: mujoco.MjModel) -> np.ndarray:
    """Standing default pose: root at 0.76 m, identity orientation, SONIC's default joints."""
    qpos = np.zeros(model.nq)
    qpos[2] = g1.DEFAULT_ROOT_HEIGHT_M
    qpos[3] = 1.0
    qpos[joint_qpos_indices(model)] = g1.DEFAULT_JOINT_POS_RAD
    return qpos
