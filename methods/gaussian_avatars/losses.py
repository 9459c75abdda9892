"""GaussianAvatars' training losses.

- photometric: ``(1 - lambda_dssim) * L1 + lambda_dssim * (1 - SSIM)`` with lambda_dssim = 0.2;
  SSIM with an 11x11 Gaussian window (sigma 1.5), zero-padded 'same' convolution and the usual
  C1 = 0.01^2, C2 = 0.03^2, averaged over all pixels and channels (the 3DGS loss SSIM).
- position: ``lambda * mean_visible( relu(||mu_local|| - eps) )`` (eps = 1, lambda = 1e-2);
- scaling: ``lambda * mean_visible( || relu(exp(s_local) - eps) ||_2 )`` (eps = 0.6, lambda = 1).

Both regularisers act on LOCAL values, so their thresholds are relative to the parent triangle's
scale k.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=8)
def _gaussian_window(size: int, sigma: float, channels: int, device_str: str, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    w = (g[:, None] @ g[None, :]).to(dtype=dtype, device=device_str)
    return w.expand(channels, 1, size, size).contiguous()


def ssim(img1: torch.Tensor, img2: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Differentiable SSIM (mean over all pixels and channels).

    Args:
        img1, img2: (B, C, H, W) or (C, H, W) images in [0, 1].
    Returns:
        scalar tensor.
    """
    if img1.dim() == 3:
        img1, img2 = img1[None], img2[None]
    c = img1.shape[1]
    w = _gaussian_window(window_size, sigma, c, str(img1.device), img1.dtype)
    pad = window_size // 2
    mu1 = F.conv2d(img1, w, padding=pad, groups=c)
    mu2 = F.conv2d(img2, w, padding=pad, groups=c)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = F.conv2d(img1 * img1, w, padding=pad, groups=c) - mu1_sq
    s2 = F.conv2d(img2 * img2, w, padding=pad, groups=c) - mu2_sq
    s12 = F.conv2d(img1 * img2, w, padding=pad, groups=c) - mu12
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim_map = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return ssim_map.mean()


def photometric_loss(pred: torch.Tensor, gt: torch.Tensor,
                     lambda_dssim: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """The L1 and D-SSIM terms, already weighted.

    Args:
        pred, gt: (H, W, 3) images.
    Returns:
        (l1_term, dssim_term): ``(1 - lambda_dssim) * L1`` and ``lambda_dssim * (1 - SSIM)``.
    """
    l1 = (pred - gt).abs().mean()
    s = ssim(pred.permute(2, 0, 1), gt.permute(2, 0, 1))
    return (1.0 - lambda_dssim) * l1, lambda_dssim * (1.0 - s)


def position_loss(means_local: torch.Tensor, visible: torch.Tensor, threshold: float = 1.0,
                  weight: float = 1e-2) -> torch.Tensor:
    """``weight * mean over visible of relu(||mu_local||_2 - threshold)``.

    Args:
        means_local: (N, 3) local means (units of the parent triangle's scale k).
        visible: (N,) bool.
    Returns:
        scalar (0 when nothing is visible).
    """
    m = means_local[visible]
    if m.shape[0] == 0:
        return means_local.sum() * 0.0
    return F.relu(m.norm(dim=1) - threshold).mean() * weight


def scaling_loss(log_scales_local: torch.Tensor, visible: torch.Tensor, threshold: float = 0.6,
                 weight: float = 1.0) -> torch.Tensor:
    """``weight * mean over visible of ||relu(exp(s_local) - threshold)||_2``.

    Args:
        log_scales_local: (N, 3) log local scales s (global scale = k exp(s)).
        visible: (N,) bool.
    Returns:
        scalar (0 when nothing is visible).
    """
    s = log_scales_local[visible]
    if s.shape[0] == 0:
        return log_scales_local.sum() * 0.0
    return F.relu(torch.exp(s) - threshold).norm(dim=1).mean() * weight
