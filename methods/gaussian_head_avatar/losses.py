"""GHA losses and the stage-2 augmentation.

Stage 1 (``MeshHeadTrainer``): ``0.1 L_rgb + 0.1 L_sil + 1 L_def + 0.01 L_offset + 0.1 L_lmk + 100 L_lap``.
Stage 2 (``GaussianHeadTrainer``): ``L1(SR(aug(render)), aug(GT)) + L1(render[:3], GT_lowres) +
0.1 LPIPS-VGG(random crop of the SR pair)``; only the super-resolution terms see the zoom
augmentation ``aug``, the low-resolution L1 compares the un-augmented render with the downsampled GT.
"""

from __future__ import annotations

import logging
import math
import warnings

import torch
import torch.nn.functional as F


def silhouette_loss(alpha: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """1 - soft IoU (kaolin ``mask_iou``): ``1 - sum(a m) / sum(a + m - a m)``. Same-shape inputs."""
    inter = (alpha * mask).sum()
    union = (alpha + mask - alpha * mask).sum()
    return 1.0 - inter / union.clamp_min(eps)


def offset_loss(exp_deform: torch.Tensor, pose_deform: torch.Tensor) -> torch.Tensor:
    """Mean squared norm of the raw expression and pose displacements, (M, 3) each (0 when M = 0)."""
    if exp_deform.shape[0] == 0:
        return exp_deform.sum() + pose_deform.sum()
    return (exp_deform ** 2).sum(-1).mean() + (pose_deform ** 2).sum(-1).mean()


def laplacian_loss(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """GHA's ``laplace_regularizer_const``: mean squared uniform Laplacian with neighbours counted
    once per incident face. verts (M, 3), faces (F, 3)."""
    from avatarbench.geometry.mesh import laplacian_smoothing_loss

    if faces.shape[0] == 0:
        return verts.sum() * 0.0
    return laplacian_smoothing_loss(verts, faces, kind="uniform", face_weighted=True)


def resize_chw(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """(B, C, h, w) -> (B, C, H, W); ``area`` for downsampling, bilinear otherwise."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _fit(x: torch.Tensor, size: tuple[int, int], offset: tuple[int, int], fill: float) -> torch.Tensor:
    """Crop (offset >= 0) or pad (offset < 0, filled with ``fill``) ``x`` (B, C, h, w) to ``size``."""
    H, W = size
    h, w = x.shape[-2:]
    oy, ox = offset
    out = x.new_full(x.shape[:-2] + (H, W), fill)
    # window of x that lands in the output
    sy0, sx0 = max(oy, 0), max(ox, 0)
    dy0, dx0 = max(-oy, 0), max(-ox, 0)
    ny, nx = min(h - sy0, H - dy0), min(w - sx0, W - dx0)
    out[..., dy0:dy0 + ny, dx0:dx0 + nx] = x[..., sy0:sy0 + ny, sx0:sx0 + nx]
    return out


def random_scale_crop(low: torch.Tensor, high: torch.Tensor, factor: int, scale: float, u: tuple[float, float],
                      fill: float = 1.0, mode: str = "nearest") -> tuple[torch.Tensor, torch.Tensor]:
    """GHA's stage-2 zoom augmentation (``GaussianHeadTrainer.random_crop``), applied jointly to the
    low-res render and the GT that the super-resolution branch sees.

    Both are resized by ``scale``: low to ``floor(h s) x floor(w s)`` (GHA quantises its factor to
    ``int(512 s) / 512``), high to ``factor`` times that; then cropped (zoom in) or padded with
    ``fill`` (zoom out) back to their sizes at a random, pixel-aligned position given by ``u`` in
    [0, 1)^2 (the high-res offset is ``factor`` times the low-res one, as officially).

    Args:
        low: (B, C, h, w) rendered feature map; high: (B, 3, factor h, factor w) ground truth.
        mode: ``"nearest"`` (official: ``F.interpolate`` without a mode) or ``"smooth"`` (bilinear,
            and area for shrinking the GT).
    Returns:
        the augmented (B, C, h, w) and (B, 3, factor h, factor w).
    """
    if mode not in ("nearest", "smooth"):
        raise ValueError(f"augmentation mode must be 'nearest' or 'smooth', got {mode!r}")
    h, w = low.shape[-2:]
    hs, ws = max(1, int(math.floor(h * scale + 1e-9))), max(1, int(math.floor(w * scale + 1e-9)))
    if mode == "nearest":
        low_s = low if (hs, ws) == (h, w) else F.interpolate(low, size=(hs, ws), mode="nearest")
        high_s = high if (hs, ws) == (h, w) else F.interpolate(high, size=(hs * factor, ws * factor), mode="nearest")
    else:
        low_s = resize_chw(low, (hs, ws))
        high_s = resize_chw(high, (hs * factor, ws * factor), "area" if scale < 1 else "bilinear")
    dy, dx = hs - h, ws - w
    oy = int(math.floor(u[0] * (abs(dy) + 1))) * (1 if dy >= 0 else -1)
    ox = int(math.floor(u[1] * (abs(dx) + 1))) * (1 if dx >= 0 else -1)
    return (_fit(low_s, (h, w), (oy, ox), fill),
            _fit(high_s, (h * factor, w * factor), (oy * factor, ox * factor), fill))


class PerceptualLoss:
    """``LPIPS-VGG`` training loss, or disabled (with a loud warning and a recorded reason) when the
    VGG backbone weights are not available offline.

    Attributes:
        module: the LPIPS module or None.
        status: ``"enabled (...)"`` or ``"disabled (<reason>)"``.
    """

    def __init__(self, net: str = "vgg", device="cpu", enabled: bool = True):
        self.module = None
        if not enabled:
            self.status = "disabled (weight 0 in the config)"
            return
        try:
            from avatarbench.metrics.lpips_weights import perceptual_loss_module

            res = perceptual_loss_module(net, device=device)
            module, reason = res if isinstance(res, tuple) else (res, "")
        except Exception as e:  # a missing or broken backbone must not stop training
            module, reason = None, f"{e.__class__.__name__}: {e}"
        if module is None:
            self.status = f"disabled ({reason})"
            msg = ("\n" + "!" * 78 + f"\n!! gaussian_head_avatar: the LPIPS-{net.upper()} perceptual loss is DISABLED.\n"
                   f"!! reason: {reason}\n!! Stage 2 trains with the L1 terms only; results are NOT the paper's loss.\n"
                   + "!" * 78)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            logging.getLogger(__name__).warning("perceptual loss disabled: %s", reason)
        else:
            self.module = module.to(device)
            for p in self.module.parameters():
                p.requires_grad_(False)
            self.status = f"enabled ({reason})" if reason else "enabled"

    @property
    def enabled(self) -> bool:
        return self.module is not None

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> scalar."""
        return self.module(pred, target)


def random_crop_pair(a: torch.Tensor, b: torch.Tensor, size: tuple[int, int], u: tuple[float, float]):
    """The same random ``size`` crop of two (B, C, H, W) tensors; u in [0, 1)^2 picks the corner."""
    H, W = a.shape[-2:]
    ch, cw = min(size[0], H), min(size[1], W)
    y = int(math.floor(u[0] * (H - ch + 1)))
    x = int(math.floor(u[1] * (W - cw + 1)))
    return a[..., y:y + ch, x:x + cw], b[..., y:y + ch, x:x + cw]
