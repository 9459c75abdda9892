"""Metrics without ground truth: lip sync and temporal stability.

- :func:`lip_sync`: normalised cross-correlation between the avatar's mouth opening and a
  reference signal (the audio's RMS envelope, or the phoneme timeline's viseme opening), over
  lags in ``[-max_lag, max_lag]`` frames. Both series are z-scored over the overlap of each lag.
  ``lag > 0`` means the mouth trails the reference: ``mouth[t] ~ reference[t - lag]``.
- :func:`mouth_opening_series`: the mouth opening measured on the FLAME geometry of each frame
  (the same measurement as the viseme fits, ``flame_fit.measure_mouth``).
- :func:`flicker`: mean absolute frame-to-frame change of the rendered video inside a static
  region (default: pixels that are background, alpha < 0.01, in every frame), in 8-bit units.
"""

from __future__ import annotations

import numpy as np


def lip_sync(mouth: np.ndarray, reference: np.ndarray, fps: float, *, max_lag_s: float = 0.3) -> dict:
    """Correlation and lag between two per-frame signals.

    Args:
        mouth: (T,) mouth opening.
        reference: (T,) reference (audio envelope or phoneme-timeline opening).
        fps: frame rate of both.
        max_lag_s: lags searched, seconds either way.
    Returns:
        ``{"corr": best correlation, "lag_frames": int, "lag_s": float, "corr_at_zero": float}``;
        NaNs when either signal is constant.
    """
    a = np.asarray(mouth, np.float64).reshape(-1)
    b = np.asarray(reference, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"mouth {a.shape} and reference {b.shape} must have the same length")
    T = len(a)
    L = int(min(round(max_lag_s * fps), max(T - 3, 0)))
    best = (-np.inf, 0)
    zero = np.nan
    for lag in range(-L, L + 1):
        x = a[lag:] if lag >= 0 else a[: T + lag]
        y = b[: T - lag] if lag >= 0 else b[-lag:]
        if len(x) < 3 or x.std() < 1e-12 or y.std() < 1e-12:
            continue
        c = float(np.mean((x - x.mean()) * (y - y.mean())) / (x.std() * y.std()))
        if lag == 0:
            zero = c
        if c > best[0]:
            best = (c, lag)
    if not np.isfinite(best[0]):
        return {"corr": float("nan"), "lag_frames": 0, "lag_s": float("nan"), "corr_at_zero": float("nan")}
    return {"corr": best[0], "lag_frames": int(best[1]), "lag_s": best[1] / fps, "corr_at_zero": zero}


def phoneme_opening(phonemes, times: np.ndarray) -> np.ndarray:
    """(T,) the viseme opening target of the phoneme active at each time (step function, 0 in pauses)."""
    from avatarbench.drivers.visemes import VISEME_TARGETS, phoneme_to_viseme

    out = np.zeros(len(times))
    for p in phonemes:
        sel = (times >= p.start) & (times < p.end)
        out[sel] = VISEME_TARGETS[phoneme_to_viseme(p.symbol)][0]
    return out


def mouth_opening_series(model, params: dict[str, np.ndarray], *, batch: int = 64) -> np.ndarray:
    """(T,) mouth opening (units of rest mouth width) of FLAME frames ``params`` (key -> (T, D))."""
    import torch

    from avatarbench.drivers.flame_fit import build_rig, measure_mouth

    rig = build_rig(model)
    T = len(params["expr"])
    out = []
    with torch.no_grad():
        for s in range(0, T, batch):
            kw = {k: torch.as_tensor(params[k][s:s + batch]) for k in ("expr", "jaw_pose") if k in params}
            out.append(measure_mouth(model, rig, model(**kw).verts)[:, 0].double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def flicker(frames: np.ndarray, static_mask: np.ndarray | None = None, alphas: np.ndarray | None = None) -> float:
    """Mean |I_t - I_{t-1}| (8-bit units) inside the static region.

    Args:
        frames: (T, H, W, 3) uint8 or float in [0, 1].
        static_mask: (H, W) bool; None = background in every frame (needs ``alphas`` (T, H, W)).
    """
    f = np.asarray(frames)
    f = f.astype(np.float64) * (255.0 if f.dtype.kind == "f" else 1.0)
    if static_mask is None:
        if alphas is None:
            raise ValueError("flicker needs static_mask or alphas")
        static_mask = np.all(np.asarray(alphas) < 0.01, axis=0)
    m = np.asarray(static_mask, bool)
    if len(f) < 2 or not m.any():
        return float("nan")
    d = np.abs(np.diff(f, axis=0))[:, m]
    return float(d.mean())


def mouth_boxes(model, frames, image_hw: tuple[int, int], *, pad: float = 0.25) -> np.ndarray:
    """(T, 4) pixel boxes ``x0, y0, x1, y1`` (exclusive ends) around the lips of each head frame.

    The lip rings of the FLAME model (``flame_fit.build_rig``) are posed with each frame's driving
    parameters (identity included), projected with the frame's camera, scaled to the rendered image
    size ``image_hw`` (H, W) and padded by ``pad`` x the box width on every side.
    """
    import torch

    from avatarbench.drivers.flame_fit import build_rig

    rig = build_rig(model)
    lips = np.concatenate([rig.outer_upper, rig.outer_lower])
    H, W = image_hw
    out = np.zeros((len(frames), 4), np.int64)
    if not len(frames):
        return out
    per_frame = [f.driving_tensors() for f in frames]
    keys = set.intersection(*(set(d) for d in per_frame))
    with torch.no_grad():  # one batched FLAME evaluation for every frame
        verts = model.forward_dict({k: torch.cat([d[k] for d in per_frame]) for k in keys}).verts[:, torch.as_tensor(lips)]
        for i, f in enumerate(frames):
            uv = f.camera.project(verts[i])[:, :2].numpy() * np.array([W / f.camera.width, H / f.camera.height])
            (x0, y0), (x1, y1) = uv.min(0), uv.max(0)
            p = pad * max(x1 - x0, 1.0)
            out[i] = [max(0, int(np.floor(x0 - p))), max(0, int(np.floor(y0 - p))),
                      min(W, int(np.ceil(x1 + p)) + 1), min(H, int(np.ceil(y1 + p)) + 1)]
    return out


def mouth_darkness(images: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(T,) mean darkness (1 - Rec. 601 luma, in [0, 1]) of each rendered frame inside its mouth box.

    An open mouth shows the dark mouth interior, so in the renders this rises with the opening: the
    render-side measure of lip sync (the avatar's output, not its driving geometry).

    Args:
        images: (T, H, W, 3) uint8 or float in [0, 1].
        boxes: (T, 4) from :func:`mouth_boxes`.
    """
    f = np.asarray(images)
    f = f.astype(np.float64) / (255.0 if f.dtype.kind in "ui" else 1.0)
    luma = f @ np.array([0.299, 0.587, 0.114])
    out = np.full(len(f), np.nan)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes)):
        if x1 > x0 and y1 > y0:
            out[i] = 1.0 - luma[i, y0:y1, x0:x1].mean()
    return out
