"""Finite-difference checks (float64) of the torch backend's hand-written backward."""

from __future__ import annotations

import torch

from avatarbench.render import rasterize
from avatarbench.render._torch_backend import _RasterizeTiles
from avatarbench.render.projection import project_gaussians
from avatarbench.render.tiles import bin_gaussians

from .scenes import random_scene


def _tiny_scene():
    return random_scene(n=6, n_cameras=2, width=11, height=9, seed=21, scale_range=(0.08, 0.2),
                        opacity_range=(0.3, 0.9))


def test_gradcheck_rasterize_end_to_end():
    sc = _tiny_scene()
    bg = torch.rand(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    inputs = tuple(t.clone().requires_grad_(True) for t in
                   (sc["means"], sc["quats"], sc["scales"], sc["opacities"], sc["colors"], bg))

    def f(means, quats, scales, opacities, colors, backgrounds):
        img, alpha, _ = rasterize(means, quats, scales, opacities, colors, sc["viewmats"], sc["Ks"],
                                  sc["width"], sc["height"], backgrounds=backgrounds, backend="torch", tile_size=4)
        return img, alpha

    img, alpha = f(*inputs)
    # fast_mode: random projections of the Jacobian (the full one costs ~800 backward passes)
    assert float(alpha.detach().max()) > 0.3  # the Gaussians are on screen
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_gradcheck_compositing_function():
    """The custom Function alone, w.r.t. its screen-space inputs (means2d, conics, colours, opacities, bg)."""
    sc = _tiny_scene()
    proj = project_gaussians(sc["means"], sc["quats"], sc["scales"], sc["opacities"], sc["viewmats"], sc["Ks"],
                             sc["width"], sc["height"])
    C, N = proj.depths.shape
    bins = bin_gaussians(proj.means2d, proj.radii, proj.depths, 4, sc["width"], sc["height"])
    assert bins.n_isects > 0
    g = torch.Generator().manual_seed(2)
    inputs = (
        proj.means2d.detach().clone().requires_grad_(True),
        proj.conics.detach().clone().requires_grad_(True),
        torch.rand(C, N, 5, dtype=torch.float64, generator=g).requires_grad_(True),
        (0.2 + 0.7 * torch.rand(C, N, dtype=torch.float64, generator=g)).requires_grad_(True),
        torch.rand(C, 5, dtype=torch.float64, generator=g).requires_grad_(True),
    )

    def f(m2d, con, col, op, bg):
        return _RasterizeTiles.apply(m2d, con, col, op, bg, bins, sc["width"], sc["height"], False, 1 << 10)

    # full Jacobian (not fast_mode): every output pixel against every input entry
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)
