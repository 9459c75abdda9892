"""``avatarbench study``: do we see what the papers claim, and which method copes with which phenomenon?

Two studies, each a resumable sweep (:mod:`avatarbench.engine.sweep`; manifest
``<root>/sweeps/study_<name>.json``) followed by an aggregation:

- ``paper-claims``: every ablation of ``results/paper/ablations.csv`` (method, variant, split) and
  the full method, on the full-phenomena world, at a preset (``bench``), with >= 2 seeds. Writes
  ``paper_claims.{csv,md}``: per claim and metric the paper's sign, our paired delta
  (ablated - full, mean over seeds) +- the seed noise, and a verdict.
- ``phenomena``: every method on ``clean``, each phenomenon alone and ``full`` (subject names with a
  world suffix, :mod:`avatarbench.data.synth.world`). Writes ``phenomena.{csv,md,png}``: mean +-
  std over seeds of PSNR / SSIM / LPIPS and the geometry error (Chamfer, mm).

Verdict rule (documented in ``docs/studies.md``): with per-seed paired deltas ``d_k = ablated_k -
full_k`` (sign-corrected so that > 0 means the full method is better), ``mean = mean(d)``,
``noise = std(d, ddof=1)``; the effect is *significant* when ``|mean| > noise``; then ``reproduced``
when its sign equals the paper's, ``inverted`` when opposite; ``not reproduced`` when not
significant; ``inert`` when the ablated component never acted in the full runs (``train.activity``,
:mod:`avatarbench.results.inert`: the claim was not tested); ``insufficient seeds`` with fewer than
2 seeds; ``missing`` without results.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import asdict
from pathlib import Path

from avatarbench.engine.sweep import Job

METRICS = ("psnr", "ssim", "lpips")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "chamfer_mm": False}
STUDIES = ("paper-claims", "phenomena")


def _seed_set(seed: int) -> str:
    return f"engine.seed={int(seed)}"


def _seed_of(job: Job) -> int:
    for s in job.sets:
        m = re.fullmatch(r"engine\.seed=(\d+)", s)
        if m:
            return int(m.group(1))
    return 0


def default_subject(kind: str, world: str) -> str:
    """The study's subject: the kind's default synthetic identity in ``world``."""
    base = "synth_head_a" if kind == "head" else "synth_body_a"
    return f"{base}_{world}"


def load_claims(path: str | Path) -> list[dict]:
    """Rows of ``results/paper/ablations.csv`` (strings; numbers parsed where present)."""
    p = Path(path)
    rows = []
    with p.open(newline="") as fh:
        for r in csv.DictReader(fh):
            missing = [k for k in ("paper", "ablation", "method_id", "suite_split", "metric", "paper_sign") if k not in r]
            if missing:
                from avatarbench.errors import ConfigError

                raise ConfigError(f"{p}: column {missing[0]!r} missing (expected the results/paper/ablations.csv schema)")
            r["paper_sign"] = int(r["paper_sign"])
            for k in ("full", "ablated", "paper_delta"):
                r[k] = float(r[k]) if r.get(k) not in (None, "") else None
            rows.append(r)
    return rows


def plan_paper_claims(claims: list[dict], *, preset: str, seeds: list[int], world: str = "full",
                      sets: list[str] | None = None) -> list[Job]:
    """One job per (method, variant in {full, ablation}, split, seed) that a claim needs."""
    from avatarbench.engine.registry import get_spec

    keys: dict[tuple, None] = {}
    for c in claims:
        for variant in ("full", c["ablation"]):
            keys[(c["method_id"], variant, c["suite_split"])] = None
    jobs = []
    for (method, variant, split) in keys:
        subject = default_subject(get_spec(method).kind, world)
        for s in seeds:
            jobs.append(Job(method, subject, split, variant, preset, list(sets or []) + [_seed_set(s)]))
    return jobs


def plan_phenomena(methods: list[str], *, preset: str, seeds: list[int], splits: list[str],
                   sets: list[str] | None = None, worlds: list[str] | None = None) -> list[Job]:
    """One job per (method, world variant of its kind, split, seed); ``worlds`` restricts the variants
    (default: clean, each phenomenon alone, full)."""
    from avatarbench.data.synth.world import world_variants
    from avatarbench.engine.registry import get_spec

    jobs = []
    for m in methods:
        kind = get_spec(m).kind
        for w in world_variants(kind):
            if worlds and w not in worlds:
                continue
            for split in splits:
                for s in seeds:
                    jobs.append(Job(m, default_subject(kind, w), split, "full", preset,
                                    list(sets or []) + [_seed_set(s)]))
    return jobs


def _key(j: Job) -> tuple:
    return (j.method, j.subject, j.split, j.variant, j.preset, tuple(j.sets))


def finished_on_disk(job: Job, root: Path) -> Path | None:
    """The ``results.json`` of ``job`` when its run folder in ``root`` already holds that split's
    evaluation from the same training configuration (``run.json`` config hash), else None.

    This is what ``avatarbench run`` itself would reuse; it lets a study find runs that another study
    or an earlier invocation with other ``--seeds`` / ``--methods`` (which rewrote the manifest) made."""
    from avatarbench.engine.config import RunRequest, resolve_config, training_identity
    from avatarbench.engine.run import _saved_matches, planned_run_dir
    from avatarbench.results.store import config_sha

    try:
        req = RunRequest(method=job.method, split=job.split, preset=job.preset, ablation=job.ablation,
                         sets=tuple(job.sets) + (f"output.root={root}",), subject=job.subject)
        cfg = resolve_config(req)
        sha = config_sha(training_identity(cfg))
        names = [job.subject]
        if _world_of(job.subject) == "clean":  # the clean world's subjects load under their bare name
            names.append(re.sub(r"_clean$", "", job.subject))
        for name in names:
            run_dir = planned_run_dir(cfg, name, None)
            res, meta = run_dir / "eval" / job.split / "results.json", run_dir / "run.json"
            if res.is_file() and meta.is_file() and _saved_matches(json.loads(meta.read_text()), sha):
                return res
    except Exception:  # noqa: BLE001 - anything unreadable is simply not reused
        return None
    return None


def resume_jobs(planned: list[Job], manifest: Path, root: Path | None = None) -> list[Job]:
    """Carry the status/results of an earlier run of the same study over to the planned jobs; with
    ``root``, a job the manifest does not have as done is done when its results are on disk
    (:func:`finished_on_disk`)."""
    done: dict[tuple, Job] = {}
    if Path(manifest).is_file():
        from avatarbench.engine.sweep import load_manifest

        _, _, old = load_manifest(Path(manifest))
        done = {_key(j): j for j in old if j.status == "done"}
    out = []
    for j in planned:
        prev = done.get(_key(j))
        if prev is None and root is not None:
            res = finished_on_disk(j, Path(root))
            if res is not None:
                j.status, j.results = "done", str(res)
                prev = j
        out.append(prev if prev is not None else j)
    return out


def _world_of(subject: str) -> str:
    """``synth_head_a_hair_volume`` -> ``hair_volume``; a bare synthetic name -> the default world's tag;
    anything else -> ``n/a``."""
    from avatarbench.results.table import synthetic_world

    return synthetic_world(subject) or "n/a"


def records_from_jobs(jobs: list[Job]) -> list[dict]:
    """Flat records (method, subject, world, split, variant, seed, metrics...) of the done jobs."""
    recs = []
    for j in jobs:
        if j.status != "done" or not j.results or not Path(j.results).is_file():
            continue
        r = json.loads(Path(j.results).read_text())
        m = dict(r.get("metrics") or {})
        g = r.get("geometry") or {}
        if g.get("chamfer_mm") is not None:
            m["chamfer_mm"] = g["chamfer_mm"]
        world = _world_of(j.subject)
        recs.append({"method": j.method, "subject": j.subject, "world": world, "split": j.split,
                     "variant": j.variant, "seed": _seed_of(j), **{k: m.get(k) for k in (*METRICS, "chamfer_mm")}})
    return recs


def _std(x: list[float]) -> float:
    if len(x) < 2:
        return float("nan")
    mu = sum(x) / len(x)
    return math.sqrt(sum((v - mu) ** 2 for v in x) / (len(x) - 1))


def verdict(paper_sign: int, deltas: list[float]) -> tuple[float, float, int, str]:
    """(mean, noise, our sign, verdict) from per-seed paired deltas already oriented so that > 0 means
    the full method is better (see the module docstring)."""
    if not deltas:
        return float("nan"), float("nan"), 0, "missing"
    mean = sum(deltas) / len(deltas)
    if len(deltas) < 2:
        return mean, float("nan"), 0, "insufficient seeds"
    noise = _std(deltas)
    ours = (1 if mean > 0 else -1) if abs(mean) > noise else 0
    if ours == 0:
        return mean, noise, 0, "not reproduced"
    if paper_sign == 0:
        return mean, noise, ours, "not reproduced"
    return mean, noise, ours, "reproduced" if ours == paper_sign else "inverted"


def activity_notes(jobs: list[Job]) -> dict[tuple[str, str], str]:
    """(method, variant) -> ``"inert: <counter> = 0 in full"`` / ``"acted: ..."`` from the done jobs'
    ``train.activity`` (:mod:`avatarbench.results.inert`)."""
    from avatarbench.results.inert import ablation_components, inert_notes

    by_method: dict[str, list[dict]] = {}
    for j in jobs:
        if j.status == "done" and j.results and Path(j.results).is_file():
            by_method.setdefault(j.method, []).append(json.loads(Path(j.results).read_text()))
    out = {}
    for m, recs in by_method.items():
        for variant, note in inert_notes(recs, ablation_components(m)).items():
            out[(m, variant)] = note
    return out


def aggregate_paper_claims(claims: list[dict], records: list[dict],
                           notes: dict[tuple[str, str], str] | None = None) -> list[dict]:
    """One row per claim (paper, ablation, split, metric): our delta (ablated - full, raw units) +- noise.

    ``notes`` (:func:`activity_notes`): an ablation whose component never acted in the full runs gets
    the verdict ``inert`` -- the two variants trained identically, so the claim was not tested."""
    by = {}
    for r in records:
        by[(r["method"], r["variant"], r["split"], r["seed"])] = r
    rows = []
    for c in claims:
        metric, split, method = c["metric"], c["suite_split"], c["method_id"]
        hib = HIGHER_IS_BETTER.get(metric, True)
        raw = []
        for (m, v, s, seed), rec in by.items():
            if (m, v, s) != (method, c["ablation"], split):
                continue
            full = by.get((method, "full", split, seed))
            if full is None or rec.get(metric) is None or full.get(metric) is None:
                continue
            raw.append(float(rec[metric]) - float(full[metric]))
        oriented = [(-d if hib else d) for d in raw]  # > 0: the full method is better
        mean_o, noise, ours, v = verdict(c["paper_sign"], oriented)
        note = (notes or {}).get((method, c["ablation"]), "")
        if note.startswith("inert") and raw:
            v = "inert"
        mean_raw = (sum(raw) / len(raw)) if raw else float("nan")
        rows.append({"paper": c["paper"], "method": method, "ablation": c["ablation"], "split": split, "metric": metric,
                     "paper_sign": c["paper_sign"], "paper_delta": c.get("paper_delta"),
                     "evidence": c.get("evidence", ""), "our_delta": mean_raw, "seed_noise": noise,
                     "n_seeds": len(raw), "our_sign": ours, "verdict": v, "component_activity": note})
    return rows


def aggregate_phenomena(records: list[dict], split: str = "self_reenact") -> list[dict]:
    """Long table: method, world, metric, mean, std, n (over seeds) for one split."""
    cells: dict[tuple, list[float]] = {}
    for r in records:
        if r["split"] != split or r["variant"] != "full":
            continue
        for metric in (*METRICS, "chamfer_mm"):
            if r.get(metric) is not None:
                cells.setdefault((r["method"], r["world"], metric), []).append(float(r[metric]))
    return [{"method": m, "world": w, "split": split, "metric": k, "mean": sum(v) / len(v), "std": _std(v), "n": len(v)}
            for (m, w, k), v in sorted(cells.items())]


def _fmt(x, nd=2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        if not rows:
            fh.write("")
            return
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def paper_claims_markdown(rows: list[dict], header: str = "") -> str:
    lines = [header] if header else []
    lines += ["| paper | ablation | split | metric | paper sign | paper delta | our delta +- noise (n) | verdict | component in the full runs |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        nd = 3 if r["metric"] in ("ssim", "lpips") else 2
        pd_ = "" if r["paper_delta"] is None else _fmt(r["paper_delta"], nd)
        lines.append(f"| {r['paper']} | {r['ablation']} | {r['split']} | {r['metric']} | {r['paper_sign']:+d} | {pd_} | "
                     f"{_fmt(r['our_delta'], nd)} +- {_fmt(r['seed_noise'], nd)} ({r['n_seeds']}) | {r['verdict']} | "
                     f"{r.get('component_activity', '')} |")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    lines += ["", "Verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), ""]
    return "\n".join(lines)


def phenomena_markdown(rows: list[dict], header: str = "") -> str:
    from avatarbench.data.synth.world import PHENOMENA

    lines = [header] if header else []
    methods = sorted({r["method"] for r in rows})
    cell = {(r["method"], r["world"], r["metric"]): r for r in rows}
    for metric in (*METRICS, "chamfer_mm"):
        worlds = []
        for kind in ("head", "body"):
            for w in ["clean", *PHENOMENA[kind], "full"]:
                if w not in worlds and any((m, w, metric) in cell for m in methods):
                    worlds.append(w)
        if not worlds:
            continue
        lines += [f"### {metric}", "", "| method | " + " | ".join(worlds) + " |", "|---|" + "---|" * len(worlds)]
        nd = 3 if metric in ("ssim", "lpips") else 2
        for m in methods:
            vals = [cell.get((m, w, metric)) for w in worlds]
            lines.append(f"| {m} | " + " | ".join("" if v is None else f"{_fmt(v['mean'], nd)} +- {_fmt(v['std'], nd)}"
                                                  for v in vals) + " |")
        lines.append("")
    return "\n".join(lines)


def phenomena_figure(rows: list[dict], path: Path, metric: str = "psnr") -> Path | None:
    """Heat map: method x world of ``metric`` minus the method's clean value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sel = [r for r in rows if r["metric"] == metric]
    if not sel:
        return None
    methods = sorted({r["method"] for r in sel})
    worlds = []
    for r in sel:
        if r["world"] not in worlds:
            worlds.append(r["world"])
    worlds = sorted(worlds, key=lambda w: (w != "clean", w == "full", w))
    M = np.full((len(methods), len(worlds)), np.nan)
    val = {(r["method"], r["world"]): r["mean"] for r in sel}
    for i, m in enumerate(methods):
        base = val.get((m, "clean"))
        for j, w in enumerate(worlds):
            if (m, w) in val and base is not None:
                M[i, j] = val[(m, w)] - base
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(worlds), 0.8 + 0.5 * len(methods)))
    lim = float(np.nanmax(np.abs(M))) if np.isfinite(M).any() else 1.0
    im = ax.imshow(M, cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set_xticks(range(len(worlds)), worlds, rotation=30, ha="right")
    ax.set_yticks(range(len(methods)), methods)
    for i in range(len(methods)):
        for j in range(len(worlds)):
            if np.isfinite(M[i, j]):
                ax.text(j, i, f"{M[i, j]:+.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label=f"{metric} - clean")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_study(study: str, *, root: Path, out: Path, preset: str, seeds: list[int], methods: list[str] | None = None,
              claims_csv: Path = Path("results/paper/ablations.csv"), world: str = "full",
              splits: list[str] | None = None, sets: list[str] | None = None, executor: str = "local",
              parallel: int = 1, worlds: list[str] | None = None, ablations: list[str] | None = None,
              run: bool = True, echo=print) -> dict[str, Path]:
    """Plan (or resume) the study's sweep, run what is not done (``run=False``: nothing), aggregate and
    write the tables. ``methods`` / ``ablations`` restrict paper-claims to those claims (an ablation
    name that no remaining claim has is an error)."""
    from avatarbench.engine.sweep import run_sweep
    from avatarbench.errors import ConfigError

    if study not in STUDIES:
        raise ConfigError(f"unknown study {study!r} (known: {', '.join(STUDIES)})")
    root, out = Path(root), Path(out)
    name = f"study_{study.replace('-', '_')}_{preset}"
    manifest = root / "sweeps" / f"{name}.json"
    if study == "paper-claims":
        claims = load_claims(claims_csv)
        if methods:
            claims = [c for c in claims if c["method_id"] in methods]
        if ablations:
            unknown = sorted(set(ablations) - {c["ablation"] for c in claims})
            if unknown:
                raise ConfigError(f"{claims_csv}: no claim for ablation(s) {', '.join(unknown)}"
                                  + (f" of {', '.join(methods)}" if methods else ""))
            claims = [c for c in claims if c["ablation"] in ablations]
        planned = plan_paper_claims(claims, preset=preset, seeds=seeds, world=world, sets=sets)
    else:
        from avatarbench.engine.registry import list_methods

        ms = methods or sorted(list_methods())
        planned = plan_phenomena(ms, preset=preset, seeds=seeds, splits=splits or ["self_reenact"], sets=sets,
                                 worlds=worlds)
    jobs = resume_jobs(planned, manifest, root)
    todo = sum(j.status != "done" for j in jobs)
    echo(f"[study {study}] {len(jobs)} jobs, {len(jobs) - todo} already done; manifest {manifest}")
    if run:
        run_sweep(jobs, root, name=name, executor=executor, parallel=parallel, echo=echo)
    recs = records_from_jobs(jobs)
    written = {}
    head = (f"Preset `{preset}`, seeds {', '.join(map(str, seeds))}; {sum(j.status == 'done' for j in jobs)}/"
            f"{len(jobs)} runs done. Generated by `avatarbench study {study}`.\n")
    if study == "paper-claims":
        rows = aggregate_paper_claims(claims, recs, activity_notes(jobs))
        write_csv(rows, out / "paper_claims.csv")
        (out / "paper_claims.md").write_text(paper_claims_markdown(rows, "# Paper claims\n\n" + head))
        written = {"csv": out / "paper_claims.csv", "md": out / "paper_claims.md"}
    else:
        rows = []
        for split in splits or ["self_reenact"]:
            rows += aggregate_phenomena(recs, split)
        write_csv(rows, out / "phenomena.csv")
        (out / "phenomena.md").write_text(phenomena_markdown(rows, "# Per-phenomenon matrix\n\n" + head))
        written = {"csv": out / "phenomena.csv", "md": out / "phenomena.md"}
        fig = phenomena_figure(rows, out / "phenomena.png")
        if fig is not None:
            written["png"] = fig
    (out / f"{name}_jobs.json").write_text(json.dumps([asdict(j) for j in jobs], indent=1) + "\n")
    return written


__all__ = ["STUDIES", "activity_notes", "load_claims", "plan_paper_claims", "plan_phenomena", "resume_jobs", "records_from_jobs",
           "verdict", "aggregate_paper_claims", "aggregate_phenomena", "paper_claims_markdown",
           "phenomena_markdown", "phenomena_figure", "run_study"]
