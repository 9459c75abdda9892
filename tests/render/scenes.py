"""Small random scenes for the renderer tests (float64 by default)."""

from __future__ import annotations

import math

import torch


def look_at_viewmat(eye, target=(0.0, 0.0, 0.0), up=(0.0, -1.0, 0.0), dtype=torch.float64) -> torch.Tensor:
    """OpenCV world-to-camera (4, 4) for a camera at ``eye`` looking at ``target`` (y down)."""
    eye_t = torch.tensor(eye, dtype=dtype)
    z = torch.tensor(target, dtype=dtype) - eye_t
    z = z / z.norm()
    x = torch.linalg.cross(torch.tensor(up, dtype=dtype), z)
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z])  # rows: camera axes in world coordinates
    vm = torch.eye(4, dtype=dtype)
    vm[:3, :3] = R
    vm[:3, 3] = -R @ eye_t
    return vm


def random_scene(n: int = 40, n_cameras: int = 2, width: int = 26, height: int = 21, channels: int = 3,
                 seed: int = 0, dtype=torch.float64, scale_range=(0.02, 0.12), opacity_range=(0.05, 0.95)):
    """Random Gaussians around the origin seen by ``n_cameras`` cameras ~2 units away.

    The intrinsics have fx != fy and an off-centre principal point. Returns a dict of
    rasterize() arguments (means, quats, scales, opacities, colors, viewmats, Ks, width, height).
    """
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * torch.tensor([1.2, 1.0, 0.8], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype) * 2.0  # not normalised on purpose
    lo, hi = scale_range
    scales = lo + (hi - lo) * torch.rand(n, 3, generator=g, dtype=dtype)
    olo, ohi = opacity_range
    opacities = olo + (ohi - olo) * torch.rand(n, generator=g, dtype=dtype)
    colors = torch.rand(n, channels, generator=g, dtype=dtype)
    vms, Ks = [], []
    for c in range(n_cameras):
        ang = 0.35 * c
        eye = (2.1 * math.sin(ang), 0.15 * c, -2.1 * math.cos(ang))
        vms.append(look_at_viewmat(eye, dtype=dtype))
        Ks.append(torch.tensor([[24.0 + 2 * c, 0.0, 0.45 * width + c], [0.0, 27.0, 0.56 * height], [0.0, 0.0, 1.0]],
                               dtype=dtype))
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
                viewmats=torch.stack(vms), Ks=torch.stack(Ks), width=width, height=height)


PARAM_KEYS = ("means", "quats", "scales", "opacities", "colors")


def render_and_grads(fn, scene: dict, *, backgrounds=None, loss_seed: int = 7, **kwargs):
    """Render with ``fn`` (rasterize-like), backprop a fixed random weighting of colours and alphas.

    Returns:
        (colors, alphas, meta, grads) where grads maps each of PARAM_KEYS (and "backgrounds",
        "means2d") to its gradient (None when it does not influence the output).
    """
    params = {k: scene[k].detach().clone().requires_grad_(True) for k in PARAM_KEYS}
    bg = None if backgrounds is None else backgrounds.detach().clone().requires_grad_(True)
    colors, alphas, meta = fn(params["means"], params["quats"], params["scales"], params["opacities"],
                              params["colors"], scene["viewmats"], scene["Ks"], scene["width"], scene["height"],
                              backgrounds=bg, **kwargs)
    meta["means2d"].retain_grad()
    g = torch.Generator().manual_seed(loss_seed)
    wc = torch.randn(colors.shape, generator=g, dtype=torch.float64).to(colors.device, colors.dtype)
    wa = torch.randn(alphas.shape, generator=g, dtype=torch.float64).to(alphas.device, alphas.dtype)
    ((colors * wc).sum() + (alphas * wa).sum()).backward()
    grads = {k: params[k].grad for k in PARAM_KEYS}
    grads["backgrounds"] = None if bg is None else bg.grad
    grads["means2d"] = meta["means2d"].grad
    return colors.detach(), alphas.detach(), meta, grads
