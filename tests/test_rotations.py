"""Quaternion maths (wxyz) against scipy's reference implementation."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation, Slerp

from gear_sonic.utils import rotations as rot


def _random_quats(n: int, seed: int = 0) -> np.ndarray:
    return Rotation.random(n, random_state=seed).as_quat(scalar_first=True)


def test_mul_apply_matrix_match_scipy():
    a, b = _random_quats(64, 1), _random_quats(64, 2)
    v = np.random.default_rng(0).normal(size=(64, 3))
    ta, tb, tv = map(torch.tensor, (a, b, v))
    ra, rb = Rotation.from_quat(a, scalar_first=True), Rotation.from_quat(b, scalar_first=True)
    prod = rot.quat_mul(ta, tb).numpy()
    expected = (ra * rb).as_quat(scalar_first=True)
    np.testing.assert_allclose(np.abs(np.sum(prod * expected, -1)), 1.0, atol=1e-12)
    np.testing.assert_allclose(rot.quat_apply(ta, tv).numpy(), ra.apply(v), atol=1e-12)
    np.testing.assert_allclose(rot.quat_apply_inverse(ta, tv).numpy(), ra.inv().apply(v), atol=1e-12)
    np.testing.assert_allclose(rot.quat_to_matrix(ta).numpy(), ra.as_matrix(), atol=1e-12)
    back = rot.matrix_to_quat(torch.tensor(ra.as_matrix())).numpy()
    np.testing.assert_allclose(np.abs(np.sum(back * a, -1)), 1.0, atol=1e-12)
    np.testing.assert_allclose(rot.quat_to_axis_angle(ta).numpy(), ra.as_rotvec(), atol=1e-10)


def test_broadcasting_one_quat_many_vectors():
    q = torch.tensor(_random_quats(1, 3)[0])
    v = torch.randn(5, 7, 3, dtype=torch.float64)
    out = rot.quat_apply(q, v)
    assert out.shape == (5, 7, 3)
    np.testing.assert_allclose(out.norm(dim=-1).numpy(), v.norm(dim=-1).numpy(), atol=1e-12)


def test_slerp_matches_scipy():
    a, b = _random_quats(1, 4)[0], _random_quats(1, 5)[0]
    ts = np.linspace(0, 1, 11)
    expected = Slerp([0, 1], Rotation.from_quat(np.stack([a, b]), scalar_first=True))(ts).as_quat(scalar_first=True)
    got = rot.quat_slerp(torch.tensor(a).expand(11, 4), torch.tensor(b).expand(11, 4), torch.tensor(ts)).numpy()
    np.testing.assert_allclose(np.abs(np.sum(got * expected, -1)), 1.0, atol=1e-10)


def test_angles_yaw_rot6d_gravity():
    r = Rotation.from_euler("ZYX", [0.7, 0.2, -0.1])
    q = torch.tensor(r.as_quat(scalar_first=True))
    assert rot.quat_angle_rad(q).item() == pytest.approx(r.magnitude())
    yaw = rot.yaw_quat(q)
    assert Rotation.from_quat(yaw.numpy(), scalar_first=True).as_euler("ZYX")[0] == pytest.approx(0.7)
    six = rot.quat_to_6d(q).numpy()
    np.testing.assert_allclose(six, r.as_matrix()[:, :2].reshape(6))
    np.testing.assert_allclose(rot.gravity_in_body_frame(q).numpy(), r.inv().apply([0, 0, -1]), atol=1e-12)
    assert rot.quat_error_angle_rad(q, q).item() == pytest.approx(0.0, abs=1e-7)
