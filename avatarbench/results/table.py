"""Paper-style tables from the results store.

``avatarbench table`` -> one row per (method, training configuration), one column per
(split, metric), our rows beside the published ones (``results/paper/*.csv``) with every
protocol difference marked. ``avatarbench table --ablations M`` -> the variants of method M
against the full method.

Rows never mix configurations. Each record is grouped by its *training identity*: the resolved
training config that the run folder records in ``run.json`` (the one its ``config_sha`` hashes),
less the keys that only name the subject and seed (``data.subject``, ``data.path``,
``engine.seed``) and the keys that cannot change the model (``engine.progress``,
``engine.wandb``). Runs of different subjects and seeds of one configuration are averaged; each
cell says how many runs and seeds it averages. A configuration that differs from the preset's
current config (``--set`` overrides, or a preset changed since) is labelled
``<preset>+set(key=value, ...)``; the evaluation protocol's overrides (e.g.
``protocol.max_frames``) are labelled the same way.

Outputs: markdown (printed), CSV (numbers) and LaTeX (booktabs) saved next to the store.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from pathlib import Path

import pandas as pd

from avatarbench.results.store import find_results

METRICS = [("psnr", "PSNR↑"), ("ssim", "SSIM↑"), ("lpips_vgg", "LPIPS-VGG↓"), ("lpips_alex", "LPIPS-Alex↓")]
GEOMETRY = [("chamfer_mm", "Chamfer mm↓")]
FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "lpips_vgg": "{:.4f}", "lpips_alex": "{:.4f}", "chamfer_mm": "{:.3f}",
           "lip_sync_corr": "{:.3f}", "flicker": "{:.4f}"}
MISSING = "–"
SPLIT_ORDER = ["novel_view", "self_reenact", "cross_reenact"]

# identity keys that say which subject / seed a run is (aggregated over) or cannot change the model
AGGREGATED_KEYS = ("data.subject", "data.path", "engine.seed")
NON_MODEL_KEYS = ("engine.progress", "engine.wandb")

VERIFICATION_LINE = ("Published-number markers: VERIFIED = read in the paper or official code; "
                     "SECONDARY = quoted by a third party (another paper, an issue), not checked against the "
                     "source; UNVERIFIED = not confirmed.")


def _flatten(d, prefix="") -> dict:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _model_identity(identity: dict) -> dict:
    """The flattened training identity less subject/seed and non-model keys."""
    flat = _flatten(identity)
    drop = AGGREGATED_KEYS + NON_MODEL_KEYS
    return {k: v for k, v in flat.items() if not any(k == d or k.startswith(d + ".") for d in drop)}


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


@lru_cache(maxsize=256)
def _preset_identity(method: str, preset: str, ablation: str | None, split: str) -> tuple[dict, dict] | None:
    """(flattened model identity, flattened protocol) of the preset's current config, or None."""
    try:
        from avatarbench.engine.config import RunRequest, resolve_config, training_identity
        from omegaconf import OmegaConf

        cfg = resolve_config(RunRequest(method=method, split=split, preset=preset, ablation=ablation))
    except Exception:  # an unregistered method / preset / ablation: no reference to compare with
        return None
    return (_model_identity(training_identity(cfg)),
            _flatten(OmegaConf.to_container(cfg.protocol, resolve=True), "protocol."))


def _short(v) -> str:
    s = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return s if len(s) <= 24 else s[:21] + "..."


def _overrides(ours: dict, ref: dict) -> list[str]:
    """``key=value`` for each key present in both whose value differs (keys added to or removed
    from the config schema since a run are not overrides)."""
    return [f"{k}={_short(ours[k])}" for k in sorted(set(ours) & set(ref)) if ours[k] != ref[k]]


def _read_run_json(run_dir: Path) -> dict | None:
    p = run_dir / "run.json"
    try:
        return json.loads(p.read_text()) if p.exists() else None
    except json.JSONDecodeError:
        return None


#: cross-reenactment / speech-driven runs (no ground truth): avatarbench.drivers.run_metrics
NO_GT = [("lip_sync_corr", "LipSync r↑"), ("flicker", "Flicker↓")]


def synthetic_world(subject: str) -> str | None:
    """The world tag of a synthetic subject name (``synth_head_a_full`` -> ``full``; bare names are the
    clean world), None for any other subject. Rows of different worlds are kept apart."""
    from avatarbench.data.registry import SYNTHETIC_BODIES, SYNTHETIC_HEADS
    from avatarbench.data.synth.world import split_world
    from avatarbench.errors import ConfigError

    for bases, kind in ((SYNTHETIC_HEADS, "head"), (SYNTHETIC_BODIES, "body")):
        try:
            got = split_world(str(subject), bases, kind)
        except ConfigError:
            return None
        if got is not None:
            return got[1].tag
    return None


def results_frame(root: Path) -> pd.DataFrame:
    """One row per evaluation record: identity columns + mean metrics + protocol facts.

    Besides the record's own fields, each row has ``group`` (hash of the model identity, see the
    module docstring), ``config`` (the row label: preset or ``preset+set(...)``), ``seed`` and
    ``run_dir``.
    """
    rows = []
    for r in find_results(root):
        run_dir = Path(r["_path"]).parent.parent.parent
        meta = _read_run_json(run_dir) or {}
        identity = meta.get("identity")
        preset = r.get("preset")
        variant = r.get("variant", "full")
        ablation = None if variant == "full" else variant
        protocol = _flatten(r.get("protocol") or {}, "protocol.")
        if identity:
            model = _model_identity(identity)
            seed = (identity.get("engine") or {}).get("seed", 0)
            ref = _preset_identity(r["method"], str(preset), ablation, r["split"])
            if ref is None:  # nothing to compare with: the whole protocol identifies the row
                proto = {k: v for k, v in protocol.items() if k not in ("protocol.split", "protocol.name")}
                group = _sha([model, proto])
                config = f"{preset}#{group[:6]}"
            else:
                # each split has its own protocol by design: a row is the model + protocol overrides
                proto_diffs = _overrides(protocol, ref[1])
                diffs = _overrides(model, ref[0]) + proto_diffs
                config = f"{preset}+set({', '.join(diffs)})" if diffs else str(preset)
                group = _sha([model, proto_diffs])
        else:  # a record without its run.json: its own config hash, never merged with others
            seed = None
            group = str(r.get("config_sha") or r["_path"])
            config = f"{preset}#{group[:6]}"
        world = synthetic_world(r["subject"])
        if world not in (None, "clean"):  # a world variant is a different experiment: never averaged with others
            config, group = f"{config} · world {world}", _sha([group, world])
        row = {"method": r["method"], "variant": variant, "preset": preset, "config": config, "group": group,
               "seed": seed, "subject": r["subject"], "split": r["split"], "synthetic": r.get("synthetic", False),
               "dataset": r.get("dataset"), "resolution": "x".join(map(str, r.get("resolution") or [])),
               "num_gaussians": r.get("num_gaussians"), "train_seconds": (r.get("train") or {}).get("seconds"),
               "fps": (r.get("render") or {}).get("fps"), "mask_mode": (r.get("protocol") or {}).get("mask_mode"),
               "config_sha": r.get("config_sha"), "run_dir": str(run_dir), "path": r["_path"]}
        for k, v in (r.get("metrics") or {}).items():
            row[k] = float("nan") if v is None else v
        row.update({k: (float("nan") if v is None else v) for k, v in (r.get("geometry") or {}).items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        # two configurations whose labels coincide (e.g. a preset edited between runs) stay apart
        dup = df.groupby(["method", "variant", "config"])["group"].transform("nunique") > 1
        df.loc[dup, "config"] = df.loc[dup, "config"] + "#" + df.loc[dup, "group"].str[:6]
    return df


def _metric_cols(df: pd.DataFrame) -> list[tuple[str, str]]:
    """Every known metric some record carries (even when all null: shown as –), in a fixed order,
    then geometry metrics that have a value."""
    cols = [(k, label) for k, label in METRICS if k in df.columns]
    cols += [(k, label) for k, label in GEOMETRY if k in df.columns and df[k].notna().any()]
    cols += [(k, label) for k, label in NO_GT if k in df.columns and df[k].notna().any()]
    return cols


def _count_text(n_runs: int, n_seeds: int) -> str:
    if not n_runs:
        return MISSING
    return f"{n_runs} run{'s' if n_runs != 1 else ''} / {n_seeds} seed{'s' if n_seeds != 1 else ''}"


def _pivot(d: pd.DataFrame, index: list[str], cols: list[tuple[str, str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numbers, display strings) with one row per distinct ``index`` tuple (sorted) and, per split,
    one column per metric (mean over the runs of that row and split) and one ``<split> n`` column
    (how many runs and seeds each cell averages). A missing cell is NaN / ``–``; a mean over fewer
    runs than the row has for that split (a metric null in some records) says ``(k of n)``."""
    splits = [s for s in SPLIT_ORDER if s in set(d["split"])] + sorted(set(d["split"]) - set(SPLIT_ORDER))
    keys = [k for k, _ in cols]
    by = d.groupby(index + ["split"], dropna=False)
    mean = by[keys].mean().to_dict() if keys else {}
    nonnull = by[keys].count().to_dict() if keys else {}
    runs = by["run_dir"].nunique().to_dict()
    seeds = by["seed"].nunique(dropna=False).to_dict()
    groups = sorted(set(d[index].itertuples(index=False, name=None)), key=lambda g: tuple(map(str, g)))
    num, disp = {}, {}
    for s in splits:
        for k, label in cols:
            name = f"{s} {label}"
            num[name], disp[name] = [], []
            for g in groups:
                v = mean[k].get((*g, s), float("nan"))
                v = float("nan") if v is None else float(v)
                num[name].append(v)
                if math.isnan(v):
                    disp[name].append(MISSING)
                    continue
                text = FORMATS.get(k, "{:.4g}").format(v)
                n, total = int(nonnull[k].get((*g, s), 0)), int(runs.get((*g, s), 0))
                disp[name].append(text if n >= total else f"{text} ({n} of {total})")
        name = f"{s} n"
        num[name] = [int(runs.get((*g, s), 0)) for g in groups]
        disp[name] = [_count_text(int(runs.get((*g, s), 0)), int(seeds.get((*g, s), 0))) for g in groups]
    idx = pd.MultiIndex.from_tuples(groups, names=index)
    return pd.DataFrame(num, index=idx), pd.DataFrame(disp, index=idx)


def _label(t: pd.DataFrame, name: str, fmt) -> pd.DataFrame:
    t = t.copy()
    t.index = pd.Index([fmt(*g) for g in t.index], name=name)
    return t


def dataset_table(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(method, config, dataset) x (split, metric), full variants only: keeps e.g. the NeRSemble
    benchmark's local protocol (``nersemble_mono_local``) apart from the synthetic subjects.
    Returns (numbers, display strings)."""
    full = df[(df["variant"] == "full") & df["dataset"].notna()] if not df.empty else df
    cols = _metric_cols(full)
    if full.empty or not cols:
        return pd.DataFrame(), pd.DataFrame()
    num, disp = _pivot(full, ["method", "config", "dataset"], cols)
    subjects = full.groupby(["method", "config", "dataset"])["subject"].nunique()
    num["subjects"] = [int(subjects[g]) for g in num.index]
    disp["subjects"] = [str(v) for v in num["subjects"]]
    fmt = lambda m, c, d: f"{m} ({c}) · {d}"  # noqa: E731
    return _label(num, "method (config) · dataset", fmt), _label(disp, "method (config) · dataset", fmt)


def main_table(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(method, config) x (split, metric), mean over runs (subjects x seeds), full variants only.

    Returns (numbers, display strings); both empty when there is nothing to show."""
    full = df[df["variant"] == "full"] if not df.empty else df
    cols = _metric_cols(full)
    if full.empty or not cols:
        return pd.DataFrame(), pd.DataFrame()
    num, disp = _pivot(full, ["method", "config"], cols)
    subjects = full.groupby(["method", "config"])["subject"].nunique()
    num["subjects"] = [int(subjects[g]) for g in num.index]
    disp["subjects"] = [str(v) for v in num["subjects"]]
    fmt = lambda m, c: f"{m} ({c})"  # noqa: E731
    return _label(num, "method (config)", fmt), _label(disp, "method (config)", fmt)


def ablation_table(df: pd.DataFrame, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(variant, config) x (split, metric) for one method, with the PSNR difference to the full
    method of the same config label. Returns (numbers, display strings)."""
    d = df[df["method"] == method] if not df.empty else df
    if d.empty:
        return pd.DataFrame(), pd.DataFrame()
    cols = _metric_cols(d)
    num, disp = _pivot(d, ["variant", "config"], cols)
    for c in [c for c in list(num.columns) if c.endswith("PSNR↑")]:
        delta = []
        for variant, config in num.index:
            ref = num[c].get(("full", config), float("nan"))
            delta.append(num.loc[(variant, config), c] - ref)
        dc = c.replace("PSNR↑", "ΔPSNR")
        num[dc] = delta
        disp[dc] = [MISSING if math.isnan(v) else f"{v:+.2f}" for v in delta]
    order = sorted(num.index, key=lambda g: (g[1], g[0] != "full", g[0]))
    num, disp = num.loc[order], disp.loc[order]
    fmt = lambda v, c: f"{v} ({c})"  # noqa: E731
    return _label(num, "variant (config)", fmt), _label(disp, "variant (config)", fmt)


def paper_rows(df_ours: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Published numbers for the methods present, and how many rows with task ``unknown`` (not
    comparable to any split) were left out."""
    try:
        from avatarbench.metrics.paper_numbers import load_paper_results

        paper = load_paper_results()
    except Exception:  # no checkout / unreadable CSVs: the table of our runs still prints
        return pd.DataFrame(), 0
    if paper.empty or df_ours.empty:
        return paper.iloc[0:0], 0
    if "method_id" in paper.columns:
        paper = paper[paper["method_id"].isin(set(df_ours["method"]))]
    unknown = paper["task"] == "unknown" if "task" in paper.columns else pd.Series(False, index=paper.index)
    return paper[~unknown], int(unknown.sum())


def protocol_notes(df: pd.DataFrame, paper: pd.DataFrame, shown: list[str] | None = None) -> list[str]:
    """Human-readable differences between our protocol and the papers' (data, resolution, LPIPS,
    mask). ``shown``: the table's column names, so that notes only speak of columns it shows."""
    notes = []
    if df.empty:
        return notes
    if df["synthetic"].any():
        notes.append("ours: synthetic subjects (procedural FLAME/SMPL-X stand-ins); papers: real captures")
    res = sorted(set(df["resolution"].dropna()) - {""})
    if res:
        notes.append(f"ours: resolution {', '.join(res)}")
    shown = shown or []
    missing_lpips = [label for k, label in METRICS if k.startswith("lpips") and any(c.endswith(label) for c in shown)
                     and (k not in df.columns or df[k].isna().any())]
    if missing_lpips:
        notes.append(f"ours: {' / '.join(l.rstrip('↓') for l in missing_lpips)} shown as {MISSING} where the "
                     "backbone weights were absent (README: LPIPS backbones)")
    masks = sorted(set(df["mask_mode"].dropna()))
    if masks:
        notes.append(f"ours: mask mode {', '.join(masks)}")
    if not paper.empty:
        for col in ("resolution", "lpips_net", "masking"):
            if col in paper.columns:
                vals = sorted({str(v) for v in paper[col].dropna()} - {""})
                if vals:
                    notes.append(f"paper {col}: {', '.join(vals)}")
    return notes


def _to_markdown(t: pd.DataFrame) -> str:
    return t.to_markdown(disable_numparse=True) if not t.empty else "(no results)"


def _legend(df: pd.DataFrame, t: pd.DataFrame) -> list[str]:
    lines = [f"Cells: mean over runs (subjects x seeds); '<split> n' = runs / seeds averaged; {MISSING} = not "
             "evaluated or not available."]
    if t.index.str.contains(r"\+set\(|#", regex=True).any():
        lines.append("'+set(key=value, ...)': trained or scored with a config that differs from the preset's current "
                     "one in those keys; every distinct config is its own row ('#hash' where labels coincide).")
    return lines


def build_table(root: Path, *, ablations_of: str | None = None, out_dir: Path | None = None,
                with_paper: bool = True) -> tuple[str, list[Path]]:
    """Build the requested table. Returns (markdown text, saved files)."""
    df = results_frame(root)
    out_dir = out_dir or Path(root) / "tables"
    files: list[Path] = []
    if df.empty:
        return f"no results under {root} (run `avatarbench run ...` first)", files
    if ablations_of:
        from avatarbench.results.inert import inert_column

        num, disp = ablation_table(df, ablations_of)
        inert = inert_column(list(disp.index), root, ablations_of)
        if inert:
            num, disp = num.assign(inert=inert), disp.assign(inert=inert)
        name = f"ablations_{ablations_of}"
        title = f"## Ablations of {ablations_of}"
    else:
        num, disp = main_table(df)
        name = "main"
        title = "## Results (one row per configuration)"
    text = [title, "", _to_markdown(disp)]
    if not disp.empty:
        text += [""] + _legend(df, disp)
    if not ablations_of and df["dataset"].dropna().nunique() > 1:
        _, bd = dataset_table(df)
        if not bd.empty:
            text += ["", "## Results by dataset", "", _to_markdown(bd)]
    if with_paper and not ablations_of:
        p, n_unknown = paper_rows(df)
        if not p.empty:
            cols = [c for c in ("method_id", "method", "table", "task", "psnr", "ssim", "lpips", "lpips_net",
                                "resolution", "verification") if c in p.columns]
            shown = p[cols].astype(object).where(p[cols].notna(), MISSING)
            text += ["", "## Published numbers (results/paper/; full provenance in the CSVs)", "",
                     shown.to_markdown(index=False, floatfmt=".4g"), "", VERIFICATION_LINE]
        if n_unknown:
            text.append(f"{n_unknown} published row(s) with task 'unknown' (not comparable to any split, e.g. a "
                        "user reproduction or another paper's benchmark) are left out; see results/paper/*.csv.")
        notes = protocol_notes(df, p, list(disp.columns))
        if notes:
            text += ["", "Protocol differences:"] + [f"- {n}" for n in notes]
    if not num.empty:
        out_dir.mkdir(parents=True, exist_ok=True)
        csv = out_dir / f"{name}.csv"
        tex = out_dir / f"{name}.tex"
        md = out_dir / f"{name}.md"
        num.to_csv(csv)
        tex.write_text(disp.replace(MISSING, "--").to_latex(escape=True, caption=title.lstrip("# "), position="t"))
        md.write_text("\n".join(text) + "\n")
        files += [csv, tex, md]
    return "\n".join(text), files
