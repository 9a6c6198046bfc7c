"""Cross-modal token alignment: after training the auxiliary losses alone on synthetic motions,
the g1, teleop and smpl encodings of the same motion are closer to each other than to the
encodings of other motions.

The motions are synthesised here without the environment: smooth random joint trajectories and a
drifting, turning root, with every encoder input computed by forward kinematics of the G1 in the
exact term order of `gear_sonic.layout`.
"""

from __future__ import annotations

import math
import time

import torch

from gear_sonic.layout import group
from gear_sonic.model import SonicConfig, SonicModel
from gear_sonic.robots import G1Kinematics, g1
from gear_sonic.utils.rotations import quat_apply, quat_apply_inverse, quat_conjugate, quat_from_axis_angle, quat_mul, quat_to_6d

FPS = 50.0
G1_STRIDE = round(0.1 * FPS)  # g1/teleop future frames 0.1 s apart
# The 24 SMPL joints, each placed on a G1 body with an offset (m) in that body's frame.
SMPL_ON_G1: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("pelvis", (0, 0, 0)), ("left_hip_roll_link", (0, 0, 0)), ("right_hip_roll_link", (0, 0, 0)),
    ("waist_yaw_link", (0, 0, 0.05)), ("left_knee_link", (0, 0, 0)), ("right_knee_link", (0, 0, 0)),
    ("waist_roll_link", (0, 0, 0.1)), ("left_ankle_pitch_link", (0, 0, 0)), ("right_ankle_pitch_link", (0, 0, 0)),
    ("torso_link", (0, 0, 0.15)), ("left_ankle_roll_link", (0.1, 0, -0.03)), ("right_ankle_roll_link", (0.1, 0, -0.03)),
    ("torso_link", (0, 0, 0.3)), ("left_shoulder_pitch_link", (0, 0, 0)), ("right_shoulder_pitch_link", (0, 0, 0)),
    ("torso_link", (0, 0, 0.42)), ("left_shoulder_roll_link", (0, 0, 0)), ("right_shoulder_roll_link", (0, 0, 0)),
    ("left_elbow_link", (0, 0, 0)), ("right_elbow_link", (0, 0, 0)), ("left_wrist_roll_link", (0, 0, 0)),
    ("right_wrist_roll_link", (0, 0, 0)), ("left_wrist_yaw_link", (0.08, 0, 0)), ("right_wrist_yaw_link", (0.08, 0, 0)),
)


def synthesize_motion(generator: torch.Generator, num_frames: int) -> dict[str, torch.Tensor]:
    """Random smooth motion at 50 Hz: joints = default pose + three sinusoids each; root walks and turns."""
    t = torch.arange(num_frames) / FPS
    amp = torch.rand(3, 29, generator=generator) * 0.35
    freq = 0.2 + torch.rand(3, 29, generator=generator) * 1.3
    phase = torch.rand(3, 29, generator=generator) * 2 * math.pi
    default = torch.tensor(g1.DEFAULT_JOINT_POS_RAD, dtype=torch.float32)
    waves = amp[None] * torch.sin(2 * math.pi * freq[None] * t[:, None, None] + phase[None])
    dof_pos = default + waves.sum(1)
    dof_vel = (amp[None] * 2 * math.pi * freq[None] * torch.cos(2 * math.pi * freq[None] * t[:, None, None] + phase[None])).sum(1)
    speed, yaw_rate, yaw0 = (torch.rand(3, generator=generator) - 0.5) * torch.tensor([1.6, 1.2, 2 * math.pi])
    yaw = yaw0 + yaw_rate * t
    pitch = 0.15 * torch.sin(2 * math.pi * (0.3 + torch.rand(1, generator=generator)) * t)
    z_axis, y_axis = torch.tensor([0.0, 0.0, 1.0]).expand(num_frames, 3), torch.tensor([0.0, 1.0, 0.0]).expand(num_frames, 3)
    root_quat = quat_mul(quat_from_axis_angle(z_axis, yaw), quat_from_axis_angle(y_axis, pitch))
    root_pos = torch.stack([torch.cumsum(speed * torch.cos(yaw), 0) / FPS, torch.cumsum(speed * torch.sin(yaw), 0) / FPS,
                            0.76 + 0.04 * torch.sin(2 * math.pi * t)], dim=-1)
    return {"root_pos": root_pos, "root_quat": root_quat, "dof_pos": dof_pos, "dof_vel": dof_vel}


def _points(body_pos, body_quat, fk: G1Kinematics, placements) -> torch.Tensor:
    idx = fk.body_index([body for body, _ in placements])
    offsets = torch.tensor([offset for _, offset in placements], dtype=torch.float32)
    return body_pos[..., idx, :] + quat_apply(body_quat[..., idx, :], offsets.expand(body_pos.shape[:-2] + offsets.shape))


def encoder_inputs(motion: dict[str, torch.Tensor], frames: torch.Tensor, fk: G1Kinematics) -> dict[str, torch.Tensor]:
    """g1, teleop and smpl inputs (layout term order) at the given frames; the robot is on the reference."""
    root_pos, root_quat, dof_pos, dof_vel = motion["root_pos"], motion["root_quat"], motion["dof_pos"], motion["dof_vel"]
    robot_quat = root_quat[frames]
    future = frames[:, None] + G1_STRIDE * torch.arange(10)  # (S, 10)
    rel_ori = quat_to_6d(quat_mul(quat_conjugate(robot_quat)[:, None].expand(-1, 10, -1), root_quat[future]))
    g1_obs = torch.cat([dof_pos[future].flatten(1), dof_vel[future].flatten(1), rel_ori.flatten(1)], dim=-1)

    body_pos, body_quat = fk.forward(root_pos[frames], robot_quat, dof_pos[frames])
    vr = [(p.body, p.offset_m) for p in g1.VR_POINTS_TELEOP]
    vr_pos = quat_apply_inverse(robot_quat[:, None].expand(-1, 3, -1), _points(body_pos, body_quat, fk, vr) - root_pos[frames][:, None])
    vr_quat = quat_mul(quat_conjugate(robot_quat)[:, None].expand(-1, 3, -1), body_quat[:, fk.body_index([b for b, _ in vr])])
    teleop_obs = torch.cat([dof_pos[future][..., :12].flatten(1), dof_vel[future][..., :12].flatten(1), vr_pos.flatten(1),
                            vr_quat.flatten(1), quat_to_6d(quat_mul(quat_conjugate(robot_quat), robot_quat))], dim=-1)

    nearby = frames[:, None] + torch.arange(10)  # smpl: 10 consecutive frames
    bp, bq = fk.forward(root_pos[nearby], root_quat[nearby], dof_pos[nearby])
    joints = _points(bp, bq, fk, SMPL_ON_G1) - root_pos[nearby][:, :, None]
    joints_local = quat_apply_inverse(root_quat[nearby][:, :, None].expand(-1, -1, 24, -1), joints)
    smpl_ori = quat_to_6d(quat_mul(quat_conjugate(robot_quat)[:, None].expand(-1, 10, -1), root_quat[nearby]))
    wrist_cols = [g1.JOINT_NAMES_MUJOCO.index(n) for n in g1.WRIST_JOINT_NAMES]
    smpl_obs = torch.cat([joints_local.flatten(1), smpl_ori.flatten(1), dof_pos[nearby][..., wrist_cols].flatten(1)], dim=-1)
    out = {"g1": g1_obs, "teleop": teleop_obs, "smpl": smpl_obs}
    for name, x in out.items():
        assert x.shape[1] == group(name).width, (name, x.shape)
    return out


def build_dataset(num_motions: int, samples_per_motion: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    fk = G1Kinematics()
    num_frames = 250
    obs = {"g1": [], "teleop": [], "smpl": []}
    labels = []
    for m in range(num_motions):
        motion = synthesize_motion(generator, num_frames)
        frames = torch.randint(0, num_frames - 10 * G1_STRIDE, (samples_per_motion,), generator=generator)
        for name, x in encoder_inputs(motion, frames, fk).items():
            obs[name].append(x)
        labels.append(torch.full((samples_per_motion,), m))
    return {k: torch.cat(v) for k, v in obs.items()}, torch.cat(labels)


def retrieval_accuracy(tokens: dict[str, torch.Tensor], labels: torch.Tensor) -> float:
    """Fraction of (sample, modality pair) where the other modality's token of the same sample is
    closer than that modality's token of every sample from another motion."""
    hits, total = 0, 0
    other = labels[:, None] != labels[None, :]
    names = list(tokens)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            dist = torch.cdist(tokens[a], tokens[b])  # (S, S)
            same = dist.diagonal()
            nearest_other = dist.masked_fill(~other, float("inf")).amin(dim=1)
            hits += int((same < nearest_other).sum())
            total += len(same)
    return hits / total


def test_aux_losses_align_tokens_across_modalities():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is faster than two fighting over a shared machine
    try:
        _train_and_check_alignment()
    finally:
        torch.set_num_threads(threads)


def _train_and_check_alignment():
    torch.manual_seed(0)
    obs, labels = build_dataset(num_motions=6, samples_per_motion=24)
    model = SonicModel(SonicConfig.from_preset("sonic_cpu")).train()
    names = ("g1", "teleop", "smpl")

    def tokens() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {n: model.encode_tokens(obs, n) for n in names}

    before = retrieval_accuracy(tokens(), labels)
    active = torch.ones(len(labels), 3, dtype=torch.bool)
    params = [p for n, p in model.named_parameters() if n.startswith(("encoders.", "kin_decoder."))]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    # In full training the PPO loss keeps tokens informative; with the auxiliary losses alone the
    # alignment terms would collapse every latent onto one FSQ code unless the reconstruction term
    # (SONIC's 0.01) carries comparable weight, so it is raised to 1.0 here.
    coefs = {**model.config.aux_loss_coefs, "g1_recon": 1.0}
    start = time.monotonic()
    losses = []
    for _ in range(250):
        latents, toks = model.encode(obs, active)
        raw = model.aux_losses(obs, latents, toks, active)
        loss = sum(coefs[k] * v for k, v in raw.items())
        losses.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    elapsed = time.monotonic() - start
    after = retrieval_accuracy(tokens(), labels)
    print(f"aux-only training: loss {losses[0]:.4f} -> {losses[-1]:.4f}, retrieval {before:.2f} -> {after:.2f}, {elapsed:.1f} s")
    assert set(raw) == {"g1_recon", "align_g1_smpl", "align_g1_teleop", "align_teleop_smpl", "cycle_smpl_g1"}
    assert losses[-1] < 0.2 * losses[0]
    assert before < 0.5  # untrained encoders do not agree across modalities
    assert after >= 0.95
