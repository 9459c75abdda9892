"""``avatarbench eval``: re-score a run's saved renders without the model.

Rebuilds the split's frames from the run's saved config, reads the PNG renders back, scores
them with the same protocol and compares with the in-run per-image metrics (NerfBaselines'
offline-evaluation check: they must agree to 1e-6).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from avatarbench.errors import DataError


def offline_eval(run_dir: Path, split: str, *, progress: bool = False) -> dict:
    from avatarbench.engine.evaluate import score_frames, summarize
    from avatarbench.engine.run import load_run_subject, split_frames

    eval_dir = Path(run_dir) / "eval" / split
    if not (eval_dir / "results.json").exists():
        raise DataError(eval_dir / "results.json", "no evaluation of this split in the run folder",
                        f"`avatarbench run ... --split {split}` first")
    cfg = OmegaConf.load(Path(run_dir) / "config.yaml")
    saved = json.loads((eval_dir / "results.json").read_text())
    cfg.protocol = OmegaConf.create(saved["protocol"])
    cfg.run.split = split
    subject = load_run_subject(cfg)
    frames = split_frames(subject, cfg)
    per_image = score_frames(frames, {}, cfg.protocol, eval_dir, progress=progress)
    out = {"split": split, "num_frames": len(per_image), "metrics": summarize(per_image) if len(per_image) else {}}
    in_run_path = eval_dir / "metrics_per_image.csv"
    if in_run_path.exists() and len(per_image):
        in_run = pd.read_csv(in_run_path)
        diffs = {}
        for col in per_image.columns:
            if col in in_run.columns and col not in ("key", "sequence", "timestep", "camera"):
                a = pd.to_numeric(per_image[col], errors="coerce").to_numpy(dtype=float)
                b = pd.to_numeric(in_run[col], errors="coerce").to_numpy(dtype=float)
                both = ~(np.isnan(a) | np.isnan(b))
                diffs[col] = float(np.max(np.abs(a[both] - b[both]))) if both.any() else None
        out["max_abs_diff_vs_in_run"] = diffs
    return out


def largest_difference(diffs: dict) -> tuple[str | None, float | None]:
    """(metric, value) of the largest per-image difference (None when nothing was compared)."""
    known = {k: v for k, v in (diffs or {}).items() if v is not None}
    if not known:
        return None, None
    key = max(known, key=known.get)
    return key, float(known[key])


def format_eval(res: dict, tolerance: float = 1e-6) -> str:
    """One human line: images scored, the headline metrics, and whether they match the in-run ones."""
    m = res.get("metrics") or {}
    parts = [f"eval {res.get('split')}: {res.get('num_frames', 0)} images"]
    if m.get("psnr") is not None:
        parts.append(f"PSNR {m['psnr']:.2f} dB")
    if m.get("ssim") is not None:
        parts.append(f"SSIM {m['ssim']:.4f}")
    if "max_abs_diff_vs_in_run" not in res:
        return ", ".join(parts) + "; no in-run metrics to compare with"
    key, value = largest_difference(res["max_abs_diff_vs_in_run"])
    if key is None:
        return ", ".join(parts) + "; nothing comparable with the in-run metrics"
    verdict = "PASS" if value <= tolerance else "FAIL"
    return ", ".join(parts) + (f"; vs in-run metrics: {verdict} (largest difference {value:.1e} in {key}, "
                               f"tolerance {tolerance:.0e})")
