"""Per-image photometric metrics on (B, 3, H, W) tensors in [0, 1].

- :func:`psnr`  ``-10 log10(mse)`` per image after clipping to [0, 1] (NerfBaselines definition).
- :func:`ssim`  Gaussian SSIM (11x11, sigma 1.5, k1 0.01, k2 0.03, data range 1, population
  (co)variances) averaged over the *valid* region (the 5-pixel border whose window would leave the
  image is excluded), which is ``dm_pix.ssim`` / NerfBaselines ``dmpix_ssim`` and
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``. The local statistics are computed in **float64**
  whatever the input dtype (separable valid filtering): in float32 the variance ``E[x^2] - mu^2``
  loses up to ~2e-5 of SSIM to cancellation; in float64 the three agree to ~1e-12.
- :func:`lpips`  the ``lpips`` package (v0.1 linear layers) with AlexNet or VGG16 backbones,
  inputs mapped [0, 1] -> [-1, 1]. ``legacy_zero_one_input=True`` reproduces the
  3DGS/GaussianAvatars quirk of feeding [0, 1] images directly. Returns None when the backbone
  weights are not available (see :mod:`avatarbench.metrics.lpips_weights`).

All functions return a (B,) float tensor (one value per image) on the input's device.
"""

from __future__ import annotations

import logging

import torch

from avatarbench.errors import DataError
from avatarbench.metrics import lpips_weights as _lw

log = logging.getLogger(__name__)

__all__ = ["psnr", "ssim", "ssim_map", "lpips", "SSIM_SETTINGS"]

SSIM_SETTINGS = {"kernel": "gaussian", "kernel_size": 11, "sigma": 1.5, "k1": 0.01, "k2": 0.03,
                 "data_range": 1.0, "region": "valid (5-px border excluded, = dm_pix/skimage)",
                 "precision": "float64 local statistics",
                 "implementation": "avatarbench separable Gaussian filter (= skimage / dm_pix maths)"}
_SSIM_PAD = 5  # (kernel_size - 1) // 2


def _check_pair(pred: torch.Tensor, gt: torch.Tensor, name: str, min_size: int = 1) -> None:
    if not isinstance(pred, torch.Tensor) or not isinstance(gt, torch.Tensor):
        raise DataError(f"metrics.{name}", "inputs are not torch tensors", "(B, 3, H, W) tensors")
    if pred.ndim != 4 or pred.shape[1] != 3:
        raise DataError(f"metrics.{name}(pred)", f"shape {tuple(pred.shape)}", "(B, 3, H, W)")
    if gt.shape != pred.shape:
        raise DataError(f"metrics.{name}(gt)", f"shape {tuple(gt.shape)} differs from pred {tuple(pred.shape)}",
                        "the same shape as pred")
    if pred.shape[2] < min_size or pred.shape[3] < min_size:
        raise DataError(f"metrics.{name}(pred)", f"image size {pred.shape[2]}x{pred.shape[3]}",
                        f"at least {min_size}x{min_size}")


def psnr(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, data range 1.

    Args:
        pred, gt: (B, 3, H, W) in [0, 1] (clipped).
        mask: optional (B, 1, H, W) weights in [0, 1]; then the MSE is mask-normalised:
            ``sum(m (pred - gt)^2) / (3 sum(m))`` (see ``mask_mode='normalized'`` in the protocol).

    Returns:
        (B,) float64-accurate values as the input dtype (float32 inputs give float32);
        ``+inf`` for identical images.
    """
    _check_pair(pred, gt, "psnr")
    diff2 = (pred.clamp(0, 1).double() - gt.clamp(0, 1).double()).pow(2)
    if mask is None:
        mse = diff2.mean(dim=(1, 2, 3))
    else:
        m = mask.double().expand_as(diff2[:, :1])
        mse = (diff2 * m).sum(dim=(1, 2, 3)) / (3 * m.sum(dim=(1, 2, 3))).clamp_min(1e-12)
    return (-10.0 * torch.log10(mse)).to(pred.dtype)


def _gaussian_window(dtype: torch.dtype, device) -> torch.Tensor:
    """(11,) normalised Gaussian taps, sigma 1.5 (skimage ``truncate=3.5`` and dm_pix agree)."""
    r = torch.arange(2 * _SSIM_PAD + 1, dtype=dtype, device=device) - _SSIM_PAD
    g = torch.exp(-(r * r) / (2 * 1.5 ** 2))
    return g / g.sum()


def ssim_map(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM over the valid region, statistics in float64.

    Args:
        pred, gt: (B, 3, H, W) in [0, 1] (clipped), H, W >= 11; any float dtype.

    Returns:
        (B, 3, H - 10, W - 10) float64 SSIM map (pixel (i, j) is centred on input pixel (i + 5, j + 5)).
    """
    import torch.nn.functional as F

    _check_pair(pred, gt, "ssim", min_size=2 * _SSIM_PAD + 1)
    g = _gaussian_window(torch.float64, pred.device)
    kh, kw = g.view(1, 1, -1, 1).repeat(5, 1, 1, 1), g.view(1, 1, 1, -1).repeat(5, 1, 1, 1)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    out = []
    for c in range(pred.shape[1]):  # one channel at a time bounds the float64 memory
        x = pred[:, c:c + 1].clamp(0, 1).double()
        y = gt[:, c:c + 1].clamp(0, 1).double()
        f = F.conv2d(F.conv2d(torch.cat([x, y, x * x, y * y, x * y], 1), kh, groups=5), kw, groups=5)
        mx, my, xx, yy, xy = f.unbind(1)
        vx, vy, cxy = xx - mx * mx, yy - my * my, xy - mx * my
        out.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return torch.stack(out, 1)


def ssim(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Structural similarity (see module docstring for the exact settings).

    Args:
        pred, gt: (B, 3, H, W) in [0, 1], H, W >= 11.
        mask: optional (B, 1, H, W) weights; then the SSIM map is averaged with these weights
            (cropped to the valid region) instead of uniformly.

    Returns:
        (B,) in the input's dtype (the value itself is computed in float64).
    """
    smap = ssim_map(pred, gt)
    if mask is None:
        return smap.mean(dim=(1, 2, 3)).to(pred.dtype)
    m = mask[..., _SSIM_PAD:-_SSIM_PAD, _SSIM_PAD:-_SSIM_PAD].to(smap.dtype).expand_as(smap[:, :1])
    return ((smap * m).sum(dim=(1, 2, 3)) / (3 * m.sum(dim=(1, 2, 3))).clamp_min(1e-12)).to(pred.dtype)


def lpips(pred: torch.Tensor, gt: torch.Tensor, net: str = "vgg", *,
          legacy_zero_one_input: bool = False, backbone=None,
          _test_only_random_backbone: bool | None = None) -> torch.Tensor | None:
    """Learned perceptual image patch similarity (lower is better).

    Args:
        pred, gt: (B, 3, H, W) in [0, 1] (clipped), H, W >= 32 (AlexNet pooling needs it).
        net: ``"alex"`` or ``"vgg"``.
        legacy_zero_one_input: feed [0, 1] images without mapping to [-1, 1] (the vendored
            ``lpipsPyTorch`` usage in 3DGS / GaussianAvatars). Numbers are *not* comparable to
            the default; only for reproducing those papers' protocol.
        backbone: explicit backbone file/folder (see :mod:`avatarbench.metrics.lpips_weights`).
        _test_only_random_backbone: TEST ONLY, see :func:`lpips_weights.load_lpips_network`.
            The caller must label the numbers ``lpips_random_backbone_TEST_ONLY``.

    Returns:
        (B,) tensor, or None when the backbone weights are not available (the reason is logged;
        query :func:`avatarbench.metrics.lpips_available`).
    """
    _check_pair(pred, gt, "lpips", min_size=32)
    model = _lw.load_lpips_network(net, backbone=backbone, device=pred.device,
                                   _test_only_random_backbone=_test_only_random_backbone)
    if model is None:
        return None
    x, y = pred.clamp(0, 1).float(), gt.clamp(0, 1).float()
    if not legacy_zero_one_input:
        x, y = x * 2 - 1, y * 2 - 1
    with torch.no_grad():
        out = model(x, y, normalize=False)
    return out.reshape(out.shape[0]).to(pred.dtype if pred.is_floating_point() else torch.float32)
