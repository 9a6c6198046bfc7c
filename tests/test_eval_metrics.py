"""Evaluation metrics: frame-weighted MPJPE family, Procrustes alignment, success and progress rates."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gear_sonic.eval.metrics import ClipResult, MetricAccumulator, per_frame_errors_mm, procrustes_align


def _clip(rng, frames=20, offset=np.zeros(3), terminated=False, clip_frames=None, name="c"):
    ref = rng.normal(size=(frames, 14, 3))
    return ClipResult(name, ref + offset, ref, clip_frames or frames, terminated)


def test_procrustes_recovers_similarity_transform():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(5, 14, 3))
    rot = Rotation.random(5, random_state=1).as_matrix()
    pred = 1.7 * np.einsum("fij,fbj->fbi", rot, target) + rng.normal(size=(5, 1, 3))
    np.testing.assert_allclose(procrustes_align(pred, target), target, atol=1e-9)


def test_constant_offset_shows_in_global_error_only():
    rng = np.random.default_rng(1)
    offset = np.array([0.03, 0.0, 0.04])  # 50 mm
    errs = per_frame_errors_mm(*(lambda c: (c.robot_body_pos_m, c.reference_body_pos_m))(_clip(rng, offset=offset)))
    np.testing.assert_allclose(errs["mpjpe_g"], 50.0)
    np.testing.assert_allclose(errs["mpjpe_l"], 0.0, atol=1e-9)
    np.testing.assert_allclose(errs["mpjpe_pa"], 0.0, atol=1e-9)
    np.testing.assert_allclose(errs["vel_dist"], 0.0, atol=1e-9)
    np.testing.assert_allclose(errs["accel_dist"], 0.0, atol=1e-9)


def test_frame_weighted_average_and_success_split():
    rng = np.random.default_rng(2)
    acc = MetricAccumulator()
    acc.add(_clip(rng, frames=11, offset=np.array([0.01, 0, 0]), name="good"))  # 10 mm over 10 frames
    acc.add(_clip(rng, frames=31, offset=np.array([0.04, 0, 0]), terminated=True, clip_frames=61, name="bad"))
    out = acc.summary()
    assert out["success_rate"] == 0.5
    assert out["progress_rate"] == pytest.approx((1.0 + 31 / 61) / 2)
    assert out["mpjpe_g"] == pytest.approx((10 * 10 + 30 * 40) / 40)
    assert out["mpjpe_g_succ"] == pytest.approx(10.0)
    assert out["mpjpe_g_legs"] == pytest.approx(out["mpjpe_g"])
    assert acc.failed_clip_names() == ["bad"]


def test_shape_mismatch_and_empty_raise():
    acc = MetricAccumulator()
    with pytest.raises(ValueError, match="no clips"):
        acc.summary()
    with pytest.raises(ValueError, match="differ in shape"):
        acc.add(ClipResult("x", np.zeros((3, 14, 3)), np.zeros((4, 14, 3)), 4, False))
