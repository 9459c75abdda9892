"""The tiled torch backend against the dense brute-force reference, float64, forward and gradients."""

from __future__ import annotations

import pytest
import torch

from avatarbench.render import rasterize
from avatarbench.render._reference import reference_rasterize

from .scenes import PARAM_KEYS, random_scene, render_and_grads


def _tiled(*args, **kwargs):
    return rasterize(*args, backend="torch", **kwargs)


def cam_to_world(viewmat: torch.Tensor, pts_cam) -> torch.Tensor:
    """Camera-frame points (n, 3) -> world, for a world-to-camera ``viewmat``."""
    p = torch.as_tensor(pts_cam, dtype=viewmat.dtype)
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    return (p - t) @ R  # R^T (p - t)


def add_gaussians(scene: dict, means_cam0, scales, opacities, seed: int = 3) -> dict:
    """Append Gaussians given in camera 0's frame (isotropic-ish scales, random colours)."""
    vm = scene["viewmats"][0]
    n = len(means_cam0)
    g = torch.Generator().manual_seed(seed)
    dt = scene["means"].dtype
    out = dict(scene)
    out["means"] = torch.cat([scene["means"], cam_to_world(vm, means_cam0)])
    out["quats"] = torch.cat([scene["quats"], torch.randn(n, 4, generator=g, dtype=dt)])
    s = torch.as_tensor(scales, dtype=dt)[:, None] * (1.0 + 0.3 * torch.rand(n, 3, generator=g, dtype=dt))
    out["scales"] = torch.cat([scene["scales"], s])
    out["opacities"] = torch.cat([scene["opacities"], torch.as_tensor(opacities, dtype=dt)])
    out["colors"] = torch.cat([scene["colors"], torch.rand(n, scene["colors"].shape[-1], generator=g, dtype=dt)])
    return out


def special_scene() -> dict:
    """Random scene plus Gaussians that exercise every culling / clamping branch in camera 0."""
    sc = random_scene(n=30, n_cameras=2, seed=11)
    return add_gaussians(
        sc,
        means_cam0=[
            [0.0, 0.0, -0.5],  # behind the camera
            [0.0, 0.1, 0.005],  # in front of it but closer than near_plane
            [10.0, 0.0, 2.0],  # far outside the image: radius box misses it
            [2.0, 0.1, 2.0],  # centre outside the fov margin (Jacobian clamp active), tail inside
            [-0.2, -1.6, 1.8],  # centre above the image, tail inside (clamp on y)
            [0.1, 0.0, 2.0],  # opacity below 1/255: culled
            [0.05, -0.1, 1.6],  # opacity 1: alpha clamped to 0.999 near its centre
        ],
        scales=[0.1, 0.1, 0.1, 0.4, 0.35, 0.2, 0.12],
        opacities=[0.9, 0.9, 0.9, 0.8, 0.7, 0.003, 1.0],
    )


def stack_scene() -> dict:
    """Twelve nearly opaque layers on the optical axis: T drops below 1e-4 (early termination)."""
    sc = random_scene(n=20, n_cameras=1, seed=5)
    layers = [[0.05 + 0.01 * i, 0.02 * i, 1.2 + 0.04 * i] for i in range(12)]
    return add_gaussians(sc, layers, scales=[0.3] * 12, opacities=[0.96] * 12, seed=9)


def _assert_close(a: torch.Tensor | None, b: torch.Tensor | None, what: str, rtol: float = 1e-9):
    if b is None or a is None:
        assert a is None or float(a.abs().max()) == 0.0, what
        assert b is None or float(b.abs().max()) == 0.0, what
        return
    scale = max(float(b.abs().max()), 1e-12)
    err = float((a - b).abs().max())
    assert err <= rtol * scale, f"{what}: max |diff| {err:.3e} vs max |ref| {scale:.3e}"


def _compare(scene: dict, *, backgrounds=None, tile_size: int = 16, **kwargs):
    c1, a1, m1, g1 = render_and_grads(lambda *a, **k: _tiled(*a, tile_size=tile_size, **k), scene,
                                      backgrounds=backgrounds, **kwargs)
    c2, a2, m2, g2 = render_and_grads(reference_rasterize, scene, backgrounds=backgrounds, **kwargs)
    assert c1.shape == c2.shape and a1.shape == a2.shape
    _assert_close(c1, c2, "colors", 1e-10)
    _assert_close(a1, a2, "alphas", 1e-10)
    assert torch.equal(m1["radii"], m2["radii"]), "radii"
    _assert_close(m1["means2d"].detach(), m2["means2d"].detach(), "means2d", 1e-12)
    _assert_close(m1["depths"].detach(), m2["depths"].detach(), "depths", 1e-12)
    _assert_close(m1["conics"].detach(), m2["conics"].detach(), "conics", 1e-10)
    for k in PARAM_KEYS + ("backgrounds", "means2d"):
        _assert_close(g1[k], g2[k], f"grad {k}")
    return c1, a1, m1, g1


def test_rgb_two_cameras_background_offcentre_intrinsics():
    sc = random_scene(n=40, n_cameras=2, seed=1)
    bg = torch.rand(2, 3, dtype=torch.float64)
    c, a, meta, g = _compare(sc, backgrounds=bg)
    assert float(a.max()) > 0.5 and float(a.min()) < 0.1  # the scene covers part of the images
    assert float(g["means"].abs().max()) > 0


@pytest.mark.parametrize("tile_size", [4, 8])
def test_tile_size_does_not_change_results(tile_size):
    sc = random_scene(n=30, n_cameras=1, seed=2, width=23, height=19)  # not multiples of the tile
    _compare(sc, tile_size=tile_size, backgrounds=torch.tensor([[0.2, 0.5, 0.9]], dtype=torch.float64))


def test_culling_and_jacobian_clamp_branches():
    sc = special_scene()
    c, a, meta, g = _compare(sc, backgrounds=torch.rand(2, 3, dtype=torch.float64))
    radii = meta["radii"][0, -7:]
    visible = (radii > 0).all(-1).tolist()
    assert visible == [False, False, False, True, True, False, True]
    m2d = meta["means2d"][0].detach()
    assert float(m2d[-4, 0]) > sc["width"]  # centred right of the image (x/z beyond the fov margin)
    assert float(m2d[-3, 1]) < 0  # centred above the image
    # Gaussians culled in every camera receive no gradient
    culled_everywhere = ~(meta["radii"] > 0).all(-1).any(0)
    assert bool(culled_everywhere[-2]) and bool(culled_everywhere[-5])  # opacity < 1/255; far off-screen
    for k in ("means", "quats", "scales", "opacities", "colors"):
        assert float(g[k][culled_everywhere].abs().max()) == 0.0


def test_early_termination_stack():
    sc = stack_scene()
    c, a, meta, g = _compare(sc, backgrounds=torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64))
    T = 1.0 - a
    # gsplat stops before T would reach 1e-4, so T stays above it; some pixels come close.
    assert float(T.min()) > 1e-4
    assert float(T.min()) < 1e-3


@pytest.mark.parametrize("channels", [1, 32])
def test_channel_counts(channels):
    sc = random_scene(n=25, n_cameras=1, channels=channels, seed=3, width=18, height=15)
    _compare(sc, backgrounds=torch.rand(1, channels, dtype=torch.float64))


def test_per_camera_colors():
    sc = random_scene(n=25, n_cameras=2, seed=4, width=18, height=15)
    sc["colors"] = torch.rand(2, 25, 3, dtype=torch.float64)
    _compare(sc)


@pytest.mark.parametrize("mode", ["D", "ED", "RGB+D", "RGB+ED"])
def test_depth_modes(mode):
    sc = random_scene(n=25, n_cameras=2, seed=6, width=18, height=15)
    c, a, meta, g = _compare(sc, render_mode=mode, backgrounds=torch.rand(2, 3, dtype=torch.float64))
    assert c.shape[-1] == (1 if mode in ("D", "ED") else 4)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_degrees(degree):
    sc = random_scene(n=25, n_cameras=2, seed=7, width=18, height=15)
    sc["colors"] = 0.6 * torch.randn(25, 16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    _compare(sc, sh_degree=degree, backgrounds=torch.rand(2, 3, dtype=torch.float64))


def test_antialiased_and_radius_clip():
    sc = random_scene(n=30, n_cameras=1, seed=8, width=20, height=16, scale_range=(0.005, 0.1))
    _compare(sc, rasterize_mode="antialiased")
    _compare(sc, radius_clip=2.0)
