"""The SONIC motion-tracking task over a `Simulator`, vectorised over envs in torch.

One control step: actions -> joint targets -> `decimation` physics steps -> reference advances
one 50 Hz frame -> rewards and terminations -> finished envs logged and reset -> pushes ->
observations for every group of the declared layout (`gear_sonic.layout`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from gear_sonic.data import MotionLibrary
from gear_sonic.envs.config import EnvConfig
from gear_sonic.envs.frames import quat_mul_batched, relative_rot6d, yaw_then
from gear_sonic.envs.reference import ReferenceCache, build_reference_cache, resampled_num_frames
from gear_sonic.layout.routing import sample_encoder_routing
from gear_sonic.envs.sampling import AdaptiveSampler
from gear_sonic.layout import CRITIC, PROPRIOCEPTION, TOKENIZER_GROUPS, ObsGroup
from gear_sonic.layout.observations import FUTURE_FRAMES, G1_FRAME_SPACING_S, HISTORY_FRAMES, SMPL_FRAME_SPACING_S
from gear_sonic.robots import g1
from gear_sonic.robots.kinematics import G1Kinematics
from gear_sonic.sim import Simulator, make_simulator, single_threaded_torch

TRACKING_TERMS = (
    "tracking_anchor_pos", "tracking_anchor_ori", "tracking_relative_body_pos", "tracking_relative_body_ori",
    "tracking_body_linvel", "tracking_body_angvel", "tracking_vr_5point_local",
)
PENALTY_TERMS = ("action_rate_l2", "joint_limit", "undesired_contacts", "anti_shake_ang_vel", "ankle_joint_acc_l2")
TERMINATION_REASONS = ("anchor_height", "end_effector_height", "anchor_ori", "foot_pos", "sim_unstable")
TRUNCATION_REASONS = ("time_out", "motion_end")
DONE_REASONS = TERMINATION_REASONS + TRUNCATION_REASONS
# Rows of the tracking error block (see reference.py "error_vectors" / "error_quats").
_NUM_BODIES = len(g1.TRACKED_BODY_NAMES)
_NUM_VR = len(g1.VR_POINTS_REWARD)
_ERROR_VECTOR_ROWS = 1 + 3 * _NUM_BODIES + _NUM_VR
_ERROR_QUAT_ROWS = 1 + _NUM_BODIES


def _error_averaging() -> torch.Tensor:
    """(vector rows + quaternion rows, 7): averages squared errors into the 7 tracking terms."""
    w = torch.zeros(_ERROR_VECTOR_ROWS + _ERROR_QUAT_ROWS, len(TRACKING_TERMS))
    b, q = _NUM_BODIES, _ERROR_VECTOR_ROWS
    w[0, 0] = 1.0  # anchor position
    w[q, 1] = 1.0  # anchor orientation
    w[1:1 + b, 2] = 1.0 / b  # relative body positions
    w[q + 1:q + 1 + b, 3] = 1.0 / b  # relative body orientations
    w[1 + b:1 + 2 * b, 4] = 1.0 / b  # body linear velocities
    w[1 + 2 * b:1 + 3 * b, 5] = 1.0 / b  # body angular velocities
    w[1 + 3 * b:q, 6] = 1.0 / _NUM_VR  # VR points
    return w


class EnvSetupError(ValueError):
    """The configuration and the motion data do not fit together."""


@dataclass
class ClipResult:
    """Evaluation outcome of one clip played once from frame 0."""

    clip_index: int  # library index
    name: str
    num_frames: int  # at the control rate
    frames_played: int
    terminated: bool


def _index(names: tuple[str, ...], wanted: tuple[str, ...]) -> torch.Tensor:
    return torch.tensor([names.index(n) for n in wanted], dtype=torch.long)


def _ring_permutations(frame_widths: list[int]) -> torch.Tensor:
    """(10, frames x per-frame) column orders reading a ring buffer of history frames (flattened
    frame-major) oldest first and term by term, one row per ring position of the newest frame."""
    per_frame = sum(frame_widths)
    rows = []
    for newest in range(HISTORY_FRAMES):
        order, start = [], 0
        slots = [(newest + 1 + f) % HISTORY_FRAMES for f in range(HISTORY_FRAMES)]  # oldest first
        for width in frame_widths:
            for slot in slots:
                order.extend(range(slot * per_frame + start, slot * per_frame + start + width))
            start += width
        rows.append(order)
    return torch.tensor(rows, dtype=torch.long)


class TrackingEnv:
    """Vectorised motion tracking: `reset() -> obs`, `step(actions) -> obs, reward, terminated,
    truncated, info`, with automatic reset of finished envs.

    Observations are a dict keyed by group name in layout order: proprioception, g1, teleop,
    smpl (when configured), soma (when the library has SOMA), critic.
    """

    def __init__(
        self,
        cfg: EnvConfig,
        device: str | torch.device = "cpu",
        *,
        library: MotionLibrary | None = None,
        simulator: Simulator | None = None,
    ):
        self.cfg = cfg
        # The CPU backend's maths stays on the CPU; outputs go to `device` (e.g. the trainer's GPU).
        self.device = torch.device(device)
        self._on_cpu = self.device.type == "cpu"
        self.num_envs = int(cfg.num_envs)
        self.num_actions = g1.NUM_JOINTS
        self.generator = torch.Generator().manual_seed(int(cfg.seed))
        self.eval_mode = bool(cfg.eval_mode)
        self.replay = bool(cfg.replay)
        self.train_mode = not (self.eval_mode or self.replay)
        lib_cfg = cfg.commands.motion.motion_lib_cfg
        self.fps = float(lib_cfg.fps)
        self.step_dt_s = g1.CONTROL_DT_S
        if abs(self.fps * self.step_dt_s - 1.0) > 1e-9:
            raise EnvSetupError(f"motion_lib_cfg.fps={self.fps} must equal the control rate {1 / self.step_dt_s:g} Hz")
        self.library = library if library is not None else MotionLibrary.open(
            lib_cfg.motion_file, smpl_path=lib_cfg.smpl_motion_file, soma_path=lib_cfg.soma_motion_file
        )
        self.encoder_names = tuple(cfg.encoders)
        self._check_encoders()
        self.with_smpl = "smpl" in self.encoder_names
        self.with_soma = "soma" in self.encoder_names or self.library.has_soma
        self.obs_groups: tuple[ObsGroup, ...] = (PROPRIOCEPTION,) + tuple(
            TOKENIZER_GROUPS[name]
            for name in TOKENIZER_GROUPS
            if name in ("g1", "teleop") or (name == "smpl" and self.with_smpl) or (name == "soma" and self.with_soma)
        ) + (CRITIC,)

        vr_points = tuple((f"reward_{p.name}", p.body, p.offset_m) for p in g1.VR_POINTS_REWARD)
        self.sim = simulator if simulator is not None else make_simulator(
            cfg.sim.backend, self.num_envs, g1.TRACKED_BODY_NAMES, points=vr_points,
            num_threads=cfg.sim.num_threads or None,
        )
        if tuple(self.sim.body_names) != g1.TRACKED_BODY_NAMES:
            raise EnvSetupError("the simulator must report the 14 tracked bodies in g1.TRACKED_BODY_NAMES order")
        if tuple(self.sim.point_names) != tuple(p[0] for p in vr_points):
            raise EnvSetupError(f"the simulator must report the VR reward points {[p[0] for p in vr_points]}")
        self._kinematics = G1Kinematics()
        self._setup_constants()

        mc = cfg.commands.motion
        self.sampler = AdaptiveSampler(
            resampled_num_frames(self.library, self.fps), self.library.names,
            bin_frames=mc.bin_frames, adaptive_weight=mc.adaptive_weight, failure_rate_cap=mc.failure_rate_cap,
            start_shift_back_frames=mc.start_shift_back_frames, adaptive=mc.adaptive_sampling and self.train_mode,
        )
        self.max_resident = int(lib_cfg.max_unique_motions) if lib_cfg.max_unique_motions else len(self.library)
        self.max_resident = min(self.max_resident, len(self.library))
        self.cache: ReferenceCache = self._load_resident(self._choose_resident())
        self._setup_state()
        if self.train_mode and cfg.events.randomize:
            self._randomize_physics()
        self.eval_results: dict[int, ClipResult] = {}
        self._next_eval_clip = 0

    # ------------------------------------------------------------------------------------
    # setup
    def _check_encoders(self) -> None:
        lib, path = self.library, self.library.path
        unknown = [e for e in self.encoder_names if e not in TOKENIZER_GROUPS]
        if unknown:
            raise EnvSetupError(f"unknown encoder(s) {unknown}; known: {list(TOKENIZER_GROUPS)}")
        if "smpl" in self.encoder_names and not lib.has_smpl:
            raise EnvSetupError(
                f"{path}: the motion library has no SMPL joints but the smpl encoder is configured; pass "
                "++manager_env.commands.motion.motion_lib_cfg.smpl_motion_file=<dir of SMPL .npz> or "
                "++manager_env.config.encoders=[g1,teleop]"
            )
        if "soma" in self.encoder_names and not lib.has_soma:
            raise EnvSetupError(
                f"{path}: the motion library has no SOMA joints but the soma encoder is configured; pass "
                "++manager_env.commands.motion.motion_lib_cfg.soma_motion_file=<dir of SOMA .npz>"
            )

    def _setup_constants(self) -> None:
        f32 = torch.float32
        names = g1.TRACKED_BODY_NAMES
        self._default_joint_pos = torch.tensor(g1.DEFAULT_JOINT_POS_RAD, dtype=f32)
        self._action_scale = torch.tensor(g1.ACTION_SCALE, dtype=f32)
        limits = self.sim.joint_limits_rad.to(f32)
        mid, half = limits.mean(1), 0.5 * (limits[:, 1] - limits[:, 0])
        self._soft_lower, self._soft_upper = mid - 0.9 * half, mid + 0.9 * half
        self._feet = _index(names, g1.FEET_BODY_NAMES)
        self._end_effectors = _index(names, g1.FEET_BODY_NAMES + g1.WRIST_BODY_NAMES)
        self._shake_bodies = _index(names, ("left_wrist_yaw_link", "right_wrist_yaw_link", "torso_link"))
        allowed = set(g1.ALLOWED_CONTACT_BODY_NAMES)
        self._undesired_contact = torch.tensor([n not in allowed for n in self.sim.contact_body_names])
        self._ankle_joints = _index(g1.JOINT_NAMES_MUJOCO, g1.ANKLE_JOINT_NAMES)
        self._wrist_joints = _index(g1.JOINT_NAMES_MUJOCO, g1.WRIST_JOINT_NAMES)
        # Future frame offsets of each encoder's inputs.
        g1_step = round(G1_FRAME_SPACING_S * self.fps)
        smpl_step = round(SMPL_FRAME_SPACING_S * self.fps)
        self._g1_offsets = torch.arange(FUTURE_FRAMES) * g1_step
        self._smpl_offsets = torch.arange(FUTURE_FRAMES) * smpl_step
        self._proprio_perm = _ring_permutations([t.width_per_frame for t in PROPRIOCEPTION.terms])
        critic_history = [t for t in CRITIC.terms if t.frames == HISTORY_FRAMES and t.name != "command_joint_pos"
                          and t.name != "command_joint_vel"]
        self._critic_perm = _ring_permutations([t.width_per_frame for t in critic_history])
        lower = len(g1.LOWER_BODY_JOINT_NAMES)
        self._lower_body_command_columns = torch.cat([
            f * 29 + torch.arange(lower) for f in range(FUTURE_FRAMES)] + [
            290 + f * 29 + torch.arange(lower) for f in range(FUTURE_FRAMES)])
        o = self.cfg.observations
        self._noise_scale = torch.cat([
            torch.full((3,), o.noise_ang_vel_rad_s), torch.full((29,), o.noise_joint_pos_rad),
            torch.full((29,), o.noise_joint_vel_rad_s), torch.zeros(29), torch.full((3,), o.noise_projected_gravity),
        ])
        self._noise_on = bool(o.noise) and self.train_mode
        self._gravity_w = torch.tensor([0.0, 0.0, -1.0])
        self._unit_z = torch.tensor([0.0, 0.0, 1.0])
        self._rewards = dict(self.cfg.rewards)
        self.reward_term_names = tuple(self._rewards)
        all_terms = TRACKING_TERMS + PENALTY_TERMS
        self._reward_columns = torch.tensor([all_terms.index(k) for k in self.reward_term_names], dtype=torch.long)
        self._reward_weights_dt = torch.tensor(
            [self._rewards[k].weight * self.step_dt_s for k in self.reward_term_names]
        )
        self._error_averaging = _error_averaging()
        t = self.cfg.terminations
        inf = float("inf")

        def bound(value):
            return inf if value is None else float(value)

        self._height_bodies = torch.cat([_index(names, (g1.ANCHOR_BODY_NAME,)), self._end_effectors])
        normal = [bound(t.anchor_height_m)] + [bound(t.end_effector_height_m)] * len(self._end_effectors)
        self._height_bound = torch.tensor(normal)
        self._height_bound_low = None
        if t.low_pelvis_height_m is not None:
            low = [t.low_pelvis_anchor_height_m if t.anchor_height_m is not None else None]
            low += [t.low_pelvis_end_effector_height_m if t.end_effector_height_m is not None else None] * len(
                self._end_effectors)
            self._height_bound_low = torch.tensor([n if l is None else float(l) for n, l in zip(normal, low)])
        self._anchor_ori_bound = bound(t.anchor_ori_sq_rad)
        self._foot_bound = bound(t.foot_pos_m)
        r = self.cfg.commands.motion.reset_noise
        push_lo, push_hi = self.cfg.events.push_interval_s
        half_widths = torch.tensor(
            [r.root_xy_m, r.root_xy_m, r.root_z_m, r.root_roll_pitch_rad, r.root_roll_pitch_rad, r.root_yaw_rad]
            + [r.joint_pos_rad] * 29
        )
        self._reset_draw_span = torch.cat([2 * half_widths, torch.tensor([push_hi - push_lo])])
        self._reset_draw_low = torch.cat([-half_widths, torch.tensor([push_lo])])
        self._joint_lower, self._joint_upper = limits[:, 0].contiguous(), limits[:, 1].contiguous()
        self._routing_pool = (
            torch.zeros(0, dtype=torch.long), torch.zeros(0, len(self.encoder_names), dtype=torch.bool)
        )
        self._routing_used = 0
        self._zeros_n = torch.zeros(self.num_envs)
        self._false_n = torch.zeros(self.num_envs, dtype=torch.bool)
        self._ones_n = torch.ones(self.num_envs)
        defaults = {k: v for k, v in zip(TRACKING_TERMS, (0.3, 0.4, 0.3, 0.4, 1.0, 3.14, 0.1))}
        sigmas = [
            self._rewards[k].sigma if k in self._rewards and self._rewards[k].sigma else defaults[k]
            for k in TRACKING_TERMS
        ]
        self._inv_sigma_sq = 1.0 / torch.tensor(sigmas).square()
        contact = self._rewards.get("undesired_contacts")
        self._contact_threshold_sq = (contact.threshold if contact and contact.threshold is not None else 1.0) ** 2
        shake = self._rewards.get("anti_shake_ang_vel")
        self._shake_threshold = shake.threshold if shake and shake.threshold is not None else 1.5

    def _setup_state(self) -> None:
        n = self.num_envs
        self.frame = torch.zeros(n, dtype=torch.long)  # current frame within the clip
        self.start_frame = torch.zeros(n, dtype=torch.long)
        self.resident_clip = torch.zeros(n, dtype=torch.long)  # index into the resident cache
        self._clip_start = torch.zeros(n, dtype=torch.long)
        self._clip_last = torch.zeros(n, dtype=torch.long)
        self.episode_step = torch.zeros(n, dtype=torch.long)
        self.max_episode_steps = round(self.cfg.episode_length_s / self.step_dt_s)
        self.action = torch.zeros(n, 29)
        self.prev_action = torch.zeros(n, 29)
        self.default_joint_offset = torch.zeros(n, 29)
        self._default_joint_pos_env = self._default_joint_pos.expand(n, 29).clone()
        self._hist_actor = torch.zeros(n, HISTORY_FRAMES, 93)
        self._hist_critic = torch.zeros(n, HISTORY_FRAMES, 93)
        self._history_slot = HISTORY_FRAMES - 1  # ring position of the newest frame
        self._fresh = torch.ones(n, dtype=torch.bool)
        self._pelvis_height_ema = torch.zeros(n)
        self._push_timer_s = torch.zeros(n)
        self._episode_sums = torch.zeros(n, len(self.reward_term_names))
        self.encoder_index = torch.zeros(n, dtype=torch.long)
        self.encoder_active = torch.zeros(n, len(self.encoder_names), dtype=torch.bool)
        self.eval_clip = torch.full((n,), -1, dtype=torch.long)  # library clip each env evaluates (-1: idle)
        self.last_reward_terms = torch.zeros(n, len(self.reward_term_names))
        self.iteration = 0

    def _randomize_physics(self) -> None:
        """Start-up domain randomisation: friction, masses, centre of mass, default joint offset."""
        e, n, gen = self.cfg.events, self.num_envs, self.generator
        ids = torch.arange(n)

        def uniform(lo, hi, shape):
            lo, hi = torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32)
            return lo + (hi - lo) * torch.rand(shape, generator=gen)

        # MuJoCo has one sliding coefficient bounding the friction cone: it takes the static range
        # (PhysX's separate dynamic coefficient, `friction_dynamic`, has no MuJoCo counterpart).
        self.sim.set_friction(ids, uniform(*e.friction_static, (n,)))
        if e.mass_scale_bodies:
            k = len(e.mass_scale_bodies)
            self.sim.set_body_mass_scale(ids, tuple(e.mass_scale_bodies), uniform(*e.mass_scale, (n, k)))
        if e.com_offset_bodies:
            k = len(e.com_offset_bodies)
            bound = torch.tensor(e.com_offset_m, dtype=torch.float32)
            self.sim.set_com_offset(ids, tuple(e.com_offset_bodies), uniform(-bound, bound, (n, k, 3)))
        self.default_joint_offset = uniform(-e.default_joint_offset_rad, e.default_joint_offset_rad, (n, 29))
        self._default_joint_pos_env = self._default_joint_pos + self.default_joint_offset

    # ------------------------------------------------------------------------------------
    # resident clips
    def _choose_resident(self) -> np.ndarray:
        if self.max_resident >= len(self.library) or self.eval_mode:
            return np.arange(self.max_resident)
        weights = self.sampler.clip_weights().to(torch.float32)
        chosen = torch.multinomial(weights, self.max_resident, replacement=False, generator=self.generator)
        return np.sort(chosen.numpy())

    def _load_resident(self, clip_ids: np.ndarray) -> ReferenceCache:
        cache = build_reference_cache(
            self.library, clip_ids, fps=self.fps, kinematics=self._kinematics,
            with_smpl=self.with_smpl, with_soma=self.with_soma,
        )
        self.sampler.set_resident(cache.clip_ids)
        robot, current = cache.slices["robot"], cache.slices["current"]
        if robot["dof_pos"] != slice(0, 29) or robot["dof_vel"] != slice(29, 58):
            raise RuntimeError("reference table layout changed: dof_pos/dof_vel must lead the robot table")
        if current["vr_teleop_pos"].stop != current["vr_teleop_quat"].start:
            raise RuntimeError("reference table layout changed: VR position and quaternion columns must be adjacent")
        self._vr_teleop_columns = torch.arange(current["vr_teleop_pos"].start, current["vr_teleop_quat"].stop)

        # Columns of the windowed fields in a flattened 10-frame window (see _gather_reference).
        def window_columns(table: str, field: str) -> torch.Tensor:
            width, cols = cache.tables[table].shape[1], cache.slices[table][field]
            per_frame = [f * width + torch.arange(cols.start, cols.stop) for f in range(FUTURE_FRAMES)]
            return torch.cat(per_frame)

        self._command_columns = torch.cat([window_columns("robot", "dof_pos"), window_columns("robot", "dof_vel")])
        self._robot_root6_columns = window_columns("robot", "root_cols6")
        human = cache.slices["human"]
        self._human_columns = {
            key: window_columns("human", field)
            for key, field in (("human_root6", "root_cols6"), ("wrists", "wrist_dof_pos"),
                               ("smpl_joints", "smpl_joints_local"), ("soma_joints", "soma_joints_local"),
                               ("soma6", "soma_cols6"))
            if field in human
        }
        self._ref_root_pos_columns = torch.arange(current["body_pos"].start, current["body_pos"].start + 3)
        self._clips_missing_human = bool(
            ("smpl" in self.encoder_names and not cache.clip_has_smpl.all())
            or ("soma" in self.encoder_names and not cache.clip_has_soma.all())
        )
        if cache.shapes["current"]["error_vectors"] != (_ERROR_VECTOR_ROWS, 3):
            raise RuntimeError("reference error block does not match the reward layout")
        return cache

    def on_iteration_end(self, iteration: int) -> dict[str, torch.Tensor] | None:
        """Call once per training iteration. Swaps the resident clip subset every
        `resample_motions_every_iters` iterations (libraries larger than `max_unique_motions`);
        a swap resets every env and returns the new observations (else None)."""
        self.iteration = int(iteration)
        every = int(self.cfg.commands.motion.motion_lib_cfg.resample_motions_every_iters)
        if not self.train_mode or every <= 0 or self.max_resident >= len(self.library) or iteration % every:
            return None
        return self.swap_resident_motions()

    def swap_resident_motions(self) -> dict[str, torch.Tensor]:
        """Load a new resident subset (drawn by failure-weighted clip weights) and reset all envs."""
        self.cache = self._load_resident(self._choose_resident())
        return self.reset()

    # ------------------------------------------------------------------------------------
    # reference lookup
    def _gather_current(self) -> dict[str, torch.Tensor]:
        """The reference rows at the envs' current frames ("current", (N, Dc)): all that rewards
        and terminations read."""
        return {"current": self.cache.tables["current"].index_select(0, self._clip_start + self.frame)}

    def _gather_reference(self, ref: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """`_gather_current` (unless `ref` has it) plus, straight from the tables, the windowed
        fields the observations use, already term-major: "command" (N, 580) joint positions
        then velocities at the g1 offsets, "root6" (N, 10, 6) and, at the smpl offsets,
        "human_root6", "smpl_joints", "soma_joints", "soma6", "wrists"."""
        tables = self.cache.tables
        n, frames_left = self.num_envs, (self._clip_last - self._clip_start)[:, None]
        out = dict(ref) if ref is not None else self._gather_current()
        rows = self._clip_start[:, None] + torch.minimum(self.frame[:, None] + self._g1_offsets, frames_left)
        window = tables["robot"].index_select(0, rows.view(-1)).view(n, -1)  # (N, 10 x Dr), frame-major
        out["command"] = window.index_select(1, self._command_columns)
        out["root6"] = window.index_select(1, self._robot_root6_columns).view(n, FUTURE_FRAMES, 6)
        if self.with_smpl or self.with_soma:
            rows = self._clip_start[:, None] + torch.minimum(self.frame[:, None] + self._smpl_offsets, frames_left)
            window = tables["human"].index_select(0, rows.view(-1)).view(n, -1)
            for name, columns in self._human_columns.items():
                out[name] = window.index_select(1, columns).view(n, FUTURE_FRAMES, -1)
        return out

    def _ref(self, ref: dict[str, torch.Tensor], table: str, name: str) -> torch.Tensor:
        """A field of gathered reference rows, shaped (N, [frames,] *field shape)."""
        rows = ref[table]
        return rows[..., self.cache.slices[table][name]].reshape(rows.shape[:-1] + self.cache.shapes[table][name])

    # ------------------------------------------------------------------------------------
    # reset
    def reset(self) -> dict[str, torch.Tensor]:
        """Reset every env (in eval mode: restart the pass over all clips) and return observations."""
        with self._maths_threads():
            if self.eval_mode:
                self.eval_results = {}
                self._next_eval_clip = 0
            self._reset_envs(torch.arange(self.num_envs))
            return self._to_device(self._observations(self._gather_reference()))

    def _reset_envs(self, ids: torch.Tensor) -> None:
        n = ids.numel()
        if n == 0:
            return
        gen = self.generator
        if self.eval_mode:
            resident, start = self._assign_eval_clips(ids)
        else:
            resident, start = self.sampler.sample(n, gen)
        self.resident_clip[ids] = resident
        self.start_frame[ids] = start
        self.frame[ids] = start
        self._clip_start[ids] = self.cache.clip_start[resident]
        self._clip_last[ids] = self.cache.clip_start[resident] + self.cache.clip_num_frames[resident] - 1
        self.episode_step[ids] = 0
        self.action[ids] = 0.0
        self.prev_action[ids] = 0.0
        self._fresh[ids] = True
        self._episode_sums[ids] = 0.0

        rows = self._clip_start[ids] + start
        robot_rows = self.cache.tables["robot"].index_select(0, rows)
        current_rows = self.cache.tables["current"].index_select(0, rows)
        rs, cs = self.cache.slices["robot"], self.cache.slices["current"]
        root_pos = robot_rows[:, rs["root_pos"]]
        root_quat = robot_rows[:, rs["root_quat"]]
        joint_pos = robot_rows[:, rs["dof_pos"]]
        self._pelvis_height_ema[ids] = root_pos[:, 2]
        # One draw for every random number of the reset: root offset 3, rotation vector 3, joints 29, push timer 1.
        draw = torch.rand(n, 36, generator=gen) * self._reset_draw_span + self._reset_draw_low
        if self.train_mode:
            root_pos = root_pos + draw[:, 0:3]
            rotvec = draw[:, 3:6]  # small roll/pitch/yaw perturbation
            angle = rotvec.norm(dim=1, keepdim=True).clamp_min(1e-9)
            half = 0.5 * angle
            delta = torch.cat([torch.cos(half), rotvec * (torch.sin(half) / angle)], 1)
            root_quat = quat_mul_batched(delta, root_quat)
            joint_pos = torch.maximum(torch.minimum(joint_pos + draw[:, 6:35], self._joint_upper), self._joint_lower)
        self.sim.reset_envs(
            ids, root_pos, root_quat, current_rows[:, cs["root_lin_vel"]], current_rows[:, cs["root_ang_vel"]],
            joint_pos, robot_rows[:, rs["dof_vel"]],
        )
        self._push_timer_s[ids] = draw[:, 35]
        index, active = self._draw_routing(n)
        if self._clips_missing_human:
            # Clips without SMPL (SOMA) joints cannot drive that encoder: run g1 for them instead.
            missing = torch.zeros(n, dtype=torch.bool)
            if "smpl" in self.encoder_names:
                missing |= ~self.cache.clip_has_smpl[resident] & (index == self.encoder_names.index("smpl"))
            if "soma" in self.encoder_names:
                missing |= ~self.cache.clip_has_soma[resident] & (index == self.encoder_names.index("soma"))
            if missing.any() and "g1" in self.encoder_names:
                g1_col = self.encoder_names.index("g1")
                index[missing] = g1_col
                active[missing] = False
                active[missing, g1_col] = True
        self.encoder_index[ids] = index
        self.encoder_active[ids] = active

    def _draw_routing(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder routing for n new episodes, drawn from a pool refilled in large batches."""
        if self._routing_used + n > len(self._routing_pool[0]):
            size = max(4 * self.num_envs, 256, n)
            self._routing_pool = sample_encoder_routing(self.encoder_names, size, self.generator)
            self._routing_used = 0
        lo, self._routing_used = self._routing_used, self._routing_used + n
        return self._routing_pool[0][lo:lo + n].clone(), self._routing_pool[1][lo:lo + n].clone()

    def _assign_eval_clips(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Next unplayed resident clips from frame 0; envs left over replay the last clip, idle."""
        count = len(self.cache.clip_ids)
        take = torch.arange(self._next_eval_clip, self._next_eval_clip + ids.numel())
        self._next_eval_clip += ids.numel()
        playing = take < count
        resident = torch.where(playing, take, torch.full_like(take, count - 1))
        self.eval_clip[ids] = torch.where(playing, self.cache.clip_ids[resident], torch.full_like(take, -1))
        return resident, torch.zeros_like(resident)

    @property
    def eval_finished(self) -> bool:
        """Every resident clip has been played once (eval mode)."""
        return len(self.eval_results) >= len(self.cache.clip_ids)

    # ------------------------------------------------------------------------------------
    # step
    def step(self, actions: torch.Tensor):
        """actions (N, 29), MuJoCo joint order, unscaled -> (obs, reward (N,), terminated (N,),
        truncated (N,), info)."""
        if actions.shape != (self.num_envs, 29):
            raise ValueError(f"actions must have shape ({self.num_envs}, 29), got {tuple(actions.shape)}")
        obs, reward, terminated, truncated, info = self._step(actions.detach().to("cpu", torch.float32))
        if self._on_cpu:
            return obs, reward, terminated, truncated, info
        return self._to_device(obs), reward.to(self.device), terminated.to(self.device), truncated.to(self.device), info

    def _to_device(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return obs if self._on_cpu else {k: v.to(self.device, non_blocking=True) for k, v in obs.items()}

    def _step(self, actions: torch.Tensor):
        with self._maths_threads():
            ref, reward, terminated, truncated, info = self._advance(actions)
            obs = self._observations(self._gather_reference(ref))
        return obs, reward, terminated, truncated, info

    def _maths_threads(self):
        """One torch intra-op thread for the per-step maths (robust when the cores are shared),
        or torch's own setting with `sim.parallel_env_maths` (faster on a dedicated machine:
        the physics threads idle meanwhile)."""
        return contextlib.nullcontext() if self.cfg.sim.parallel_env_maths else single_threaded_torch()

    def _advance(self, actions: torch.Tensor):
        """Physics, rewards, terminations, logging and resets of one control step."""
        self.prev_action = self.action
        self.action = actions.clone()
        if self.replay:
            unstable = torch.zeros(self.num_envs, dtype=torch.bool)
        else:
            targets = self._default_joint_pos_env + actions * self._action_scale
            self.sim.set_joint_targets(targets)
            unstable = self.sim.step()
        self.episode_step += 1
        self.frame = torch.minimum(self.frame + 1, self._clip_last - self._clip_start)
        if self.replay:
            self._write_reference_state()
        ref = self._gather_current()
        robot = self.sim.state

        terms, errors, foot_err = self._reward_terms(ref, robot)
        self.last_reward_terms = terms.index_select(1, self._reward_columns)  # (N, T) unweighted
        weighted = self.last_reward_terms * self._reward_weights_dt
        reward = weighted.sum(1)
        self._episode_sums += weighted
        reasons = self._terminations(ref, robot, errors, foot_err, unstable)  # (N, 7) in DONE_REASONS order
        terminated = reasons[:, :len(TERMINATION_REASONS)].any(1)
        truncated = reasons[:, len(TERMINATION_REASONS):].any(1) & ~terminated
        done = terminated | truncated

        info: dict = {
            "reward_terms": dict(zip(self.reward_term_names, weighted.mean(0).unbind())),
            "metrics": {"anchor_pos_err": errors[:, 0].sqrt(), "body_pos_err": errors[:, 2].sqrt()},
            "terminations": dict(zip(DONE_REASONS, reasons.unbind(1))),
            "unstable_resets": self.sim.unstable_reset_count,
        }
        if self.eval_mode:
            # The frame each env just reached, before finished envs are reset: evaluation metrics need
            # the terminal frame of every clip.
            info["eval"] = {
                "clip": self.eval_clip.clone(),
                "robot_body_pos": robot.body_pos.clone(),
                "reference_body_pos": self.reference_body_pos().clone(),
            }
        done_ids = done.nonzero().squeeze(1)
        if done_ids.numel():
            info["log"] = self._finish_episodes(done_ids, terminated, reasons)
            self._reset_envs(done_ids)
            ref = self._gather_current()
        if self.train_mode and self.cfg.events.push:
            self._push_robots()
        return ref, reward, terminated, truncated, info

    def _write_reference_state(self) -> None:
        """Replay: place every robot exactly on the reference at its current frame."""
        rows = self._clip_start + self.frame
        robot_rows = self.cache.tables["robot"].index_select(0, rows)
        current_rows = self.cache.tables["current"].index_select(0, rows)
        rs, cs = self.cache.slices["robot"], self.cache.slices["current"]
        self.sim.reset_envs(
            torch.arange(self.num_envs), robot_rows[:, rs["root_pos"]], robot_rows[:, rs["root_quat"]],
            current_rows[:, cs["root_lin_vel"]], current_rows[:, cs["root_ang_vel"]],
            robot_rows[:, rs["dof_pos"]], robot_rows[:, rs["dof_vel"]],
        )

    def _finish_episodes(self, ids: torch.Tensor, terminated: torch.Tensor, reasons: torch.Tensor) -> dict[str, float]:
        sums = (self._episode_sums.index_select(0, ids).mean(0) / self.cfg.episode_length_s).tolist()
        log = {f"Episode_Reward/{k}": v for k, v in zip(self.reward_term_names, sums)}
        fractions = reasons.index_select(0, ids).to(torch.float32).mean(0).tolist()
        log.update({f"Episode_Termination/{k}": v for k, v in zip(DONE_REASONS, fractions)})
        steps = self.episode_step.index_select(0, ids).to(torch.float32)
        log["episode_length_s"] = float(steps.mean()) * self.step_dt_s
        failed = terminated.index_select(0, ids)
        frames = self.frame.index_select(0, ids)
        clips = self.cache.clip_ids.index_select(0, self.resident_clip.index_select(0, ids))
        self.sampler.record(clips, self.start_frame.index_select(0, ids), frames, failed)
        if self.eval_mode:
            for env, frame, fail in zip(ids.tolist(), frames.tolist(), failed.tolist()):
                clip = int(self.eval_clip[env])
                if clip >= 0 and clip not in self.eval_results:
                    resident = int(self.resident_clip[env])
                    self.eval_results[clip] = ClipResult(
                        clip_index=clip,
                        name=self.library.names[clip],
                        num_frames=int(self.cache.clip_num_frames[resident]),
                        frames_played=frame + 1,
                        terminated=bool(fail),
                    )
        return log

    def _push_robots(self) -> None:
        self._push_timer_s -= self.step_dt_s
        due = (self._push_timer_s <= 0).nonzero().squeeze(1)
        if due.numel() == 0:
            return
        e, n, gen = self.cfg.events, due.numel(), self.generator
        lin_bound = torch.tensor(e.push_lin_vel_m_s)
        ang_bound = torch.tensor(e.push_ang_vel_rad_s)
        state = self.sim.state
        lin = state.root_lin_vel[due] + (2 * torch.rand(n, 3, generator=gen) - 1) * lin_bound
        ang = state.root_ang_vel[due] + (2 * torch.rand(n, 3, generator=gen) - 1) * ang_bound
        self.sim.set_root_velocity(due, lin, ang)
        lo, hi = e.push_interval_s
        self._push_timer_s[due] = lo + (hi - lo) * torch.rand(n, generator=gen)

    # ------------------------------------------------------------------------------------
    # rewards and terminations
    def _reward_terms(self, ref, robot):
        """-> all terms (N, 12) in TRACKING_TERMS + PENALTY_TERMS order (unweighted), the
        tracking errors (N, 7), and the feet's 3-D errors after re-anchoring (N, 2)."""
        n = self.num_envs
        rot = robot.body_rotmat[:, 0]  # pelvis -> world
        root_pos = robot.root_pos
        ref_vectors = self._ref(ref, "current", "error_vectors")
        ref_root_height = ref_vectors[:, 0, 2:]

        # Re-anchoring: bodies relative to the anchor (robot pelvis xy, reference pelvis height),
        # in the robot's heading frame; the reference's heading-frame offsets are precomputed.
        heading = torch.atan2(rot[:, 1, 0], rot[:, 0, 0])
        cos_h, sin_h = torch.cos(heading), torch.sin(heading)
        zero, one = self._zeros_n, self._ones_n
        heading_rot = torch.stack([cos_h, -sin_h, zero, sin_h, cos_h, zero, zero, zero, one], 1).view(n, 3, 3)
        anchor = torch.cat([root_pos[:, :2], ref_root_height], 1)
        robot_vectors = torch.cat([
            root_pos[:, None],
            torch.bmm(robot.body_pos - anchor[:, None], heading_rot),
            robot.body_lin_vel,
            robot.body_ang_vel,
            torch.bmm(robot.point_pos - root_pos[:, None], rot),  # VR points in the pelvis frame
        ], 1)
        vector_sq = (robot_vectors - ref_vectors).square().sum(-1)
        half = 0.5 * heading
        robot_quats = torch.cat([
            robot.root_quat[:, None], yaw_then(torch.cos(half), -torch.sin(half), robot.body_quat),
        ], 1)
        dot = (robot_quats * self._ref(ref, "current", "error_quats")).sum(-1).abs().clamp(max=1.0)
        angle_sq = (2.0 * torch.acos(dot)).square()
        errors = torch.cat([vector_sq, angle_sq], 1) @ self._error_averaging
        tracking = torch.exp(-errors * self._inv_sigma_sq)

        q = robot.joint_pos
        joint_limit = ((q - self._soft_upper).clamp_min(0) + (self._soft_lower - q).clamp_min(0)).sum(1)
        touching = robot.contact_force.square().sum(-1) > self._contact_threshold_sq
        speed = robot.body_ang_vel.index_select(1, self._shake_bodies).norm(dim=-1)
        penalties = torch.stack([
            (self.action - self.prev_action).square().sum(1),
            joint_limit,
            (touching & self._undesired_contact).sum(1).to(torch.float32),
            (speed - self._shake_threshold).clamp_min(0).square().sum(1),
            robot.joint_acc.index_select(1, self._ankle_joints).square().sum(1),
        ], 1)
        foot_err = vector_sq.index_select(1, self._feet + 1).sqrt()
        return torch.cat([tracking, penalties], 1), errors, foot_err

    def _terminations(self, ref, robot, errors, foot_err, unstable) -> torch.Tensor:
        """-> (N, 7) bool, one column per DONE_REASONS entry."""
        t = self.cfg.terminations
        ref_body_pos = self._ref(ref, "current", "body_pos")
        alpha = t.pelvis_height_ema_alpha
        self._pelvis_height_ema = (1 - alpha) * self._pelvis_height_ema + alpha * ref_body_pos[:, 0, 2]
        # Height errors of the pelvis and the four end effectors against their bounds.
        height_err = (ref_body_pos[:, :, 2] - robot.body_pos[:, :, 2]).abs().index_select(1, self._height_bodies)
        bound = self._height_bound
        if self._height_bound_low is not None:
            low = (self._pelvis_height_ema < t.low_pelvis_height_m)[:, None]
            bound = torch.where(low, self._height_bound_low, bound)
        too_far = height_err > bound
        at_end = self.frame >= self._clip_last - self._clip_start
        false = self._false_n
        if self.eval_mode:  # evaluation plays every clip to its end
            time_out, motion_end = false, at_end
        else:
            time_out, motion_end = self.episode_step >= self.max_episode_steps, at_end if t.motion_end else false
        return torch.stack([
            too_far[:, 0],
            too_far[:, 1:].any(1),
            errors[:, 1] > self._anchor_ori_bound,  # squared pelvis angle, shared with the reward
            (foot_err > self._foot_bound).any(1),
            unstable,
            time_out,
            motion_end,
        ], 1)

    # ------------------------------------------------------------------------------------
    # observations
    def _observations(self, ref: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        n = self.num_envs
        robot = self.sim.state
        rot = robot.body_rotmat[:, 0]  # pelvis -> world
        world_vecs = torch.stack([robot.root_lin_vel, robot.root_ang_vel, self._gravity_w.expand(n, 3)], 1)
        local_vecs = torch.bmm(world_vecs, rot)  # rows: lin vel, ang vel, gravity in the pelvis frame
        joint_pos_rel = robot.joint_pos - self._default_joint_pos_env
        critic_frame = torch.cat([local_vecs[:, :2].reshape(n, 6), joint_pos_rel, robot.joint_vel, self.action], 1)
        actor_frame = torch.cat([local_vecs[:, 1], joint_pos_rel, robot.joint_vel, self.action, local_vecs[:, 2]], 1)
        if self._noise_on:
            uniform = 2 * torch.rand(actor_frame.shape, generator=self.generator) - 1
            actor_frame = actor_frame + uniform * self._noise_scale
        # Ring buffers of the last 10 frames; the permutation for the ring position reads them
        # out oldest first, term by term.
        slot = self._history_slot = (self._history_slot + 1) % HISTORY_FRAMES
        self._hist_actor[:, slot] = actor_frame
        self._hist_critic[:, slot] = critic_frame
        if self._fresh.any():
            fresh = self._fresh.nonzero().squeeze(1)
            self._hist_actor[fresh] = actor_frame[fresh, None]
            self._hist_critic[fresh] = critic_frame[fresh, None]
            self._fresh[:] = False

        # Every orientation the groups need, relative to the robot pelvis, in one batched matmul.
        k = FUTURE_FRAMES
        frames = [ref["root6"], robot.body_rotmat[..., :2].reshape(n, _NUM_BODIES, 6)]
        if self.with_smpl or self.with_soma:
            frames.append(ref["human_root6"])
        if self.with_soma:
            frames.append(ref["soma6"])
        rel6 = relative_rot6d(rot, torch.cat(frames, 1))
        anchor6 = rel6[:, :k]

        command = ref["command"]
        obs: dict[str, torch.Tensor] = {
            "proprioception": self._hist_actor.view(n, -1).index_select(1, self._proprio_perm[slot]),
            "g1": torch.cat([command, anchor6.reshape(n, -1)], 1),
            "teleop": torch.cat([
                command.index_select(1, self._lower_body_command_columns),
                ref["current"].index_select(1, self._vr_teleop_columns), anchor6[:, 0],
            ], 1),
        }
        if self.with_smpl or self.with_soma:
            wrists = ref["wrists"].reshape(n, -1)
        if self.with_smpl:
            human6 = rel6[:, k + _NUM_BODIES:2 * k + _NUM_BODIES].reshape(n, -1)
            obs["smpl"] = torch.cat([ref["smpl_joints"].reshape(n, -1), human6, wrists], 1)
        if self.with_soma:
            soma6 = rel6[:, 2 * k + _NUM_BODIES:].reshape(n, -1)
            obs["soma"] = torch.cat([ref["soma_joints"].reshape(n, -1), soma6, wrists], 1)
        ref_root_pos = ref["current"].index_select(1, self._ref_root_pos_columns)
        local = torch.bmm(torch.cat([ref_root_pos[:, None], robot.body_pos], 1) - robot.root_pos[:, None], rot)
        obs["critic"] = torch.cat([
            command, local[:, 0], anchor6[:, 0], local[:, 1:].reshape(n, -1), rel6[:, k:k + _NUM_BODIES].reshape(n, -1),
            self._hist_critic.view(n, -1).index_select(1, self._critic_perm[slot]),
        ], 1)
        return {g.name: obs[g.name] for g in self.obs_groups}

    # ------------------------------------------------------------------------------------
    # state for checkpoints and trainers
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Adaptive-sampling statistics (saved in checkpoints, mergeable across processes)."""
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.sampler.load_state_dict(state)

    # Per-env tensors that make up the episode state (all (N, ...) on the CPU).
    _EPISODE_TENSORS = (
        "frame", "start_frame", "resident_clip", "_clip_start", "_clip_last", "episode_step", "action",
        "prev_action", "default_joint_offset", "_default_joint_pos_env", "_hist_actor", "_hist_critic", "_fresh",
        "_pelvis_height_ema", "_push_timer_s", "_episode_sums", "encoder_index", "encoder_active",
        "last_reward_terms",
    )
    FULL_STATE_VERSION = 1

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The complete training state, so a run resumes bit-exactly: sampling statistics
        (`sampler.`), the resident clip subset, every per-env episode tensor (frames, steps,
        histories, actions, push timers, routing, EMA, randomised joint offsets), the routing
        pool, the env's random generator and the simulator's complete state (`sim.`).
        Only for the simulator backends that implement `full_state_dict` (see `StatefulSimulator`)."""
        if not hasattr(self.sim, "full_state_dict"):
            raise NotImplementedError(f"{type(self.sim).__name__} cannot capture its complete state")
        state = {f"sampler.{k}": v for k, v in self.sampler.state_dict().items()}
        state.update({f"sim.{k}": v for k, v in self.sim.full_state_dict().items()})
        state.update({f"episode.{k}": getattr(self, k).clone() for k in self._EPISODE_TENSORS})
        state["resident_clip_ids"] = self.cache.clip_ids.clone()
        state["routing_pool_index"] = self._routing_pool[0].clone()
        state["routing_pool_active"] = self._routing_pool[1].clone()
        state["counters"] = torch.tensor(
            [self.FULL_STATE_VERSION, self.num_envs, self._history_slot, self._routing_used, self.iteration]
        )
        state["generator"] = self.generator.get_state()
        return state

    @staticmethod
    def is_full_state(state: dict[str, torch.Tensor]) -> bool:
        """True for a `full_state_dict()`, False for a sampling-only `state_dict()`."""
        return "counters" in state and "generator" in state

    def full_state_num_envs(self, state: dict[str, torch.Tensor]) -> int:
        return int(state["counters"][1])

    def load_full_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore `full_state_dict()` taken from an env with the same configuration and env count."""
        if not self.is_full_state(state):
            raise ValueError("not a full env state (use load_state_dict for sampling statistics alone)")
        version, num_envs, slot, used, iteration = (int(v) for v in state["counters"])
        if version != self.FULL_STATE_VERSION:
            raise ValueError(f"env state version {version}; this code reads version {self.FULL_STATE_VERSION}")
        if num_envs != self.num_envs:
            raise ValueError(f"env state holds {num_envs} envs; this env has {self.num_envs}")
        self.load_state_dict({k.removeprefix("sampler."): v for k, v in state.items() if k.startswith("sampler.")})
        resident = state["resident_clip_ids"].to(torch.long)
        if not torch.equal(resident, self.cache.clip_ids):
            if resident.numel() and int(resident.max()) >= len(self.library):
                raise ValueError("env state refers to clips beyond this motion library")
            self.cache = self._load_resident(resident.numpy())
        for key in self._EPISODE_TENSORS:
            value, current = state[f"episode.{key}"], getattr(self, key)
            if value.shape != current.shape or value.dtype != current.dtype:
                raise ValueError(
                    f"env state '{key}' is {tuple(value.shape)} {value.dtype}, expected {tuple(current.shape)} "
                    f"{current.dtype} (a different configuration)"
                )
            setattr(self, key, value.clone())
        self._routing_pool = (state["routing_pool_index"].clone(), state["routing_pool_active"].clone())
        self._history_slot, self._routing_used, self.iteration = slot, used, iteration
        self.generator.set_state(state["generator"].clone())
        self.sim.load_full_state_dict({k.removeprefix("sim."): v for k, v in state.items() if k.startswith("sim.")})

    def sync_sampling_statistics(self, group) -> None:
        """Sum the sampling counts of all processes since the last sync; `group.sum_(tensor)`
        all-reduces in place (gear_sonic.rl's process group). SONIC does this every 200 iterations."""
        self.sampler.sync(group.sum_, self.device)

    @staticmethod
    def merge_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Merge the sampling statistics of several processes (sum of their counts since the last merge)."""
        return AdaptiveSampler.merge_state_dicts(states)

    @property
    def observation_widths(self) -> dict[str, int]:
        return {g.name: g.width for g in self.obs_groups}

    def reference_body_pos(self) -> torch.Tensor:
        """(N, 14, 3) m: the reference's tracked-body positions at the envs' current frames."""
        rows = self._clip_start + self.frame
        return self.cache.field(rows, "current", "body_pos")

    def close(self) -> None:
        self.sim.close()
