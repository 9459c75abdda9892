"""Figures from the results store (matplotlib, Agg backend, PNG + PDF).

- :func:`bar_charts`: one bar chart per metric, methods x splits.
- :func:`training_curves`: PSNR (periodic evaluation) and loss vs iteration from run logs.
- :func:`qualitative_grid`: GT | method A | method B ... for chosen frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from avatarbench.results.table import METRICS, SPLIT_ORDER, results_frame


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path.with_suffix(".png"), dpi=150, bbox_inches="tight")
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    return [path.with_suffix(".png"), path.with_suffix(".pdf")]


def bar_charts(root: Path, out_dir: Path, variant: str = "full") -> list[Path]:
    """One bar chart per available metric: x = split, one bar per method (mean over subjects)."""
    plt = _plt()
    df = results_frame(root)
    if df.empty:
        return []
    df = df[df["variant"] == variant]
    files = []
    for key, label in METRICS:
        if key not in df.columns or df[key].isna().all():
            continue
        t = df.groupby(["split", "method"])[key].mean().unstack("method")
        t = t.loc[[s for s in SPLIT_ORDER if s in t.index]]
        fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(t), 3.2))
        t.plot.bar(ax=ax, rot=0)
        ax.set_ylabel(label)
        ax.set_xlabel("")
        ax.set_title(f"{label} (mean over subjects)")
        if key == "psnr":
            lo = np.nanmin(t.to_numpy())
            ax.set_ylim(max(0.0, lo - 3.0), None)
        ax.legend(fontsize=7)
        files += _save(fig, out_dir / f"bars_{key}")
        plt.close(fig)
    return files


def training_curves(run_dirs: list[Path], out_path: Path) -> list[Path]:
    """PSNR (``eval_psnr`` rows) and loss vs iteration for each run folder."""
    from avatarbench.engine.logging import read_log

    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    any_rows = False
    for rd in run_dirs:
        rows = read_log(rd)
        if not rows:
            continue
        any_rows = True
        df = pd.DataFrame(rows)
        meta = json.loads((Path(rd) / "run.json").read_text()) if (Path(rd) / "run.json").exists() else {}
        label = f"{meta.get('method', Path(rd).name)}{'+' + meta['ablation'] if meta.get('ablation') else ''}"
        if "loss" in df:
            a2.plot(df["step"], df["loss"], label=label, lw=0.8)
        if "eval_psnr" in df and df["eval_psnr"].notna().any():
            d = df[df["eval_psnr"].notna()]
            a1.plot(d["step"], d["eval_psnr"], marker="o", ms=3, label=label)
    if not any_rows:
        plt.close(fig)
        return []
    a1.set_xlabel("iteration"), a1.set_ylabel("PSNR (dB), periodic eval"), a1.legend(fontsize=7)
    a2.set_xlabel("iteration"), a2.set_ylabel("training loss"), a2.set_yscale("log"), a2.legend(fontsize=7)
    files = _save(fig, out_path)
    plt.close(fig)
    return files


def qualitative_grid(eval_dirs: dict[str, Path], frame_keys: list[str], gt_images: dict[str, np.ndarray],
                     out_path: Path) -> list[Path]:
    """Rows = frames, columns = GT then each method's render.

    Args:
        eval_dirs: column label -> ``<run>/eval/<split>`` folder.
        frame_keys: frame keys (``Frame.key``) to show.
        gt_images: frame key -> (H, W, 3) ground truth in [0, 1].
    """
    import imageio.v3 as iio

    plt = _plt()
    cols = ["GT"] + list(eval_dirs)
    fig, axes = plt.subplots(len(frame_keys), len(cols), figsize=(1.8 * len(cols), 2.4 * len(frame_keys)),
                             squeeze=False)
    for i, key in enumerate(frame_keys):
        for j, col in enumerate(cols):
            ax = axes[i][j]
            ax.axis("off")
            if col == "GT":
                img = gt_images.get(key)
            else:
                hits = list(Path(eval_dirs[col]).glob(f"renders/*/{key.replace('/', '__')}.png"))
                img = iio.imread(hits[0]) if hits else None
            if img is not None:
                ax.imshow(img)
            if i == 0:
                ax.set_title(col, fontsize=8)
        axes[i][0].text(-0.05, 0.5, key, transform=axes[i][0].transAxes, rotation=90, va="center", ha="right",
                        fontsize=6)
    files = _save(fig, out_path)
    plt.close(fig)
    return files


def grid_from_store(root: Path, split: str, n_frames: int, out_path: Path) -> list[Path]:
    """A qualitative grid from the store: the full variant of every method evaluated on ``split``
    for the first subject found, ``n_frames`` frames spread over the frames all of them rendered."""
    from omegaconf import OmegaConf

    from avatarbench.engine.run import load_run_subject

    df = results_frame(root)
    if df.empty:
        return []
    d = df[(df["split"] == split) & (df["variant"] == "full")]
    if d.empty:
        return []
    subject = sorted(d["subject"])[0]
    d = d[d["subject"] == subject]
    eval_dirs = {f"{r.method} ({r.preset})": Path(r.path).parent for r in d.itertuples()}
    keysets = [set(pd.read_csv(e / "metrics_per_image.csv")["key"]) for e in eval_dirs.values()
               if (e / "metrics_per_image.csv").exists()]
    if not keysets:
        return []
    common = sorted(set.intersection(*keysets))
    keys = [common[i] for i in np.linspace(0, len(common) - 1, min(n_frames, len(common))).astype(int)]
    cfg = OmegaConf.load(next(iter(eval_dirs.values())).parent.parent / "config.yaml")
    subj = load_run_subject(cfg)
    frames = {f.key: f for f in subj.frames(split)}
    gt = {k: frames[k].image().numpy() for k in keys if k in frames}
    return qualitative_grid(eval_dirs, keys, gt, out_path)
