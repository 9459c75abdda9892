"""The public rasterize() API: shapes, meta, backend choice, absgrad, float32 accuracy, edge cases."""

from __future__ import annotations

import pytest
import torch

from avatarbench.render import rasterize

from .scenes import random_scene, render_and_grads


def _args(sc):
    return (sc["means"], sc["quats"], sc["scales"], sc["opacities"], sc["colors"], sc["viewmats"], sc["Ks"],
            sc["width"], sc["height"])


def test_shapes_meta_and_auto_backend_on_cpu():
    sc = random_scene(n=20, n_cameras=2, channels=5, width=17, height=13)
    colors, alphas, meta = rasterize(*_args(sc), render_mode="RGB+ED")
    assert colors.shape == (2, 13, 17, 6) and alphas.shape == (2, 13, 17, 1)
    from avatarbench.render import _cpp_backend

    assert meta["backend"] == ("cpp" if _cpp_backend.available() else "torch")  # auto on CPU
    assert meta["radii"].shape == (2, 20, 2) and meta["radii"].dtype == torch.int32
    assert meta["means2d"].shape == (2, 20, 2) and meta["depths"].shape == (2, 20)
    assert meta["conics"].shape == (2, 20, 3) and meta["opacities"].shape == (2, 20)
    assert meta["gaussian_ids"] is None
    assert (meta["width"], meta["height"], meta["n_cameras"], meta["tile_size"]) == (17, 13, 2, 16)


def test_means2d_gradient_for_densification():
    sc = random_scene(n=20, n_cameras=1)
    _, _, meta, grads = render_and_grads(lambda *a, **k: rasterize(*a, **k), sc)
    g = grads["means2d"]
    visible = (meta["radii"] > 0).all(-1)
    assert g is not None and g.shape == (1, 20, 2)
    assert bool((g[visible].abs().sum(-1) > 0).any())
    assert float(g[~visible].abs().sum()) == 0.0


def test_absgrad_is_sum_of_per_pixel_absolute_gradients():
    sc = random_scene(n=8, n_cameras=1, width=9, height=7, seed=4, scale_range=(0.1, 0.25))
    means2d_list = []

    def run(pixel=None):
        args = list(_args(sc))
        args[0] = args[0].clone().requires_grad_(True)
        img, alpha, meta = rasterize(*args, absgrad=True, tile_size=4)
        m2d = meta["means2d"]
        m2d.retain_grad()
        w = torch.linspace(-1.0, 1.0, img.numel(), dtype=img.dtype).reshape(img.shape)
        per_pixel = (img * w).sum(-1) + 0.5 * alpha[..., 0]  # (1, H, W)
        loss = per_pixel.sum() if pixel is None else per_pixel[0, pixel[0], pixel[1]]
        loss.backward()
        means2d_list.append(m2d)
        return m2d

    full = run()
    expected = torch.zeros_like(full.grad)
    for i in range(sc["height"]):
        for j in range(sc["width"]):
            expected += run((i, j)).grad.abs()
    assert torch.allclose(full.absgrad, expected, atol=1e-12)
    assert bool((full.absgrad >= full.grad.abs() - 1e-12).all())
    assert float(full.absgrad.sum()) > float(full.grad.abs().sum())  # some cancellation happened


def test_float32_matches_float64():
    sc64 = random_scene(n=400, n_cameras=1, width=64, height=48, seed=9, scale_range=(0.01, 0.05))
    sc32 = {k: (v.float() if torch.is_tensor(v) else v) for k, v in sc64.items()}
    c64, a64, _, g64 = render_and_grads(lambda *a, **k: rasterize(*a, **k), sc64)
    c32, a32, _, g32 = render_and_grads(lambda *a, **k: rasterize(*a, **k), sc32)
    assert float((c32.double() - c64).abs().max()) < 2e-5
    assert float((a32.double() - a64).abs().max()) < 2e-5
    for k in ("means", "scales", "opacities", "colors", "means2d"):
        ref = g64[k]
        err = float((g32[k].double() - ref).abs().max()) / float(ref.abs().max())
        assert err < 1e-4, (k, err)


def test_nothing_visible_gives_background():
    sc = random_scene(n=5, n_cameras=1, width=8, height=6)
    sc["means"] = sc["means"] + torch.tensor([0.0, 0.0, -10.0], dtype=torch.float64)  # behind the camera
    bg = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)
    colors, alphas, meta, grads = render_and_grads(lambda *a, **k: rasterize(*a, **k), sc, backgrounds=bg)
    assert int(meta["radii"].abs().sum()) == 0
    assert torch.allclose(colors, bg.expand(1, 6 * 8, 3).reshape(1, 6, 8, 3))
    assert float(alphas.abs().max()) == 0.0
    assert float(grads["means"].abs().sum()) == 0.0
    assert torch.allclose(grads["backgrounds"], torch.zeros(1, 3, dtype=torch.float64) + grads["backgrounds"])


def test_zero_gaussians():
    sc = random_scene(n=0, n_cameras=1, width=8, height=6)
    colors, alphas, meta = rasterize(*_args(sc))
    assert colors.shape == (1, 6, 8, 3) and float(alphas.abs().sum()) == 0.0


def test_bad_inputs_raise():
    sc = random_scene(n=5, n_cameras=1, width=8, height=6)
    a = list(_args(sc))
    with pytest.raises(ValueError, match="quats"):
        rasterize(a[0], a[1][:, :3], *a[2:])
    with pytest.raises(ValueError, match="colors"):
        rasterize(*a[:4], torch.zeros(4, 3, dtype=torch.float64), *a[5:])
    with pytest.raises(ValueError, match="sh_degree"):
        rasterize(*a[:4], torch.zeros(5, 4, 3, dtype=torch.float64), *a[5:], sh_degree=2)
    with pytest.raises(ValueError, match="render_mode"):
        rasterize(*a, render_mode="RGBD")
    with pytest.raises(ValueError, match="backgrounds"):
        rasterize(*a, backgrounds=torch.zeros(1, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="CUDA"):
        rasterize(*a, backend="gsplat")


def test_gsplat_backend_forwards_arguments(monkeypatch):
    """The CUDA wrapper passes everything through to gsplat.rasterization with packed=False."""
    import sys
    import types

    from avatarbench.render._gsplat_backend import rasterization_gsplat

    calls = {}

    def fake_rasterization(*args, **kwargs):
        calls["args"], calls["kwargs"] = args, kwargs
        return "colors", "alphas", {"radii": None}

    monkeypatch.setitem(sys.modules, "gsplat", types.SimpleNamespace(rasterization=fake_rasterization))
    sc = random_scene(n=5, n_cameras=1, width=8, height=6)
    out = rasterization_gsplat(*_args(sc), sh_degree=None, backgrounds=None, render_mode="RGB+D", eps2d=0.1,
                               tile_size=8, absgrad=True, rasterize_mode="antialiased", channel_chunk=16)
    assert out[0] == "colors" and out[2]["backend"] == "gsplat"
    kw = calls["kwargs"]
    assert len(calls["args"]) == 9 and calls["args"][7:] == (8, 6)
    assert kw["packed"] is False and kw["render_mode"] == "RGB+D" and kw["eps2d"] == 0.1
    assert kw["tile_size"] == 8 and kw["absgrad"] is True and kw["rasterize_mode"] == "antialiased"
    assert kw["channel_chunk"] == 16 and kw["sparse_grad"] is False


def test_benchmark_run_rows():
    from avatarbench.render.benchmark import run

    rows = run([300], [32], device="cpu", backend="torch", repeats=1)
    assert len(rows) == 1
    r = rows[0]
    for key in ("num_gaussians", "width", "height", "backend", "forward_s", "backward_s", "total_s", "cpu_total_s"):
        assert key in r
    assert r["num_gaussians"] == 300 and r["width"] == r["height"] == 32 and r["backend"] == "torch"
    assert 0 < r["forward_s"] <= r["total_s"] and r["visible"] > 0
