"""The op-lean rotation helpers agree with the general quaternion maths."""

import torch

from gear_sonic.envs.frames import quat_mul_batched, relative_rot6d, yaw_then
from gear_sonic.utils.rotations import (
    quat_conjugate,
    quat_from_axis_angle,
    quat_mul,
    quat_normalize,
    quat_to_6d,
    quat_to_matrix,
)


def test_relative_rot6d_matches_quaternion_maths():
    generator = torch.Generator().manual_seed(0)
    base = quat_normalize(torch.randn(5, 4, generator=generator))
    frames = quat_normalize(torch.randn(5, 7, 4, generator=generator))
    cols6 = quat_to_matrix(frames)[..., :, :2].reshape(5, 7, 6)
    expected = quat_to_6d(quat_mul(quat_conjugate(base)[:, None].expand_as(frames), frames))
    torch.testing.assert_close(relative_rot6d(quat_to_matrix(base), cols6), expected, atol=1e-6, rtol=0)


def test_yaw_then_matches_quaternion_product():
    generator = torch.Generator().manual_seed(1)
    angle = torch.randn(5, generator=generator)
    q = quat_normalize(torch.randn(5, 3, 4, generator=generator))
    yaw = quat_from_axis_angle(torch.tensor([0.0, 0.0, 1.0]).expand(5, 3), angle)
    expected = quat_mul(yaw[:, None].expand_as(q), q)
    torch.testing.assert_close(yaw_then(torch.cos(angle / 2), torch.sin(angle / 2), q), expected, atol=1e-6, rtol=0)


def test_batched_quaternion_product():
    generator = torch.Generator().manual_seed(2)
    a = quat_normalize(torch.randn(6, 4, generator=generator))
    b = quat_normalize(torch.randn(6, 4, generator=generator))
    torch.testing.assert_close(quat_mul_batched(a, b), quat_mul(a, b), atol=1e-6, rtol=0)
