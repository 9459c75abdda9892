"""Triangle frames and local-to-global transforms of mesh-bound Gaussians (GaussianAvatars §3)."""

from __future__ import annotations

import math

import roma
import torch

from avatarbench.render.binding import face_frames, local_to_global, quat_multiply_wxyz, rotmat_to_quat_wxyz
from avatarbench.render.projection import quat_to_rotmat

F64 = torch.float64


def _right_triangle():
    verts = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0]], dtype=F64)
    faces = torch.tensor([[0, 1, 2]])
    return verts, faces


def test_right_triangle_frame_by_hand():
    verts, faces = _right_triangle()
    T, R, k = face_frames(verts, faces)
    assert torch.allclose(T, torch.tensor([[2 / 3, 1.0, 0.0]], dtype=F64))
    # a0 = x, a1 = normalize(x cross (0,3,0)) = z, a2 = a0 cross a1 = -y  (columns)
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=F64)
    assert torch.allclose(R[0], expected)
    assert math.isclose(float(k), (2.0 + 3.0) / 2.0)  # (|v1-v0| + height) / 2


def test_local_to_global_by_hand():
    verts, faces = _right_triangle()
    T, R, k = face_frames(verts, faces)
    mu = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    quat = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 4, dtype=F64)
    log_s = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, -1.0], [0.0] * 3, [0.0] * 3], dtype=F64)
    means, quats, scales = local_to_global(mu, quat, log_s, torch.zeros(4, dtype=torch.long), T, R, k)
    c = torch.tensor([2 / 3, 1.0, 0.0], dtype=F64)
    assert torch.allclose(means[0], c)
    assert torch.allclose(means[1], c + torch.tensor([2.5, 0.0, 0.0], dtype=F64))
    assert torch.allclose(means[2], c + torch.tensor([0.0, 0.0, 2.5], dtype=F64))  # along the normal
    assert torch.allclose(means[3], c + torch.tensor([0.0, -2.5, 0.0], dtype=F64))
    assert torch.allclose(scales[1], torch.tensor([5.0, 2.5, 2.5 * math.exp(-1.0)], dtype=F64))
    # R is a +90 degree rotation about x: q = (cos 45, sin 45, 0, 0) up to sign
    q = quats[0] * torch.sign(quats[0, 0])
    assert torch.allclose(q, torch.tensor([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0], dtype=F64))


def _random_mesh(seed=0, V=30, F=40, B=None):
    g = torch.Generator().manual_seed(seed)
    shape = (V, 3) if B is None else (B, V, 3)
    verts = torch.randn(shape, generator=g, dtype=F64)
    faces = torch.stack([torch.randperm(V, generator=g)[:3] for _ in range(F)])
    return verts, faces


def test_frames_are_proper_rotations_and_batched_matches_unbatched():
    verts, faces = _random_mesh(B=3)
    T, R, k = face_frames(verts, faces)
    assert T.shape == (3, 40, 3) and R.shape == (3, 40, 3, 3) and k.shape == (3, 40, 1)
    eye = torch.eye(3, dtype=F64).expand_as(R)
    assert torch.allclose(R.transpose(-1, -2) @ R, eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(3, 40, dtype=F64))
    assert bool((k > 0).all())
    T1, R1, k1 = face_frames(verts[1], faces)
    assert torch.allclose(T[1], T1) and torch.allclose(R[1], R1) and torch.allclose(k[1], k1)


def test_rotation_composes_and_rigid_similarity_equivariance():
    verts, faces = _random_mesh(seed=1)
    g = torch.Generator().manual_seed(2)
    n = 50
    mu = torch.randn(n, 3, generator=g, dtype=F64) * 0.3
    quat = torch.randn(n, 4, generator=g, dtype=F64)
    log_s = torch.randn(n, 3, generator=g, dtype=F64) * 0.2
    binding = torch.randint(0, faces.shape[0], (n,), generator=g)
    T, R, k = face_frames(verts, faces)
    means, quats, scales = local_to_global(mu, quat, log_s, binding, T, R, k)
    assert torch.allclose(quats.norm(dim=-1), torch.ones(n, dtype=F64))
    # rotation of q(R) (x) r is R @ rot(r)
    assert torch.allclose(quat_to_rotmat(quats), R[binding] @ quat_to_rotmat(quat), atol=1e-12)
    # a similarity transform of the mesh (rotation Q, scale sigma, translation t) carries the Gaussians
    Q = roma.unitquat_to_rotmat(roma.random_unitquat(1, dtype=F64))[0]
    sigma, t = 1.7, torch.tensor([0.3, -2.0, 0.5], dtype=F64)
    T2, R2, k2 = face_frames(sigma * verts @ Q.T + t, faces)
    means2, quats2, scales2 = local_to_global(mu, quat, log_s, binding, T2, R2, k2)
    assert torch.allclose(means2, sigma * means @ Q.T + t, atol=1e-10)
    assert torch.allclose(scales2, sigma * scales, atol=1e-12)
    assert torch.allclose(quat_to_rotmat(quats2), Q @ quat_to_rotmat(quats), atol=1e-10)


def test_batched_local_to_global_and_gradients():
    verts, faces = _random_mesh(seed=3, B=2)
    verts.requires_grad_(True)
    T, R, k = face_frames(verts, faces)
    n = 10
    mu = torch.randn(n, 3, dtype=F64)
    quat = torch.randn(n, 4, dtype=F64)
    log_s = torch.zeros(n, 3, dtype=F64)
    binding = torch.arange(n) % faces.shape[0]
    means, quats, scales = local_to_global(mu, quat, log_s, binding, T, R, k)
    assert means.shape == (2, n, 3) and quats.shape == (2, n, 4) and scales.shape == (2, n, 3)
    m0, q0, s0 = local_to_global(mu, quat, log_s, binding, T[0], R[0], k[0])
    assert torch.allclose(means[0], m0) and torch.allclose(quats[0], q0) and torch.allclose(scales[0], s0)
    (means.sum() + scales.sum()).backward()
    assert verts.grad is not None and float(verts.grad.abs().sum()) > 0


def test_quaternion_helpers():
    R = roma.unitquat_to_rotmat(roma.random_unitquat(5, dtype=F64))
    q = rotmat_to_quat_wxyz(R)
    assert torch.allclose(quat_to_rotmat(q), R, atol=1e-12)  # wxyz order, same convention as the renderer
    p = torch.randn(5, 4, dtype=F64)
    r = torch.randn(5, 4, dtype=F64)
    assert torch.allclose(quat_to_rotmat(quat_multiply_wxyz(p, r)), quat_to_rotmat(p) @ quat_to_rotmat(r), atol=1e-12)
