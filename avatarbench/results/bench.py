"""``avatarbench bench``: performance reports written to ``results/bench/<device>.json``.

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


def device_slug(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu-{platform.machine()}-{torch.get_num_threads()}threads"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-").lower()


def bench_dir() -> Path:
    root = repo_root()
    return (root / "results" / "bench") if root else Path("results") / "bench"


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
    from avatarbench.render.benchmark import run as render_run

    device = torch.device("cuda" if torch.cuda.is_available() and backend != "torch" else "cpu")
    rows = render_run(counts, resolutions, device=device, backend=backend, repeats=repeats)
    for r in rows:
        echo(f"N={r['num_gaussians']:>7d} {r['width']}x{r['height']} {r['backend']:6s} "
             f"fwd {r['forward_s'] * 1e3:8.1f} ms  bwd {r['backward_s'] * 1e3:8.1f} ms  "
             f"total {r['total_s'] * 1e3:8.1f} ms")
    path = out or bench_dir() / f"{device_slug(device)}.json"
    _merge_report(path, "render", {"environment": environment_info(device), "rows": rows})
    _plot_render(rows, path.with_name(path.stem + "_render.png"))
    return path


def _plot_render(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for res in sorted({(r["width"], r["height"]) for r in rows}):
        rr = sorted([r for r in rows if (r["width"], r["height"]) == res], key=lambda r: r["num_gaussians"])
        ax.plot([r["num_gaussians"] for r in rr], [r["total_s"] * 1e3 for r in rr], marker="o",
                label=f"{res[0]}x{res[1]}")
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("Gaussians"), ax.set_ylabel("forward+backward (ms)"), ax.legend(fontsize=7)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


PAPER_RENDER_SIZE = {"head": (550, 802), "body": (1024, 1024)}


def run_method_bench(methods: list[str], *, preset: str | None = None, train_steps: int = 20,
                     render_repeats: int = 10, out: Path | None = None, echo=print) -> Path:
    """Time training steps and rendering for each method on its kind's synthetic subject."""
    from avatarbench.engine.config import RunRequest, resolve_config
    from avatarbench.engine.method import Sample
    from avatarbench.engine.registry import get_spec, load_method_class
    from avatarbench.engine.run import load_run_subject, train_frames_for
    from avatarbench.engine.trainer import seed_everything, select_device

    device = select_device("auto")
    preset = preset or ("paper" if device.type == "cuda" else "smoke")
    rows = []
    for name in methods:
        spec = get_spec(name)
        subject = "synth_head_a" if spec.kind == "head" else "synth_body_a"
        cfg = resolve_config(RunRequest(name, "self_reenact", preset, subject=subject))
        cfg.engine.device = str(device)
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
        frame = frames[0]
        from dataclasses import replace

        frame = replace(frame, camera=frame.camera.resized(w, h))
        with torch.no_grad():
            method.render(frame)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(render_repeats):
                method.render(frame)
            _sync(device)
        fps = render_repeats / (time.perf_counter() - t0)
        row = {"method": name, "preset": preset, "device": str(device), "train_step_s": train_s,
               "train_it_per_s": 1.0 / train_s, "render_fps": fps, "render_size": [w, h],
               "num_gaussians": method.num_gaussians(),
               # CUDA: peak allocated by torch for this method; CPU: the process's peak RSS so far
               # (cumulative over the methods benchmarked before it in the same process)
               ("peak_cuda_memory_mb" if device.type == "cuda" else "peak_process_rss_mb"): peak_memory_mb(device)}
        echo(f"{name:24s} {1.0 / train_s:8.2f} it/s  {fps:8.2f} FPS @ {w}x{h}  "
             f"{row['num_gaussians']:8d} Gaussians  peak {peak_memory_mb(device):.0f} MB")
        rows.append(row)
    path = out or bench_dir() / f"{device_slug(device)}.json"
    _merge_report(path, "methods", {"environment": environment_info(device), "rows": rows})
    return path


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
