"""Mesh-bound Gaussians: triangle frames and local-to-global transforms (GaussianAvatars).

For a triangle (v0, v1, v2) in the mesh's face order (shared/reference/gaussian_avatars.md §3):

- origin ``T = (v0 + v1 + v2) / 3``;
- rotation ``R = [a0 | a1 | a2]`` (columns) with ``a0 = normalize(v1 - v0)``,
  ``a1 = normalize(a0 x (v2 - v0))`` (the face normal) and ``a2 = a0 x a1``, so det(R) = +1;
- scale ``k = (|v1 - v0| + |a2 . (v2 - v0)|) / 2`` (mean of the first edge and the height on it).

A Gaussian bound to face ``f`` with local mean ``mu``, rotation ``r`` (wxyz) and log-scale ``s``
has world mean ``k R mu + T``, rotation ``q(R) (x) r`` (Hamilton product, both normalised) and
scale ``k exp(s)``.
"""

from __future__ import annotations

import roma
import torch
import torch.nn.functional as F
from torch import Tensor


def face_frames(verts: Tensor, faces: Tensor, eps: float = 1e-12) -> tuple[Tensor, Tensor, Tensor]:
    """Per-face origin, orientation and scale.

    Args:
        verts: (V, 3) or (B, V, 3) vertex positions.
        faces: (F, 3) long vertex indices.
        eps: guards the normalisations of degenerate triangles.

    Returns:
        centroid (..., F, 3), R (..., F, 3, 3) with columns [a0, a1, a2], k (..., F, 1);
        ``...`` is ``()`` or ``(B,)`` like ``verts``.
    """
    if verts.shape[-1] != 3 or verts.dim() not in (2, 3):
        raise ValueError(f"face_frames: verts has shape {tuple(verts.shape)} (expected (V, 3) or (B, V, 3))")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"face_frames: faces has shape {tuple(faces.shape)} (expected (F, 3))")
    faces = faces.long()
    v0 = verts[..., faces[:, 0], :]
    v1 = verts[..., faces[:, 1], :]
    v2 = verts[..., faces[:, 2], :]
    centroid = (v0 + v1 + v2) / 3.0
    e1 = v1 - v0
    e2 = v2 - v0
    a0 = F.normalize(e1, dim=-1, eps=eps)
    a1 = F.normalize(torch.linalg.cross(a0, e2, dim=-1), dim=-1, eps=eps)
    a2 = torch.linalg.cross(a0, a1, dim=-1)
    R = torch.stack([a0, a1, a2], dim=-1)  # columns
    k = 0.5 * (torch.linalg.vector_norm(e1, dim=-1, keepdim=True) + (a2 * e2).sum(-1, keepdim=True).abs())
    return centroid, R, k


def rotmat_to_quat_wxyz(R: Tensor) -> Tensor:
    """Unit quaternions (wxyz) of rotation matrices (..., 3, 3) (via roma, which returns xyzw)."""
    return roma.quat_xyzw_to_wxyz(roma.rotmat_to_unitquat(R))


def quat_multiply_wxyz(p: Tensor, q: Tensor) -> Tensor:
    """Hamilton product ``p (x) q`` of wxyz quaternions (..., 4); inputs are normalised first."""
    p = roma.quat_wxyz_to_xyzw(F.normalize(p, dim=-1))
    q = roma.quat_wxyz_to_xyzw(F.normalize(q, dim=-1))
    return roma.quat_xyzw_to_wxyz(roma.quat_product(p, q))


def local_to_global(
    mu_local: Tensor,
    quat_local: Tensor,
    log_scale_local: Tensor,
    binding: Tensor,
    centroid: Tensor,
    R: Tensor,
    k: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """World-space Gaussians from triangle-local parameters.

    Args:
        mu_local: (N, 3) local means.
        quat_local: (N, 4) local rotations, wxyz (any norm).
        log_scale_local: (N, 3) local log-scales.
        binding: (N,) long face index of each Gaussian.
        centroid: (F, 3) or (B, F, 3); R: (F, 3, 3) or (B, F, 3, 3); k: (F, 1) or (B, F, 1)
            (from :func:`face_frames`).

    Returns:
        means (..., N, 3) = k R mu + T, quats (..., N, 4) wxyz unit = q(R) (x) r,
        scales (..., N, 3) = k exp(s); ``...`` is ``()`` or ``(B,)`` like ``centroid``.
    """
    n = mu_local.shape[0]
    for name, t, last in (("mu_local", mu_local, 3), ("quat_local", quat_local, 4),
                          ("log_scale_local", log_scale_local, 3)):
        if t.dim() != 2 or t.shape != (n, last):
            raise ValueError(f"local_to_global: {name} has shape {tuple(t.shape)} (expected ({n}, {last}))")
    if binding.shape != (n,):
        raise ValueError(f"local_to_global: binding has shape {tuple(binding.shape)} (expected ({n},))")
    binding = binding.long()
    Rb = R[..., binding, :, :]  # (..., N, 3, 3)
    kb = k[..., binding, :]  # (..., N, 1)
    Tb = centroid[..., binding, :]  # (..., N, 3)
    means = kb * (Rb @ mu_local.unsqueeze(-1)).squeeze(-1) + Tb
    q_face = rotmat_to_quat_wxyz(Rb)
    quats = quat_multiply_wxyz(q_face, quat_local.expand(q_face.shape))
    scales = kb * torch.exp(log_scale_local)
    return means, quats, scales
