"""SONIC's motion-tracking metrics: success/progress rate and MPJPE family over the 14 tracked bodies.

Protocol: each clip is played once from frame 0 with evaluation terminations. Per-frame errors are
summed per clip skipping frame 0, then divided by the total number of frames over all clips (so
long clips weigh more), and reported over all clips and over successful clips only, and per region.
Positions are millimetres in the reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gear_sonic.robots import g1

POSITION_METRICS = ("mpjpe_g", "mpjpe_l", "mpjpe_pa", "vel_dist", "accel_dist")


@dataclass
class ClipResult:
    """What one evaluated clip produced. Positions in metres, (T, 14, 3) in `g1.TRACKED_BODY_NAMES` order."""

    name: str
    robot_body_pos_m: np.ndarray
    reference_body_pos_m: np.ndarray
    clip_num_frames: int
    terminated: bool

    @property
    def frames_played(self) -> int:
        return int(self.robot_body_pos_m.shape[0])


def procrustes_align(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Best similarity transform (rotation, uniform scale, translation) of pred onto target, per frame.

    pred, target: (T, J, 3). Returns the aligned pred.
    """
    mu_p = pred.mean(axis=1, keepdims=True)
    mu_t = target.mean(axis=1, keepdims=True)
    p, t = pred - mu_p, target - mu_t
    cov = np.einsum("fji,fjk->fik", p, t)
    u, s, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(np.einsum("fij,fjk->fik", u, vt)))
    flip = np.ones_like(s)
    flip[:, -1] = d
    rot = np.einsum("fij,fj,fjk->fik", u, flip, vt)  # applied as p @ rot
    var_p = (p**2).sum(axis=(1, 2))
    scale = (s * flip).sum(axis=1) / np.maximum(var_p, 1e-12)
    return scale[:, None, None] * np.einsum("fji,fik->fjk", p, rot) + mu_t


def per_frame_errors_mm(robot: np.ndarray, reference: np.ndarray) -> dict[str, np.ndarray]:
    """(T, J) per-body errors in mm for each metric; velocity/acceleration rows start at frames 1/2."""
    robot = robot.astype(np.float64)
    reference = reference.astype(np.float64)
    pelvis = g1.TRACKED_BODY_NAMES.index(g1.ANCHOR_BODY_NAME)
    errors = {
        "mpjpe_g": np.linalg.norm(robot - reference, axis=-1),
        "mpjpe_l": np.linalg.norm(
            (robot - robot[:, pelvis : pelvis + 1]) - (reference - reference[:, pelvis : pelvis + 1]), axis=-1
        ),
        "mpjpe_pa": np.linalg.norm(procrustes_align(robot, reference) - reference, axis=-1),
    }
    zeros = np.zeros((1,) + robot.shape[1:2])
    vel_err = np.linalg.norm(np.diff(robot, axis=0) - np.diff(reference, axis=0), axis=-1)
    acc_err = np.linalg.norm(np.diff(robot, n=2, axis=0) - np.diff(reference, n=2, axis=0), axis=-1)
    errors["vel_dist"] = np.concatenate([zeros, vel_err])[: robot.shape[0]]
    errors["accel_dist"] = np.concatenate([zeros, zeros, acc_err])[: robot.shape[0]]
    return {k: 1000.0 * v for k, v in errors.items()}


@dataclass
class MetricAccumulator:
    """Collects clip results and reduces them with SONIC's frame-weighted averaging."""

    regions: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(g1.REGION_BODY_NAMES))
    clips: list[ClipResult] = field(default_factory=list)

    def add(self, clip: ClipResult) -> None:
        if clip.robot_body_pos_m.shape != clip.reference_body_pos_m.shape:
            raise ValueError(
                f"clip '{clip.name}': robot {clip.robot_body_pos_m.shape} and reference "
                f"{clip.reference_body_pos_m.shape} body positions differ in shape"
            )
        self.clips.append(clip)

    def _reduce(self, clips: list[ClipResult]) -> dict[str, float]:
        body_sets = {"": list(range(len(g1.TRACKED_BODY_NAMES)))}
        body_sets.update(
            {f"_{region}": [g1.TRACKED_BODY_NAMES.index(b) for b in bodies] for region, bodies in self.regions.items()}
        )
        sums = {m + suffix: 0.0 for m in POSITION_METRICS for suffix in body_sets}
        frames = 0
        for clip in clips:
            errs = per_frame_errors_mm(clip.robot_body_pos_m, clip.reference_body_pos_m)
            frames += max(clip.frames_played - 1, 0)
            for metric, err in errs.items():
                for suffix, bodies in body_sets.items():
                    sums[metric + suffix] += float(err[1:, bodies].mean(axis=1).sum()) if len(err) > 1 else 0.0
        return {k: (v / frames if frames else float("nan")) for k, v in sums.items()}

    def summary(self) -> dict[str, float]:
        """success_rate, progress_rate and every metric over all clips and `*_succ` over successful ones."""
        if not self.clips:
            raise ValueError("no clips were evaluated")
        successful = [c for c in self.clips if not c.terminated]
        out: dict[str, float] = {
            "num_clips": float(len(self.clips)),
            "success_rate": len(successful) / len(self.clips),
            "progress_rate": float(np.mean([min(c.frames_played / max(c.clip_num_frames, 1), 1.0) for c in self.clips])),
        }
        out.update(self._reduce(self.clips))
        if successful:
            out.update({f"{k}_succ": v for k, v in self._reduce(successful).items()})
        return out

    def failed_clip_names(self) -> list[str]:
        return [c.name for c in self.clips if c.terminated]
