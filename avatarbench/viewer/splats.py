"""A method's Gaussians at a frame -> the arrays viser's splat node takes.

viser's ``add_gaussian_splats`` takes full 3x3 covariances (not scales and quaternions), plain
RGB (no spherical harmonics) and stores the six upper-triangular covariance terms as
**float16**. Metric heads have millimetre-scale Gaussians: a variance of (1 mm)^2 = 1e-6 lies in
float16's subnormal range (below 6.1e-5), where the spacing is 6e-8, i.e. a few per cent error.
We therefore multiply the scene by ``scene_scale`` (10 by default: variances x100, into the normal
range, where the relative error is at most 2^-11 = 0.05 %; :func:`choose_scene_scale` picks a
larger power of ten for sub-millimetre Gaussians) and give the splat node the inverse scale, so the avatar keeps its metric size in the viewer's world. SH colours are evaluated here
for the current view (direction camera centre -> mean, exactly as the renderer does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avatarbench.engine.method import FrameGaussians

#: default factor between the splat arrays and the metric world (node scale = 1 / SCENE_SCALE)
SCENE_SCALE = 10.0


@dataclass
class SplatArrays:
    """What ``viser.SceneApi.add_gaussian_splats`` takes (float32 numpy).

    Attributes:
        centers: (N, 3) means x ``scene_scale``.
        covariances: (N, 3, 3) covariances x ``scene_scale`` ** 2.
        rgbs: (N, 3) colours in [0, 1] for the given view.
        opacities: (N, 1) in [0, 1].
        scene_scale: the factor applied; show the node with ``scale=1 / scene_scale``.
    """

    centers: np.ndarray
    covariances: np.ndarray
    rgbs: np.ndarray
    opacities: np.ndarray
    scene_scale: float


def covariances(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) ``R diag(s)^2 R^T`` in float64, R from (N, 4) wxyz ``quats`` (normalised here)."""
    q = quats.to(torch.float64)
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    w, x, y, z = q.unbind(-1)
    R = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], dim=-1).reshape(-1, 3, 3)
    s2 = scales.to(torch.float64) ** 2
    return (R * s2[:, None, :]) @ R.transpose(1, 2)


def view_colors(g: FrameGaussians, camera_center: torch.Tensor | np.ndarray | None) -> torch.Tensor:
    """(N, 3) RGB in [0, 1] as the renderer computes it for a camera at ``camera_center`` (3,)."""
    if g.sh_degree is None:
        rgb = g.colors
    else:
        from avatarbench.render.sh import eval_sh

        if camera_center is None:
            raise ValueError("SH colours need a camera centre")
        c = torch.as_tensor(np.asarray(camera_center), dtype=g.means.dtype, device=g.means.device)
        rgb = eval_sh(int(g.sh_degree), g.colors, g.means - c)
    return rgb.clamp(0.0, 1.0)


def to_splats(g: FrameGaussians, camera_center=None, scene_scale: float = SCENE_SCALE) -> SplatArrays:
    """Convert a frame's Gaussians for the client-side splat node (see module docstring)."""
    s = float(scene_scale)
    cov = covariances(g.quats.detach(), g.scales.detach()) * (s * s)
    return SplatArrays(
        centers=(g.means.detach().to(torch.float64) * s).cpu().numpy().astype(np.float32),
        covariances=cov.cpu().numpy().astype(np.float32),
        rgbs=view_colors(g, camera_center).detach().cpu().numpy().astype(np.float32),
        opacities=g.opacities.detach().reshape(-1, 1).clamp(0, 1).cpu().numpy().astype(np.float32),
        scene_scale=s)


#: smallest normal float16 (2^-14); below it the spacing is fixed at 2^-24 (subnormals)
FLOAT16_MIN_NORMAL = 2.0 ** -14


def choose_scene_scale(scales: torch.Tensor, quantile: float = 0.01) -> float:
    """The power of ten (at least :data:`SCENE_SCALE`) that lifts the largest variance of all but
    the smallest ``quantile`` of Gaussians into float16's normal range, where the relative error
    of every stored term is at most 2^-11 (0.05 %); capped so no variance overflows (65504).

    Args:
        scales: (N, 3) standard deviations in metres.
    """
    var_max = scales.detach().to(torch.float64).amax(dim=-1) ** 2
    if var_max.numel() == 0:
        return SCENE_SCALE
    low = float(torch.quantile(var_max, quantile).clamp_min(1e-30))
    high = float(var_max.max())
    s = SCENE_SCALE
    while low * s * s < FLOAT16_MIN_NORMAL and high * (10 * s) ** 2 < 6.0e4:
        s *= 10
    return s


def float16_roundtrip(cov: np.ndarray) -> np.ndarray:
    """(N, 3, 3) what the client receives: the upper triangle stored as float16, mirrored."""
    iu = np.triu_indices(3)
    tri = np.asarray(cov)[:, iu[0], iu[1]].astype(np.float16).astype(np.float64)
    out = np.zeros((tri.shape[0], 3, 3))
    out[:, iu[0], iu[1]] = tri
    out[:, iu[1], iu[0]] = tri
    return out


def relative_covariance_error(cov: np.ndarray, received: np.ndarray, scene_scale: float = 1.0) -> np.ndarray:
    """(N,) ``||received / s^2 - cov||_F / ||cov||_F`` per Gaussian (``cov`` metric, float64)."""
    cov = np.asarray(cov, dtype=np.float64)
    diff = np.asarray(received, dtype=np.float64) / scene_scale ** 2 - cov
    return np.linalg.norm(diff.reshape(len(cov), -1), axis=1) / np.linalg.norm(cov.reshape(len(cov), -1), axis=1)
