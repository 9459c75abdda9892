"""Evaluation protocols: every choice that changes a number, in one recorded object.

An :class:`EvalProtocol` says how a rendered image is compared with its ground truth
(quantisation, background, masking, cropping, LPIPS network and input range). It is stored with
every result (:meth:`EvalProtocol.to_dict`), together with :meth:`EvalProtocol.lpips_status`.
See ``docs/protocols.md`` for the suite's protocols and how they differ from each paper's.

Order of operations in :func:`evaluate_images`:

1. both images clipped to [0, 1]; if ``quantize_8bit``, both rounded to 8 bits
   (``round(255 x) / 255``, the same rule as :func:`avatarbench.data.images.save_png`);
2. mask binarised if ``mask_threshold`` is set;
3. ``mask_mode`` applied (see :data:`MASK_MODES`);
4. PSNR and SSIM on the (masked) full image; metrics named in ``crop_metrics`` (LPIPS by
   default) on the ``crop`` region;
5. LPIPS for each net in ``lpips_nets``; ``None`` when its backbone weights are missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from avatarbench.errors import ConfigError, DataError
from avatarbench.metrics import image as _img
from avatarbench.metrics import lpips_weights as _lw

__all__ = [
    "PROTOCOL_VERSION",
    "MASK_MODES",
    "CROP_MODES",
    "LPIPS_INPUT_RANGES",
    "EVAL_SPLITS",
    "EvalProtocol",
    "default_protocol",
    "evaluate_images",
    "summarize",
    "mask_bbox_square_crop",
    "quantize_to_8bit",
]

PROTOCOL_VERSION = 1

MASK_MODES = {
    "none": "full image as rendered/loaded (GT already composited on the background); no mask used",
    "multiply": "pred and GT multiplied by the GT mask, metrics averaged over the full image; masked-out "
                "pixels count as zero error (NerfBaselines compute_metrics)",
    "composite": "pred and GT alpha-blended onto `background` with the GT mask, then full-image metrics "
                 "(NeRSemble perform_alpha_blending, masked variant)",
    "normalized": "PSNR from the MSE over mask pixels only (sum m*err / (3 sum m)), SSIM map averaged with "
                  "mask weights; LPIPS on the `composite` images (LPIPS has no per-pixel weighting)",
}
CROP_MODES = {
    "none": "metrics on the whole image",
    "mask_bbox": "GT-mask bounding box + `crop_pad` px, grown to a square around its centre, outside-image "
                 "area filled with `background`, resized to `crop_size` (Animatable Gaussians LPIPS crop)",
}
LPIPS_INPUT_RANGES = {
    "minus_one_one": "images mapped [0,1] -> [-1,1] (lpips package convention; default)",
    "zero_one_legacy": "[0,1] images fed directly (3DGS / GaussianAvatars lpipsPyTorch quirk); legacy only",
}
EVAL_SPLITS = ("novel_view", "self_reenact", "cross_reenact")
_METRICS = ("psnr", "ssim", "lpips")


@dataclass
class EvalProtocol:
    """How predictions are compared with ground truth (stored with every result).

    Attributes:
        name: protocol id stored with every result, e.g. ``head_novel_view``.
        split: the split it evaluates (``novel_view``, ``self_reenact``, ``cross_reenact``) or None.
        has_gt: whether the split has ground-truth images to score (False for cross-identity
            reenactment on real captures: renders and videos only).
        max_frames: score at most this many frames of the split (the engine applies it), None
            for all.
        background: RGB in [0, 1]; the colour renders and GT are composited on (``composite`` /
            ``normalized`` modes and crop padding use it).
        quantize_8bit: round pred and GT to 8 bits before any metric (like NerfBaselines).
        mask_mode: one of :data:`MASK_MODES`.
        mask_threshold: if set, the GT mask becomes ``mask > mask_threshold`` (e.g. 0.5).
        crop: one of :data:`CROP_MODES`.
        crop_pad: pixels added around the mask bounding box (``mask_bbox``).
        crop_size: square side the crop is resized to (None: keep the crop's native size).
        crop_metrics: metrics computed on the crop (others use the full image).
        metrics: metrics to compute, subset of ``("psnr", "ssim", "lpips")``.
        lpips_nets: LPIPS backbones to report (``alex``, ``vgg``); empty = no LPIPS.
        lpips_primary: the net whose value is also reported under the plain ``lpips`` key (the
            first of ``lpips_nets`` when it is not among them).
        lpips_input_range: one of :data:`LPIPS_INPUT_RANGES`.
        lpips_backbone: explicit backbone file/folder (else ``$AVATARBENCH_LPIPS_BACKBONE`` or the
            torch hub cache; never downloaded).
    """

    name: str = "default"
    split: str | None = None
    has_gt: bool = True
    max_frames: int | None = None
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    quantize_8bit: bool = True
    mask_mode: str = "none"
    mask_threshold: float | None = None
    crop: str = "none"
    crop_pad: int = 50
    crop_size: int | None = 512
    crop_metrics: tuple[str, ...] = ("lpips",)
    metrics: tuple[str, ...] = _METRICS
    lpips_nets: tuple[str, ...] = ("alex", "vgg")
    lpips_primary: str = "vgg"
    lpips_input_range: str = "minus_one_one"
    lpips_backbone: str | None = None

    def __post_init__(self) -> None:
        self.background = tuple(float(x) for x in self.background)  # type: ignore[assignment]
        self.crop_metrics = tuple(self.crop_metrics)
        self.metrics = tuple(self.metrics)
        self.lpips_nets = tuple(self.lpips_nets)
        self.validate()

    # -- construction / serialisation -----------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the bad field."""
        def bad(fieldname: str, value: Any, expected: str) -> ConfigError:
            return ConfigError(f"protocol.{fieldname}: {value!r} (expected {expected})")

        if len(self.background) != 3 or not all(0.0 <= c <= 1.0 for c in self.background):
            raise bad("background", self.background, "3 values in [0, 1]")
        if self.mask_mode not in MASK_MODES:
            raise bad("mask_mode", self.mask_mode, " | ".join(MASK_MODES))
        if self.crop not in CROP_MODES:
            raise bad("crop", self.crop, " | ".join(CROP_MODES))
        if self.mask_threshold is not None and not 0.0 <= float(self.mask_threshold) < 1.0:
            raise bad("mask_threshold", self.mask_threshold, "null or a value in [0, 1)")
        if int(self.crop_pad) < 0:
            raise bad("crop_pad", self.crop_pad, ">= 0")
        if self.crop_size is not None and int(self.crop_size) < 32:
            raise bad("crop_size", self.crop_size, "null or >= 32")
        for m in (*self.metrics, *self.crop_metrics):
            if m not in _METRICS:
                raise bad("metrics", m, " | ".join(_METRICS))
        for n in self.lpips_nets:
            if n not in _lw.LPIPS_NETS:
                raise bad("lpips_nets", n, " | ".join(_lw.LPIPS_NETS))
        if self.lpips_primary not in _lw.LPIPS_NETS:
            raise bad("lpips_primary", self.lpips_primary, " | ".join(_lw.LPIPS_NETS))
        if self.lpips_input_range not in LPIPS_INPUT_RANGES:
            raise bad("lpips_input_range", self.lpips_input_range, " | ".join(LPIPS_INPUT_RANGES))
        if self.max_frames is not None and int(self.max_frames) < 1:
            raise bad("max_frames", self.max_frames, "null or >= 1")
        if self.split is not None and self.split not in EVAL_SPLITS:
            raise bad("split", self.split, "null or " + " | ".join(EVAL_SPLITS))

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | Any) -> "EvalProtocol":
        """Build from a dict or an OmegaConf node (unknown keys raise :class:`ConfigError`)."""
        try:
            from omegaconf import DictConfig, OmegaConf

            if isinstance(node, DictConfig):
                node = OmegaConf.to_container(node, resolve=True)
        except ImportError:  # pragma: no cover
            pass
        if node is None:
            return cls()
        if not isinstance(node, Mapping):
            raise ConfigError(f"protocol: {type(node).__name__} (expected a mapping)")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(node) - known)
        if unknown:
            raise ConfigError(f"protocol: unknown key(s) {unknown} (expected some of {sorted(known)})")
        return cls(**dict(node))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of every setting plus the fixed metric definitions."""
        d = asdict(self)
        d["background"] = list(self.background)
        for k in ("crop_metrics", "metrics", "lpips_nets"):
            d[k] = list(d[k])
        d["protocol_version"] = PROTOCOL_VERSION
        d["definitions"] = {
            "psnr": "-10*log10(mse) per image, images clipped to [0,1], data range 1; mean over images",
            "ssim": dict(_img.SSIM_SETTINGS),
            "lpips": f"lpips package {_lw._lpips_version()} (v0.1 linear layers), torchvision ImageNet backbones; "
                     f"input {LPIPS_INPUT_RANGES[self.lpips_input_range]}",
            "quantize_8bit": "round(255*clip(x,0,1))/255 on pred and GT before metrics",
            "mask_mode": MASK_MODES[self.mask_mode],
            "crop": CROP_MODES[self.crop],
            "aggregation": "per-image values averaged over images (summarize)",
        }
        return d

    def lpips_status(self) -> dict[str, dict]:
        """Per-net availability of LPIPS here (for the result record)."""
        return _lw.lpips_status(self.lpips_nets, self.lpips_backbone)

    def metric_keys(self) -> list[str]:
        """Keys :func:`evaluate_images` returns under this protocol."""
        keys = [m for m in ("psnr", "ssim") if m in self.metrics]
        if "lpips" in self.metrics and self.lpips_nets:
            suffix = "_legacy01" if self.lpips_input_range == "zero_one_legacy" else ""
            keys += [f"lpips{suffix}"] + [f"lpips_{n}{suffix}" for n in self.lpips_nets]
        return keys


def default_protocol(split: str, kind: str = "head") -> EvalProtocol:
    """The suite's protocol for ``split`` (``novel_view``, ``self_reenact``, ``cross_reenact``).

    - ``head``: full 8-bit image on white, no mask, no crop, LPIPS alex + vgg (primary vgg),
      inputs in [-1, 1] (GaussianAvatars' protocol minus its [0,1] LPIPS quirk).
    - ``body``: as head, plus the Animatable Gaussians LPIPS crop (GT-mask bbox + 50 px, square,
      white fill, resized to 512).

    ``cross_reenact`` uses the same settings; it is only scored where the data has ground truth
    (synthetic subjects render it); on real captures it is qualitative (``has_gt`` is then
    decided by the data: frames without ``image_path`` are skipped).
    """
    if split not in EVAL_SPLITS:
        raise ConfigError(f"protocol split: {split!r} (expected one of {EVAL_SPLITS})")
    if kind == "head":
        return EvalProtocol(name=f"head_{split}", split=split)
    if kind == "body":
        return EvalProtocol(name=f"body_{split}", split=split, crop="mask_bbox", crop_pad=50, crop_size=512)
    raise ConfigError(f"protocol kind: {kind!r} (expected 'head' or 'body')")


# ----------------------------------------------------------------------------------------------
# image preparation
# ----------------------------------------------------------------------------------------------

def _to_hwc(x: Any, name: str, channels: tuple[int, ...]) -> torch.Tensor:
    """numpy/torch, uint8 or float -> float64 torch (H, W, C) in [0, 1]."""
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        raise DataError(f"evaluate_images({name})", f"type {type(x).__name__}", "a numpy array or torch tensor")
    if t.ndim == 2 and 1 in channels:
        t = t[..., None]
    if t.ndim != 3 or t.shape[-1] not in channels:
        raise DataError(f"evaluate_images({name})", f"shape {tuple(t.shape)}",
                        f"(H, W, {'|'.join(map(str, channels))})")
    t = t.double() / 255.0 if t.dtype == torch.uint8 else t.double()  # bool masks -> 0/1
    if not torch.isfinite(t).all():
        raise DataError(f"evaluate_images({name})", "contains NaN or Inf", "finite values in [0, 1]")
    return t.clamp(0, 1)


def quantize_to_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest of the 256 levels k/255 (idempotent on 8-bit data)."""
    return torch.floor(x.clamp(0, 1) * 255.0 + 0.5) / 255.0


def mask_bbox_square_crop(img: torch.Tensor, mask: torch.Tensor, pad: int, size: int | None,
                          background: tuple[float, float, float]) -> torch.Tensor:
    """Square crop around the mask's bounding box.

    Args:
        img: (H, W, 3).
        mask: (H, W, 1); pixels > 0.5 define the box. An empty mask gives the whole image
            (padded to a square).
        pad: pixels added on every side of the box.
        size: output side (bilinear, antialiased) or None for the native crop size.
        background: fill colour for the area outside the image.

    Returns:
        (S, S, 3).
    """
    H, W = img.shape[:2]
    ys, xs = torch.nonzero(mask[..., 0] > 0.5, as_tuple=True)
    if ys.numel() == 0:
        y0, y1, x0, x1 = 0, H - 1, 0, W - 1
    else:
        y0, y1 = int(ys.min()) - pad, int(ys.max()) + pad
        x0, x1 = int(xs.min()) - pad, int(xs.max()) + pad
    side = max(y1 - y0 + 1, x1 - x0 + 1)
    cy2, cx2 = y0 + y1, x0 + x1  # twice the centre
    top = (cy2 + 1 - side) // 2
    left = (cx2 + 1 - side) // 2
    out = torch.empty(side, side, 3, dtype=img.dtype, device=img.device)
    out[:] = torch.tensor(background, dtype=img.dtype, device=img.device)
    sy0, sy1 = max(top, 0), min(top + side, H)
    sx0, sx1 = max(left, 0), min(left + side, W)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = img[sy0:sy1, sx0:sx1]
    if size is not None and side != size:
        x = out.permute(2, 0, 1)[None]
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size)
        out = x[0].permute(1, 2, 0).clamp(0, 1)
    return out


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(2, 0, 1)[None].contiguous()


def evaluate_images(pred: Any, gt: Any, mask: Any | None, protocol: EvalProtocol | None = None, *,
                    device: str | torch.device | None = None) -> dict[str, float | None]:
    """Score one rendered image against its ground truth under ``protocol``.

    Args:
        pred: (H, W, 3) render, float in [0, 1] or uint8 (numpy or torch).
        gt: (H, W, 3) ground truth, same size, composited on the protocol background.
        mask: (H, W, 1) or (H, W) GT foreground mask in [0, 1], or None. Required when
            ``mask_mode != "none"`` or ``crop != "none"``.
        protocol: the protocol (default: ``EvalProtocol()``).
        device: where LPIPS runs (default: pred's device for tensors, else CPU).

    Returns:
        ``{"psnr", "ssim", "lpips", "lpips_alex", "lpips_vgg"}`` as floats; LPIPS values are
        None when the backbone is unavailable. In ``zero_one_legacy`` mode LPIPS keys carry the
        suffix ``_legacy01``. With the TEST ONLY random backbone the ``lpips*`` keys are None
        and the numbers appear under ``lpips_random_backbone_TEST_ONLY[_<net>]``.
    """
    protocol = protocol or EvalProtocol()
    if device is None:
        device = pred.device if isinstance(pred, torch.Tensor) else "cpu"
    p = _to_hwc(pred, "pred", (3,))
    g = _to_hwc(gt, "gt", (3,))
    if p.shape != g.shape:
        raise DataError("evaluate_images(gt)", f"shape {tuple(g.shape)} differs from pred {tuple(p.shape)}",
                        "the same (H, W, 3)")
    m = None
    if mask is not None:
        m = _to_hwc(mask, "mask", (1,)).to(p.device)
        if m.shape[:2] != p.shape[:2]:
            raise DataError("evaluate_images(mask)", f"shape {tuple(m.shape)}", f"({p.shape[0]}, {p.shape[1]}, 1)")
    g = g.to(p.device)
    if m is None and (protocol.mask_mode != "none" or protocol.crop != "none"):
        raise DataError("evaluate_images(mask)", f"missing, but protocol {protocol.name!r} uses "
                        f"mask_mode={protocol.mask_mode!r} crop={protocol.crop!r}", "an (H, W, 1) mask")

    if protocol.quantize_8bit:
        p, g = quantize_to_8bit(p), quantize_to_8bit(g)
    if m is not None and protocol.mask_threshold is not None:
        m = (m > protocol.mask_threshold).double()

    bg = torch.tensor(protocol.background, dtype=p.dtype, device=p.device)
    weights = None
    if protocol.mask_mode == "multiply":
        p, g = p * m, g * m
    elif protocol.mask_mode == "composite":
        p, g = p * m + bg * (1 - m), g * m + bg * (1 - m)
    elif protocol.mask_mode == "normalized":
        weights = m
    # LPIPS never takes pixel weights: in 'normalized' mode it sees the composited images.
    if protocol.mask_mode == "normalized":
        p_l, g_l = p * m + bg * (1 - m), g * m + bg * (1 - m)
    else:
        p_l, g_l = p, g

    def region(a: torch.Tensor, metric: str) -> torch.Tensor:
        if protocol.crop == "mask_bbox" and metric in protocol.crop_metrics:
            return mask_bbox_square_crop(a, m, protocol.crop_pad, protocol.crop_size, protocol.background)
        return a

    out: dict[str, float | None] = {}
    if "psnr" in protocol.metrics:
        a, b = region(p, "psnr"), region(g, "psnr")
        w = None if weights is None or a.shape != p.shape else _nchw(weights)
        out["psnr"] = float(_img.psnr(_nchw(a), _nchw(b), mask=w)[0])
    if "ssim" in protocol.metrics:
        a, b = region(p, "ssim"), region(g, "ssim")
        w = None if weights is None or a.shape != p.shape else _nchw(weights)
        # float64 inputs and statistics (ssim() filters in float64 whatever the input dtype);
        # float32 statistics were up to 2e-5 off skimage / dm_pix
        out["ssim"] = float(_img.ssim(_nchw(a), _nchw(b), mask=w)[0])
    if "lpips" in protocol.metrics and protocol.lpips_nets:
        out.update(_lpips_entries(_nchw(region(p_l, "lpips")).float().to(device),
                                  _nchw(region(g_l, "lpips")).float().to(device), protocol))
    return out


def _lpips_entries(a: torch.Tensor, b: torch.Tensor, protocol: EvalProtocol) -> dict[str, float | None]:
    """LPIPS for each net of the protocol, keyed as documented in :func:`evaluate_images`."""
    legacy = protocol.lpips_input_range == "zero_one_legacy"
    suffix = "_legacy01" if legacy else ""
    test_only = _lw.test_only_random_backbone_enabled()
    nets = list(dict.fromkeys(protocol.lpips_nets))
    values: dict[str, float | None] = {}
    for net in nets:
        v = _img.lpips(a, b, net, legacy_zero_one_input=legacy, backbone=protocol.lpips_backbone,
                       _test_only_random_backbone=test_only)
        values[net] = None if v is None else float(v[0])
    primary = values[protocol.lpips_primary if protocol.lpips_primary in values else nets[0]]
    out: dict[str, float | None] = {f"lpips{suffix}": None}
    out.update({f"lpips_{n}{suffix}": None for n in nets})
    if test_only:
        out[f"{_lw.TEST_ONLY_LABEL}{suffix}"] = primary
        out.update({f"{_lw.TEST_ONLY_LABEL}_{n}{suffix}": values[n] for n in nets})
    else:
        out[f"lpips{suffix}"] = primary
        out.update({f"lpips_{n}{suffix}": values[n] for n in nets})
    return out


def summarize(per_image: list[Mapping[str, float | None]]) -> dict[str, float | None]:
    """Mean of each metric over images (None if any image has None for it; keys in first-seen order).

    PSNR is the mean of per-image PSNRs (not the PSNR of the mean MSE), as in NerfBaselines,
    GaussianAvatars and Animatable Gaussians.
    """
    keys: list[str] = []
    for r in per_image:
        keys += [k for k in r if k not in keys]
    out: dict[str, float | None] = {}
    for k in keys:
        vals = [r.get(k) for r in per_image]
        out[k] = None if any(v is None for v in vals) else float(np.mean(vals)) if vals else None
    return out
