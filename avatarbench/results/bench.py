"""``avatarbench bench``: performance reports, written to ``runs/bench/<device>.json`` (the run
store) by default; committing a reference report is an explicit ``--out results/bench/<device>.json``.

- ``render``: the renderer microbenchmark (forward+backward time over Gaussian count x resolution),
  see :mod:`avatarbench.render.benchmark`.
- ``methods``: per method, training iterations/s, render FPS at the paper resolution (heads
  550x802, Gaussian Head Avatar 512 -> 2048 with SR, Animatable Gaussians 1024^2), peak memory
  and the number of Gaussians. On CPU it runs at smoke sizes; on a GPU at paper sizes.

Speed targets are checked here, never in timed tests.
"""

from __future__ import annotations

import json
import platform
import resource
import time
from pathlib import Path

import torch

from avatarbench.paths import repo_root
from avatarbench.results.store import environment_info, now_iso


def device_slug(device: torch.device, threads: int | None = None) -> str:
    """``cpu-<arch>-<threads>threads`` (threads: this process's torch threads unless given) or the GPU name."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu-{platform.machine()}-{threads or torch.get_num_threads()}threads"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-").lower()


def bench_dir() -> Path:
    """The committed reference reports (``results/bench``); written only when asked with ``--out``."""
    root = repo_root()
    return (root / "results" / "bench") if root else Path("results") / "bench"


def default_report_path(device: torch.device, store: Path | str = "runs", threads: int | None = None) -> Path:
    """Where a benchmark writes unless told otherwise: ``<store>/bench/<device>.json``."""
    return Path(store) / "bench" / f"{device_slug(device, threads)}.json"


def _merge_report(path: Path, section: str, payload) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data[section] = payload
    data["updated"] = now_iso()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_render_bench(counts, resolutions, *, backend="auto", repeats=3, out: Path | None = None, echo=print) -> Path:
    from avatarbench.render.benchmark import HEADER
    from avatarbench.render.benchmark import run as render_run

    device = torch.device("cuda" if torch.cuda.is_available() and backend != "torch" else "cpu")
    echo(f"{len(list(counts)) * len(list(resolutions))} configurations, {repeats} repeats each; a row per "
         "configuration as it finishes:")
    echo(HEADER)
    rows = render_run(counts, resolutions, device=device, backend=backend, repeats=repeats, echo=echo)
    path = Path(out) if out else default_report_path(device)
    env = environment_info(device)
    _merge_report(path, "render", {"environment": env, "rows": rows})
    _plot_render(rows, path.with_name(path.stem + "_render.png"), env)
    return path


def _plot_render(rows: list[dict], path: Path, env: dict | None = None) -> None:
    """Forward+backward time vs Gaussian count, one line per resolution, log-log; ticks at the
    measured counts; the title names the device and torch threads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for res in sorted({(r["width"], r["height"]) for r in rows}):
        rr = sorted([r for r in rows if (r["width"], r["height"]) == res], key=lambda r: r["num_gaussians"])
        ax.plot([r["num_gaussians"] for r in rr], [r["total_s"] * 1e3 for r in rr], marker="o",
                label=f"{res[0]}x{res[1]}")
    ax.set_xscale("log"), ax.set_yscale("log")
    counts = sorted({r["num_gaussians"] for r in rows})
    ax.xaxis.set_major_locator(FixedLocator(counts))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(counts, [f"{c / 1000:g}k" if c >= 1000 else str(c) for c in counts])
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("Gaussians"), ax.set_ylabel("forward+backward (ms)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, title="image", title_fontsize=7)
    env = env or {}
    dev = (env.get("device") or {})
    threads = env.get("torch_threads") or (rows[0].get("threads") if rows else None)
    backend = ", ".join(sorted({str(r.get("backend")) for r in rows if r.get("backend")}))
    where = dev.get("name") or dev.get("type") or "cpu"
    what = f"{dev.get('type', 'cpu')} ({where})" if dev.get("type", "cpu").startswith("cuda") else \
        f"CPU {where}, {threads} torch thread{'s' if threads != 1 else ''}"
    ax.set_title(f"Renderer forward+backward: {what}" + (f"\nbackend {backend}" if backend else ""), fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


PAPER_RENDER_SIZE = {"head": (550, 802), "body": (1024, 1024)}


def run_method_bench(methods: list[str], *, preset: str | None = None, train_steps: int = 20,
                     render_repeats: int = 10, threads: int = 0, isolate: bool = True, out: Path | None = None,
                     echo=print) -> Path:
    """Time training steps and rendering for each method on its kind's synthetic subject.

    Args:
        threads: torch CPU threads; 0 = the preset's ``engine.num_threads`` (what ``avatarbench run``
            uses: 1 for smoke), else torch's default.
        isolate: benchmark each method in its own fresh process (``spawn``), so its peak memory is
            its own and no method inherits another's state; False runs in this process (tests).
    """
    import multiprocessing as mp

    from avatarbench.engine.trainer import select_device

    device = select_device("auto")
    preset = preset or ("paper" if device.type == "cuda" else "smoke")
    rows = []
    for name in methods:
        args = (name, preset, int(train_steps), int(render_repeats), int(threads), str(device))
        if isolate:
            # generate (or find) the subject here: the generators use worker processes, which a pool
            # worker (a daemon) may not start
            from avatarbench.engine.config import DEFAULT_SUBJECT, RunRequest, resolve_config
            from avatarbench.engine.registry import get_spec
            from avatarbench.engine.run import load_run_subject

            load_run_subject(resolve_config(RunRequest(name, "self_reenact", preset,
                                                       subject=DEFAULT_SUBJECT[get_spec(name).kind])))
            with mp.get_context("spawn").Pool(1) as pool:
                row = pool.apply(bench_one_method, args)
        else:
            row = bench_one_method(*args)
        if row.get("error"):
            echo(f"{name:24s} failed: {row['error']}")
            continue
        mem = row.get("peak_cuda_memory_mb", row.get("peak_rss_mb"))
        echo(f"{name:24s} {row['train_it_per_s']:8.2f} it/s  {row['render_fps']:8.2f} FPS @ "
             f"{row['render_size'][0]}x{row['render_size'][1]}  {row['num_gaussians']:8d} Gaussians  "
             f"peak {mem:.0f} MB  ({row['torch_threads']} threads)")
        rows.append(row)
    used = sorted({r["torch_threads"] for r in rows})
    path = Path(out) if out else default_report_path(device, threads=used[0] if len(used) == 1 else None)
    _merge_report(path, "methods", {"environment": environment_info(device), "isolated_processes": isolate,
                                    "rows": rows})
    return path


def bench_one_method(name: str, preset: str, train_steps: int, render_repeats: int, threads: int,
                     device: str) -> dict:
    """One method's row (module level: runs in a spawned process). Errors come back as
    ``{"error": "..."}`` (exceptions with custom constructors do not cross processes)."""
    try:
        return _bench_one(name, preset, train_steps, render_repeats, threads, torch.device(device))
    except Exception as e:  # noqa: BLE001 - reported in one line by the parent
        return {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}


def _bench_one(name, preset, train_steps, render_repeats, threads, device) -> dict:
    from dataclasses import replace

    from avatarbench.engine.config import RunRequest, resolve_config
    from avatarbench.engine.method import Sample
    from avatarbench.engine.registry import get_spec, load_method_class
    from avatarbench.engine.run import load_run_subject, train_frames_for
    from avatarbench.engine.trainer import seed_everything
    from avatarbench.render import set_default_backend

    spec = get_spec(name)
    from avatarbench.engine.config import DEFAULT_SUBJECT

    subject = DEFAULT_SUBJECT[spec.kind]
    cfg = resolve_config(RunRequest(name, "self_reenact", preset, subject=subject))
    cfg.engine.device = str(device)
    # the thread count a run of this preset uses (smoke: 1); torch's default otherwise. Without
    # this the benchmark ran with torch's default (all cores) while `avatarbench run` used one
    n_threads = threads or int(cfg.engine.num_threads or 0)
    if n_threads:
        torch.set_num_threads(n_threads)
    set_default_backend(str(cfg.render.backend))
    seed_everything(0)
    subj = load_run_subject(cfg)
    frames = train_frames_for(subj, cfg)
    method = load_method_class(name)(cfg.method, subj, device)
    method.setup(frames)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    samples = [Sample(f, f.image().to(device), None) for f in frames[: min(len(frames), train_steps)]]
    # time steps from the last stage (the one that dominates the paper schedule)
    start = method.total_iterations() - train_steps - 1
    method.train_step(samples[0], max(0, start - 1))  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    for i in range(train_steps):
        method.train_step(samples[i % len(samples)], max(0, start + i))
    _sync(device)
    train_s = (time.perf_counter() - t0) / train_steps
    w, h = PAPER_RENDER_SIZE[spec.kind] if device.type == "cuda" else (frames[0].camera.width,
                                                                       frames[0].camera.height)
    frame = replace(frames[0], camera=frames[0].camera.resized(w, h))
    with torch.no_grad():
        method.render(frame)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(render_repeats):
            method.render(frame)
        _sync(device)
    fps = render_repeats / (time.perf_counter() - t0)
    return {"method": name, "preset": preset, "device": str(device), "torch_threads": torch.get_num_threads(),
            "train_step_s": train_s, "train_it_per_s": 1.0 / train_s, "render_fps": fps, "render_size": [w, h],
            "num_gaussians": method.num_gaussians(),
            # CUDA: peak allocated by torch; CPU: peak RSS of the process benchmarking this method
            # alone (with isolate=True; otherwise cumulative over the methods before it)
            ("peak_cuda_memory_mb" if device.type == "cuda" else "peak_rss_mb"): peak_memory_mb(device)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
