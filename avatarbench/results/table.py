"""Paper-style tables from the results store.

``avatarbench table`` -> method x split x metric (mean over subjects), our rows beside the
published ones (``results/paper/*.csv``) with every protocol difference marked.
``avatarbench table --ablations M`` -> the variants of method M against the full method.

Outputs: markdown (printed), CSV and LaTeX (booktabs) saved next to the store.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from avatarbench.results.store import find_results

METRICS = [("psnr", "PSNR↑"), ("ssim", "SSIM↑"), ("lpips_vgg", "LPIPS-VGG↓"), ("lpips_alex", "LPIPS-Alex↓")]
GEOMETRY = [("chamfer_mm", "Chamfer mm↓")]
#: cross-reenactment / speech-driven runs (no ground truth): avatarbench.drivers.run_metrics
NO_GT = [("lip_sync_corr", "LipSync r↑"), ("flicker", "Flicker↓")]


def results_frame(root: Path) -> pd.DataFrame:
    """One row per evaluation record: identity columns + mean metrics + protocol facts."""
    rows = []
    for r in find_results(root):
        row = {"method": r["method"], "variant": r.get("variant", "full"), "preset": r.get("preset"),
               "subject": r["subject"], "split": r["split"], "synthetic": r.get("synthetic", False),
               "dataset": r.get("dataset"), "resolution": "x".join(map(str, r.get("resolution") or [])),
               "num_gaussians": r.get("num_gaussians"), "train_seconds": (r.get("train") or {}).get("seconds"),
               "fps": (r.get("render") or {}).get("fps"), "mask_mode": (r.get("protocol") or {}).get("mask_mode"),
               "path": r["_path"]}
        row.update({k: v for k, v in (r.get("metrics") or {}).items()})
        row.update({k: v for k, v in (r.get("geometry") or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _metric_cols(df: pd.DataFrame) -> list[tuple[str, str]]:
    return [(k, label) for k, label in METRICS + GEOMETRY + NO_GT if k in df.columns and df[k].notna().any()]


SPLIT_ORDER = ["novel_view", "self_reenact", "cross_reenact"]


def _pivot(d: pd.DataFrame, index: list[str], cols: list[tuple[str, str]]) -> pd.DataFrame:
    """Mean of each metric per index group, one column per (split, metric) in a fixed order."""
    g = d.groupby(index + ["split"])[[k for k, _ in cols]].mean().unstack("split")
    splits = [s for s in SPLIT_ORDER if s in set(d["split"])]
    ordered = [(k, s) for s in splits for k, _ in cols if (k, s) in g.columns]
    g = g[ordered].dropna(axis=1, how="all")
    labels = dict(cols)
    g.columns = [f"{s} {labels[k]}" for k, s in g.columns]
    return g


def main_table(df: pd.DataFrame) -> pd.DataFrame:
    """(method, preset) x (split, metric), mean over subjects, full variants only."""
    full = df[df["variant"] == "full"]
    cols = _metric_cols(full)
    if full.empty or not cols:
        return pd.DataFrame()
    t = _pivot(full, ["method", "preset"], cols)
    t["subjects"] = full.groupby(["method", "preset"])["subject"].nunique()
    t.index = [f"{m} ({p})" for m, p in t.index]
    t.index.name = "method (preset)"
    return t


def ablation_table(df: pd.DataFrame, method: str) -> pd.DataFrame:
    """variant x (split, metric) for one method, with the PSNR difference to the full method."""
    d = df[df["method"] == method]
    if d.empty:
        return pd.DataFrame()
    cols = _metric_cols(d)
    g = _pivot(d, ["variant"], cols)
    if "full" in g.index:
        for c in [c for c in g.columns if c.endswith("PSNR↑")]:
            g[c.replace("PSNR↑", "ΔPSNR")] = g[c] - g.loc["full", c]
        order = ["full"] + sorted(v for v in g.index if v != "full")
        g = g.loc[order]
    return g


def paper_rows(df_ours: pd.DataFrame) -> pd.DataFrame:
    """Published numbers for the methods present, with protocol differences to our runs."""
    try:
        from avatarbench.metrics.paper_numbers import load_paper_results
    except ImportError:
        return pd.DataFrame()
    paper = load_paper_results()
    if paper.empty or df_ours.empty:
        return paper.iloc[0:0]
    return paper[paper["method_id"].isin(set(df_ours["method"]))] if "method_id" in paper.columns else paper


def protocol_notes(df: pd.DataFrame, paper: pd.DataFrame) -> list[str]:
    """Human-readable differences between our protocol and the papers' (data, resolution, LPIPS, mask)."""
    notes = []
    if df.empty:
        return notes
    if df["synthetic"].any():
        notes.append("ours: synthetic subjects (procedural FLAME/SMPL-X stand-ins); papers: real captures")
    res = sorted(set(df["resolution"].dropna()))
    if res:
        notes.append(f"ours: resolution {', '.join(res)}")
    if "lpips_vgg" not in df.columns or df["lpips_vgg"].isna().all():
        notes.append("ours: LPIPS unavailable (backbone weights absent), shown as n/a")
    masks = sorted(set(df["mask_mode"].dropna()))
    if masks:
        notes.append(f"ours: mask mode {', '.join(masks)}")
    if not paper.empty:
        for col in ("resolution", "lpips_net", "masking"):
            if col in paper.columns:
                vals = sorted({str(v) for v in paper[col].dropna()})
                if vals:
                    notes.append(f"paper {col}: {', '.join(vals)}")
    return notes


def _to_markdown(t: pd.DataFrame) -> str:
    return t.to_markdown(floatfmt=".4g") if not t.empty else "(no results)"


def build_table(root: Path, *, ablations_of: str | None = None, out_dir: Path | None = None,
                with_paper: bool = True) -> tuple[str, list[Path]]:
    """Build the requested table. Returns (markdown text, saved files)."""
    df = results_frame(root)
    out_dir = out_dir or Path(root) / "tables"
    files: list[Path] = []
    if df.empty:
        return f"no results under {root} (run `avatarbench run ...` first)", files
    if ablations_of:
        from avatarbench.results.inert import mark_inert

        t = mark_inert(ablation_table(df, ablations_of), root, ablations_of)
        name = f"ablations_{ablations_of}"
        title = f"## Ablations of {ablations_of}"
    else:
        t = main_table(df)
        name = "main"
        title = "## Results (mean over subjects)"
    text = [title, "", _to_markdown(t)]
    if with_paper and not ablations_of:
        p = paper_rows(df)
        if not p.empty:
            cols = [c for c in ("method_id", "method", "table", "task", "psnr", "ssim", "lpips", "lpips_net", "resolution",
                                "verification") if c in p.columns]
            text += ["", "## Published numbers (results/paper/; full provenance in the CSVs)", "",
                     p[cols].to_markdown(index=False, floatfmt=".4g")]
        notes = protocol_notes(df, p)
        if notes:
            text += ["", "Protocol differences:"] + [f"- {n}" for n in notes]
    if not t.empty:
        out_dir.mkdir(parents=True, exist_ok=True)
        csv = out_dir / f"{name}.csv"
        tex = out_dir / f"{name}.tex"
        md = out_dir / f"{name}.md"
        t.to_csv(csv)
        tex.write_text(t.to_latex(float_format="%.4g", escape=True, caption=title.lstrip("# "), position="t"))
        md.write_text("\n".join(text) + "\n")
        files += [csv, tex, md]
    return "\n".join(text), files
