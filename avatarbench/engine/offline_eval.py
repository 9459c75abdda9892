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


def offline_eval(run_dir: Path, split: str) -> dict:
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
    per_image = score_frames(frames, {}, cfg.protocol, eval_dir)
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
