"""MuJoCo CPU backend: C MuJoCo, many envs stepped in parallel on CPU threads.

`mujoco.mj_step` releases the GIL, so a small pool of Python threads (one per core by
default), each owning a contiguous chunk of envs, steps the batch in parallel. Each env has
its own MjData; per-env physical parameters (friction, body masses, centres of mass) are kept
as per-env copies of only those model fields and written into the stepping thread's MjModel
before that env is stepped, so 4096 envs do not need 4096 copies of the mesh-laden model.
After stepping, every env's arrays are gathered into preallocated float32 buffers that torch
tensors view without copying.
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor

import mujoco
import numpy as np
import torch

from gear_sonic.robots import g1
from gear_sonic.robots.mjcf import default_qpos, g1_spec, joint_dof_indices, joint_qpos_indices
from gear_sonic.sim.protocol import SimState
from gear_sonic.sim.torch_threads import single_threaded_torch
from gear_sonic.utils.rotations import quat_apply_inverse


def default_num_threads() -> int:
    """One thread per core available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_CLOCK_START_S = 1.0
# Fewer externally written states than this are refreshed on the calling thread: waking a
# worker costs more than the forward passes it would share.
_MIN_THREADED_REFRESH = 16


class MujocoSimulator:
    """`Simulator` over C MuJoCo on CPU threads (see `gear_sonic.sim.protocol.Simulator`)."""

    def __init__(
        self,
        num_envs: int,
        body_names: tuple[str, ...] = g1.TRACKED_BODY_NAMES,
        contact_body_names: tuple[str, ...] | None = None,
        points: tuple[tuple[str, str, tuple[float, float, float]], ...] = (),
        *,
        num_threads: int | None = None,
        decimation: int = g1.DECIMATION,
        physics_dt_s: float = g1.PHYSICS_DT_S,
        max_abs_qvel: float = 1.0e3,
        device: str | torch.device = "cpu",
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.decimation = int(decimation)
        self.physics_dt_s = float(physics_dt_s)
        self.max_abs_qvel = float(max_abs_qvel)
        spec = g1_spec(timestep_s=self.physics_dt_s)
        bodies_by_name = {b.name: b for b in spec.bodies}
        for name, body, offset in points:
            if body not in bodies_by_name:
                raise KeyError(f"point '{name}': body '{body}' is not in the G1 model")
            bodies_by_name[body].add_site(name=f"point_{name}", pos=list(offset))
        self.points = tuple(points)
        self.point_names = tuple(name for name, _, _ in points)
        model = spec.compile()
        self.mj_model = model
        all_bodies = tuple(model.body(i).name for i in range(1, model.nbody))
        self.body_names = tuple(body_names)
        self.contact_body_names = tuple(contact_body_names) if contact_body_names is not None else all_bodies
        self._body_ids = self._ids_of(model, self.body_names)
        self._contact_ids = self._ids_of(model, self.contact_body_names)

        self._qpos_idx = joint_qpos_indices(model)
        self._dof_idx = joint_dof_indices(model)
        act_joint = [model.joint(int(model.actuator_trnid[a, 0])).name for a in range(model.nu)]
        if act_joint != list(g1.JOINT_NAMES_MUJOCO):
            raise RuntimeError("G1 actuators are not in JOINT_NAMES_MUJOCO order")
        limits = model.jnt_range[[model.joint(n).id for n in g1.JOINT_NAMES_MUJOCO]]
        self._joint_limits = torch.tensor(limits, dtype=torch.float32, device=self.device)

        self.num_threads = int(num_threads) if num_threads else default_num_threads()
        self.num_threads = max(1, min(self.num_threads, self.num_envs))
        bounds = np.linspace(0, self.num_envs, self.num_threads + 1).round().astype(int)
        self._chunks = [(int(bounds[t]), int(bounds[t + 1])) for t in range(self.num_threads)]
        self._thread_models = [model] + [copy.deepcopy(model) for _ in range(self.num_threads - 1)]
        # The calling thread steps the last chunk itself; the pool runs the others.
        self._pool = (
            ThreadPoolExecutor(self.num_threads - 1, thread_name_prefix="mujoco") if self.num_threads > 1 else None
        )

        # Nominal values and per-env copies of the randomisable model fields.
        n = self.num_envs
        self._geom_friction = np.repeat(model.geom_friction[None].copy(), n, axis=0)
        self._body_mass = np.repeat(model.body_mass[None].copy(), n, axis=0)
        self._body_inertia = np.repeat(model.body_inertia[None].copy(), n, axis=0)
        self._body_ipos = np.repeat(model.body_ipos[None].copy(), n, axis=0)
        self._per_env_params = False

        self._default_qpos = default_qpos(model)
        self._datas = [mujoco.MjData(model) for _ in range(n)]
        self._ctrl = np.repeat(g1.DEFAULT_JOINT_POS_RAD[None].astype(np.float64), n, axis=0)
        # MuJoCo resets an env's data itself (time back to 0) when its position, velocity or
        # acceleration goes bad; such resets are caught by the clock, which we start at
        # _CLOCK_START_S, and counted like NaNs.
        self._time = np.zeros(n, np.float64)
        self._unstable_count = torch.zeros(n, dtype=torch.long, device=self.device)

        nb = model.nbody
        self._qpos = np.zeros((n, model.nq), np.float32)
        self._qvel = np.zeros((n, model.nv), np.float32)
        self._qacc = np.zeros((n, model.nv), np.float32)
        self._act_force = np.zeros((n, model.nu), np.float32)
        # Per body, side by side so one gather selects the tracked bodies:
        # xpos 0:3, xquat 3:7, xmat 7:16, cvel 16:22 (angular then linear).
        self._bodies = np.zeros((n, nb, 22), np.float32)
        self._site_xpos = np.zeros((n, model.nsite, 3), np.float32)
        self._cfrc_ext = np.zeros((n, nb, 6), np.float32)
        self._root_com = np.zeros((n, 3), np.float32)
        self._views = {k: torch.from_numpy(getattr(self, f"_{k}")) for k in (
            "qpos", "qvel", "qacc", "act_force", "bodies", "site_xpos", "cfrc_ext", "root_com")}
        self._site_ids = torch.tensor(
            [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, f"point_{p}") for p in self.point_names],
            dtype=torch.long,
        )
        self._body_ids_t = torch.from_numpy(self._body_ids)
        self._contact_ids_t = torch.from_numpy(self._contact_ids)
        self._joint_cols = self._columns(self._qpos_idx)
        self._dof_cols = self._columns(self._dof_idx)
        self._state: SimState | None = None

        for i in range(n):
            self._write_default(i)
            self._refresh(model, i)
        self._build_state()

    @staticmethod
    def _ids_of(model: mujoco.MjModel, names: tuple[str, ...]) -> np.ndarray:
        ids = []
        for name in names:
            bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
            if bid < 0:
                raise KeyError(f"body '{name}' is not in the G1 model")
            ids.append(bid)
        return np.array(ids, dtype=np.int64)

    # ----- protocol: reading -------------------------------------------------------------
    @staticmethod
    def _columns(indices: np.ndarray) -> slice | torch.Tensor:
        """A slice when the indices are contiguous (views instead of copies), else an index."""
        if np.array_equal(indices, np.arange(indices[0], indices[0] + len(indices))):
            return slice(int(indices[0]), int(indices[0]) + len(indices))
        return torch.from_numpy(indices)

    @property
    def state(self) -> SimState:
        """Derived on first access after the buffers changed."""
        if self._state is None:
            with single_threaded_torch():
                self._state = self._derive_state()
        return self._state

    @property
    def joint_limits_rad(self) -> torch.Tensor:
        return self._joint_limits

    @property
    def unstable_reset_count(self) -> torch.Tensor:
        return self._unstable_count

    def _build_state(self) -> None:
        """Mark the derived state stale; buffers were rewritten."""
        self._state = None

    def _derive_state(self) -> SimState:
        v = self._views
        qpos, qvel = v["qpos"], v["qvel"]
        n, k = self.num_envs, len(self._body_ids)
        bodies = v["bodies"].index_select(1, self._body_ids_t)
        xpos, ang = bodies[..., 0:3], bodies[..., 16:19]
        # cvel's linear part is the velocity of the point at the root subtree's centre of mass.
        lin = bodies[..., 19:22] + torch.cross(ang, xpos - v["root_com"][:, None, :], dim=-1)
        return SimState(
            root_pos=qpos[:, 0:3],
            root_quat=qpos[:, 3:7],
            root_lin_vel=qvel[:, 0:3],
            root_ang_vel=v["bodies"][:, 1, 16:19],  # the floating base's world angular velocity
            joint_pos=qpos[:, self._joint_cols],
            joint_vel=qvel[:, self._dof_cols],
            joint_acc=v["qacc"][:, self._dof_cols],
            joint_torque=v["act_force"],
            body_pos=xpos,
            body_quat=bodies[..., 3:7],
            body_rotmat=bodies[..., 7:16].reshape(n, k, 3, 3),
            body_lin_vel=lin,
            body_ang_vel=ang,
            contact_force=v["cfrc_ext"].index_select(1, self._contact_ids_t)[..., 3:6],
            point_pos=v["site_xpos"].index_select(1, self._site_ids),
        )

    # ----- per-env work (runs on worker threads) -------------------------------------------
    def _load_params(self, model: mujoco.MjModel, i: int) -> None:
        if self._per_env_params:
            model.geom_friction[:] = self._geom_friction[i]
            model.body_mass[:] = self._body_mass[i]
            model.body_inertia[:] = self._body_inertia[i]
            model.body_ipos[:] = self._body_ipos[i]

    def _gather(self, d: mujoco.MjData, i: int) -> None:
        self._qpos[i] = d.qpos
        self._qvel[i] = d.qvel
        self._qacc[i] = d.qacc
        self._act_force[i] = d.actuator_force
        bodies = self._bodies[i]
        bodies[:, 0:3] = d.xpos
        bodies[:, 3:7] = d.xquat
        bodies[:, 7:16] = d.xmat
        bodies[:, 16:22] = d.cvel
        self._site_xpos[i] = d.site_xpos
        self._cfrc_ext[i] = d.cfrc_ext
        self._root_com[i] = d.subtree_com[1]
        self._time[i] = d.time

    def _refresh(self, model: mujoco.MjModel, i: int) -> None:
        """Position and velocity stages (`mj_step1`) for a state written from outside, then gather.

        That is all the next step's `mj_step2` needs. Accelerations, actuator torques and
        contact forces belong to a solved step, so they read zero until the env steps."""
        d = self._datas[i]
        clock = d.time
        self._load_params(model, i)
        mujoco.mj_step1(model, d)
        d.qacc[:] = 0.0
        d.actuator_force[:] = 0.0
        d.cfrc_ext[:] = 0.0
        self._gather(d, i)
        if d.time < clock:  # MuJoCo found the written state bad and reset it: flag it at the next step
            self._time[i] = clock

    def _step_chunk(self, thread: int) -> None:
        """`decimation` physics steps per env, arranged as step2, (decimation - 1) x mj_step,
        step1: the same physics as `decimation` x mj_step, but the final position/velocity
        stage leaves poses, velocities and contacts of the new state ready to read at no
        extra cost (the next control step's step2 continues from it)."""
        model = self._thread_models[thread]
        lo, hi = self._chunks[thread]
        step, step1, step2, post = mujoco.mj_step, mujoco.mj_step1, mujoco.mj_step2, mujoco.mj_rnePostConstraint
        inner = range(self.decimation - 1)
        for i in range(lo, hi):
            d = self._datas[i]
            self._load_params(model, i)
            d.ctrl[:] = self._ctrl[i]
            step2(model, d)
            for _ in inner:
                step(model, d)
            post(model, d)  # contact forces of the last solved step
            step1(model, d)
            self._gather(d, i)

    def _run_on_threads(self, work) -> None:
        """work(thread_index) for every thread; the calling thread takes the last index."""
        last = self.num_threads - 1
        futures = [self._pool.submit(work, t) for t in range(last)] if self._pool is not None else []
        work(last)
        for f in futures:
            f.result()

    def _write_default(self, i: int) -> None:
        d = self._datas[i]
        mujoco.mj_resetData(self.mj_model, d)
        d.qpos[:] = self._default_qpos
        d.time = _CLOCK_START_S
        d.ctrl[:] = g1.DEFAULT_JOINT_POS_RAD
        self._ctrl[i] = g1.DEFAULT_JOINT_POS_RAD

    # ----- protocol: writing -------------------------------------------------------------
    def step(self) -> torch.Tensor:
        expected_time = self._time + (self.decimation - 0.5) * self.physics_dt_s
        self._run_on_threads(self._step_chunk)
        unstable = self._find_unstable(reset_by_mujoco=self._time < expected_time)
        self._build_state()
        return unstable

    def _find_unstable(self, reset_by_mujoco: np.ndarray) -> torch.Tensor:
        """Envs whose state is non-finite, exploding, or that MuJoCo itself reset (bad position,
        velocity or acceleration); each is put back in the default standing pose and counted."""
        finite = np.isfinite(self._qpos).all(axis=1) & np.isfinite(self._qvel).all(axis=1)
        with np.errstate(invalid="ignore"):
            exploding = ~(np.abs(self._qvel) <= self.max_abs_qvel).all(axis=1)
        bad = reset_by_mujoco | ~finite | exploding
        if bad.any():
            for i in np.flatnonzero(bad):
                self._write_default(int(i))
                self._refresh(self._thread_models[0], int(i))
            self._unstable_count += torch.from_numpy(bad).to(self.device)
        return torch.from_numpy(bad).to(self.device)

    def set_joint_targets(self, joint_pos_target: torch.Tensor) -> None:
        self._ctrl[:] = joint_pos_target.detach().cpu().numpy()

    def reset_envs(
        self,
        env_ids: torch.Tensor,
        root_pos: torch.Tensor,
        root_quat: torch.Tensor,
        root_lin_vel: torch.Tensor,
        root_ang_vel: torch.Tensor,
        joint_pos: torch.Tensor,
        joint_vel: torch.Tensor,
    ) -> None:
        ids = env_ids.detach().cpu().numpy().astype(np.int64)
        if ids.size == 0:
            return
        state = torch.cat([root_pos, root_quat, root_lin_vel, root_ang_vel, joint_pos, joint_vel], 1)
        state = state.detach().to("cpu", torch.float64).numpy()
        inverse = np.empty(4)
        for k, i in enumerate(ids):
            d = self._datas[i]
            row = state[k]
            self._clear_dynamics(d)
            d.qpos[0:7] = row[0:7]
            d.qpos[self._qpos_idx] = row[13:42]
            d.qvel[0:3] = row[7:10]
            mujoco.mju_negQuat(inverse, row[3:7])
            mujoco.mju_rotVecQuat(d.qvel[3:6], row[10:13], inverse)  # free-joint angular velocity is local
            d.qvel[self._dof_idx] = row[42:71]
            self._ctrl[i] = row[13:42]
            d.ctrl[:] = row[13:42]  # hold the new pose, so the refreshed torques and accelerations fit it
        self._refresh_many(ids)
        self._build_state()

    @staticmethod
    def _clear_dynamics(d: mujoco.MjData) -> None:
        """Forget solver warm starts and applied forces (cheaper than mj_resetData's full wipe)."""
        d.time = _CLOCK_START_S
        d.qacc_warmstart[:] = 0.0
        d.qfrc_applied[:] = 0.0
        d.xfrc_applied[:] = 0.0

    def _refresh_many(self, ids: np.ndarray) -> None:
        """Forward passes for externally written states, split over the worker threads."""
        if self._pool is None or len(ids) < _MIN_THREADED_REFRESH:
            for i in ids:
                self._refresh(self._thread_models[0], int(i))
            return
        parts = np.array_split(ids, self.num_threads)

        def work(thread: int) -> None:
            for i in parts[thread]:
                self._refresh(self._thread_models[thread], int(i))

        self._run_on_threads(work)

    def set_root_velocity(self, env_ids: torch.Tensor, lin_vel_w: torch.Tensor, ang_vel_w: torch.Tensor) -> None:
        ids = env_ids.detach().cpu().numpy().astype(np.int64)
        if ids.size == 0:
            return
        quat = self._views["qpos"][torch.from_numpy(ids), 3:7]
        lin = lin_vel_w.detach().cpu().double().numpy()
        ang = quat_apply_inverse(quat, ang_vel_w.to(quat.dtype)).double().numpy()
        for k, i in enumerate(ids):
            d = self._datas[i]
            d.qvel[0:3] = lin[k]
            d.qvel[3:6] = ang[k]
        self._refresh_many(ids)
        self._build_state()

    def set_friction(self, env_ids: torch.Tensor, friction: torch.Tensor) -> None:
        ids = env_ids.detach().cpu().numpy().astype(np.int64)
        self._geom_friction[ids, :, 0] = friction.detach().cpu().double().numpy()[:, None]
        self._per_env_params = True

    def set_body_mass_scale(self, env_ids: torch.Tensor, body_names: tuple[str, ...], scale: torch.Tensor) -> None:
        ids = env_ids.detach().cpu().numpy().astype(np.int64)
        bodies = self._ids_of(self.mj_model, tuple(body_names))
        s = scale.detach().cpu().double().numpy()
        self._body_mass[np.ix_(ids, bodies)] = self.mj_model.body_mass[bodies][None] * s
        self._body_inertia[np.ix_(ids, bodies)] = self.mj_model.body_inertia[bodies][None] * s[..., None]
        self._per_env_params = True

    def set_com_offset(self, env_ids: torch.Tensor, body_names: tuple[str, ...], offset_m: torch.Tensor) -> None:
        ids = env_ids.detach().cpu().numpy().astype(np.int64)
        bodies = self._ids_of(self.mj_model, tuple(body_names))
        off = offset_m.detach().cpu().double().numpy()
        self._body_ipos[np.ix_(ids, bodies)] = self.mj_model.body_ipos[bodies][None] + off
        self._per_env_params = True

    # ----- complete state for exact resume (`gear_sonic.sim.protocol.StatefulSimulator`) ----
    _PARAM_FIELDS = ("geom_friction", "body_mass", "body_inertia", "body_ipos")
    _BUFFER_FIELDS = ("qpos", "qvel", "qacc", "act_force", "bodies", "site_xpos", "cfrc_ext", "root_com")

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything the next `step` depends on, as CPU tensors: every env's MuJoCo integration
        state (`mjSTATE_INTEGRATION`: time, qpos, qvel, act, solver warm start, ctrl, applied
        forces), the per-env randomised model parameters, the held joint targets, the unstable
        counters and the gathered read-out buffers (accelerations, torques and contact forces
        of the last solved step cannot be recomputed from the integration state)."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        size = mujoco.mj_stateSize(self.mj_model, spec)
        physics = np.empty((self.num_envs, size), np.float64)
        for i, d in enumerate(self._datas):
            mujoco.mj_getState(self.mj_model, d, physics[i], spec)
        state = {"mj_integration_state": torch.from_numpy(physics)}
        state.update({f"param.{k}": torch.from_numpy(getattr(self, f"_{k}").copy()) for k in self._PARAM_FIELDS})
        state.update({f"buffer.{k}": torch.from_numpy(getattr(self, f"_{k}").copy()) for k in self._BUFFER_FIELDS})
        state["ctrl"] = torch.from_numpy(self._ctrl.copy())
        state["clock_s"] = torch.from_numpy(self._time.copy())
        state["unstable_count"] = self._unstable_count.detach().cpu().clone()
        state["per_env_params"] = torch.tensor(self._per_env_params)
        return state

    def load_full_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore `full_state_dict()` of a simulator with the same model and env count."""
        physics = state["mj_integration_state"].numpy()
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        size = mujoco.mj_stateSize(self.mj_model, spec)
        if physics.shape != (self.num_envs, size):
            raise ValueError(
                f"simulator state holds {physics.shape[0]} envs x {physics.shape[1]} values; this simulator "
                f"has {self.num_envs} envs x {size} (a different env count or robot model)"
            )
        for k in self._PARAM_FIELDS + self._BUFFER_FIELDS:
            value = state[f"{'param' if k in self._PARAM_FIELDS else 'buffer'}.{k}"].numpy()
            target = getattr(self, f"_{k}")
            if value.shape != target.shape:
                raise ValueError(f"simulator state '{k}' has shape {value.shape}, expected {target.shape}")
            target[...] = value
        self._ctrl[...] = state["ctrl"].numpy()
        self._time[...] = state["clock_s"].numpy()
        self._unstable_count.copy_(state["unstable_count"].to(self._unstable_count.device))
        self._per_env_params = bool(state["per_env_params"])
        model = self._thread_models[0]
        for i, d in enumerate(self._datas):
            mujoco.mj_setState(self.mj_model, d, physics[i], spec)
            self._load_params(model, i)
            # Recompute the position/velocity stage the next step's mj_step2 continues from; the
            # read-out buffers were restored verbatim above.
            mujoco.mj_step1(model, d)
        self._build_state()

    # ----- backend-specific (not part of the protocol) -------------------------------------
    def env_qpos(self, env_id: int) -> np.ndarray:
        """Full MuJoCo qpos of one env, e.g. for rendering."""
        return self._datas[env_id].qpos.copy()

    def bare_step(self) -> None:
        """Only `decimation` mj_step calls per env on the same threads: the benchmark's ceiling."""
        self._run_on_threads(self._bare_chunk)

    def _bare_chunk(self, thread: int) -> None:
        model = self._thread_models[thread]
        lo, hi = self._chunks[thread]
        step, decimation = mujoco.mj_step, self.decimation
        for i in range(lo, hi):
            d = self._datas[i]
            for _ in range(decimation):
                step(model, d)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)
