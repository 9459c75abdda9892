"""The compiled CPU backend (``backend="cpp"``) against the dense float64 reference, the torch
backend (float32), finite differences (float64), thread counts, and its fallback when no compiler."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from avatarbench.render import _cpp_backend, rasterize
from avatarbench.render._reference import reference_rasterize
from avatarbench.render.projection import project_gaussians
from avatarbench.render.tiles import bin_gaussians

from .scenes import PARAM_KEYS, random_scene, render_and_grads
from .test_torch_vs_reference import _assert_close, special_scene, stack_scene

_HAS_CXX = shutil.which((os.environ.get("CXX") or "c++").split()[0]) is not None


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    if not _HAS_CXX:
        pytest.skip("no C++ compiler on this machine: the compiled backend cannot exist here")
    # with a compiler present the backend must build: a failure here is a bug, not a skip
    assert _cpp_backend.available(), _cpp_backend._state.get("reason")


def _cpp(*a, **k):
    return rasterize(*a, backend="cpp", **k)


def _compare_reference(scene, *, backgrounds=None, tile_size=16, **kw):
    c1, a1, m1, g1 = render_and_grads(lambda *a, **k: _cpp(*a, tile_size=tile_size, **k), scene,
                                      backgrounds=backgrounds, **kw)
    c2, a2, m2, g2 = render_and_grads(reference_rasterize, scene, backgrounds=backgrounds, **kw)
    assert m1["backend"] == "cpp"
    _assert_close(c1, c2, "colors", 1e-10)
    _assert_close(a1, a2, "alphas", 1e-10)
    for k in PARAM_KEYS + ("backgrounds", "means2d"):
        _assert_close(g1[k], g2[k], f"grad {k}")
    return c1, a1, m1, g1


def test_background_two_cameras_and_culling_branches():
    c, a, meta, g = _compare_reference(special_scene(), backgrounds=torch.rand(2, 3, dtype=torch.float64))
    assert float(a.max()) > 0.5 and float(g["backgrounds"].abs().max()) > 0


def test_early_termination_and_alpha_clamp():
    sc = stack_scene()
    c, a, meta, g = _compare_reference(sc, backgrounds=torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64))
    T = 1.0 - a
    assert 1e-4 < float(T.min()) < 1e-3  # the stop rule fired


@pytest.mark.parametrize("channels, tile_size", [(1, 4), (5, 8), (32, 16), (4, 16)])
def test_channel_counts_and_tile_sizes(channels, tile_size):
    sc = random_scene(n=30, n_cameras=2, channels=channels, seed=3, width=23, height=19)
    _compare_reference(sc, backgrounds=torch.rand(2, channels, dtype=torch.float64), tile_size=tile_size)


@pytest.mark.parametrize("mode", ["D", "ED", "RGB+D", "RGB+ED"])
def test_depth_modes(mode):
    sc = random_scene(n=25, n_cameras=2, seed=6, width=18, height=15)
    c, a, meta, g = _compare_reference(sc, render_mode=mode, backgrounds=torch.rand(2, 3, dtype=torch.float64))
    assert c.shape[-1] == (1 if mode in ("D", "ED") else 4)


def test_sh_per_camera_colors_antialiased_radius_clip():
    sc = random_scene(n=25, n_cameras=2, seed=7, width=18, height=15)
    sc_sh = dict(sc, colors=0.6 * torch.randn(25, 16, 3, generator=torch.Generator().manual_seed(0),
                                              dtype=torch.float64))
    _compare_reference(sc_sh, sh_degree=3, backgrounds=torch.rand(2, 3, dtype=torch.float64))
    _compare_reference(dict(sc, colors=torch.rand(2, 25, 3, dtype=torch.float64)))
    sc_small = random_scene(n=30, n_cameras=1, seed=8, width=20, height=16, scale_range=(0.005, 0.1))
    _compare_reference(sc_small, rasterize_mode="antialiased")
    _compare_reference(sc_small, radius_clip=2.0)


def test_float32_matches_torch_backend():
    """Both backends in float32 on a denser scene (T reaches the stop rule): float32-level agreement."""
    sc = random_scene(n=400, n_cameras=2, seed=12, width=64, height=48, dtype=torch.float32,
                      scale_range=(0.02, 0.08))
    bg = torch.rand(2, 3)
    r_c = render_and_grads(_cpp, sc, backgrounds=bg)
    r_t = render_and_grads(lambda *a, **k: rasterize(*a, backend="torch", **k), sc, backgrounds=bg)
    assert r_c[0].dtype == torch.float32
    _assert_close(r_c[0], r_t[0], "colors", 2e-5)
    _assert_close(r_c[1], r_t[1], "alphas", 2e-5)
    for k in PARAM_KEYS + ("backgrounds", "means2d"):
        _assert_close(r_c[3][k], r_t[3][k], f"grad {k}", 2e-4)


def test_absgrad_matches_torch_backend():
    sc = random_scene(n=30, n_cameras=2, seed=13, width=20, height=17)
    out = {}
    for be in ("cpp", "torch"):
        _, _, meta, _ = render_and_grads(lambda *a, **k: rasterize(*a, backend=be, absgrad=True, **k), sc)
        out[be] = meta["means2d"].absgrad
    assert float(out["torch"].abs().max()) > 0
    _assert_close(out["cpp"], out["torch"], "absgrad", 1e-10)


def test_threads_give_identical_results(monkeypatch):
    """Tiles are independent and the gradient reduction is serial: bitwise equal for 1, 2 and 3 threads."""
    sc = random_scene(n=300, n_cameras=1, seed=14, width=70, height=50, dtype=torch.float32)
    n = torch.get_num_threads()
    res = []
    for t in (1, 2, 3):
        monkeypatch.setenv("AVATARBENCH_RENDER_THREADS", str(t))  # bypass the idle-core cap
        res.append(render_and_grads(_cpp, sc, backgrounds=torch.rand(1, 3, generator=torch.Generator().manual_seed(0))))
    torch.set_num_threads(n)
    for r in res[1:]:
        assert torch.equal(res[0][0], r[0]) and torch.equal(res[0][1], r[1])
        for k in PARAM_KEYS:
            assert torch.equal(res[0][3][k], r[3][k]), k


def test_kernel_threads_capped_by_idle_cores(monkeypatch):
    monkeypatch.delenv("AVATARBENCH_RENDER_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    for load, expected in ((0.2, 4), (1.0, 4), (6.4, 3), (7.6, 1), (30.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        _cpp_backend._state.pop("load_t", None)
        assert _cpp_backend.kernel_threads(4) == expected, load
    assert _cpp_backend.kernel_threads(1) == 1
    monkeypatch.setenv("AVATARBENCH_RENDER_THREADS", "3")
    assert _cpp_backend.kernel_threads(1) == 3


def test_gradcheck_compositing_function():
    """The C++ Function alone in float64, full Jacobian w.r.t. means2d, conics, colours, opacities, bg."""
    sc = random_scene(n=6, n_cameras=2, width=11, height=9, seed=21, scale_range=(0.08, 0.2),
                      opacity_range=(0.3, 0.9))
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
    fn = _cpp_backend.compositor_for(inputs[0], threads=1)

    def f(m2d, con, col, op, bg):
        return fn.apply(m2d, con, col, op, bg, bins, sc["width"], sc["height"], False, 0)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradcheck_end_to_end_fast():
    sc = random_scene(n=6, n_cameras=2, width=11, height=9, seed=21, scale_range=(0.08, 0.2),
                      opacity_range=(0.3, 0.9))
    bg = torch.rand(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    inputs = tuple(t.clone().requires_grad_(True) for t in
                   (sc["means"], sc["quats"], sc["scales"], sc["opacities"], sc["colors"], bg))

    def f(means, quats, scales, opacities, colors, backgrounds):
        img, alpha, _ = _cpp(means, quats, scales, opacities, colors, sc["viewmats"], sc["Ks"], sc["width"],
                             sc["height"], backgrounds=backgrounds, tile_size=4)
        return img, alpha

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


_FALLBACK_SCRIPT = textwrap.dedent("""
    import torch
    from avatarbench.render import rasterize
    from tests.render.scenes import random_scene
    sc = random_scene(n=10, n_cameras=1, width=12, height=10)
    out = [sc[k] for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks")]
    _, _, m1 = rasterize(*out, 12, 10)
    _, _, m2 = rasterize(*out, 12, 10)
    print("BACKEND", m1["backend"], m2["backend"])
""")


@pytest.mark.parametrize("env", [{"CXX": "/nonexistent/c++"}, {"AVATARBENCH_NO_COMPILE": "1"}],
                         ids=["no-compiler", "switch"])
def test_fallback_to_torch_with_one_line(env, tmp_path):
    """With the compiler forced away (fresh cache, so nothing prebuilt), auto falls back to torch and
    says why in exactly one line, once per process."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    full_env = dict(os.environ, AVATARBENCH_HOME=str(tmp_path), PYTHONPATH=root, **env)
    res = subprocess.run([sys.executable, "-c", _FALLBACK_SCRIPT], capture_output=True, text=True, env=full_env,
                         cwd=root, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "BACKEND torch torch" in res.stdout
    lines = [ln for ln in res.stderr.splitlines() if "compiled CPU rasterizer unavailable" in ln]
    assert len(lines) == 1, res.stderr
    assert "using the torch backend" in lines[0]
    assert ("/nonexistent/c++" in lines[0]) if "CXX" in env else ("AVATARBENCH_NO_COMPILE" in lines[0])
    assert not list(tmp_path.rglob("*.so"))  # nothing half-built left in the cache


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_projection_backward_runs_on_one_thread_and_count_is_restored(backend):
    """The compositing backward pins torch to one thread for the projection backward (many small
    ops that collapse with 2 threads on a busy machine); the caller's count is back afterwards."""
    sc = random_scene(n=30, n_cameras=1, seed=15, width=20, height=16)
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        params = {k: sc[k].clone().requires_grad_(True) for k in PARAM_KEYS}
        img, alpha, meta = rasterize(*[params[k] for k in PARAM_KEYS], sc["viewmats"], sc["Ks"], sc["width"],
                                     sc["height"], backend=backend)
        seen = []
        meta["means2d"].register_hook(lambda g: seen.append(torch.get_num_threads()))
        (img.sum() + alpha.sum()).backward()
        assert seen == [1]  # during the projection backward
        assert torch.get_num_threads() == 2  # restored at rasterize()'s inputs
        assert float(params["means"].grad.abs().max()) > 0
        # a backward that stops at means2d leaves the pin; the next rasterize() call undoes it
        img, alpha, meta = rasterize(*[params[k] for k in PARAM_KEYS], sc["viewmats"], sc["Ks"], sc["width"],
                                     sc["height"], backend=backend)
        torch.autograd.grad(img.sum(), meta["means2d"])
        rasterize(*[sc[k] for k in PARAM_KEYS], sc["viewmats"], sc["Ks"], sc["width"], sc["height"], backend=backend)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(n)


@pytest.mark.parametrize("dtype, tile_size", [(torch.float64, 4), (torch.float32, 16)])
def test_cpp_binning_equals_torch_binning(dtype, tile_size):
    """Same lists, same depth/tie order, same slot order as the torch binning (two cameras, culled,
    off-screen and equal-depth Gaussians included)."""
    sc = special_scene()
    sc = {k: (v.to(dtype) if torch.is_tensor(v) else v) for k, v in sc.items()}
    proj = project_gaussians(sc["means"], sc["quats"], sc["scales"], sc["opacities"], sc["viewmats"], sc["Ks"],
                             sc["width"], sc["height"])
    depths = proj.depths.detach().clone()
    depths[:, 3] = depths[:, 7]  # a depth tie: order by index
    a = bin_gaussians(proj.means2d, proj.radii, depths, tile_size, sc["width"], sc["height"])
    b = _cpp_backend.bin_gaussians_cpp(proj.means2d, proj.radii, depths, tile_size, sc["width"], sc["height"])
    assert a.n_isects > 50
    for f in ("flat_ids", "pos_in_slot", "slot_of", "slot_tiles", "slot_offsets"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    assert a.slot_counts == b.slot_counts and (a.tiles_x, a.tiles_y) == (b.tiles_x, b.tiles_y)
