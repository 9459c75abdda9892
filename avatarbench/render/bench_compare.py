"""``avatarbench bench render``: the compiled (cpp) and torch backends and the peer taichi-splatting
0.13, on identical scenes, in one interleaved run per thread count.

Every backend renders the same projected, binned Gaussians (our projection and binning; the peer's
CUDA tile mapper does not run on CPU), so the timings differ only by the compositing. One
subprocess per thread count (Taichi fixes its thread count at ``ti.init``); inside it, each repeat
runs the backends in rotating order and the minimum is kept. The scene is rendered over a white
background, and the loss weights every colour channel and the alpha.

The peer is the benchmark-only CPU adaptation of its two rasterizer kernels in
``benchmarks/peer_taichi_splatting/`` (Apache-2.0, changes listed there); it is skipped with a
note when taichi-splatting is not installed or the checkout has no ``benchmarks/`` folder.

The arithmetic floor of a scene is ``evals x (1/exp_rate + 20/flop_rate)``, where ``evals`` are the
Gaussian-pixel evaluations of gsplat's per-pixel loop (forward: up to the saturating entry;
backward: up to the last contributor) and the rates are measured on this machine with one thread
(``torch.exp`` on 4M floats, a 1024^2 float32 matmul). Fraction of floor = floor / time.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

BACKENDS = ("cpp", "torch", "taichi")
REPORTED = BACKENDS + ("cpp_forced",)
DEFAULT_GRID = [(kind, n, w, h) for kind in ("head", "random") for n in (5000, 20000, 100000)
                for (w, h) in ((256, 256), (512, 512), (550, 802))]


def make_scene(kind: str, n: int, width: int, height: int, seed: int = 0) -> dict:
    """A float32 scene of ``n`` Gaussians and one pinhole camera (width x height).

    ``head``: :func:`avatarbench.render.benchmark.make_head_scene`'s cloud (0.15 m ball 1 m away,
    scales 2-6 mm) under a ~20 degree vertical fov. ``random``: means uniform in the view frustum
    between 2 and 4 m, log-uniform scales 5-40 mm, opacities 0.05-0.95, ~40 degree fov.
    """
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    if kind == "head":
        u = torch.randn(n, 3, generator=g, dtype=f64)
        u = u / u.norm(dim=1, keepdim=True)
        r = 0.15 * torch.rand(n, 1, generator=g, dtype=f64) ** (1.0 / 3.0)
        means = u * r * torch.tensor([0.85, 1.0, 0.9], dtype=f64)
        scales = 0.002 + 0.004 * torch.rand(n, 3, generator=g, dtype=f64)
        opacities = 0.1 + 0.8 * torch.rand(n, generator=g, dtype=f64)
        dist, fov = 1.0, 20.0
    elif kind == "random":
        z = 2.0 + 2.0 * torch.rand(n, generator=g, dtype=f64)
        t = math.tan(math.radians(20.0))
        xy = (2 * torch.rand(n, 2, generator=g, dtype=f64) - 1) * t * z[:, None]
        xy[:, 0] *= width / height
        means = torch.cat([xy, (z - 3.0)[:, None]], 1)
        scales = torch.exp(math.log(0.005) + math.log(8.0) * torch.rand(n, 3, generator=g, dtype=f64))
        opacities = 0.05 + 0.9 * torch.rand(n, generator=g, dtype=f64)
        dist, fov = 3.0, 40.0
    else:
        raise ValueError(f"bench scene kind {kind!r} (expected 'head' or 'random')")
    quats = torch.randn(n, 4, generator=g, dtype=f64)
    colors = torch.rand(n, 3, generator=g, dtype=f64)
    viewmat = torch.eye(4, dtype=f64)
    viewmat[2, 3] = dist
    f = 0.5 * height / math.tan(math.radians(fov / 2))
    K = torch.tensor([[f, 0.0, 0.5 * width], [0.0, f, 0.5 * height], [0.0, 0.0, 1.0]], dtype=f64)
    to = dict(dtype=torch.float32)
    return dict(means=means.to(**to), quats=quats.to(**to), scales=scales.to(**to), opacities=opacities.to(**to),
                colors=colors.to(**to), viewmats=viewmat[None].to(**to), Ks=K[None].to(**to), width=width,
                height=height)


# ------------------------------------------------------------------------------------------
# the peer
# ------------------------------------------------------------------------------------------
def peer_module():
    """benchmarks/peer_taichi_splatting/raster_cpu.py, or None with the reason."""
    from avatarbench.paths import repo_root

    root = repo_root()
    path = root / "benchmarks" / "peer_taichi_splatting" / "raster_cpu.py" if root else None
    if path is None or not path.exists():
        return None, "benchmarks/peer_taichi_splatting not found (needs a source checkout)"
    if importlib.util.find_spec("taichi") is None or importlib.util.find_spec("taichi_splatting") is None:
        return None, ("taichi-splatting not installed (pip install taichi==1.7.4 beartype tqdm tensordict; "
                      "pip install taichi-splatting==0.13 --no-deps)")
    spec = importlib.util.spec_from_file_location("peer_taichi_splatting_raster_cpu", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, None


class PeerCompositor:
    """taichi-splatting's (CPU-adapted) kernels behind a torch autograd Function.

    Settings follow the peer's defaults (alpha clamp 0.99) unless ``clamp_max_alpha`` is given;
    ``matched=True`` uses gsplat's 0.999. Background is composited outside as ``img + (1 - a) bg``,
    as the peer's callers do; its backward ignores the alpha gradient (the peer's behaviour).
    """

    def __init__(self, mod, feature_size: int, tile_size: int = 16, clamp_max_alpha: float = 0.99):
        self.fwd = mod.forward_kernel(tile_size, clamp_max_alpha, 1.0 / 255.0, 0.9999, feature_size)
        self.bwd = mod.backward_kernel(tile_size, (2, 2), clamp_max_alpha, 1.0 / 255.0, feature_size)
        self.tile_size = tile_size

    def __call__(self, means2d, conics, colors, opacities, backgrounds, bins, width, height):
        """means2d (1,N,2), conics (1,N,3), colors (1,N,D), opacities (1,N) -> (1,H,W,D), (1,H,W,1)."""
        from avatarbench.render._torch_backend import pin_one_thread

        points = torch.cat([means2d[0], conics[0], opacities[0][:, None]], 1)  # (N, 6) uv, conic, alpha
        feats = colors[0]
        n_tiles = bins.tiles_x * bins.tiles_y
        ranges = torch.zeros(n_tiles, 2, dtype=torch.int32)
        ranges[bins.slot_tiles, 0] = bins.slot_offsets[:-1].to(torch.int32)
        ranges[bins.slot_tiles, 1] = bins.slot_offsets[1:].to(torch.int32)
        o2p = bins.flat_ids.to(torch.int32).contiguous()
        fwd, bwd = self.fwd, self.bwd

        class _F(torch.autograd.Function):
            @staticmethod
            def forward(ctx, pts, fts):
                img = torch.empty(height, width, fts.shape[1])
                alpha = torch.empty(height, width)
                last = torch.empty(height, width, dtype=torch.int32)
                fwd(pts.detach().contiguous(), fts.detach().contiguous(), ranges, o2p, img, alpha, last)
                ctx.save_for_backward(pts, fts, alpha, last)
                ctx.mark_non_differentiable(alpha)
                return img, alpha

            @staticmethod
            def backward(ctx, g_img, g_alpha):
                pts, fts, alpha, last = ctx.saved_tensors
                gp, gf = torch.zeros_like(pts), torch.zeros_like(fts)
                bwd(pts.detach().contiguous(), fts.detach().contiguous(), ranges, o2p, alpha, last, g_img.contiguous(), gp, gf)
                pin_one_thread()  # as our backends: the projection backward runs on one thread
                return gp, gf

        img, alpha = _F.apply(points, feats)
        img, alpha = img[None], alpha[None, ..., None]
        if backgrounds is not None:
            img = img + (1.0 - alpha) * backgrounds[:, None, None, :]
        return img, alpha


# ------------------------------------------------------------------------------------------
# one timed pipeline
# ------------------------------------------------------------------------------------------
def _pipeline(backend: str, sc: dict, params: dict, bg, peer=None):
    from avatarbench.render import rasterize
    from avatarbench.render._torch_backend import RestoreThreads, single_thread, unpin_threads
    from avatarbench.render.projection import project_gaussians
    from avatarbench.render.tiles import bin_gaussians

    W, H = sc["width"], sc["height"]
    if backend == "cpp_forced":  # all requested threads, without the idle-core cap
        os.environ["AVATARBENCH_RENDER_THREADS"] = str(torch.get_num_threads())
        try:
            return _pipeline("cpp", sc, params, bg, peer)
        finally:
            del os.environ["AVATARBENCH_RENDER_THREADS"]
    if backend in ("cpp", "torch"):
        img, alpha, _ = rasterize(params["means"], params["quats"], params["scales"], params["opacities"],
                                  params["colors"], sc["viewmats"], sc["Ks"], W, H, backgrounds=bg, backend=backend)
        return img, alpha
    unpin_threads()
    names = ("means", "quats", "scales", "opacities", "colors")
    params = dict(zip(names, RestoreThreads.apply(*[params[k] for k in names])))
    with single_thread():  # the same torch projection/binning as the cpp backend, on one thread
        proj = project_gaussians(params["means"], params["quats"], params["scales"], params["opacities"],
                                 sc["viewmats"], sc["Ks"], W, H)
        bins = bin_gaussians(proj.means2d, proj.radii, proj.depths, 16, W, H)
        vis = (proj.radii > 0).all(-1)
        return peer(proj.means2d, proj.conics, params["colors"][None] * vis[..., None],
                    params["opacities"][None] * vis, bg, bins, W, H)


def peer_parity(peer_mod) -> dict:
    """The peer (float32, gsplat's 0.999 clamp) and the cpp backend (float32) against the dense
    float64 reference, on a small random scene, without and with a background.

    Returns max relative errors (max |x - ref| / max |ref|) of the image and of the gradients of
    means, opacities and colours, per renderer and background setting.
    """
    from avatarbench.render import rasterize
    from avatarbench.render._reference import reference_rasterize

    sc64 = make_scene("random", 300, 64, 48, seed=5)
    sc64 = {k: (v.double() if torch.is_tensor(v) else v) for k, v in sc64.items()}
    wts = torch.rand(1, 48, 64, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    peer = PeerCompositor(peer_mod, 3, clamp_max_alpha=0.999)
    keys = ("means", "opacities", "colors")

    def run(fn, dtype, bg):
        params = {k: sc64[k].to(dtype).clone().requires_grad_(True) for k in
                  ("means", "quats", "scales", "opacities", "colors")}
        sc = {k: (v.to(dtype) if torch.is_tensor(v) else v) for k, v in sc64.items()}
        img, alpha = fn(sc, params, None if bg is None else bg.to(dtype))
        ((img * wts.to(dtype)).sum()).backward()
        return img.detach().double(), {k: params[k].grad.double() for k in keys}

    def ref(sc, p, bg):
        img, alpha, _ = reference_rasterize(p["means"], p["quats"], p["scales"], p["opacities"], p["colors"],
                                            sc["viewmats"], sc["Ks"], 64, 48, backgrounds=bg)
        return img, alpha

    def cpp(sc, p, bg):
        img, alpha, _ = rasterize(p["means"], p["quats"], p["scales"], p["opacities"], p["colors"], sc["viewmats"],
                                  sc["Ks"], 64, 48, backgrounds=bg, backend="cpp")
        return img, alpha

    def taichi(sc, p, bg):
        return _pipeline("taichi", sc, p, bg, peer)

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))

    out = {}
    for bg_name, bg in (("no_background", None), ("white_background", torch.ones(1, 3, dtype=torch.float64))):
        r_img, r_g = run(ref, torch.float64, bg)
        for name, fn in (("cpp", cpp), ("taichi", taichi)):
            img, g = run(fn, torch.float32, bg)
            out[f"{name}/{bg_name}"] = {"image": rel(img, r_img), **{f"grad_{k}": rel(g[k], r_g[k]) for k in keys}}
    return out


def machine_rates() -> dict:
    """exp/s and FLOP/s of one thread (torch.exp over 4M float32, 1024^2 float32 matmul)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = -torch.rand(1 << 22) * 5
        a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
        te, tm = math.inf, math.inf
        for _ in range(5):
            t = time.perf_counter()
            torch.exp(x)
            te = min(te, time.perf_counter() - t)
            t = time.perf_counter()
            a @ b
            tm = min(tm, time.perf_counter() - t)
        return {"exp_per_s": x.numel() / te, "flop_per_s": 2 * 1024**3 / tm}
    finally:
        torch.set_num_threads(n)


def evals_of(sc: dict) -> tuple[int, int]:
    from avatarbench.render._cpp_backend import count_evals
    from avatarbench.render.projection import project_gaussians
    from avatarbench.render.tiles import bin_gaussians

    W, H = sc["width"], sc["height"]
    with torch.no_grad():
        proj = project_gaussians(sc["means"], sc["quats"], sc["scales"], sc["opacities"], sc["viewmats"], sc["Ks"],
                                 W, H)
        bins = bin_gaussians(proj.means2d, proj.radii, proj.depths, 16, W, H)
        op = sc["opacities"][None] * (proj.radii > 0).all(-1)
        return count_evals(proj.means2d, proj.conics, op, bins, W, H)


def worker(threads: int, grid, backends, repeats: int, echo=print) -> list[dict]:
    """Time every scene of ``grid`` [(kind, n, w, h)] for ``backends`` on ``threads`` threads."""
    torch.set_num_threads(threads)
    peer_mod, why = (None, None)
    if "taichi" in backends:
        peer_mod, why = peer_module()
        if peer_mod is None:
            echo(f"peer skipped: {why}")
            backends = [b for b in backends if b != "taichi"]
        else:
            import taichi as ti

            ti.init(arch=ti.cpu, cpu_max_num_threads=threads, log_level=ti.ERROR, offline_cache=True)
    peer = PeerCompositor(peer_mod, 3) if peer_mod is not None else None
    if threads > 1 and "cpp" in backends:
        backends = list(backends) + ["cpp_forced"]
    if peer_mod is not None and threads == 1:
        echo("PARITY " + json.dumps(peer_parity(peer_mod)))
    rows = []
    for kind, n, w, h in grid:
        sc = make_scene(kind, n, w, h)
        bg = torch.ones(1, 3)
        wts = torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(1))
        best = {b: {"fwd_s": math.inf, "fwdbwd_s": math.inf} for b in backends}
        for rep in range(repeats + 1):
            order = backends[rep % len(backends):] + backends[:rep % len(backends)]
            for b in order:
                params = {k: sc[k].clone().requires_grad_(True) for k in
                          ("means", "quats", "scales", "opacities", "colors")}
                c0 = time.process_time()
                t0 = time.perf_counter()
                img, alpha = _pipeline(b, sc, params, bg, peer)
                loss = (img * wts).sum() + alpha.sum()
                t1 = time.perf_counter()
                loss.backward()
                t2 = time.perf_counter()
                c2 = time.process_time()
                if rep == 0:
                    continue  # warm-up (and the peer's kernel compilation)
                best[b]["fwd_s"] = min(best[b]["fwd_s"], t1 - t0)
                best[b]["fwdbwd_s"] = min(best[b]["fwdbwd_s"], t2 - t0)
                best[b]["fwdbwd_cpu_s"] = min(best[b].get("fwdbwd_cpu_s", math.inf), c2 - c0)
        ev_f, ev_b = evals_of(sc)
        for b in backends:
            row = {"scene": kind, "n": n, "width": w, "height": h, "threads": threads, "backend": b,
                   "evals_fwd": ev_f, "evals_bwd": ev_b, **best[b]}
            rows.append(row)
            echo(f"{threads}t {kind:6s} {n:>6d} {w}x{h} {b:6s} fwd {row['fwd_s'] * 1e3:8.1f} ms  "
                 f"fwd+bwd {row['fwdbwd_s'] * 1e3:8.1f} ms")
    return rows


def run_compare(grid, thread_counts=(1, 2), backends=BACKENDS, repeats: int = 3, echo=print) -> dict:
    """Run :func:`worker` in one subprocess per thread count; returns the report dict."""
    rows, notes, parity = [], [], None
    for t in thread_counts:
        cmd = [sys.executable, "-m", "avatarbench.render.bench_compare", json.dumps(
            {"threads": t, "grid": [list(g) for g in grid], "backends": list(backends), "repeats": repeats})]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
        out = []
        for line in proc.stdout:
            if line.startswith("ROWS "):
                rows += json.loads(line[5:])
            elif line.startswith("PARITY "):
                parity = json.loads(line[7:])
                echo("peer parity vs dense float64 reference: " + json.dumps(parity))
            else:
                echo(line.rstrip())
                out.append(line.rstrip())
        if proc.wait() != 0:
            raise RuntimeError(f"bench worker (threads={t}) failed: {out[-1:] or 'no output'}")
        notes += [ln for ln in out if ln.startswith("peer skipped")]
    rates = machine_rates()
    add_floor(rows, rates)
    return {"rows": rows, "machine": rates, "notes": notes, "peer_parity": parity, "load_average": os.getloadavg(),
            "cpu_count": os.cpu_count()}


if __name__ == "__main__":
    cfg = json.loads(sys.argv[1])
    result = worker(cfg["threads"], [tuple(g) for g in cfg["grid"]], cfg["backends"], cfg["repeats"],
                    echo=lambda s: print(s, flush=True))
    print("ROWS " + json.dumps(result), flush=True)


REDUCED_GRID = [("head", 5000, 256, 256), ("head", 20000, 256, 256), ("head", 20000, 512, 512),
                ("head", 100000, 550, 802), ("random", 20000, 256, 256), ("random", 100000, 550, 802)]


def add_floor(rows: list[dict], rates: dict) -> None:
    """Arithmetic floor per row; the fraction is taken against process CPU time for 1 thread
    (the work, without the waiting for a core that a shared machine adds) and wall time otherwise."""
    per_eval = 1.0 / rates["exp_per_s"] + 20.0 / rates["flop_per_s"]
    for r in rows:
        r["floor_fwd_s"] = r["evals_fwd"] * per_eval
        r["floor_fwdbwd_s"] = (r["evals_fwd"] + r["evals_bwd"]) * per_eval
        t = r["fwdbwd_cpu_s"] if (r["threads"] == 1 and "fwdbwd_cpu_s" in r) else r["fwdbwd_s"]
        r["floor_fraction"] = r["floor_fwdbwd_s"] / t


def write_report(report: dict, out_dir: Path, grid_name: str) -> list[Path]:
    """render_compare.json / .md / .png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = report["rows"]
    jpath = out_dir / "render_compare.json"
    jpath.write_text(json.dumps(report, indent=1) + "\n")

    def get(scene, n, w, h, t, b, key="fwdbwd_s"):
        for r in rows:
            if (r["scene"], r["n"], r["width"], r["height"], r["threads"], r["backend"]) == (scene, n, w, h, t, b):
                return r[key]
        return None

    scenes = sorted({(r["scene"], r["n"], r["width"], r["height"]) for r in rows},
                    key=lambda s: (s[0], s[1], s[2] * s[3]))
    threads = sorted({r["threads"] for r in rows})
    backends = [b for b in REPORTED if any(r["backend"] == b for r in rows)]
    m = report["machine"]
    lines = [
        "# Renderer benchmark: compiled (cpp) vs torch backend vs taichi-splatting 0.13 (CPU)",
        "",
        f"Grid: {grid_name}. Load average during the run: {', '.join(f'{x:.1f}' for x in report['load_average'])} "
        f"on {report['cpu_count']} cores (a shared machine: wall times include waiting for a core; "
        "compare ratios within a row). White background, RGB, minimum over repeats after a warm-up, "
        "backends interleaved in rotating order. Machine rates (1 thread): "
        f"{m['exp_per_s'] / 1e9:.2f} G exp/s, {m['flop_per_s'] / 1e9:.1f} GFLOP/s.",
        "",
        "Floor = gsplat-loop Gaussian-pixel evaluations x (1 exp + 20 flops) at the measured rates; "
        "`floor %` = floor / cpp time (process CPU time for 1 thread, wall time for 2). The machine rates "
        "are measured once, at the end, under the same load. `cpp 1t/2t`: the 1- and 2-thread runs are "
        "separate processes (Taichi fixes its thread count at init), minutes apart. `cpp` caps its kernel "
        "threads at the idle cores (see docs/renderer.md); `cpp_forced` uses both threads regardless.",
        "",
    ]
    for kind in ("fwdbwd_s", "fwd_s"):
        lines += [f"## {'forward + backward' if kind == 'fwdbwd_s' else 'forward only'} (wall ms)", ""]
        hdr = "| scene | N | size | threads | " + " | ".join(backends) + " | torch/cpp | taichi/cpp |"
        if kind == "fwdbwd_s":
            hdr += " cpp 1t/2t | evals (M) | floor % |"
        lines += [hdr, "|" + "---|" * (hdr.count("|") - 1)]
        for s in scenes:
            for t in threads:
                v = {b: get(*s, t, b, kind) for b in backends}
                cells = [f"{v[b] * 1e3:.1f}" if v[b] else "-" for b in backends]
                rt = f"{v['torch'] / v['cpp']:.1f}x" if v.get("torch") and v.get("cpp") else "-"
                rp = f"{v['taichi'] / v['cpp']:.1f}x" if v.get("taichi") and v.get("cpp") else "-"
                row = f"| {s[0]} | {s[1]} | {s[2]}x{s[3]} | {t} | " + " | ".join(cells) + f" | {rt} | {rp} |"
                if kind == "fwdbwd_s":
                    one, two = get(*s, 1, "cpp"), get(*s, 2, "cpp")
                    two_f = get(*s, 2, "cpp_forced")
                    sp = (f"{one / two:.2f}x (forced {one / two_f:.2f}x)" if (one and two and two_f and t == 2)
                          else "")
                    r0 = next(r for r in rows if (r["scene"], r["n"], r["width"], r["height"], r["threads"],
                                                  r["backend"]) == (*s, t, "cpp"))
                    ev = (r0["evals_fwd"] + r0["evals_bwd"]) / 1e6
                    row += f" {sp} | {ev:.1f} | {100 * r0['floor_fraction']:.0f} |"
                lines.append(row)
        lines.append("")
    cpu_rows = [r for r in rows if r["threads"] == 1 and "fwdbwd_cpu_s" in r]
    if cpu_rows:
        lines += ["## forward + backward, 1 thread, process CPU time (ms; the work, without waiting)", "",
                  "| scene | N | size | " + " | ".join(backends) + " | torch/cpp | taichi/cpp |",
                  "|" + "---|" * (5 + len(backends))]
        for s in scenes:
            v = {b: get(*s, 1, b, "fwdbwd_cpu_s") for b in backends}
            cells = [f"{v[b] * 1e3:.1f}" if v[b] else "-" for b in backends]
            rt = f"{v['torch'] / v['cpp']:.1f}x" if v.get("torch") and v.get("cpp") else "-"
            rp = f"{v['taichi'] / v['cpp']:.1f}x" if v.get("taichi") and v.get("cpp") else "-"
            lines.append(f"| {s[0]} | {s[1]} | {s[2]}x{s[3]} | " + " | ".join(cells) + f" | {rt} | {rp} |")
        lines.append("")
    if report.get("peer_parity"):
        lines += ["## Peer parity (float32, gsplat's 0.999 clamp) against the dense float64 reference", "",
                  "Max |x - ref| / max |ref| on a 300-Gaussian random scene, 64x48; loss = weighted image sum.", "",
                  "| renderer / background | image | grad means | grad opacities | grad colours |",
                  "|---|---|---|---|---|"]
        for k, v in report["peer_parity"].items():
            lines.append(f"| {k} | {v['image']:.1e} | {v['grad_means']:.1e} | {v['grad_opacities']:.1e} | "
                         f"{v['grad_colors']:.1e} |")
        lines.append("")
    for n in report.get("notes", []):
        lines.append(f"Note: {n}")
    mpath = out_dir / "render_compare.md"
    mpath.write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(threads), figsize=(5.5 * len(threads), 4), sharey=True, squeeze=False)
    colors = {"cpp": "tab:blue", "torch": "tab:orange", "taichi": "tab:green", "cpp_forced": "tab:cyan"}
    labels = [f"{s[0]}\n{s[1] // 1000}k {s[2]}x{s[3]}" for s in scenes]
    x = range(len(scenes))
    for ax, t in zip(axes[0], threads):
        wdt = 0.8 / len(backends)
        for i, b in enumerate(backends):
            vals = [(get(*s, t, b) or float("nan")) * 1e3 for s in scenes]
            ax.bar([j + (i - (len(backends) - 1) / 2) * wdt for j in x], vals, wdt, label=b, color=colors[b])
        ax.set_yscale("log")
        ax.set_xticks(list(x), labels, fontsize=7)
        ax.set_title(f"forward+backward, {t} thread{'s' if t > 1 else ''} (wall, shared box)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("ms (log)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    ppath = out_dir / "render_compare.png"
    fig.savefig(ppath, dpi=110)
    plt.close(fig)
    return [jpath, mpath, ppath]
