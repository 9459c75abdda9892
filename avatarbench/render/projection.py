"""EWA projection of 3D Gaussians to screen space, matching gsplat 1.5.3's pinhole path.

Pure PyTorch, differentiable by autograd (w.r.t. means, quats, scales and viewmats; like gsplat,
not w.r.t. ``Ks``). The maths follows gsplat's ``projection_ewa_3dgs_fused_fwd_kernel`` and
``persp_proj`` (see docs/renderer.md for the list of verified facts):

1. ``R = rotmat(quat / |quat|)`` (wxyz), ``Sigma = R diag(s)^2 R^T``.
2. Camera frame: ``t = W[:3,:3] mu + W[:3,3]``, ``Sigma_c = W[:3,:3] Sigma W[:3,:3]^T``.
3. Cull ``t.z < near_plane`` or ``t.z > far_plane``.
4. Jacobian at the *clamped* ``x/z, y/z``: limits ``(width - cx)/fx + 0.3 tan_fovx`` and
   ``cx/fx + 0.3 tan_fovx`` with ``tan_fovx = 0.5 width / fx`` (same for y);
   ``J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]]``; the mean itself is not clamped:
   ``mean2d = (fx x/z + cx, fy y/z + cy)``.
5. ``cov2d = J Sigma_c J^T + eps2d I``; cull ``det <= 0``; ``conic = inverse(cov2d)``;
   antialiased compensation ``sqrt(max(0, det_before / det_after))``.
6. Opacity-aware extent: cull ``opacity (x compensation) < 1/255``;
   ``extend = min(3.33, sqrt(2 ln(opacity * 255)))``; ``radius = ceil(extend sqrt(cov2d_ii))``
   per axis; cull when both radii ``<= radius_clip``, or when the box lies outside the image.

Culled entries have ``radii == 0`` and zeros in ``means2d``, ``depths``, ``conics``
(gsplat leaves them uninitialised).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0
"""Smallest alpha a Gaussian may contribute (gsplat ``ALPHA_THRESHOLD``)."""

MAX_EXTEND = 3.33
"""Sigma multiple of the screen-space extent (gsplat 1.5.3, before the opacity-aware bound)."""


@dataclass
class Projected:
    """Screen-space Gaussians for C cameras.

    Attributes:
        radii: (C, N, 2) int32 pixel half-extents (x, y); 0 means culled.
        means2d: (C, N, 2) pixel coordinates of the projected means.
        depths: (C, N) camera-frame z of the means.
        conics: (C, N, 3) upper triangle (a, b, c) of the inverse 2D covariance.
        compensations: (C, N) antialiasing factors, or None (classic mode).
    """

    radii: Tensor
    means2d: Tensor
    depths: Tensor
    conics: Tensor
    compensations: Tensor | None


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices from wxyz quaternions (normalised here).

    Args:
        quats: (..., 4) wxyz, any non-zero norm.

    Returns:
        (..., 3, 3).
    """
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(q.shape[:-1] + (3, 3))


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """World covariances ``R diag(s)^2 R^T``.

    Args:
        quats: (N, 4) wxyz.
        scales: (N, 3) standard deviations (activated).

    Returns:
        (N, 3, 3).
    """
    M = quat_to_rotmat(quats) * scales.unsqueeze(-2)  # R @ diag(s)
    return M @ M.transpose(-1, -2)


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    antialiased: bool = False,
) -> Projected:
    """Project N Gaussians into C pinhole cameras (gsplat 1.5.3 ``fully_fused_projection``).

    Args:
        means: (N, 3) world positions.
        quats: (N, 4) wxyz rotations (any norm).
        scales: (N, 3) activated scales.
        opacities: (N,) activated opacities, used only for the extent bound and culling.
        viewmats: (C, 4, 4) world-to-camera (OpenCV).
        Ks: (C, 3, 3) intrinsics.
        width, height: image size in pixels.

    Returns:
        :class:`Projected`.
    """
    covar = covariance_3d(quats, scales)  # (N,3,3)
    Rv = viewmats[:, :3, :3]  # (C,3,3)
    tv = viewmats[:, :3, 3]  # (C,3)
    mean_c = torch.einsum("cij,nj->cni", Rv, means) + tv[:, None, :]  # (C,N,3)
    cov_c = torch.einsum("cij,njk,clk->cnil", Rv, covar, Rv)  # (C,N,3,3)

    x, y, z = mean_c.unbind(-1)  # (C,N)
    in_depth = (z >= near_plane) & (z <= far_plane)
    z = torch.where(in_depth, z, torch.ones_like(z))  # safe value for culled entries

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # (C,1)
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    rz = 1.0 / z
    tx = z * torch.clamp(x * rz, min=-lim_x_neg, max=lim_x_pos)
    ty = z * torch.clamp(y * rz, min=-lim_y_neg, max=lim_y_pos)

    zero = torch.zeros_like(z)
    J = torch.stack(
        [fx * rz, zero, -fx * tx * rz * rz, zero, fy * rz, -fy * ty * rz * rz], dim=-1
    ).reshape(z.shape + (2, 3))  # (C,N,2,3)
    cov2d = J @ cov_c @ J.transpose(-1, -2)  # (C,N,2,2)
    a, b, c = cov2d[..., 0, 0], cov2d[..., 0, 1], cov2d[..., 1, 1]
    det_orig = a * c - b * b
    a = a + eps2d
    c = c + eps2d
    det = a * c - b * b
    ok_det = det > 0
    det_safe = torch.where(ok_det, det, torch.ones_like(det))

    mean2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)  # (C,N,2)
    conic = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)  # (C,N,3)

    comp = None
    op = opacities.detach()[None, :].expand_as(z)
    if antialiased:
        ratio = det_orig / det_safe
        pos = ratio > 0
        comp = torch.where(pos, torch.sqrt(torch.where(pos, ratio, torch.ones_like(ratio))), torch.zeros_like(ratio))
        op = op * comp.detach()

    # Opacity-aware extent (not differentiable).
    with torch.no_grad():
        ok_op = op >= ALPHA_THRESHOLD
        extend = torch.sqrt(2.0 * torch.log(torch.clamp_min(op, ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
        extend = torch.clamp_max(extend, MAX_EXTEND)
        rad_x = torch.ceil(extend * torch.sqrt(torch.clamp_min(a.detach(), 0.0)))
        rad_y = torch.ceil(extend * torch.sqrt(torch.clamp_min(c.detach(), 0.0)))
        ok_clip = ~((rad_x <= radius_clip) & (rad_y <= radius_clip))
        mx, my = mean2d.detach().unbind(-1)
        ok_img = ~((mx + rad_x <= 0) | (mx - rad_x >= width) | (my + rad_y <= 0) | (my - rad_y >= height))
        valid = in_depth & ok_det & ok_op & ok_clip & ok_img
        radii = torch.stack([rad_x, rad_y], dim=-1)
        radii = torch.where(valid[..., None], radii, torch.zeros_like(radii)).to(torch.int32)

    v = valid[..., None]
    means2d = torch.where(v, mean2d, torch.zeros_like(mean2d))
    conics = torch.where(v, conic, torch.zeros_like(conic))
    depths = torch.where(valid, mean_c[..., 2], torch.zeros_like(z))
    if comp is not None:
        comp = torch.where(valid, comp, torch.zeros_like(comp))
    return Projected(radii=radii, means2d=means2d, depths=depths, conics=conics, compensations=comp)
