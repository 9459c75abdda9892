"""Figures from the results store (matplotlib, Agg backend, PNG + PDF).

- :func:`bar_charts`: one bar chart per metric: x = split, one bar per (method, configuration)
  (the rows of ``avatarbench table``, so different configurations are never averaged), y from
  0, a value label on every bar and an ``n/a`` marker where a bar is missing.
- :func:`training_curves`: training loss (and PSNR of the periodic evaluation, when the runs
  logged one) vs iteration, one labelled line per run folder.
- :func:`qualitative_grid`: GT | method A | method B ... for chosen frames, pixels shown with
  nearest-neighbour magnification, the native resolution in the title.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from avatarbench.results.table import FORMATS, GEOMETRY, METRICS, SPLIT_ORDER, results_frame

DPI = 150


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def _quiet():
    """matplotlib's own warnings (fonts, legends) never reach the user: figures are checked by eye."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"matplotlib(\..*)?")
        warnings.filterwarnings("ignore", message=".*[Gg]lyph.*")
        yield


def _save(fig, path: Path) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path.with_suffix(".png"), dpi=DPI, bbox_inches="tight")
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    return [path.with_suffix(".png"), path.with_suffix(".pdf")]


def bar_charts(root: Path, out_dir: Path, variant: str = "full") -> list[Path]:
    """One bar chart per metric some record has a value for: x = split, one bar per (method,
    configuration), mean over runs (subjects x seeds)."""
    plt = _plt()
    df = results_frame(root)
    if df.empty:
        return []
    df = df[df["variant"] == variant]
    if df.empty:
        return []
    df = df.assign(row=df["method"] + " (" + df["config"] + ")")
    splits = [s for s in SPLIT_ORDER if s in set(df["split"])]
    rows = sorted(set(df["row"]))
    files = []
    for key, label in METRICS + GEOMETRY:
        if key not in df.columns or df[key].isna().all():
            continue
        scored = df[df[key].notna()]
        t = scored.groupby(["split", "row"])[key].mean().unstack("row").reindex(index=splits, columns=rows)
        n = scored.groupby(["split", "row"])["run_dir"].nunique().unstack("row").reindex(index=splits, columns=rows)
        with _quiet():
            fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(rows) * len(splits) + 0.4 * len(splits), 3.4))
            width = 0.8 / len(rows)
            top = float(np.nanmax(t.to_numpy()))
            fmt = FORMATS.get(key, "{:.3g}")
            for i, r in enumerate(rows):
                x = np.arange(len(splits)) + (i - (len(rows) - 1) / 2) * width
                vals = t[r].to_numpy(dtype=float)
                bars = ax.bar(x, np.nan_to_num(vals), width * 0.92, label=r)
                for xi, v, b, k in zip(x, vals, bars, n[r].to_numpy()):
                    if np.isnan(v):  # a zero-height bar (keeps the legend patch) and a marker
                        ax.text(xi, top * 0.02, "n/a", ha="center", va="bottom", fontsize=6, color="0.45",
                                rotation=90)
                    else:
                        ax.text(xi, v + top * 0.01, fmt.format(v) + (f"\n(n={int(k)})" if k and k > 1 else ""),
                                ha="center", va="bottom", fontsize=6)
            ax.set_xticks(np.arange(len(splits)), splits)
            ax.set_ylim(0, top * 1.18)
            ax.set_ylabel(label)
            ax.set_title(f"{label}: mean over runs (subjects x seeds); n/a = not evaluated", fontsize=8)
            ax.spines[["top", "right"]].set_visible(False)
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
            files += _save(fig, out_dir / f"bars_{key}")
            plt.close(fig)
    return files


def _run_labels(run_dirs: list[Path]) -> dict[Path, str]:
    """A unique, readable label per run folder: its path below the folders' common parent."""
    dirs = [Path(d).resolve() for d in run_dirs]
    if not dirs:
        return {}
    common = Path(*Path(dirs[0]).parts[: min(len(d.parts) for d in dirs)])
    while not all(d.is_relative_to(common) for d in dirs):
        common = common.parent
    if len(dirs) == 1:
        common = dirs[0].parent.parent.parent
    return {Path(rd): str(d.relative_to(common)) or d.name for rd, d in zip(run_dirs, dirs)}


def training_curves(run_dirs: list[Path], out_path: Path) -> list[Path]:
    """Training loss vs iteration for each run folder, and the periodic-evaluation PSNR beside it
    when any run logged one (``engine.eval_every``). Each line is labelled with its run folder."""
    from avatarbench.engine.logging import read_log

    plt = _plt()
    logs = {}
    for rd in run_dirs:
        rows = read_log(rd)
        if rows:
            logs[Path(rd)] = pd.DataFrame(rows)
    if not logs:
        return []
    labels = _run_labels(list(logs))
    has_psnr = any("eval_psnr" in d and d["eval_psnr"].notna().any() for d in logs.values())
    with _quiet():
        fig, axes = plt.subplots(1, 2 if has_psnr else 1, figsize=(10 if has_psnr else 5.5, 3.4), squeeze=False)
        a_loss = axes[0][0]
        a_psnr = axes[0][1] if has_psnr else None
        for i, (rd, df) in enumerate(logs.items()):
            # colour and dash both vary, so runs whose curves coincide stay visible
            style = {"color": f"C{i % 10}", "linestyle": ("-", "--", ":", "-.")[i % 4], "label": labels[rd]}
            if "loss" in df and df["loss"].notna().any():
                a_loss.plot(df["step"], df["loss"], lw=1.0, **style)
            if a_psnr is not None and "eval_psnr" in df and df["eval_psnr"].notna().any():
                d = df[df["eval_psnr"].notna()]
                a_psnr.plot(d["step"], d["eval_psnr"], marker="o", ms=3, **style)
        a_loss.set_xlabel("iteration"), a_loss.set_ylabel("training loss"), a_loss.set_yscale("log")
        a_loss.set_title("training loss", fontsize=9)
        if a_psnr is not None:
            a_psnr.set_xlabel("iteration"), a_psnr.set_ylabel("PSNR (dB)")
            a_psnr.set_title("PSNR of the periodic evaluation (novel-view frames)", fontsize=9)
        last = a_psnr if a_psnr is not None else a_loss
        handles, names = a_loss.get_legend_handles_labels()
        if handles:
            last.legend(handles, names, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        for a in axes[0]:
            a.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        files = _save(fig, out_path)
        plt.close(fig)
    return files


def qualitative_grid(eval_dirs: dict[str, Path], frame_keys: list[str], gt_images: dict[str, np.ndarray],
                     out_path: Path, title: str | None = None) -> list[Path]:
    """Rows = frames, columns = GT then each method's render, at native pixels magnified by an
    integer factor with nearest-neighbour sampling (no blur), tightly packed.

    Args:
        eval_dirs: column label -> ``<run>/eval/<split>`` folder.
        frame_keys: frame keys (``Frame.key``) to show.
        gt_images: frame key -> (H, W, 3) ground truth in [0, 1].
        title: figure title (the resolution and magnification are appended).
    """
    import imageio.v3 as iio

    plt = _plt()
    cols = ["GT"] + list(eval_dirs)
    images: dict[tuple[int, int], np.ndarray | None] = {}
    for i, key in enumerate(frame_keys):
        for j, col in enumerate(cols):
            if col == "GT":
                img = gt_images.get(key)
            else:
                hits = list(Path(eval_dirs[col]).glob(f"renders/*/{key.replace('/', '__')}.png"))
                img = iio.imread(hits[0]) if hits else None
            images[i, j] = img
    shapes = [im.shape[:2] for im in images.values() if im is not None]
    h, w = shapes[0] if shapes else (100, 100)
    zoom = max(1, int(round(220 / max(w, 1))))  # about 1.5 in per column at 150 dpi
    cell_w, cell_h = w * zoom / DPI, h * zoom / DPI
    chars = max(8, int(cell_w * 72 / (6 * 0.62)))  # characters per title line at 6 pt
    titles = [_wrap_title(c, chars) for c in cols]
    n_lines = max(t.count("\n") + 1 for t in titles)
    title_h, label_w = 0.1 + 0.1 * n_lines, 0.25  # inches for the column titles and the row labels
    fig_w, fig_h = label_w + cell_w * len(cols), title_h + cell_h * len(frame_keys) + 0.35
    with _quiet():
        fig, axes = plt.subplots(len(frame_keys), len(cols), figsize=(fig_w, fig_h), squeeze=False)
        fig.subplots_adjust(left=label_w / fig_w, right=1.0, bottom=0.0, top=1.0 - (title_h + 0.35) / fig_h,
                            wspace=0.02 * len(cols) / max(len(cols), 1), hspace=0.02)
        for (i, j), img in images.items():
            ax = axes[i][j]
            ax.set_xticks([]), ax.set_yticks([])
            for sp in ax.spines.values():  # a hairline frame shows where each image ends
                sp.set_color("0.8"), sp.set_linewidth(0.5)
            if img is not None:
                ax.imshow(img, interpolation="nearest")
            else:
                ax.set_facecolor("0.9")
                ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=6, color="0.4",
                        transform=ax.transAxes)
            if i == 0:
                ax.set_title(titles[j], fontsize=6, pad=2)
            if j == 0:
                ax.set_ylabel(frame_keys[i].split("/")[-1] if "/" in frame_keys[i] else frame_keys[i], fontsize=5)
        fig.suptitle(f"{title + ': ' if title else ''}{w}x{h} px each, shown at {zoom}x (nearest neighbour)",
                     fontsize=7, y=1.0 - 0.08 / fig_h, va="top")
        files = _save(fig, out_path)
        plt.close(fig)
    return files


def _wrap_title(label: str, chars: int) -> str:
    """``method (config, seed k)`` -> the method on the first line, the rest packed into lines of
    at most ``chars`` characters, breaking after ", " and "+set(" (and inside a too-long
    ``key=value`` after its dots), so that titles never run into the next column."""
    import re

    head, sep, rest = label.partition(" (")
    lines = [head]
    if not sep:
        return head
    pieces: list[tuple[str, str]] = []  # (joiner before the piece, piece)
    for i, token in enumerate(re.split(r"(?<=,) |(?<=\+set\()", "(" + rest)):
        joiner = "" if i == 0 or (pieces and pieces[-1][1].endswith("(")) else " "
        parts = re.split(r"(?<=\.)(?=[A-Za-z_])", token) if len(token) > chars else [token]
        pieces += [(joiner if k == 0 else "", p) for k, p in enumerate(parts)]
    current = None
    for joiner, piece in pieces:
        if current is not None and len(current) + len(joiner) + len(piece) <= chars:
            current += joiner + piece
        else:
            if current is not None:
                lines.append(current)
            current = piece
    lines.append(current)
    return "\n".join(lines)


def grid_from_store(root: Path, split: str, n_frames: int, out_path: Path) -> list[Path]:
    """A qualitative grid from the store: one run per (method, configuration) of the full
    variants evaluated on ``split`` for the first subject found (the lowest seed), ``n_frames``
    frames spread over the frames all of them rendered. Column titles name the run."""
    from omegaconf import OmegaConf

    from avatarbench.engine.run import load_run_subject

    df = results_frame(root)
    if df.empty:
        return []
    d = df[(df["split"] == split) & (df["variant"] == "full")]
    if d.empty:
        return []
    subject = sorted(d["subject"])[0]
    d = d[d["subject"] == subject].sort_values(["method", "config", "seed"], na_position="last")
    d = d.drop_duplicates(["method", "config"])
    eval_dirs = {}
    for r in d.itertuples():
        seed = "" if r.seed is None or pd.isna(r.seed) else f", seed {int(r.seed)}"
        eval_dirs[f"{r.method} ({r.config}{seed})"] = Path(r.path).parent
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
    return qualitative_grid(eval_dirs, keys, gt, out_path, title=f"{split}, {subject}")
