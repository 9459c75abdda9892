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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="avatarbench")
def cli():
    """avatarbench: train, render and score Gaussian avatars under one protocol."""


@cli.command()
@click.option("--method", "-m", required=True, help="Method name (see `avatarbench methods`).")
@click.option("--split", "-s", type=SPLIT_CHOICE, default="self_reenact", show_default=True)
@click.option("--subject", default=None, help="Subject name (synthetic: synth_head, synth_body, ...).")
@click.option("--data", "data_path", default=None, type=click.Path(), help="Dataset folder of a real subject.")
@click.option("--preset", "-p", default="smoke", show_default=True, help="smoke | paper | a method preset.")
@click.option("--ablation", "-a", default=None, help="An ablation variant of the method.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
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
def table(root, ablations_of, out, paper):
    """Aggregate run folders into a paper-style table (markdown; saves CSV and LaTeX)."""
    from avatarbench.results.table import build_table

    text, files = build_table(Path(root), ablations_of=ablations_of, out_dir=Path(out) if out else None,
                              with_paper=paper)
    click.echo(text)
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


@cli.group()
def data():
    """Inspect datasets and generate synthetic subjects."""


@data.command("inspect")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_inspect(path, as_json):
    """Summarise a subject: cameras, timesteps per split, image size, per-camera K and world_to_cam."""
    from avatarbench.data import inspect_subject

    summary = inspect_subject(path)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{summary['name']} ({summary['kind']}): {summary['num_cameras']} cameras, "
               f"image {summary['image_size'][0]}x{summary['image_size'][1]}")
    for split, s in summary["splits"].items():
        click.echo(f"  {split:14s} {s['frames']:6d} frames {s['timesteps']:5d} timesteps  cameras {s['cameras']}")


@data.command("synth")
@click.option("--kind", type=click.Choice(["head", "body"]), default="head", show_default=True)
@click.option("--preset", default="smoke", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["vhap", "nersemble-benchmark"]), default="vhap", show_default=True,
              help="Heads: VHAP export (default) or the NeRSemble benchmark download layout (mono_flame_avatar).")
@click.option("--out", default=None, type=click.Path(), help="nersemble-benchmark: output folder "
              "(default: <cache>/synthetic/nersemble_benchmark/<preset>_seed<seed>).")
def data_synth(kind, preset, seed, fmt, out):
    """Generate (or find in the cache) the synthetic subjects and print their folders."""
    if fmt == "nersemble-benchmark":
        from avatarbench.data.synth.nersemble_benchmark_writer import ensure_nersemble_benchmark

        if kind != "head":
            raise click.UsageError("--format nersemble-benchmark is a head format (use --kind head)")
        click.echo(f"mono_flame_avatar: {ensure_nersemble_benchmark(out, preset=preset, seed=seed)}")
        return
    if kind == "head":
        from avatarbench.data.synth.head import ensure_synthetic_head as ensure
        names = ["synth_head_a", "synth_head_b"]
    else:
        from avatarbench.data.synth.body import ensure_synthetic_body as ensure
        names = ["synth_body_a", "synth_body_b"]
    for n in names:
        click.echo(f"{n}: {ensure(n, preset=preset, seed=seed)}")


@cli.command("eval")
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--split", "-s", type=SPLIT_CHOICE, default="self_reenact", show_default=True)
def eval_cmd(run_dir, split):
    """Re-score a run's saved renders offline (must match the in-run metrics)."""
    from avatarbench.engine.offline_eval import offline_eval

    res = offline_eval(Path(run_dir), split)
    click.echo(json.dumps(res, indent=2))


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--task", type=click.Choice(["mono_flame_avatar"]), default="mono_flame_avatar", show_default=True)
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
@click.option("--method", "-m", required=True)
@click.option("--ablations", "-a", default=None, help="'all' or a comma list of variants (full is always included).")
@click.option("--splits", default="novel_view,self_reenact", show_default=True)
@click.option("--subjects", default=None, help="Comma list (default: the method kind's synthetic subject).")
@click.option("--preset", "-p", default="smoke", show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--executor", type=click.Choice(["local", "slurm", "inline"]), default="local", show_default=True)
@click.option("--parallel", default=1, show_default=True, help="Local jobs at a time.")
@click.option("--root", default="runs", show_default=True, type=click.Path())
@click.option("--name", default=None, help="Sweep name (manifest runs/sweeps/<name>.json).")
@click.option("--retry-failed", "retry", default=None, type=click.Path(exists=True),
              help="Re-run only the failed jobs of this manifest.")
@click.option("--slurm-partition", default=None)
@click.option("--slurm-gpus", default=1, show_default=True)
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
@click.option("--root", default="runs", show_default=True, type=click.Path())
@click.option("--out", default=None, type=click.Path(), help="Default: <root>/figures")
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
@click.option("--split", "-s", type=SPLIT_CHOICE, default="self_reenact", show_default=True)
def check(run_dir, split):
    """Reproducibility checks: checkpoint re-save bytes, re-render PNGs, offline re-scoring."""
    from avatarbench.engine.reproduce import check_reproducibility

    res = check_reproducibility(Path(run_dir), split)
    click.echo(json.dumps(res, indent=2))
    ok = res["checkpoint_resave_identical"] and res["rerender_identical"] and res["offline_eval_within_1e-6"]
    if not ok:
        raise SystemExit(1)


@cli.group()
def bench():
    """Performance benchmarks (results/bench/<device>.json)."""


@bench.command("render")
@click.option("--counts", default="5000,20000,50000", show_default=True)
@click.option("--resolutions", default="128,256,512", show_default=True)
@click.option("--backend", default="auto", show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option("--threads", default=0, show_default=True, help="torch CPU threads (0 = torch default).")
@click.option("--out", default=None, type=click.Path())
def bench_render(counts, resolutions, backend, repeats, threads, out):
    """Renderer microbenchmark: forward+backward time over Gaussian count x resolution."""
    import torch

    from avatarbench.results.bench import run_render_bench

    if threads:
        torch.set_num_threads(threads)

    path = run_render_bench([int(c) for c in counts.split(",")], [int(r) for r in resolutions.split(",")],
                            backend=backend, repeats=repeats, out=Path(out) if out else None, echo=click.echo)
    click.echo(f"saved {path}")


@bench.command("methods")
@click.option("--methods", "names", default=None, help="Comma list (default: every registered method).")
@click.option("--preset", default=None, help="Default: paper on GPU, smoke on CPU.")
@click.option("--train-steps", default=20, show_default=True)
@click.option("--threads", default=0, show_default=True, help="torch CPU threads (0 = torch default).")
@click.option("--out", default=None, type=click.Path())
def bench_methods(names, preset, train_steps, threads, out):
    """Per-method training it/s, render FPS at paper size, peak memory, Gaussian count."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from avatarbench.engine.registry import list_methods
    from avatarbench.results.bench import run_method_bench

    chosen = names.split(",") if names else sorted(list_methods())
    path = run_method_bench(chosen, preset=preset, train_steps=train_steps, out=Path(out) if out else None,
                            echo=click.echo)
    click.echo(f"saved {path}")


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="avatarbench", standalone_mode=False)
    except AvatarbenchError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted: the newest checkpoint is kept; run the same command to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
