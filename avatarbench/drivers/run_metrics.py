"""No-ground-truth metrics of a cross-reenactment evaluation (``results.json`` ``metrics``).

- ``flicker`` (every cross-reenactment): per camera, the renders in timestep order; the static
  region is the pixels that show exactly the background colour (within half an 8-bit step) in the
  first *and* the last frame; :func:`~avatarbench.drivers.lipsync.flicker` over it, mean over
  cameras (needs >= 3 frames per camera). Floaters and popping Gaussians show up there.
- ``lip_sync_corr`` / ``lip_sync_lag_s`` (speech drivers, ``text:`` / ``audio:``): the mouth
  opening measured on the FLAME geometry of the evaluated frames against the phoneme timeline's
  viseme opening (text, or audio with transcript) or the audio RMS envelope (audio only); the
  speech is regenerated deterministically from the driver string (same seed).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def flicker_of_renders(frames, renders: dict, background) -> float | None:
    from avatarbench.drivers.lipsync import flicker

    by_cam = defaultdict(list)
    for f in frames:
        if f.key in renders:
            by_cam[f.camera.id].append(f)
    vals = []
    bg = np.asarray(background, np.float64).reshape(1, 1, 3)
    for fs in by_cam.values():
        fs = sorted(fs, key=lambda f: f.timestep)
        if len(fs) < 3:
            continue
        imgs = np.stack([renders[f.key].cpu().numpy() for f in fs]).astype(np.float64)
        static = np.all(np.abs(imgs[0] - bg) < 0.5 / 255, axis=-1) & np.all(np.abs(imgs[-1] - bg) < 0.5 / 255, axis=-1)
        v = flicker(imgs, static)
        if np.isfinite(v):
            vals.append(v)
    return float(np.mean(vals)) if vals else None


def lip_sync_of_frames(frames, spec: str, seed: int = 0) -> dict:
    from avatarbench.bodymodels.flame import load_flame
    from avatarbench.drivers.audio import envelope
    from avatarbench.drivers.base import make_driver
    from avatarbench.drivers.lipsync import lip_sync, mouth_opening_series, phoneme_opening

    by_t = {}
    for f in frames:
        by_t.setdefault(f.timestep, f)
    ts = sorted(by_t)
    if len(ts) < 5:
        return {}
    seq = make_driver(spec, seed=seed).generate()
    sp = seq.speech
    params = {k: np.stack([np.asarray(by_t[t].driving[k], np.float32) for t in ts]) for k in ("expr", "jaw_pose")}
    mouth = mouth_opening_series(load_flame(teeth=True), params)
    times = np.asarray(ts) / seq.fps
    if sp.phonemes or seq.meta.get("mode") == "phonemes":
        ref = phoneme_opening(sp.phonemes, times)
    else:
        ref = envelope(sp.audio, sp.sample_rate, seq.fps, max(ts) + 1)[ts]
    r = lip_sync(mouth, ref, seq.fps)
    return {"lip_sync_corr": r["corr"], "lip_sync_lag_s": r["lag_s"]}


def reenact_metrics(frames, renders: dict, subject, cfg) -> dict:
    """Metrics added to a cross-reenactment record (see module docstring); None values omitted."""
    out = {}
    fl = flicker_of_renders(frames, renders, subject.background)
    if fl is not None:
        out["flicker"] = fl
    spec = str(cfg.data.driver or "")
    if spec.startswith(("text:", "audio:")) and subject.body_model == "flame":
        out.update({k: v for k, v in lip_sync_of_frames(frames, spec, int(cfg.engine.seed)).items()
                    if v is not None and np.isfinite(v)})
    return out
