"""Regression references: ``results/regression/<method>.json``.

A reference holds the metrics of a method's smoke run on the synthetic subjects (CPU,
deterministic seeds), the run-to-run noise measured over several seeds, and the tolerance a
later change may lose before the regression test fails: ``max(0.2 dB, 3 x noise std)`` for PSNR
(SSIM: ``max(0.005, 3 x std)``; LPIPS-Alex / LPIPS-VGG, where lower is better and a *rise* fails:
``max(0.005, 3 x std)``).

Written by ``benchmarks/make_regression.py``; checked by ``tests/regression``.
"""

from __future__ import annotations

import json
from pathlib import Path

from avatarbench.paths import repo_root

MIN_TOLERANCE = {"psnr": 0.2, "ssim": 0.005, "lpips_alex": 0.005, "lpips_vgg": 0.005}
REFERENCE_METRICS = ("psnr", "ssim", "lpips_alex", "lpips_vgg")
LOWER_IS_BETTER = ("lpips_alex", "lpips_vgg")


def regression_dir() -> Path:
    root = repo_root()
    return (root / "results" / "regression") if root else Path("results") / "regression"


def load_reference(method: str) -> dict | None:
    p = regression_dir() / f"{method}.json"
    return json.loads(p.read_text()) if p.exists() else None


def tolerance(metric: str, noise_std: float) -> float:
    return max(MIN_TOLERANCE.get(metric, 0.0), 3.0 * float(noise_std))


def make_reference(method: str, runs: list[dict], *, preset: str, subject: str, sets: list[str]) -> dict:
    """Build a reference from several seeded runs: ``runs`` = [{"seed", "split", "metrics"}]."""
    import numpy as np

    out = {"method": method, "preset": preset, "subject": subject, "sets": sets, "seeds": sorted({r["seed"] for r in runs}),
           "splits": {}}
    for split in sorted({r["split"] for r in runs}):
        rs = [r for r in runs if r["split"] == split]
        entry = {}
        for metric in REFERENCE_METRICS:
            vals = [r["metrics"][metric] for r in rs if r["metrics"].get(metric) is not None]
            if not vals:
                continue
            std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            entry[metric] = {"reference": float(vals[0]), "mean": float(np.mean(vals)), "noise_std": std,
                             "tolerance": tolerance(metric, std), "values": [float(v) for v in vals]}
        out["splits"][split] = entry
    return out


def compare(reference: dict, split: str, metrics: dict) -> list[str]:
    """Failures (empty when within tolerance). Only drops fail; improvements are reported by the caller."""
    failures = []
    for metric, ref in reference["splits"].get(split, {}).items():
        got = metrics.get(metric)
        if got is None:
            failures.append(f"{split} {metric}: missing")
            continue
        if metric in LOWER_IS_BETTER:
            ceiling = ref["mean"] + ref["tolerance"]
            if got > ceiling:
                failures.append(f"{split} {metric}: {got:.4f} > {ceiling:.4f} (reference mean {ref['mean']:.4f}, "
                                f"tolerance {ref['tolerance']:.4f})")
            continue
        floor = ref["mean"] - ref["tolerance"]
        if got < floor:
            failures.append(f"{split} {metric}: {got:.4f} < {floor:.4f} (reference mean {ref['mean']:.4f}, "
                            f"tolerance {ref['tolerance']:.4f})")
    return failures


def run_reference_splits(method: str, store: str, seed: int = 0) -> dict:
    """Train ``method`` once as its reference says (preset, subject, seed) and score every split of
    the reference. Returns ``{split: metrics}``. Module level, so a process pool can run methods side by
    side (the regression test trains them two at a time on a 2-core machine: each smoke run is
    single-threaded)."""
    from avatarbench.engine.config import RunRequest
    from avatarbench.engine.run import execute

    ref = load_reference(method)
    out = {}
    for split in ref["splits"]:
        res = execute(RunRequest(method, split, ref["preset"], sets=(f"engine.seed={seed}", f"output.root={store}"),
                                 subject=ref["subject"]), progress=False, echo=lambda *a, **k: None)
        out[split] = res.results["metrics"]
    return out
