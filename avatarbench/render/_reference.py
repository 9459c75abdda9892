"""Brute-force dense reference rasterizer (test oracle; slow: O(C * H * W * N), sequential in N).

Written independently of the tiled backend (different formulations on purpose): rotations from
roma, 2x2 inverses with ``torch.linalg.inv``, the Inria-style polynomial form of the real SH basis,
per-pixel sigma from the full 2x2 conic, no tiles (every pixel visits every non-culled Gaussian),
and a literal front-to-back loop with gsplat's stopping rule. Gradients come from autograd;
they equal gsplat's hand-written ones because gsplat differentiates the same piecewise function
(the set of contributing Gaussians and the culling are held fixed, ``min(0.999, .)`` has zero
slope above 0.999).

Use float64 and small images.
"""

from __future__ import annotations

import math

import roma
import torch
from torch import Tensor

_ALPHA_THRESHOLD = 1.0 / 255.0

# Real SH constants (the classic 3DGS/Plenoxels polynomial form).
_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def reference_sh(degree: int, sh: Tensor, dirs: Tensor) -> Tensor:
    """SH value (no +0.5) at ``dirs`` (..., 3) for coefficients ``sh`` (..., K, 3); degree 0..3."""
    res = _C0 * sh[..., 0, :]
    if degree == 0:
        return res
    d = dirs / torch.linalg.vector_norm(dirs, dim=-1, keepdim=True)
    x, y, z = (d[..., i : i + 1] for i in range(3))
    res = res - _C1 * y * sh[..., 1, :] + _C1 * z * sh[..., 2, :] - _C1 * x * sh[..., 3, :]
    if degree == 1:
        return res
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    res = (res + _C2[0] * xy * sh[..., 4, :] + _C2[1] * yz * sh[..., 5, :]
           + _C2[2] * (2.0 * zz - xx - yy) * sh[..., 6, :] + _C2[3] * xz * sh[..., 7, :]
           + _C2[4] * (xx - yy) * sh[..., 8, :])
    if degree == 2:
        return res
    if degree != 3:
        raise ValueError("reference SH supports degrees 0..3")
    return (res + _C3[0] * y * (3.0 * xx - yy) * sh[..., 9, :] + _C3[1] * xy * z * sh[..., 10, :]
            + _C3[2] * y * (4.0 * zz - xx - yy) * sh[..., 11, :]
            + _C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * sh[..., 12, :]
            + _C3[4] * x * (4.0 * zz - xx - yy) * sh[..., 13, :] + _C3[5] * z * (xx - yy) * sh[..., 14, :]
            + _C3[6] * x * (xx - 3.0 * yy) * sh[..., 15, :])


def _project_one_camera(means, quats, scales, opacities, viewmat, K, width, height, eps2d, near, far,
                        radius_clip, antialiased):
    """Project all Gaussians into one camera; culled entries are zero (and ``visible`` False)."""
    dt = means.dtype
    n = means.shape[0]
    xyzw = torch.cat([quats[:, 1:], quats[:, :1]], dim=1)
    R = roma.unitquat_to_rotmat(xyzw / torch.linalg.vector_norm(xyzw, dim=1, keepdim=True))
    cov_w = R @ torch.diag_embed(scales * scales) @ R.transpose(1, 2)
    hom = torch.cat([means, torch.ones_like(means[:, :1])], dim=1)
    p = (hom @ viewmat.T)[:, :3]
    W = viewmat[:3, :3]
    cov_c = W[None] @ cov_w @ W.T[None]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]

    z_raw = p[:, 2]
    in_range = (z_raw.detach() >= near) & (z_raw.detach() <= far)
    z = torch.where(in_range, z_raw, torch.ones_like(z_raw))
    x, y = p[:, 0], p[:, 1]
    tanx, tany = 0.5 * width / fx, 0.5 * height / fy
    u = torch.clamp(x / z, -(cx / fx + 0.3 * tanx), (width - cx) / fx + 0.3 * tanx)
    v = torch.clamp(y / z, -(cy / fy + 0.3 * tany), (height - cy) / fy + 0.3 * tany)
    J = torch.zeros(n, 2, 3, dtype=dt)
    J = J.index_put((torch.arange(n), torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)), fx / z)
    J = J.index_put((torch.arange(n), torch.ones(n, dtype=torch.long), torch.ones(n, dtype=torch.long)), fy / z)
    J = J.index_put((torch.arange(n), torch.zeros(n, dtype=torch.long), torch.full((n,), 2)), -fx * u / z)
    J = J.index_put((torch.arange(n), torch.ones(n, dtype=torch.long), torch.full((n,), 2)), -fy * v / z)
    cov2_raw = J @ cov_c @ J.transpose(1, 2)
    det0 = torch.linalg.det(cov2_raw)
    cov2 = cov2_raw + eps2d * torch.eye(2, dtype=dt)
    det = torch.linalg.det(cov2)
    det_ok = det.detach() > 0
    cov2_safe = torch.where(det_ok[:, None, None], cov2, torch.eye(2, dtype=dt).expand(n, 2, 2))
    conic = torch.linalg.inv(cov2_safe)
    m2 = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=1)

    if antialiased:
        ratio = det0 / torch.where(det_ok, det, torch.ones_like(det))
        ok = ratio.detach() > 0
        comp = torch.where(ok, torch.sqrt(torch.where(ok, ratio, torch.ones_like(ratio))), torch.zeros_like(ratio))
        op = (opacities * comp).detach()
    else:
        comp = torch.ones(n, dtype=dt)
        op = opacities.detach()

    visible = torch.zeros(n, dtype=torch.bool)
    radii = torch.zeros(n, 2, dtype=torch.int32)
    cov2_d, m2_d = cov2.detach(), m2.detach()
    for i in range(n):  # culling decisions, one Gaussian at a time, in plain floats
        if not (bool(in_range[i]) and bool(det_ok[i]) and float(op[i]) >= _ALPHA_THRESHOLD):
            continue
        ext = min(3.33, math.sqrt(2.0 * math.log(float(op[i]) / _ALPHA_THRESHOLD)))
        rx = math.ceil(ext * math.sqrt(float(cov2_d[i, 0, 0])))
        ry = math.ceil(ext * math.sqrt(float(cov2_d[i, 1, 1])))
        if rx <= radius_clip and ry <= radius_clip:
            continue
        mx, my = float(m2_d[i, 0]), float(m2_d[i, 1])
        if mx + rx <= 0 or mx - rx >= width or my + ry <= 0 or my - ry >= height:
            continue
        visible[i] = True
        radii[i, 0], radii[i, 1] = rx, ry
    vz = visible.to(dt)
    return {
        "radii": radii,
        "visible": visible,
        "means2d": m2 * vz[:, None],
        "conics": conic * vz[:, None, None],
        "depths": z_raw * vz,
        "compensations": comp * vz,
    }


def _composite(mean2d, conic, depth, visible, colors, opac, bg, width, height):
    """Front-to-back compositing of one image; returns (H, W, D), (H, W, 1)."""
    dtype = mean2d.dtype
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype) + 0.5, torch.arange(width, dtype=dtype) + 0.5,
                            indexing="ij")
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)  # (HW, 2)
    D = colors.shape[-1]
    acc = torch.zeros(pix.shape[0], D, dtype=dtype)
    T = torch.ones(pix.shape[0], dtype=dtype)
    done = torch.zeros(pix.shape[0], dtype=torch.bool)
    ids = torch.nonzero(visible).squeeze(1)
    order = ids[torch.argsort(depth.detach()[ids], stable=True)]
    for g in order.tolist():
        d = mean2d[g][None, :] - pix  # (HW, 2)
        sigma = 0.5 * torch.einsum("pi,ij,pj->p", d, conic[g], d)
        alpha = torch.clamp(opac[g] * torch.exp(-sigma), max=0.999)
        use = (sigma >= 0) & (alpha >= _ALPHA_THRESHOLD) & ~done
        nxt = T * (1.0 - alpha)
        stop = use & (nxt <= 1e-4)
        done = done | stop
        use = use & ~stop
        acc = acc + torch.where(use[:, None], (alpha * T)[:, None] * colors[g][None, :], torch.zeros_like(acc))
        T = torch.where(use, nxt, T)
    if bg is not None:
        acc = acc + T[:, None] * bg[None, :]
    return acc.reshape(height, width, D), (1.0 - T).reshape(height, width, 1)


def reference_rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,
    render_mode: str = "RGB",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    rasterize_mode: str = "classic",
) -> tuple[Tensor, Tensor, dict]:
    """Dense reference with the arguments and outputs of :func:`avatarbench.render.rasterize`.

    ``meta`` holds ``radii`` (C, N, 2) int32, ``means2d`` (C, N, 2), ``depths`` (C, N) and
    ``conics`` (C, N, 3) (zeros where culled).
    """
    C = viewmats.shape[0]
    projs = [
        _project_one_camera(means, quats, scales, opacities, viewmats[c], Ks[c], width, height, eps2d,
                            near_plane, far_plane, radius_clip, rasterize_mode == "antialiased")
        for c in range(C)
    ]
    means2d = torch.stack([pr["means2d"] for pr in projs])  # one graph node, like the tiled backend
    renders, alphas = [], []
    for c, pr in enumerate(projs):
        vis = pr["visible"]
        opac = opacities * pr["compensations"] if rasterize_mode == "antialiased" else opacities
        if sh_degree is None:
            col = colors if colors.dim() == 2 else colors[c]
        else:
            campos = torch.linalg.inv(viewmats[c])[:3, 3]
            sh = colors if colors.dim() == 3 else colors[c]
            col = torch.clamp_min(reference_sh(sh_degree, sh, means - campos[None, :]) + 0.5, 0.0)
        bg = None if backgrounds is None else backgrounds[c]
        depth_col = pr["depths"][:, None]
        if render_mode in ("D", "ED"):
            col, bg = depth_col, (None if bg is None else torch.zeros(1, dtype=means.dtype))
        elif render_mode in ("RGB+D", "RGB+ED"):
            col = torch.cat([col, depth_col], dim=1)
            bg = None if bg is None else torch.cat([bg, torch.zeros(1, dtype=means.dtype)])
        img, alpha = _composite(means2d[c], pr["conics"], pr["depths"], vis, col, opac, bg, width, height)
        if render_mode in ("ED", "RGB+ED"):
            img = torch.cat([img[..., :-1], img[..., -1:] / alpha.clamp(min=1e-10)], dim=-1)
        renders.append(img), alphas.append(alpha)
    k = torch.stack([pr["conics"] for pr in projs])
    meta = dict(
        radii=torch.stack([pr["radii"] for pr in projs]),
        means2d=means2d,
        depths=torch.stack([pr["depths"] for pr in projs]),
        conics=torch.stack([k[..., 0, 0], k[..., 0, 1], k[..., 1, 1]], dim=-1),
    )
    return torch.stack(renders), torch.stack(alphas), meta
