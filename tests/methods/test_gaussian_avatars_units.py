"""GaussianAvatars building blocks on hand-made tensors: density control with binding
inheritance, losses, schedules, PLY export, FLAME track. No renderer or FLAME needed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from avatarbench.methods.gaussian_avatars.export import ply_attribute_names, read_gaussian_ply, write_gaussian_ply
from avatarbench.methods.gaussian_avatars.losses import photometric_loss, position_loss, scaling_loss, ssim
from avatarbench.methods.gaussian_avatars.model import FlameTrack, init_gaussian_params
from avatarbench.methods.gaussian_avatars.schedule import Schedule, expon_lr, scaled
from avatarbench.methods.gaussian_avatars.strategy import (BindingStrategy, camera_extent, guarded_prune_mask,
                                                           quat_wxyz_to_rotmat)

torch.set_num_threads(1)


def logit(p):
    return math.log(p / (1 - p))


def make_scene(binding, num_faces, *, log_scale=0.0, opacity=0.5, sh_degree=1, seed=0):
    """Params/optimizers/state like the method builds them, with one Adam step taken so that the
    moments are non-zero (row i of every moment is filled with i+1 for checking)."""
    n = len(binding)
    g = torch.Generator().manual_seed(seed)
    k = (sh_degree + 1) ** 2
    params = {
        "means": nn.Parameter(torch.randn(n, 3, generator=g) * 0.1),
        "scales": nn.Parameter(torch.full((n, 3), float(log_scale))),
        "quats": nn.Parameter(torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1)),
        "opacities": nn.Parameter(torch.full((n,), logit(opacity))),
        "sh0": nn.Parameter(torch.randn(n, 1, 3, generator=g)),
        "shN": nn.Parameter(torch.randn(n, k - 1, 3, generator=g)),
    }
    opts = {name: torch.optim.Adam([{"params": [p], "lr": 1e-3, "name": name}], eps=1e-15)
            for name, p in params.items()}
    for name, p in params.items():
        before = p.detach().clone()
        p.grad = torch.ones_like(p)
        opts[name].step()
        p.data.copy_(before)
        st = opts[name].state[p]
        rows = torch.arange(1, n + 1, dtype=torch.float32).reshape(-1, *([1] * (p.dim() - 1)))
        st["exp_avg"] = rows.expand_as(p).clone()
        st["exp_avg_sq"] = rows.expand_as(p).clone() * 10
        opts[name].zero_grad(set_to_none=True)
    strat = BindingStrategy(refine_start_iter=2, refine_stop_iter=100, refine_every=2, reset_every=50)
    state = strat.initialize_state(1.0, binding=torch.tensor(binding, dtype=torch.long), num_faces=num_faces,
                                   generator=torch.Generator().manual_seed(123))
    state["grad2d"] = torch.arange(n, dtype=torch.float32)
    state["count"] = torch.ones(n)
    state["radii"] = torch.zeros(n)
    strat.check_sanity(params, opts)
    return strat, params, opts, state


def assert_consistent(strat, params, opts, state):
    n = params["means"].shape[0]
    strat.check_sanity(params, opts)
    for name, p in params.items():
        assert p.shape[0] == n
        st = opts[name].state.get(p)
        if st is not None:
            assert st["exp_avg"].shape == p.shape and st["exp_avg_sq"].shape == p.shape
    for key in ("binding", "grad2d", "count", "radii"):
        assert state[key].shape[0] == n


# ----------------------------------------------------------------------------- strategy ops
def test_clone_copies_local_params_and_inherits_binding():
    strat, params, opts, state = make_scene([0, 1, 2, 2], 3)
    before = {k: v.detach().clone() for k, v in params.items()}
    strat.duplicate(params, opts, state, torch.tensor([True, False, False, True]))
    assert_consistent(strat, params, opts, state)
    assert state["binding"].tolist() == [0, 1, 2, 2, 0, 2]
    assert strat.face_counts(state).tolist() == [2, 1, 3]
    for k in params:
        torch.testing.assert_close(params[k].data[:4], before[k])
        torch.testing.assert_close(params[k].data[4], before[k][0])
        torch.testing.assert_close(params[k].data[5], before[k][3])
    # old rows keep their moments, new rows start at zero; statistics of new rows are zero
    m = opts["means"].state[params["means"]]["exp_avg"]
    assert m[:, 0].tolist() == [1, 2, 3, 4, 0, 0]
    assert state["grad2d"].tolist() == [0, 1, 2, 3, 0, 0]


@pytest.mark.parametrize("mode", ["official", "local"])
def test_split_children_inherit_face_and_follow_the_formulas(mode):
    # face 0 has scale k = 2; Gaussian 0 has local scale 0.5 (global 1.0) and a 90 deg local rotation
    strat, params, opts, state = make_scene([0, 1, 1], 2, log_scale=math.log(0.5))
    strat.split_offset = mode
    q = torch.tensor([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)])  # 90 deg about z
    params["quats"].data[0] = q
    parent = {k: v.detach()[0].clone() for k, v in params.items()}
    face_scaling = torch.tensor([[2.0], [1.0]])
    replica = torch.Generator().manual_seed(123)
    strat.split(params, opts, state, torch.tensor([True, False, False]), face_scaling)
    assert_consistent(strat, params, opts, state)
    assert params["means"].shape[0] == 4  # 3 - parent + 2 children
    assert state["binding"].tolist() == [1, 1, 0, 0]
    assert strat.face_counts(state).tolist() == [2, 2]
    # child local scale = (global / k) / (0.8 * 2) = 0.5 / 1.6
    torch.testing.assert_close(params["scales"].data[2:], torch.full((2, 3), math.log(0.5 / 1.6)))
    # child local mean = R(q_local) eps + mu_local, eps ~ N(0, global scale 1.0) (official) / N(0, 0.5)
    std = 1.0 if mode == "official" else 0.5
    eps = torch.normal(torch.zeros(2, 3), torch.full((2, 3), std), generator=replica)
    rz = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    expected = eps @ rz.T + parent["means"]
    torch.testing.assert_close(params["means"].data[2:], expected, atol=1e-6, rtol=1e-5)
    for k in ("quats", "opacities", "sh0", "shN"):
        torch.testing.assert_close(params[k].data[2], parent[k])
        torch.testing.assert_close(params[k].data[3], parent[k])
    # surviving rows keep their moments (rows 2, 3 of the original), children start at zero
    m = opts["sh0"].state[params["sh0"]]["exp_avg"]
    assert m[:, 0, 0].tolist() == [2, 3, 0, 0]


def test_guarded_prune_mask_by_hand():
    binding = torch.tensor([0, 0, 1, 2, 2])
    mask = torch.tensor([True, True, True, False, True])
    # face 0: both flagged -> would be emptied -> keep both; face 1: its only one -> keep;
    # face 2: one of two flagged -> pruned
    assert guarded_prune_mask(mask, binding, 4).tolist() == [False, False, False, False, True]


@pytest.mark.parametrize("guard", [True, False])
def test_remove_with_and_without_prune_guard(guard):
    strat, params, opts, state = make_scene([0, 0, 1, 2, 2], 4)
    strat.prune_guard = guard
    n = strat.remove(params, opts, state, torch.tensor([True, True, True, False, True]))
    assert_consistent(strat, params, opts, state)
    if guard:
        assert n == 1 and state["binding"].tolist() == [0, 0, 1, 2]
        assert strat.face_counts(state).tolist() == [2, 1, 1, 0]  # face 3 never had any
        assert opts["means"].state[params["means"]]["exp_avg"][:, 0].tolist() == [1, 2, 3, 4]
    else:
        assert n == 4 and state["binding"].tolist() == [2]
        assert strat.face_counts(state).tolist() == [0, 0, 1, 0]


def test_reset_opacity_clamps_and_zeroes_moments():
    strat, params, opts, state = make_scene([0, 1], 2)
    params["opacities"].data = torch.tensor([logit(0.5), logit(0.001)])
    opts["opacities"].param_groups[0]["params"][0] = params["opacities"]
    opts["opacities"].state[params["opacities"]] = {"step": torch.tensor(1.0), "exp_avg": torch.ones(2),
                                                   "exp_avg_sq": torch.ones(2)}
    strat.reset_opacity(params, opts)
    torch.testing.assert_close(torch.sigmoid(params["opacities"].data), torch.tensor([0.01, 0.001]))
    st = opts["opacities"].state[params["opacities"]]
    assert float(st["exp_avg"].abs().sum()) == 0 and float(st["exp_avg_sq"].abs().sum()) == 0
    assert float(st["step"]) == 1.0


def fake_info(n, grad_px, radii, width=100, height=50, face_scaling=None):
    """A renderer meta whose means2d gradient is ``grad_px`` (C=1, N, 2), already backpropagated."""
    m2d = torch.zeros(1, n, 2, requires_grad=True)
    (m2d * grad_px).sum().backward()
    return {"means2d": m2d, "radii": radii, "width": width, "height": height, "n_cameras": 1,
            "face_scaling": face_scaling if face_scaling is not None else torch.ones(8, 1)}


def test_statistics_scale_like_gsplat_and_skip_invisible():
    strat, params, opts, state = make_scene([0, 1, 2], 3)
    state["grad2d"], state["count"], state["radii"] = None, None, None
    g = torch.tensor([[[3e-6, 4e-6], [1.0, 1.0], [0.0, 2e-6]]])
    radii = torch.tensor([[[5, 7], [0, 0], [3, 2]]], dtype=torch.int32)
    info = fake_info(3, g, radii)
    strat.step_post_backward(params, opts, state, 0, info)
    # grad scaled by (W/2, H/2) = (50, 25): |(1.5e-4, 1e-4)|, invisible one skipped, |(0, 5e-5)|
    torch.testing.assert_close(state["grad2d"], torch.tensor([math.hypot(1.5e-4, 1e-4), 0.0, 5e-5]))
    assert state["count"].tolist() == [1, 0, 1]
    assert state["radii"].tolist() == [7, 0, 3]


def test_schedule_conditions_use_the_official_iteration():
    strat = BindingStrategy(refine_start_iter=4, refine_stop_iter=30, refine_every=2, reset_every=10)
    _, params, opts, state = make_scene([0, 1], 2)
    calls = []
    strat._refine = lambda p, o, s, it, info: calls.append(("refine", it)) or {}
    strat.reset_opacity = lambda p, o: calls.append(("reset", None))
    for step in range(40):
        g = torch.zeros(1, 2, 2)
        info = fake_info(2, g, torch.ones(1, 2, 2, dtype=torch.int32))
        strat.step_post_backward(params, opts, state, step, info)
    refine_its = [it for c, it in calls if c == "refine"]
    assert refine_its == list(range(6, 30, 2))  # it > 4 (strict), every 2, while it < 30
    resets = [i for i, c in enumerate(calls) if c[0] == "reset"]
    assert len(resets) == 3  # extra reset at it == 4, then it == 10 and 20 (30 is past the stop)


def test_refine_clone_split_prune_and_guard():
    # face scales k: face 0 -> 0.001 (small Gaussians), face 1 -> 1.0 (large ones)
    strat, params, opts, state = make_scene([0, 0, 1, 1, 2], 3, opacity=0.5)
    strat.percent_dense = 0.01
    params["opacities"].data[3] = logit(0.001)  # low opacity, high gradient -> split then pruned? no: see below
    params["opacities"].data[4] = logit(0.001)  # alone on face 2 -> guarded
    state["grad2d"] = torch.tensor([1e-3, 1e-5, 1e-3, 1e-5, 1e-5])
    state["count"] = torch.ones(5)
    face_scaling = torch.tensor([[0.001], [1.0], [1.0]])
    rep = strat._refine(params, opts, state, 6, {"face_scaling": face_scaling})
    assert_consistent(strat, params, opts, state)
    # G0 cloned (small), G2 split (large, 2 children on face 1); G3 pruned (low opacity, face 1 has
    # others); G4 low opacity but the last on face 2 -> kept by the guard
    assert rep == {"cloned": 1, "split": 1, "pruned": 1, "guarded": 1, "prune_opacity": 2, "prune_world_size": 0,
                   "prune_screen_size": 0}
    assert sorted(state["binding"].tolist()) == [0, 0, 0, 1, 1, 2]
    assert strat.face_counts(state).tolist() == [3, 2, 1]
    assert float(state["grad2d"].abs().sum()) == 0 and float(state["count"].sum()) == 0


def test_world_size_prune_after_first_reset_only():
    strat, params, opts, state = make_scene([0, 0, 0, 1], 2, log_scale=math.log(0.5))
    params["scales"].data[2] = math.log(0.01)  # the small one on face 0 survives
    strat.reset_every = 10
    state["grad2d"] = torch.zeros(4)
    face_scaling = torch.tensor([[1.0], [1.0]])  # global max scale 0.5 > 0.1 * extent (1.0)
    strat._refine(params, opts, state, 10, {"face_scaling": face_scaling})
    assert params["means"].shape[0] == 4  # it == reset_every: not yet (strict >)
    rep = strat._refine(params, opts, state, 12, {"face_scaling": face_scaling})
    # face 0 loses its two large Gaussians; face 1's only one is kept by the guard
    assert rep["pruned"] == 2 and rep["guarded"] == 1
    assert rep["prune_world_size"] == 3 and rep["prune_opacity"] == 0 and rep["prune_screen_size"] == 0
    assert state["binding"].tolist() == [0, 1]
    torch.testing.assert_close(params["scales"].data[0], torch.full((3,), math.log(0.01)))


def test_quat_to_rotmat_and_camera_extent():
    q = torch.tensor([[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]], dtype=torch.float64) * 3.0
    torch.testing.assert_close(quat_wxyz_to_rotmat(q)[0], torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]],
                                                                       dtype=torch.float64))
    centers = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 3, 0], [0, -3, 0]])
    assert camera_extent(centers) == pytest.approx(3.3)


# ----------------------------------------------------------------------------- losses
def test_position_loss_by_hand():
    mu = torch.tensor([[0.0, 0, 0], [3, 4, 0], [0, 0, 2]])
    vis = torch.tensor([True, True, False])
    assert float(position_loss(mu, vis, 1.0, 0.01)) == pytest.approx(0.01 * (0 + 4) / 2)
    assert float(position_loss(mu, vis, 0.0, 0.01)) == pytest.approx(0.01 * (0 + 5) / 2)
    assert float(position_loss(mu, torch.zeros(3, dtype=torch.bool))) == 0.0


def test_scaling_loss_by_hand():
    s = torch.log(torch.tensor([[0.5, 0.7, 1.0], [0.1, 0.1, 0.1], [5.0, 5, 5]], dtype=torch.float64))
    vis = torch.tensor([True, True, False])
    expected = (math.sqrt(0.1 ** 2 + 0.4 ** 2) + 0.0) / 2
    assert float(scaling_loss(s, vis, 0.6, 1.0)) == pytest.approx(expected, rel=1e-9)
    expected0 = (math.sqrt(0.25 + 0.49 + 1.0) + math.sqrt(3 * 0.01)) / 2
    assert float(scaling_loss(s, vis, 0.0, 1.0)) == pytest.approx(expected0, rel=1e-9)


def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Brute-force SSIM, 11x11 Gaussian window (sigma 1.5), zero padding, float64."""
    x = np.arange(11) - 5
    g = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    g /= g.sum()
    w = np.outer(g, g)
    h, wd = a.shape
    pa, pb = np.pad(a, 5), np.pad(b, 5)
    vals = []
    for i in range(h):
        for j in range(wd):
            A, B = pa[i:i + 11, j:j + 11], pb[i:i + 11, j:j + 11]
            ma, mb = (w * A).sum(), (w * B).sum()
            va, vb = (w * A * A).sum() - ma ** 2, (w * B * B).sum() - mb ** 2
            cov = (w * A * B).sum() - ma * mb
            c1, c2 = 0.01 ** 2, 0.03 ** 2
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_brute_force_reference():
    rng = np.random.default_rng(0)
    a = rng.random((9, 13))
    b = np.clip(a + 0.1 * rng.standard_normal((9, 13)), 0, 1)
    got = ssim(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None])
    assert float(got) == pytest.approx(_ssim_reference(a, b), rel=1e-9)
    img = torch.rand(8, 8, 3, dtype=torch.float64)
    l1, dssim = photometric_loss(img, img)
    assert float(l1) == 0.0 and float(dssim) == pytest.approx(0.0, abs=1e-12)
    l1, dssim = photometric_loss(img, img + 0.1)
    assert float(l1) == pytest.approx(0.8 * 0.1)
    img.requires_grad_(True)
    sum(photometric_loss(img, torch.zeros_like(img))).backward()
    assert img.grad is not None and torch.isfinite(img.grad).all()


# ----------------------------------------------------------------------------- schedule
def test_position_lr_endpoints():
    init, final, n = 0.005 * 2.0, 0.00005 * 2.0, 600_000
    assert expon_lr(0, init, final, n) == pytest.approx(init)
    assert expon_lr(n, init, final, n) == pytest.approx(final)
    assert expon_lr(n // 2, init, final, n) == pytest.approx(math.sqrt(init * final))
    assert expon_lr(2 * n, init, final, n) == pytest.approx(final)


def test_schedule_scaling_from_the_yaml():
    from omegaconf import OmegaConf

    from avatarbench.paths import configs_dir

    node = OmegaConf.load(configs_dir() / "methods" / "gaussian_avatars.yaml")
    paper = Schedule.from_cfg(node.method)
    assert (paper.iterations, paper.sh_interval, paper.densify_from, paper.densify_until,
            paper.densify_interval, paper.reset_interval, paper.position_lr_max_steps) == \
        (600_000, 1000, 10_000, 600_000, 2000, 60_000, 600_000)
    assert paper.active_sh_degree(999, 3) == 0 and paper.active_sh_degree(1000, 3) == 1
    assert paper.active_sh_degree(10_000, 3) == 3
    gpu = Schedule.from_cfg(OmegaConf.merge(node.method, node.presets.gpu30k.method))
    assert (gpu.iterations, gpu.sh_interval, gpu.densify_from, gpu.densify_interval, gpu.reset_interval) == \
        (30_000, 50, 500, 100, 3000)
    assert scaled(0, 0.001) == 0 and scaled(1000, 0.0001) == 1


#: steps opacity needs to recover from a reset at the official LRs (measured on synth_head_a at the
#: smoke preset, see docs/methods/gaussian_avatars.md "Compressed schedules"); the LRs are not
#: scaled by the presets, so this is the same number of steps at every schedule scale
OPACITY_RECOVERY_STEPS = 240


@pytest.mark.parametrize("preset", ["paper", "gpu30k", "smoke"])
def test_presets_keep_the_schedule_ratios_that_matter(preset):
    """Resets at least the recovery time apart (and before the end), densification events (each
    makes Adam skip an update) a small fraction of all updates."""
    from omegaconf import OmegaConf

    from avatarbench.paths import configs_dir

    node = OmegaConf.load(configs_dir() / "methods" / "gaussian_avatars.yaml")
    s = Schedule.from_cfg(OmegaConf.merge(node.method, node.presets[preset].get("method", {})))
    resets = s.reset_iterations(extra_at_start=True)
    assert resets and min(b - a for a, b in zip(resets, resets[1:])) >= OPACITY_RECOVERY_STEPS
    assert s.iterations - resets[-1] >= OPACITY_RECOVERY_STEPS
    events = s.densify_iterations()
    assert 0 < len(events) <= 0.05 * s.iterations


def test_schedule_event_lists_by_hand():
    s = Schedule(iterations=600, sh_interval=1, position_lr_max_steps=600, densify_from=10, densify_until=600,
                 densify_interval=20, reset_interval=300)
    assert s.densify_iterations() == list(range(20, 600, 20))  # it > 10, it < 600: 20 .. 580
    assert s.reset_iterations() == [10, 300] and s.reset_iterations(extra_at_start=False) == [300]


# ----------------------------------------------------------------------------- init / export / track
def test_init_gaussians_official_values():
    p = init_gaussian_params(7, 3, 0.1, generator=torch.Generator().manual_seed(0))
    assert p["means"].abs().sum() == 0 and p["scales"].abs().sum() == 0
    assert p["quats"].tolist() == [[1.0, 0, 0, 0]] * 7
    torch.testing.assert_close(torch.sigmoid(p["opacities"]), torch.full((7,), 0.1))
    assert p["sh0"].shape == (7, 1, 3) and p["shN"].shape == (7, 15, 3) and p["shN"].abs().sum() == 0
    assert 0 <= float(p["sh0"].min()) and float(p["sh0"].max()) <= 1 / 255


def test_ply_roundtrip_has_binding(tmp_path):
    n = 6
    g = torch.Generator().manual_seed(0)
    vals = dict(means=torch.randn(n, 3, generator=g), sh0=torch.randn(n, 1, 3, generator=g),
                shN=torch.randn(n, 15, 3, generator=g), opacity_logits=torch.randn(n, generator=g),
                log_scales=torch.randn(n, 3, generator=g), quats=torch.randn(n, 4, generator=g))
    binding = torch.tensor([0, 5, 5, 2, 10143, 7])
    path = write_gaussian_ply(tmp_path / "pc.ply", binding=binding, **vals)
    from plyfile import PlyData

    v = PlyData.read(str(path))["vertex"]
    names = [p.name for p in v.properties]
    assert names == ply_attribute_names(15) and names[-1] == "binding_0" and len(names) == 63
    assert v.count == n
    # f_rest is channel-major: f_rest_0..14 are the R coefficients of bands 1..15
    np.testing.assert_allclose(np.asarray(v["f_rest_14"]), vals["shN"][:, 14, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(v["f_rest_15"]), vals["shN"][:, 0, 1].numpy(), rtol=1e-6)
    back = read_gaussian_ply(path)
    assert back["binding"].tolist() == binding.tolist()
    for k_out, k_in in [("means", "means"), ("sh0", "sh0"), ("shN", "shN"), ("opacities", "opacity_logits"),
                        ("scales", "log_scales"), ("quats", "quats")]:
        torch.testing.assert_close(back[k_out], vals[k_in])


def test_flame_track_rows_and_export():
    drv = {t: {"shape": np.full(10, t, np.float32), "expr": np.full(5, t, np.float32),
               "rotation": np.full(3, t, np.float32), "eyes_pose": np.full(6, t, np.float32),
               "static_offset": np.ones((4, 3), np.float32)} for t in (7, 3, 5)}
    tr = FlameTrack(drv, n_shape=12, n_expr=8, num_verts=6)
    assert tr.timesteps.tolist() == [3, 5, 7]
    d = tr.driving(5)
    assert d["expr"].shape == (1, 8) and d["expr"][0, :5].tolist() == [5.0] * 5 and d["expr"][0, 5:].abs().sum() == 0
    assert d["shape"].shape == (1, 12) and float(d["shape"][0, 0]) == 3.0  # from the first timestep
    assert d["static_offset"].shape == (1, 6, 3) and float(d["static_offset"][0, 4:].abs().sum()) == 0
    assert d["neck_pose"].abs().sum() == 0 and d["expr"].requires_grad
    with torch.no_grad():
        tr.params["expr"][1] += 100.0  # "fine-tuned" timestep 5
    held_out = {9: {"expr": np.full(5, -9.0, np.float32), "jaw_pose": np.full(3, 0.5, np.float32)},
                5: {"expr": np.full(5, -5.0, np.float32)}}  # a trained timestep: fine-tuned row wins
    arr = tr.export_arrays(held_out)
    assert arr["expr"].shape == (10, 8) and arr["expr"].dtype == np.float32
    assert arr["expr"][7, :5].tolist() == [7.0] * 5 and arr["expr"][5, 0] == 105.0
    assert arr["expr"][9, :5].tolist() == [-9.0] * 5 and arr["expr"][9, 5:].sum() == 0
    assert arr["jaw_pose"][9].tolist() == [0.5] * 3 and arr["expr"][4].sum() == 0
    assert arr["shape"].shape == (12,) and arr["static_offset"].shape == (1, 6, 3)
    assert arr["dynamic_offset"].shape == (10, 6, 3) and not arr["dynamic_offset"].any()
    assert "timesteps_finetuned" not in arr
