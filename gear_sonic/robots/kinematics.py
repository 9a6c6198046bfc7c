"""Batched forward kinematics of the G1 in torch, built from the compiled MuJoCo model.

Used where running MuJoCo per frame would be slow or impossible: deriving body poses for a
whole motion library, reference states for thousands of envs, and evaluation metrics.
"""

from __future__ import annotations

import mujoco
import numpy as np
import torch

from gear_sonic.robots import g1
from gear_sonic.robots.mjcf import build_g1_model
from gear_sonic.utils.rotations import quat_apply, quat_from_axis_angle, quat_mul


class G1Kinematics:
    """Forward kinematics from (root pose, joint angles) to world poses of every body.

    Bodies are in MuJoCo body order without the world body (`body_names`); joint angles are in
    `g1.JOINT_NAMES_MUJOCO` order, radians; quaternions wxyz.
    """

    def __init__(self, model: mujoco.MjModel | None = None, dtype: torch.dtype = torch.float32):
        model = model if model is not None else build_g1_model(add_ground=False, add_actuators=False)
        self.dtype = dtype
        self.body_names: tuple[str, ...] = tuple(model.body(i).name for i in range(1, model.nbody))
        joint_col = {name: i for i, name in enumerate(g1.JOINT_NAMES_MUJOCO)}
        self._parent: list[int] = []
        self._joint_col: list[int] = []
        axes = []
        for b in range(1, model.nbody):
            self._parent.append(int(model.body_parentid[b]) - 1)
            col, axis = -1, np.zeros(3)
            for j in range(model.body_jntadr[b], model.body_jntadr[b] + model.body_jntnum[b]):
                if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE:
                    col, axis = joint_col[model.joint(j).name], model.jnt_axis[j]
            self._joint_col.append(col)
            axes.append(axis)
        self._local_pos = torch.tensor(model.body_pos[1:], dtype=dtype)
        self._local_quat = torch.tensor(model.body_quat[1:], dtype=dtype)
        self._axis = torch.tensor(np.array(axes), dtype=dtype)

    def body_index(self, names: tuple[str, ...] | list[str]) -> list[int]:
        return [self.body_names.index(n) for n in names]

    def forward(
        self, root_pos: torch.Tensor, root_quat: torch.Tensor, dof_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """root_pos (..., 3) m, root_quat (..., 4) wxyz, dof_pos (..., 29) rad ->
        body_pos (..., nbody, 3) m, body_quat (..., nbody, 4) wxyz in the world frame."""
        dtype = root_pos.dtype
        local_pos = self._local_pos.to(root_pos.device, dtype)
        local_quat = self._local_quat.to(root_pos.device, dtype)
        axes = self._axis.to(root_pos.device, dtype)
        positions: list[torch.Tensor] = []
        rotations: list[torch.Tensor] = []
        for b, parent in enumerate(self._parent):
            if parent < 0:  # the floating base: the root pose is the body pose
                pos, quat = root_pos, root_quat
            else:
                pos = positions[parent] + quat_apply(rotations[parent], local_pos[b].expand_as(root_pos))
                quat = quat_mul(rotations[parent], local_quat[b].expand_as(root_quat))
            col = self._joint_col[b]
            if col >= 0:
                joint_rot = quat_from_axis_angle(axes[b].expand_as(root_pos), dof_pos[..., col])
                quat = quat_mul(quat, joint_rot)
            positions.append(pos)
            rotations.append(quat)
        return torch.stack(positions, dim=-2), torch.stack(rotations, dim=-2)
