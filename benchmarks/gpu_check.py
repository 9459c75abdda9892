"""One prepared GPU verification run: gsplat parity, ``pytest -m gpu``, paper-size render FPS, training
speed and a GPU-vs-CPU training check, written to one folder (see docs/gpu.md).

    python benchmarks/gpu_check.py OUT_DIR            # on a CUDA machine (gsplat JIT-compiles on first use)
    python benchmarks/gpu_check.py OUT_DIR --dry-run  # every step on CPU at tiny sizes (CI runs this)

Each step is timed and isolated: a failing step is recorded (error line + traceback tail) and the others
still run; the exit code is 1 when any step failed or any parity check missed its tolerance. The report
is ``OUT_DIR/<device>.json`` in the schema of ``avatarbench bench`` (sections ``render``, ``methods``)
plus ``gpu_check`` (setup, JIT time, parity, pytest, correctness, targets) and a plot
``OUT_DIR/<device>_gpu_check.png``. Copy both into ``results/bench/`` to commit them.

The dry run replaces gsplat by the torch backend and the paper preset by ``smoke`` with tiny images and a
handful of steps; its numbers mean nothing, it only keeps the script from rotting between GPU sessions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # for tests.render.scenes (the parity scenes shared with the test suite)
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

# Targets from the issue / official figures (docs/gpu.md gives the sources and their reliability).
FPS_TARGETS = {
    "gaussian_avatars": {"fps": 500.0, "size": (550, 802), "official": "paper FPS UNVERIFIED; GA fps_benchmark at 802x550"},
    "gaussian_head_avatar": {"fps": 60.0, "size": (512, 512), "sr_out": 2048,
                             "official": "~20 FPS at 2K with SR on an RTX 4090, fp16 (author, issue #24)"},
    "animatable_gaussians": {"fps": 30.0, "size": (1024, 1024),
                             "official": "~10 FPS at 1024^2 on an RTX 3090 (secondary, UNVERIFIED)"},
}
HEAD_METHODS = ("gaussian_avatars", "gaussian_head_avatar")
# --set overrides that shorten each head method's smoke schedule to about n iterations
SHORT_SCHEDULE = {
    "gaussian_avatars": lambda n: (f"method.train.schedule_scale={n / 600000:.8f}",),
    "gaussian_head_avatar": lambda n: (f"method.mesh.iterations={max(10, n // 3)}", f"method.gaussian.iterations={n}"),
}
ALL_METHODS = ("gaussian_avatars", "gaussian_head_avatar", "animatable_gaussians")

# Parity tolerances: those of tests/render/test_gpu_parity.py (float32 vs float64 judge).
TOL = {"image_max_abs": 1e-2, "image_p999_rel": 1e-4, "grad_cosine": 0.999, "grad_p999_rel": 1e-2}


class Check:
    """Runs named steps, records time / result / error for each into ``self.report``."""

    def __init__(self, out: Path, dry_run: bool):
        self.out, self.dry_run = out, dry_run
        self.report: dict = {"dry_run": dry_run, "steps": {}}
        self.failed: list[str] = []

    def step(self, name: str, fn, budget_s: float | None = None):
        print(f"[gpu_check] {name} ...", flush=True)
        t0 = time.perf_counter()
        rec: dict = {}
        try:
            rec["result"] = fn()
            rec["ok"] = not (isinstance(rec["result"], dict) and rec["result"].get("ok") is False)
        except Exception as e:  # one step's failure must not hide the others'
            rec["ok"] = False
            rec["error"] = f"{type(e).__name__}: {e}"
            rec["traceback_tail"] = traceback.format_exc().splitlines()[-12:]
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        if budget_s is not None:
            rec["budget_s"] = budget_s
        if not rec["ok"]:
            self.failed.append(name)
        self.report["steps"][name] = rec
        print(f"[gpu_check] {name}: {'ok' if rec['ok'] else 'FAILED ' + rec.get('error', '')} "
              f"({rec['seconds']:.1f} s)", flush=True)
        self.save()
        return rec.get("result")

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.json").write_text(json.dumps(self.report, indent=2, default=str) + "\n")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: torch.device) -> dict:
    from avatarbench.results.store import environment_info

    env = dict(environment_info(device))
    env.update(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
               cpu_count=os.cpu_count())
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,memory.total",
                                            "--format=csv,noheader"], capture_output=True, text=True,
                                           timeout=20).stdout.strip()
        except Exception as e:  # nvidia-smi missing: say so, keep going
            env["driver"] = f"unknown ({type(e).__name__})"
    try:
        import gsplat

        env["gsplat"] = gsplat.__version__
    except Exception as e:
        env["gsplat"] = f"not importable ({type(e).__name__}: {e})"
    return env


def gsplat_jit(device: torch.device) -> dict:
    """Time gsplat's first rasterization (its CUDA extension is JIT-compiled then) vs the second."""
    from avatarbench.render import rasterize
    from avatarbench.render.benchmark import make_head_scene

    backend = "torch" if device.type != "cuda" else "gsplat"
    sc = make_head_scene(1000, 64, device=device)
    times = []
    for _ in range(2):
        _sync(device)
        t0 = time.perf_counter()
        rasterize(sc["means"], sc["quats"], sc["scales"], sc["opacities"], sc["colors"], sc["viewmats"], sc["Ks"],
                  sc["width"], sc["height"], backend=backend)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"backend": backend, "first_call_s": times[0], "second_call_s": times[1],
            "jit_compile_s_estimate": times[0] - times[1]}


def _stats(a: torch.Tensor, b: torch.Tensor) -> dict:
    a, b = a.detach().double().cpu().flatten(), b.detach().double().cpu().flatten()
    scale = float(b.abs().max()) or 1.0
    diff = (a - b).abs()
    cos = float(torch.nn.functional.cosine_similarity(a, b, dim=0)) if float(b.norm()) > 0 else 1.0
    return {"max_abs": float(diff.max()) if diff.numel() else 0.0, "max_rel_to_max": float(diff.max()) / scale
            if diff.numel() else 0.0, "p999_rel_to_max": float(torch.quantile(diff[:1_000_000], 0.999)) / scale
            if diff.numel() else 0.0, "cosine": cos}


def parity_scenes(dry_run: bool) -> dict:
    """Scenes as (float64 scene, background?, rasterize kwargs): RGB and 32 channels, with and without bg."""
    from avatarbench.render.benchmark import make_head_scene
    from tests.render.scenes import random_scene

    s = 0.25 if dry_run else 1.0
    n = int(300 * s) + 20
    scenes = {
        "random_rgb_bg": (random_scene(n=n, n_cameras=2, width=96, height=80, seed=0), True, {}),
        "random_rgb_nobg": (random_scene(n=n, n_cameras=2, width=96, height=80, seed=3), False, {}),
        "random_32ch_bg": (random_scene(n=n, n_cameras=1, width=64, height=48, channels=32, seed=1), True, {}),
        "random_32ch_nobg": (random_scene(n=n, n_cameras=1, width=64, height=48, channels=32, seed=4), False, {}),
        "random_sh3_rgbed": (dict(random_scene(n=n, n_cameras=2, width=64, height=48, seed=2),
                                  colors=0.5 * torch.randn(n, 16, 3, dtype=torch.float64,
                                                           generator=torch.Generator().manual_seed(5))),
                             False, {"sh_degree": 3, "render_mode": "RGB+ED"}),
    }
    n_head, res = (2000, 64) if dry_run else (20000, 256)
    scenes[f"head_{n_head}_{res}"] = (make_head_scene(n_head, res, dtype=torch.float64), True, {})
    return scenes


def parity(device: torch.device, dry_run: bool) -> dict:
    """The device backend (gsplat on CUDA; in the dry run the torch backend in float32 on CPU) against the
    CPU default backend in float64 (the judge): images, alphas and every gradient."""
    from avatarbench.render import rasterize
    from tests.render.scenes import PARAM_KEYS, render_and_grads

    dev_backend = "gsplat" if device.type == "cuda" else "torch"
    rows, ok = [], True
    for name, (sc64, with_bg, kwargs) in parity_scenes(dry_run).items():
        C = sc64["viewmats"].shape[0]
        D = sc64["colors"].shape[-1] if kwargs.get("sh_degree") is None else 3
        bg64 = torch.rand(C, D, dtype=torch.float64, generator=torch.Generator().manual_seed(9)) if with_bg else None
        sc32 = {k: (v.to(device, torch.float32) if torch.is_tensor(v) else v) for k, v in sc64.items()}
        bg32 = None if bg64 is None else bg64.to(device, torch.float32)
        cd, ad, md, gd = render_and_grads(lambda *a, **k: rasterize(*a, backend=dev_backend, **k), sc32,
                                          backgrounds=bg32, **kwargs)
        cr, ar, mr, gr = render_and_grads(lambda *a, **k: rasterize(*a, backend="auto", **k), sc64,
                                          backgrounds=bg64, **kwargs)
        rec = {"scene": name, "n": int(sc64["means"].shape[0]), "channels": D, "background": with_bg,
               "device_backend": md.get("backend"), "judge_backend": mr.get("backend") + " float64 cpu",
               "images": _stats(cd, cr), "alphas": _stats(ad, ar)}
        for k in PARAM_KEYS + ("means2d", "backgrounds"):
            if gd.get(k) is not None and gr.get(k) is not None:
                rec[f"grad_{k}"] = _stats(gd[k], gr[k])
        fails = []
        for key in ("images", "alphas"):
            if rec[key]["max_abs"] >= TOL["image_max_abs"] or rec[key]["p999_rel_to_max"] >= TOL["image_p999_rel"]:
                fails.append(key)
        for k, v in rec.items():
            if k.startswith("grad_") and (v["cosine"] <= TOL["grad_cosine"] or v["p999_rel_to_max"] >= TOL["grad_p999_rel"]):
                fails.append(k)
        rec["pass"] = not fails
        rec["failures"] = fails
        ok &= not fails
        rows.append(rec)
        print(f"  {name:22s} {'pass' if not fails else 'FAIL ' + ','.join(fails)}  "
              f"img max {rec['images']['max_abs']:.2e}", flush=True)
    return {"ok": ok, "tolerances": TOL, "rows": rows}


def pytest_gpu(dry_run: bool) -> dict:
    """``pytest -m gpu`` on the test suite (on CPU every test is skipped: the dry run checks collection)."""
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests/render/test_gpu_parity.py"]
    if not dry_run:
        cmd[-1] = "tests"
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    tail = (p.stdout + p.stderr).strip().splitlines()[-15:]
    return {"ok": p.returncode in (0, 5), "returncode": p.returncode, "command": " ".join(cmd[1:]), "tail": tail}


def renderer_fps(device: torch.device, dry_run: bool) -> list[dict]:
    """Forward-only and forward+backward time of the renderer alone at paper sizes (the GA target scene:
    ~100k Gaussians at 802x550)."""
    from avatarbench.render.benchmark import make_head_scene, time_render

    sizes = [(2000, 64)] if dry_run else [(20000, 512), (100000, 512), (100000, 802)]
    rows = []
    for n, res in sizes:
        sc = make_head_scene(n, res, device=device)
        r = time_render(sc, backend="gsplat" if device.type == "cuda" else "auto", repeats=2 if dry_run else 10)
        r.update(num_gaussians=n, n_gaussians=n, resolution=res, width=res, height=res, device=str(device),
                 threads=torch.get_num_threads(), forward_fps=1.0 / r["forward_s"])
        rows.append(r)
        print(f"  renderer N={n} {res}^2: fwd {r['forward_s'] * 1e3:.2f} ms ({r['forward_fps']:.0f} FPS), "
              f"fwd+bwd {r['total_s'] * 1e3:.2f} ms", flush=True)
    return rows


def method_speed(device: torch.device, dry_run: bool, train_steps: int) -> list[dict]:
    """Per method at its paper preset (dry run: smoke): training it/s + peak memory over ``train_steps``
    steps, and render FPS of the full per-frame work (driving model, binding / networks, rasterization,
    SR) at the paper size, with ``method.render`` under ``torch.no_grad``."""
    from avatarbench.engine.config import RunRequest, resolve_config
    from avatarbench.engine.method import Sample
    from avatarbench.engine.registry import get_spec, load_method_class
    from avatarbench.engine.run import load_run_subject, train_frames_for
    from avatarbench.engine.trainer import seed_everything

    preset = "smoke" if dry_run else "paper"
    rows = []
    for name in ALL_METHODS:
        row: dict = {"method": name, "preset": preset, "device": str(device)}
        try:
            spec = get_spec(name)
            subject = "synth_head_a" if spec.kind == "head" else "synth_body_a"
            sets = ("engine.num_threads=1",) if dry_run else ()
            cfg = resolve_config(RunRequest(name, "self_reenact", preset, subject=subject, sets=sets))
            cfg.engine.device = str(device)
            seed_everything(0)
            subj = load_run_subject(cfg)
            frames = train_frames_for(subj, cfg)
            t0 = time.perf_counter()
            method = load_method_class(name)(cfg.method, subj, device)
            method.setup(frames)
            _sync(device)
            row["setup_s"] = time.perf_counter() - t0
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            samples = [Sample(f, f.image().to(device), None) for f in frames[: min(len(frames), 8)]]
            start = max(1, method.total_iterations() - train_steps - 2)
            method.train_step(samples[0], start - 1)  # warm-up (and stage switch where there is one)
            _sync(device)
            t0 = time.perf_counter()
            for i in range(train_steps):
                method.train_step(samples[i % len(samples)], start + i)
            _sync(device)
            dt = (time.perf_counter() - t0) / train_steps
            row.update(train_steps=train_steps, train_step_s=dt, train_it_per_s=1.0 / dt,
                       num_gaussians=method.num_gaussians())
            if device.type == "cuda":
                row["peak_cuda_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            tgt = FPS_TARGETS[name]
            w, h = (frames[0].camera.width, frames[0].camera.height) if dry_run else tgt["size"]
            frame = replace(frames[0], camera=frames[0].camera.resized(w, h))
            reps = 3 if dry_run else 50
            with torch.no_grad():
                for _ in range(3):
                    out = method.render(frame)
                _sync(device)
                t0 = time.perf_counter()
                for _ in range(reps):
                    out = method.render(frame)
                _sync(device)
            fps = reps / (time.perf_counter() - t0)
            img = out.rgb if hasattr(out, "rgb") else out["rgb"]
            row.update(render_fps=fps, render_size=[w, h], output_shape=list(img.shape), fps_target=tgt["fps"],
                       meets_target=(fps >= tgt["fps"]) if not dry_run else None, official=tgt["official"])
            print(f"  {name:22s} {row['train_it_per_s']:8.2f} it/s  {fps:8.1f} FPS @ {w}x{h} -> "
                  f"{tuple(img.shape)}  {row['num_gaussians']} Gaussians", flush=True)
            del method
            if device.type == "cuda":
                torch.cuda.empty_cache()
        except Exception as e:
            row["error"] = f"{type(e).__name__}: {e}"
            row["traceback_tail"] = traceback.format_exc().splitlines()[-8:]
            print(f"  {name}: FAILED {row['error']}", flush=True)
        rows.append(row)
    return rows


def correctness(device: torch.device, dry_run: bool, iterations: int, store: Path) -> dict:
    """One short training run per head method on the device and on the CPU (same seed, same config);
    their PSNRs must agree within the method's measured seed noise (results/regression/<method>.json)."""
    from avatarbench.engine.config import RunRequest
    from avatarbench.engine.run import execute
    from avatarbench.results.regression import load_reference

    rows, ok = [], True
    devices = ["cpu", "cpu"] if dry_run else [str(device), "cpu"]
    for name in HEAD_METHODS:
        psnr = {}
        for i, dev in enumerate(devices):
            sets = (f"engine.device={dev}", "engine.seed=0", f"output.root={store / f'{dev}{i}'}",
                    "engine.eval_frames=2", "output.save_videos=false", "engine.wandb.mode=disabled",
                    f"protocol.max_frames={4 if dry_run else 24}") + SHORT_SCHEDULE[name](iterations)
            t0 = time.perf_counter()
            out = execute(RunRequest(name, "self_reenact", "smoke", sets=sets, subject="synth_head_a"),
                          progress=False, echo=lambda *a, **k: None)
            psnr[f"{dev}{i}"] = {"psnr": out.results["metrics"]["psnr"], "seconds": time.perf_counter() - t0}
        vals = [v["psnr"] for v in psnr.values()]
        try:
            noise = load_reference(name)["splits"]["self_reenact"]["psnr"]["noise_std"]
        except Exception:
            noise = None
        tol = max(0.2, 3 * noise) if noise else 0.2
        agree = abs(vals[0] - vals[1]) <= tol
        ok &= agree
        rows.append({"method": name, "iterations": iterations, "runs": psnr, "delta_db": vals[0] - vals[1],
                     "tolerance_db": tol, "seed_noise_std_db": noise, "agree": agree})
        print(f"  {name}: {psnr} delta {vals[0] - vals[1]:+.3f} dB (tol {tol:.2f})", flush=True)
    return {"ok": ok, "rows": rows}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.get("methods", {}).get("rows", []) if "render_fps" in r]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    ax = axes[0]
    if rows:
        names = [r["method"].replace("_", "\n") for r in rows]
        fps = [r["render_fps"] for r in rows]
        bars = ax.bar(names, fps, color="#4C72B0")
        for b, r in zip(bars, rows):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{r['render_fps']:.0f}", ha="center",
                    va="bottom", fontsize=8)
            ax.plot([b.get_x(), b.get_x() + b.get_width()], [r["fps_target"]] * 2, "r--", lw=1)
        ax.set_ylim(0, max(fps + [r["fps_target"] for r in rows]) * 1.15)
    else:
        ax.text(0.5, 0.5, "no method rows", ha="center", transform=ax.transAxes)
    ax.set_ylabel("render FPS (full per-frame work)"), ax.set_title("methods (red: target)", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    ax = axes[1]
    rr = report.get("render", {}).get("rows", [])
    if rr:
        labels = [f"{r['num_gaussians'] // 1000}k\n{r['width']}²" for r in rr]
        x = range(len(rr))
        ax.bar([i - 0.2 for i in x], [r["forward_s"] * 1e3 for r in rr], 0.4, label="forward")
        ax.bar([i + 0.2 for i in x], [r["total_s"] * 1e3 for r in rr], 0.4, label="fwd+bwd")
        ax.set_xticks(list(x), labels, fontsize=7)
        ax.legend(fontsize=7)
    ax.set_ylabel("ms"), ax.set_title("renderer alone", fontsize=9)
    env = report.get("gpu_check", {}).get("environment", {})
    fig.suptitle(f"avatarbench GPU check on {env.get('gpu', env.get('device', '?'))}"
                 f"{' (DRY RUN: numbers meaningless)' if report.get('gpu_check', {}).get('dry_run') else ''}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder for the report (created)")
    ap.add_argument("--dry-run", action="store_true", help="every step on CPU at tiny sizes (what CI runs)")
    ap.add_argument("--train-steps", type=int, default=None, help="timed training steps per method "
                    "(default 200 on GPU, 2 in the dry run)")
    ap.add_argument("--correctness-iterations", type=int, default=None,
                    help="iterations of the GPU-vs-CPU training check (default 120; dry run 6)")
    ap.add_argument("--skip", default="", help="comma-separated steps to skip (e.g. correctness,pytest_gpu)")
    args = ap.parse_args(argv)

    cuda = torch.cuda.is_available()
    if not args.dry_run and not cuda:
        print("gpu_check: no CUDA device here; use --dry-run to exercise the script on CPU", file=sys.stderr)
        return 2
    device = torch.device("cuda" if cuda and not args.dry_run else "cpu")
    if args.dry_run:
        torch.set_num_threads(1)
    train_steps = args.train_steps or (2 if args.dry_run else 200)
    corr_iters = args.correctness_iterations or (6 if args.dry_run else 120)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    t_start = time.perf_counter()
    chk = Check(args.out, args.dry_run)
    chk.report["environment"] = chk.step("environment", lambda: environment(device))
    steps = [
        ("gsplat_jit", lambda: gsplat_jit(device), 120),
        ("parity", lambda: parity(device, args.dry_run), 60),
        ("pytest_gpu", lambda: pytest_gpu(args.dry_run), 120),
        ("renderer_fps", lambda: renderer_fps(device, args.dry_run), 30),
        ("method_speed", lambda: method_speed(device, args.dry_run, train_steps), 150),
        ("correctness", lambda: correctness(device, args.dry_run, corr_iters, args.out / "runs"), 150),
    ]
    for name, fn, budget in steps:
        if name in skip:
            chk.report["steps"][name] = {"ok": True, "skipped": True}
            continue
        chk.step(name, fn, budget)
    chk.report["total_s"] = time.perf_counter() - t_start

    # the bench schema (same as the CPU report of `avatarbench bench`) + this check's own section
    env = chk.report.get("environment") or {}
    st = chk.report["steps"]
    bench = {"render": {"environment": env, "rows": (st.get("renderer_fps") or {}).get("result") or []},
             "methods": {"environment": env, "rows": (st.get("method_speed") or {}).get("result") or []},
             "gpu_check": {"dry_run": args.dry_run, "environment": env, "failed_steps": chk.failed,
                           "steps": st, "total_s": chk.report["total_s"]}}
    slug = env.get("device_slug") or ("dry-run-cpu" if args.dry_run else "cuda")
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(slug)).strip("-").lower()
    path = args.out / f"{slug}.json"
    path.write_text(json.dumps(bench, indent=2, default=str) + "\n")
    try:
        plot(bench, args.out / f"{slug}_gpu_check.png")
    except Exception as e:  # a plot problem must not hide the numbers
        print(f"[gpu_check] plot failed: {type(e).__name__}: {e}", flush=True)
    print(f"[gpu_check] report: {path}  ({chk.report['total_s']:.0f} s; "
          f"{'all steps ok' if not chk.failed else 'FAILED: ' + ', '.join(chk.failed)})", flush=True)
    return 1 if chk.failed else 0


if __name__ == "__main__":
    sys.exit(main())
