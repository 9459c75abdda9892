"""Training losses of Animatable Gaussians (official ``main_avatar.py`` ``forward_one_pass``).

- L1 on the full image after **boundary masking**: inside the mask's boundary band (the
  ``k x k`` dilation minus erosion of the thresholded mask, plus semi-transparent alpha
  ``5 < alpha < 250`` of 255) both the prediction and the ground truth are replaced by the
  background colour;
- ``0.1 x`` LPIPS-VGG on a crop: the ground-truth mask's bounding box pasted centred into a
  square canvas of the background colour, resized to ``crop_size`` (512), and after
  ``random_patch_after`` iterations (300k) a random ``crop_size`` patch of that canvas when it is
  larger;
- ``0.005 x`` the mean L2 norm of the (0.05-scaled) position offsets.

The perceptual term needs the torchvision VGG16 ImageNet weights offline
(:func:`avatarbench.metrics.lpips_weights.perceptual_loss_module`); without them it is disabled with
a LOUD warning and the reason is recorded in every training log row.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

__all__ = ["boundary_band", "mask_bbox", "paste_square", "lpips_crop", "offset_regulariser", "PerceptualLoss",
           "composite_background"]


def composite_background(image: torch.Tensor, mask: torch.Tensor, old_bg: torch.Tensor, new_bg: torch.Tensor
                         ) -> torch.Tensor:
    """Re-composite an image ``fg * m + old_bg * (1 - m)`` onto ``new_bg``: (H, W, 3), (H, W, 1), (3,), (3,)."""
    return image + (1.0 - mask) * (new_bg - old_bg)


def boundary_band(mask: torch.Tensor, kernel: int = 5, alpha_lo: float = 5 / 255, alpha_hi: float = 250 / 255
                  ) -> torch.Tensor:
    """(H, W, 1) bool band around the mask edge: dilate - erode of ``mask > 128/255`` with a ``kernel``
    square, plus semi-transparent alpha. ``kernel <= 1`` keeps only the alpha part."""
    m = mask[..., 0]
    band = (m > alpha_lo) & (m < alpha_hi)
    if kernel > 1:
        b = (m > MASK_THRESHOLD).float()[None, None]
        pad = kernel // 2
        dil = F.max_pool2d(b, kernel, stride=1, padding=pad)[0, 0] > 0.5
        ero = -F.max_pool2d(-b, kernel, stride=1, padding=pad)[0, 0] > 0.5
        band = band | (dil & ~ero)
    return band[..., None]


#: the official foreground threshold (``get_boundary_mask``: uint8 mask > 128)
MASK_THRESHOLD = 128.5 / 255.0


def mask_bbox(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """The official crop box of ``mask > 128/255`` (H, W, 1): ``(min_v, max_v, min_u, max_u)`` with
    the min/max foreground row and column (inclusive indices; the official crop slices
    ``[min_v:max_v, min_u:max_u]``, i.e. without the last row and column); None for an empty mask."""
    ys, xs = torch.nonzero(mask[..., 0] > MASK_THRESHOLD, as_tuple=True)
    if ys.numel() == 0:
        return None
    return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


def paste_square(img: torch.Tensor, box: tuple[int, int, int, int], fill: torch.Tensor) -> torch.Tensor:
    """The official ``crop_image`` canvas: a ``side x side`` square (``side = max(len_v, len_u)``,
    ``len = max - min``) of ``fill``, with ``img[min_v:max_v, min_u:max_u]`` pasted centred along the
    shorter side (offset ``(side - len) // 2``). Nothing beside the box enters the canvas.

    Shapes: img (H, W, C), fill (C,) -> (side, side, C).
    """
    v0, v1, u0, u1 = box
    lv, lu = v1 - v0, u1 - u0
    side = max(lv, lu)
    C = img.shape[-1]
    out = fill.to(img).expand(side, side, C).clone()
    if lv > lu:
        s = (side - lu) // 2
        out[:, s:s + lu] = img[v0:v1, u0:u1]
    else:
        s = (side - lv) // 2
        out[s:s + lv, :] = img[v0:v1, u0:u1]
    return out


def lpips_crop(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, bg: torch.Tensor, crop_size: int,
               random_patch: bool = False, u: tuple[float, float] = (0.5, 0.5)
               ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The LPIPS crops of prediction and ground truth (official ``AvatarTrainer.crop_image``).

    Args:
        pred, gt: (H, W, 3); mask: (H, W, 1); bg: (3,) the canvas colour (the iteration's background).
        crop_size: output side (official 512).
        random_patch: take a random ``crop_size`` patch of the square canvas when it is larger
            (official after 300k iterations) instead of resizing it; ``u`` in [0, 1)^2 picks the
            row and column offset, ``floor(u * (side - crop_size + 1))`` (official ``randint``).

    Returns:
        (1, 3, s, s) pred and gt, or None for an empty mask or a box without extent.
    """
    box = mask_bbox(mask)
    if box is None or max(box[1] - box[0], box[3] - box[2]) < 1:
        return None
    a = paste_square(pred, box, bg).permute(2, 0, 1)[None]
    b = paste_square(gt, box, bg).permute(2, 0, 1)[None]
    side = a.shape[-1]
    if random_patch and side > crop_size:
        y = int(math.floor(u[0] * (side - crop_size + 1)))
        x = int(math.floor(u[1] * (side - crop_size + 1)))
        return a[..., y:y + crop_size, x:x + crop_size], b[..., y:y + crop_size, x:x + crop_size]
    a = F.interpolate(a, size=(crop_size, crop_size), mode="bilinear", align_corners=False)
    b = F.interpolate(b, size=(crop_size, crop_size), mode="bilinear", align_corners=False)
    return a, b


def offset_regulariser(offsets: torch.Tensor) -> torch.Tensor:
    """Mean L2 norm of (N, 3) offsets."""
    return offsets.norm(dim=-1).mean()


class PerceptualLoss:
    """LPIPS-VGG training loss, or disabled with a LOUD warning when the backbone is unavailable.

    Attributes:
        module: the LPIPS module or None; status: ``"enabled (...)"`` / ``"disabled (<reason>)"``.
    """

    def __init__(self, net: str = "vgg", device="cpu", enabled: bool = True, owner: str = "animatable_gaussians"):
        self.module = None
        if not enabled:
            self.status = "disabled (weight 0 in the config)"
            return
        try:
            from avatarbench.metrics.lpips_weights import perceptual_loss_module

            module, reason = perceptual_loss_module(net, device=device)
        except Exception as e:  # noqa: BLE001 - a missing or broken backbone must not stop training
            module, reason = None, f"{e.__class__.__name__}: {e}"
        if module is None:
            self.status = f"disabled ({reason})"
            msg = ("\n" + "!" * 78 + f"\n!! {owner}: the LPIPS-{net.upper()} perceptual loss is DISABLED.\n"
                   f"!! reason: {reason}\n!! Training uses L1 + offset regularisation only; this is NOT the paper's "
                   "loss.\n" + "!" * 78)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            print(msg, flush=True)
        else:
            self.module = module.to(device)
            for p in self.module.parameters():
                p.requires_grad_(False)
            self.status = f"enabled ({reason})"

    @property
    def enabled(self) -> bool:
        return self.module is not None

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> scalar."""
        return self.module(pred, target)
