"""Rotation helpers written for few torch ops: per-step env maths on small tensors is bound by
per-op overhead on the CPU, not by arithmetic, so these compute only the entries needed."""

from __future__ import annotations

import torch


def relative_rot6d(rot: torch.Tensor, cols6: torch.Tensor) -> torch.Tensor:
    """6-D orientations (r00, r01, r10, r11, r20, r21) of frames seen from frames `rot`.

    rot (N, 3, 3) rotation matrices; cols6 (N, K, 6) the first two columns of K frames'
    rotation matrices, row-major. Returns (N, K, 6): the first two columns of rot^T R_k, all K
    frames in one batched matmul."""
    n, k = cols6.shape[0], cols6.shape[1]
    cols = cols6.view(n, k, 3, 2).transpose(1, 2).reshape(n, 3, 2 * k)
    rel = torch.bmm(rot.transpose(1, 2), cols)
    return rel.view(n, 3, k, 2).transpose(1, 2).reshape(n, k, 6)


def yaw_then(cos_half: torch.Tensor, sin_half: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Quaternion product qz(angle) * q for a rotation about world z given cos/sin of half the
    angle ((N,) each) and q (N, K, 4)."""
    w, x, y, z = q.unbind(-1)
    c, s = cos_half[:, None], sin_half[:, None]
    return torch.stack([c * w - s * z, c * x - s * y, c * y + s * x, c * z + s * w], -1)


_LEFT_MULTIPLY_INDEX = torch.tensor([0, 1, 2, 3, 1, 0, 3, 2, 2, 3, 0, 1, 3, 2, 1, 0])
_LEFT_MULTIPLY_SIGN = torch.tensor([1.0, -1, -1, -1, 1, 1, -1, 1, 1, 1, 1, -1, 1, -1, 1, 1])


def quat_mul_batched(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of (N, 4) quaternions as one batched 4x4 matrix product."""
    left = (a[:, _LEFT_MULTIPLY_INDEX] * _LEFT_MULTIPLY_SIGN).view(-1, 4, 4)
    return torch.bmm(left, b[:, :, None]).squeeze(2)
