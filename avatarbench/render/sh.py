"""Real spherical harmonics in gsplat 1.5.3's convention (view-dependent colour).

gsplat evaluates the real SH basis of Sloan ("Efficient Spherical Harmonic Evaluation", JCGT
2013) at the *normalised* direction from the camera centre to the Gaussian mean, contracts it
with the coefficients ``sh (N, K, 3)`` and, inside ``rasterization``, returns
``clamp_min(value + 0.5, 0)``. Coefficient ``k`` multiplies basis function ``k`` in the order
``(l, m) = (0,0), (1,-1), (1,0), (1,1), (2,-2), ...``; degree ``d`` uses the first
``(d + 1) ** 2`` coefficients, the rest are ignored (gsplat's "partial bands").

Public functions:

- :func:`sh_basis` -- the basis values ``(..., (d+1)**2)`` at unit directions.
- :func:`eval_sh_raw` -- ``sum_k basis_k * sh_k`` (gsplat's ``spherical_harmonics``).
- :func:`eval_sh` -- the colour the rasterizer uses: ``clamp_min(eval_sh_raw + 0.5, 0)``.
- :func:`rgb_to_sh_dc` / :func:`sh_dc_to_rgb` -- the degree-0 conversions used to initialise
  coefficients from colours.
"""

from __future__ import annotations

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
"""The constant degree-0 basis value 1 / (2 sqrt(pi))."""

MAX_SH_DEGREE = 4


def num_sh_bases(degree: int) -> int:
    """Number of coefficients used by SH degree ``degree``: ``(degree + 1) ** 2``."""
    return (degree + 1) ** 2


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Real SH basis at unit directions.

    Args:
        degree: 0..4.
        dirs: (..., 3) unit vectors (not normalised here).

    Returns:
        (..., (degree + 1) ** 2) basis values, differentiable w.r.t. ``dirs``.
    """
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        c1 = 0.48860251190292
        out += [-c1 * y, c1 * z, -c1 * x]
    if degree >= 2:
        z2 = z * z
        cos1 = x * x - y * y  # Re (x + iy)^2
        sin1 = 2.0 * x * y  # Im (x + iy)^2
        b = -1.092548430592079 * z
        a = 0.5462742152960395
        p6 = 0.9461746957575601 * z2 - 0.3153915652525201
        out += [a * sin1, b * y, p6, b * x, a * cos1]
    if degree >= 3:
        cos2 = x * cos1 - y * sin1
        sin2 = x * sin1 + y * cos1
        c = -2.285228997322329 * z2 + 0.4570457994644658
        b = 1.445305721320277 * z
        a = -0.5900435899266435
        p12 = z * (1.865881662950577 * z2 - 1.119528997770346)
        out += [a * sin2, b * sin1, c * y, p12, c * x, b * cos1, a * cos2]
    if degree >= 4:
        cos3 = x * cos2 - y * sin2
        sin3 = x * sin2 + y * cos2
        d = z * (-4.683325804901025 * z2 + 2.007139630671868)
        c = 3.31161143515146 * z2 - 0.47308734787878
        b = -1.770130769779931 * z
        a = 0.6258357354491763
        p20 = 1.984313483298443 * z * p12 - 1.006230589874905 * p6
        out += [a * sin3, b * sin2, c * sin1, d * y, p20, d * x, c * cos1, b * cos2, a * cos3]
    return torch.stack(out, dim=-1)


def _check(degree: int, sh: Tensor, dirs: Tensor) -> None:
    if sh.dim() < 2 or sh.shape[-1] != 3:
        raise ValueError(f"sh must have shape (..., K, 3), got {tuple(sh.shape)}")
    if sh.shape[-2] < num_sh_bases(degree):
        raise ValueError(f"sh degree {degree} needs K >= {num_sh_bases(degree)} coefficients, got K={sh.shape[-2]}")
    if dirs.shape[-1] != 3 or dirs.shape[:-1] != sh.shape[:-2]:
        raise ValueError(f"dirs must have shape {tuple(sh.shape[:-2]) + (3,)}, got {tuple(dirs.shape)}")


def eval_sh_raw(degree: int, sh: Tensor, dirs: Tensor) -> Tensor:
    """SH value without the +0.5 offset (gsplat ``spherical_harmonics``).

    Args:
        degree: SH degree to evaluate (0..4).
        sh: (..., K, 3) coefficients, K >= (degree + 1) ** 2.
        dirs: (..., 3) directions (any length; normalised here, gradient flows through).

    Returns:
        (..., 3).
    """
    _check(degree, sh, dirs)
    n = num_sh_bases(degree)
    if degree == 0:
        return SH_C0 * sh[..., 0, :]
    unit = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    basis = sh_basis(degree, unit)  # (..., n)
    return (basis.unsqueeze(-1) * sh[..., :n, :]).sum(dim=-2)


def eval_sh(degree: int, sh: Tensor, dirs: Tensor) -> Tensor:
    """Colour from SH as gsplat's ``rasterization`` computes it: ``clamp_min(SH + 0.5, 0)``.

    Args:
        degree: SH degree to evaluate (0..4).
        sh: (N, K, 3) (or (..., K, 3)) coefficients.
        dirs: (N, 3) directions from the camera centre to the Gaussian means.

    Returns:
        (N, 3) colours >= 0.
    """
    return torch.clamp_min(eval_sh_raw(degree, sh, dirs) + 0.5, 0.0)


def rgb_to_sh_dc(rgb: Tensor) -> Tensor:
    """Degree-0 coefficient giving colour ``rgb`` (``(rgb - 0.5) / SH_C0``); shape unchanged."""
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(dc: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_sh_dc` (no clamping); shape unchanged."""
    return dc * SH_C0 + 0.5
