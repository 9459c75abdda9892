"""Renderer microbenchmark: forward / backward seconds over Gaussian count x resolution.

Scene (:func:`make_head_scene`): a head-sized cloud -- means in a 0.15 m-radius ball 1 m in front
of the camera, scales 2-6 mm, opacities 0.1-0.9, random rotations and colours -- seen by one
square camera whose ~20 degree field of view the cloud fills. The loss is a fixed random weighting
of the image (plus the alphas), so backward touches every output.

:func:`run` is the entry point of ``avatarbench bench render`` (``avatarbench.results.bench``) and
of the script ``benchmarks/bench_render.py``.
"""

from __future__ import annotations

import math
import time

import torch

from avatarbench.render import rasterize


def make_head_scene(n: int, resolution: int, *, channels: int = 3, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32, seed: int = 0) -> dict:
    """A random head-like Gaussian cloud and one square camera.

    Returns:
        dict of rasterize() arguments: means (n,3), quats (n,4), scales (n,3), opacities (n,),
        colors (n, channels), viewmats (1,4,4), Ks (1,3,3), width, height.
    """
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, 3, generator=g, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    r = 0.15 * torch.rand(n, 1, generator=g, dtype=torch.float64) ** (1.0 / 3.0)  # uniform in a ball
    means = u * r * torch.tensor([0.85, 1.0, 0.9], dtype=torch.float64)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = 0.002 + 0.004 * torch.rand(n, 3, generator=g, dtype=torch.float64)
    opacities = 0.1 + 0.8 * torch.rand(n, generator=g, dtype=torch.float64)
    colors = torch.rand(n, channels, generator=g, dtype=torch.float64)
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[2, 3] = 1.0  # camera 1 m in front of the cloud, looking down +z
    f = 0.5 * resolution / math.tan(math.radians(10.0))  # ~20 degree field of view
    K = torch.tensor([[f, 0.0, 0.5 * resolution], [0.0, f, 0.5 * resolution], [0.0, 0.0, 1.0]],
                     dtype=torch.float64)
    to = dict(device=device, dtype=dtype)
    return dict(means=means.to(**to), quats=quats.to(**to), scales=scales.to(**to),
                opacities=opacities.to(**to), colors=colors.to(**to), viewmats=viewmat[None].to(**to),
                Ks=K[None].to(**to), width=resolution, height=resolution)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_render(scene: dict, backend: str = "auto", repeats: int = 3) -> dict:
    """Min-over-repeats forward, backward and total seconds for one scene (after one warm-up)."""
    device = scene["means"].device
    params = {k: scene[k].clone().requires_grad_(True) for k in ("means", "quats", "scales", "opacities", "colors")}
    H, W = scene["height"], scene["width"]
    weights = torch.rand(1, H, W, scene["colors"].shape[-1], generator=torch.Generator().manual_seed(1)).to(
        device=device, dtype=scene["means"].dtype)
    best = {"forward_s": math.inf, "backward_s": math.inf, "total_s": math.inf, "cpu_total_s": math.inf}
    meta = {}
    for it in range(repeats + 1):
        for p in params.values():
            p.grad = None
        _sync(device)
        c0 = time.process_time()
        t0 = time.perf_counter()
        img, alpha, meta = rasterize(params["means"], params["quats"], params["scales"], params["opacities"],
                                     params["colors"], scene["viewmats"], scene["Ks"], W, H, backend=backend)
        loss = (img * weights).sum() + alpha.sum()
        _sync(device)
        t1 = time.perf_counter()
        loss.backward()
        _sync(device)
        t2 = time.perf_counter()
        c2 = time.process_time()
        if it == 0:
            continue  # warm-up
        best["forward_s"] = min(best["forward_s"], t1 - t0)
        best["backward_s"] = min(best["backward_s"], t2 - t1)
        best["total_s"] = min(best["total_s"], t2 - t0)
        best["cpu_total_s"] = min(best["cpu_total_s"], c2 - c0)
    best["backend"] = meta.get("backend", backend)
    best["n_isects"] = int(meta.get("n_isects", -1)) if "n_isects" in meta else None
    best["visible"] = int((meta["radii"] > 0).all(-1).sum()) if "radii" in meta else None
    return best


def run(gaussian_counts, resolutions, device="cpu", backend="auto", repeats=3, echo=None) -> list[dict]:
    """Benchmark every (count, resolution) pair.

    Args:
        gaussian_counts: iterable of N.
        resolutions: iterable of square image sizes.
        device: torch device for the scene.
        backend: rasterize() backend.
        repeats: timed repeats (min reported) after one warm-up.
        echo: optional callable receiving one formatted line per finished row.

    Returns:
        one dict per pair: num_gaussians (= n_gaussians), resolution, width, height, device,
        threads, forward_s, backward_s,
        total_s (wall-clock minima), cpu_total_s (process CPU time of the fastest repeat: on a
        machine shared with other jobs it tells the work done, while wall time includes waiting),
        backend, n_isects, visible.
    """
    rows = []
    for n in gaussian_counts:
        for res in resolutions:
            scene = make_head_scene(int(n), int(res), device=device)
            row = {"num_gaussians": int(n), "n_gaussians": int(n), "resolution": int(res), "width": int(res),
                   "height": int(res), "device": str(device), "threads": torch.get_num_threads()}
            row.update(time_render(scene, backend=backend, repeats=repeats))
            rows.append(row)
            if echo is not None:
                echo(format_row(row))
    return rows


HEADER = f"{'N':>7} {'res':>5} {'fwd s':>8} {'bwd s':>8} {'total s':>8} {'cpu s':>8} {'isects':>9}  backend"


def format_row(r: dict) -> str:
    """One aligned text line of a result row (see :data:`HEADER`)."""
    return (f"{r['n_gaussians']:>7} {r['resolution']:>5} {r['forward_s']:>8.3f} {r['backward_s']:>8.3f} "
            f"{r['total_s']:>8.3f} {r['cpu_total_s']:>8.3f} {str(r['n_isects']):>9}  {r['backend']}")
