"""Gaussian Head Avatar: self-contained parts (tet grid, marching tets, MLPs, blending, SR, heads)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avatarbench.methods.gaussian_head_avatar.blending import blend_weights, ramp_weights
from avatarbench.methods.gaussian_head_avatar.conditioning import farthest_point_sampling
from avatarbench.render.binding import rotmat_to_quat_wxyz
from avatarbench.methods.gaussian_head_avatar.gaussian_head import GaussianHead
from avatarbench.methods.gaussian_head_avatar.geometry_net import GeometryNet
from avatarbench.methods.gaussian_head_avatar.init_points import mouth_box_points, subdivide_midpoint
from avatarbench.methods.gaussian_head_avatar.losses import (laplacian_loss, random_crop_pair, random_scale_crop,
                                                             silhouette_loss)
from avatarbench.methods.gaussian_head_avatar.marching_tets import marching_tets, mesh_area, mesh_edges
from avatarbench.methods.gaussian_head_avatar.mesh_head import BlendConfig, MeshHead
from avatarbench.methods.gaussian_head_avatar.mlps import SkipMLP, encoded_dim, positional_encoding
from avatarbench.methods.gaussian_head_avatar.super_resolution import SuperResolution
from avatarbench.methods.gaussian_head_avatar.tetgrid import (kuhn_tet_grid, tet_edges, tet_faces,
                                                              tet_signed_volumes)


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def ref_mlp(mlp: SkipMLP, x: torch.Tensor) -> np.ndarray:
    """Independent float64 forward of GHA's ``lib/network/MLP.py`` layout: layers ``W h + b``,
    the input re-concatenated before layer ``int(len(dims) / 2)``, LeakyReLU(0.01) after every
    layer but the last, then the last op. x: (N, dims[0]) -> (N, dims[-1])."""
    x0 = x.detach().double().numpy()
    h = x0
    n = len(mlp.layers)
    for i, layer in enumerate(mlp.layers):
        if i == int(len(mlp.dims) / 2):
            h = np.concatenate([h, x0], 1)
        h = h @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
        if i != n - 1:
            h = np.where(h > 0, h, 0.01 * h)
    if mlp.last_op == "tanh":
        return np.tanh(h)
    if mlp.last_op == "sigmoid":
        return 1 / (1 + np.exp(-h))
    return h


def ref_pe(x: np.ndarray, n_freqs: int = 4) -> np.ndarray:
    """NeRF embedding of GHA's ``get_embedder``: [x, sin(x), cos(x), sin(2x), cos(2x), ...]."""
    parts = [x]
    for k in range(n_freqs):
        parts += [np.sin(x * 2.0 ** k), np.cos(x * 2.0 ** k)]
    return np.concatenate(parts, -1)


def ref_blend(points: np.ndarray, guides: np.ndarray, near: float, far: float) -> np.ndarray:
    """Official blend weight: clamp((far - d2) / (far - near), 0, 1), d2 the squared distance to the
    nearest guide (``pytorch3d.knn_points``). (N, 3), (G, 3) -> (N,)."""
    d2 = ((points[:, None, :] - guides[None]) ** 2).sum(-1).min(1)
    return np.clip((far - d2) / (far - near), 0.0, 1.0)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(N, 4) unit wxyz quaternions -> (N, 3, 3) rotation matrices."""
    w, x, y, z = q.T
    return np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
                     np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
                     np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], 1)


# ---------------------------------------------------------------------------------- tet grid
def test_kuhn_grid_counts_orientation_and_topology():
    res = 3
    g = kuhn_tet_grid(res, bound=1.0)
    assert g.verts.shape == ((res + 1) ** 3, 3) and g.tets.shape == (6 * res ** 3, 4)
    assert torch.unique(g.verts, dim=0).shape[0] == g.verts.shape[0]  # no duplicate vertices
    vol = tet_signed_volumes(g.verts.double(), g.tets)
    cell = 2.0 / res
    assert torch.all(vol > 0)
    # 6 tets of equal volume fill each cube: det = 6 * vol = cell^3
    assert torch.allclose(vol, torch.full_like(vol, cell ** 3))
    V, E, Fc, T = g.verts.shape[0], tet_edges(g.tets).shape[0], tet_faces(g.tets).shape[0], g.tets.shape[0]
    assert V - E + Fc - T == 1  # Euler characteristic of a ball
    # conforming: every triangle is shared by 2 tets, except the 2 * 6 * res^2 on the boundary
    tri = torch.tensor([(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)])
    f = torch.sort(g.tets[:, tri].reshape(-1, 3), dim=1).values
    _, counts = torch.unique(f, dim=0, return_counts=True)
    assert set(counts.tolist()) == {1, 2} and int((counts == 1).sum()) == 12 * res ** 2


# ---------------------------------------------------------------------------------- marching tets
def _sphere(res=16, r=0.77, dtype=torch.float64):
    g = kuhn_tet_grid(res, 1.0)
    v = g.verts.to(dtype)
    return g, v, v.norm(dim=1) - r


def test_marching_tets_sphere_closed_oriented_and_area():
    r = 0.77
    g, v, sdf = _sphere(16, r)
    m = marching_tets(v, g.tets, sdf)
    # watertight: every undirected edge is shared by exactly two faces
    _, counts = mesh_edges(m.faces)
    assert counts.numel() > 0 and bool(torch.all(counts == 2))
    # consistently oriented: every directed edge appears once (its twin runs the other way)
    d = torch.cat([m.faces[:, [0, 1]], m.faces[:, [1, 2]], m.faces[:, [2, 0]]])
    assert torch.unique(d, dim=0).shape[0] == d.shape[0]
    # outward: face normals point away from the centre
    tri = m.verts[m.faces]
    n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    assert bool(torch.all((n * tri.mean(1)).sum(-1) > 0))
    # genus 0: V - E + F = 2
    assert m.verts.shape[0] - counts.numel() + m.faces.shape[0] == 2
    # vertices on the sphere (linear interpolation error of |x| along a cell edge is O(h^2))
    assert float((m.verts.norm(dim=1) - r).abs().max()) < (2.0 / 16) ** 2
    area = float(mesh_area(m.verts, m.faces))
    assert abs(area / (4 * math.pi * r * r) - 1) < 0.02


def test_marching_tets_is_differentiable_in_sdf_and_carries_features():
    g = kuhn_tet_grid(12, 1.0)
    v = g.verts.double()
    r = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    feats = torch.stack([v[:, 0], 2 * v[:, 1] - v[:, 2]], dim=1)  # linear features
    m = marching_tets(v, g.tets, v.norm(dim=1) - r, feats)
    # a linear function is reproduced exactly by edge interpolation
    assert torch.allclose(m.feats[:, 0], m.verts[:, 0]) and torch.allclose(m.feats[:, 1], 2 * m.verts[:, 1] - m.verts[:, 2])
    area = mesh_area(m.verts, m.faces)
    (grad,) = torch.autograd.grad(area, r)
    assert abs(float(grad) / (8 * math.pi * 0.6) - 1) < 0.05  # dA/dr of a sphere
    # empty level set -> empty mesh
    e = marching_tets(v, g.tets, v.norm(dim=1) + 1.0)
    assert e.verts.shape == (0, 3) and e.faces.shape == (0, 3)


# ---------------------------------------------------------------------------------- MLPs
def test_positional_encoding_dims_and_values():
    x = torch.tensor([[0.5, -1.0, 2.0]])
    pe = positional_encoding(x, 4)
    assert pe.shape == (1, 27) and encoded_dim(3, 4) == 27 and encoded_dim(6, 4) == 54
    assert torch.allclose(pe[0, :3], x[0])
    assert torch.allclose(pe[0, 3:6], torch.sin(x[0])) and torch.allclose(pe[0, 6:9], torch.cos(x[0]))
    assert torch.allclose(pe[0, -3:], torch.cos(8 * x[0]))


def test_skip_mlp_dims_follow_gha():
    geo = SkipMLP([27, 256, 256, 256, 256, 256, 132], "tanh")
    assert geo.skip == 3
    assert [l.in_features for l in geo.layers] == [27, 256, 256, 256 + 27, 256, 256]
    assert [l.out_features for l in geo.layers] == [256, 256, 256, 256, 256, 132]
    x = torch.randn(5, 27) * 10
    with torch.no_grad():
        y = geo(x)
    assert np.allclose(y.double().numpy(), ref_mlp(geo, x), atol=1e-5, rtol=0)
    small = SkipMLP([182, 128, 32], None)  # GHA pose_color: skip at layer 1
    assert [l.in_features for l in small.layers] == [182, 128 + 182]
    # GHA stage-2 widths with the FLAME expression code (109)
    gh = GaussianHead(109, exp_color_hidden=[256, 256], pose_color_hidden=[128], exp_attributes_hidden=[256] * 3,
                      pose_attributes_hidden=[128, 128], exp_deform_hidden=[256] * 5, pose_deform_hidden=[256, 256])
    assert gh.exp_color.dims == [128 + 109, 256, 256, 32] and gh.pose_color.dims == [182, 128, 32]
    assert gh.exp_attributes.dims == [237, 256, 256, 256, 8] and gh.pose_attributes.dims == [182, 128, 128, 8]
    assert gh.exp_deform.dims == [27 + 109] + [256] * 5 + [3] and gh.pose_deform.dims == [81, 256, 256, 3]


def test_geometry_net_sphere_pretraining_gives_a_sphere_sdf():
    torch.manual_seed(0)
    net = GeometryNet([64, 64, 64], feature_dim=8)
    loss = net.pretrain_sphere(150, radius=0.6, sample_bound=1.0, batch=1024, lr=3e-3,
                               generator=torch.Generator().manual_seed(0))
    assert loss < 5e-3
    with torch.no_grad():
        sdf = net.sdf(torch.tensor([[0.0, 0.0, 0.0], [0.95, 0.0, 0.0]]))
    assert float(sdf[0]) < 0 < float(sdf[1])


# ---------------------------------------------------------------------------------- blending
def test_blend_weights_hand_computed_at_thresholds():
    guides = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]], dtype=torch.float64)
    d = torch.tensor([0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 1.0], dtype=torch.float64)
    pts = torch.stack([torch.zeros_like(d), d, torch.zeros_like(d)], 1)
    ew, pw, dist = blend_weights(pts, guides, 0.15, 0.25, head_length=1.0, mode="euclidean")
    expect = torch.tensor([1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.allclose(ew[:, 0], expect) and torch.allclose(pw[:, 0], 1 - expect)
    assert torch.allclose(dist, d)
    # head length rescales distances: 0.4 canonical units with a head length of 2 is 0.2 -> 0.5
    ew2, _, _ = blend_weights(torch.tensor([[0.0, 0.4, 0.0]], dtype=torch.float64), guides, 0.15, 0.25, 2.0,
                             mode="euclidean")
    assert abs(float(ew2) - 0.5) < 1e-12
    # official-code form: ramp on the squared distance (near 0.1, far 0.25)
    p = torch.tensor([[0.0, math.sqrt(0.175), 0.0]], dtype=torch.float64)
    ew3, _, d3 = blend_weights(p, guides, 0.1, 0.25, mode="squared")
    assert abs(float(d3) - 0.175) < 1e-12 and abs(float(ew3) - 0.5) < 1e-12
    assert torch.allclose(ramp_weights(torch.tensor([0.15, 0.25], dtype=torch.float64), 0.15, 0.25),
                          torch.tensor([1.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError):
        ramp_weights(d, 0.3, 0.2)


# ---------------------------------------------------------------------------------- SR network
def test_super_resolution_shapes_channels_and_range():
    torch.manual_seed(0)
    sr = SuperResolution(32, capacity=32)
    convs = [m for m in sr.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(32, 128), (128, 128), (128, 64), (64, 64),
                                                                 (64, 32), (32, 32), (32, 3)]
    assert all(c.bias is None for c in convs[:-1]) and convs[-1].kernel_size == (1, 1)
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in sr.modules()) == 6
    x = torch.randn(2, 32, 6, 10) * 5
    with torch.no_grad():
        y = sr(x)
    assert y.shape == (2, 3, 24, 40)
    assert np.allclose(y.double().numpy(), ref_super_resolution(sr, x), atol=1e-5, rtol=0)


def ref_upsample2x_align_corners(x: np.ndarray) -> np.ndarray:
    """Independent bilinear x2 with ``align_corners=True`` (GHA's ``nn.Upsample``): output index
    i of a side n -> 2n samples input position i (n - 1) / (2n - 1). x: (..., H, W)."""
    def axis(a, ax):
        n = a.shape[ax]
        pos = np.arange(2 * n) * (n - 1) / (2 * n - 1) if n > 1 else np.zeros(2 * n)
        i0 = np.clip(np.floor(pos).astype(int), 0, n - 1)
        i1 = np.clip(i0 + 1, 0, n - 1)
        t = pos - i0
        shape = [1] * a.ndim
        shape[ax] = -1
        return np.take(a, i0, ax) * (1 - t).reshape(shape) + np.take(a, i1, ax) * t.reshape(shape)
    return axis(axis(x, -2), -1)


def ref_super_resolution(sr: SuperResolution, x: torch.Tensor) -> np.ndarray:
    """GHA's Upsampler with its own instance norm (eps 1e-5, no affine), ReLU, the independent
    align-corners upsampling and sigmoid; only the 2-D convolutions use torch (float64)."""
    def conv(h, c):
        w = c.weight.detach().double()
        b = None if c.bias is None else c.bias.detach().double()
        return torch.nn.functional.conv2d(torch.from_numpy(h), w, b, padding=c.padding).numpy()

    def double_conv(h, block):
        convs = [m for m in block if isinstance(m, torch.nn.Conv2d)]
        for c in convs:
            h = conv(h, c)
            mu = h.mean(axis=(2, 3), keepdims=True)
            var = h.var(axis=(2, 3), keepdims=True)
            h = np.maximum((h - mu) / np.sqrt(var + 1e-5), 0.0)
        return h

    h = double_conv(x.detach().double().numpy(), sr.inc)
    h = double_conv(ref_upsample2x_align_corners(h), sr.up1)
    h = double_conv(ref_upsample2x_align_corners(h), sr.up2)
    return 1 / (1 + np.exp(-conv(h, sr.outc)))


def test_super_resolution_upsampling_is_bilinear_align_corners():
    """Official ``Up``: ``nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True)``."""
    from avatarbench.methods.gaussian_head_avatar.super_resolution import upsample2x

    # hand values: a row [0, 1] -> [0, 1/3, 2/3, 1] (align_corners=False would give [0, .25, .75, 1])
    y = upsample2x(torch.tensor([[[[0.0, 1.0]]]], dtype=torch.float64))
    assert torch.allclose(y[0, 0], torch.tensor([[0, 1 / 3, 2 / 3, 1.0]] * 2, dtype=torch.float64), atol=1e-12)
    x = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert np.allclose(upsample2x(x).numpy(), ref_upsample2x_align_corners(x.numpy()), atol=1e-12)
    # the corners of the input are reproduced exactly at the corners of the output
    assert torch.equal(upsample2x(x)[..., [0, -1]][..., [0, -1], :], x[..., [0, -1]][..., [0, -1], :])


# ---------------------------------------------------------------------------------- heads
def _tiny_gaussian_head(exp_dim=5):
    return GaussianHead(exp_dim, exp_color_hidden=[16], pose_color_hidden=[8], exp_attributes_hidden=[16],
                        pose_attributes_hidden=[8], exp_deform_hidden=[16, 16], pose_deform_hidden=[8],
                        feature_dim=6, color_dim=4)


def _rand_rot(seed=0):
    import roma

    g = torch.Generator().manual_seed(seed)
    return roma.rotvec_to_rotmat(torch.randn(3, generator=g) * 0.5)


def test_gaussian_head_rigid_transform_and_state_round_trip():
    torch.manual_seed(0)
    gh = _tiny_gaussian_head()
    xyz = torch.rand(50, 3) - 0.5
    lm = xyz[:5].clone()
    gh.init_points(xyz, torch.randn(50, 6), lm, init_opacity=0.3)
    assert torch.allclose(torch.sigmoid(gh.opacity), torch.full((50, 1), 0.3))
    # zero the last layers: no deformation, no attribute change -> pure rigid transform
    for mlp in (gh.exp_deform, gh.pose_deform, gh.exp_attributes, gh.pose_attributes):
        torch.nn.init.zeros_(mlp.layers[-1].weight)
        torch.nn.init.zeros_(mlp.layers[-1].bias)
    R, T, S = _rand_rot(1), torch.tensor([0.1, -0.2, 0.3]), torch.tensor(0.25)
    blend = BlendConfig(0.15, 0.25, 1.0, "euclidean")
    out = gh.generate(torch.randn(5), torch.randn(6), R, T, S, blend)
    assert torch.allclose(out.means, S * xyz @ R.T + T, atol=1e-6)
    assert torch.allclose(out.scales, torch.exp(gh.scales) * S)
    q = rotmat_to_quat_wxyz(R)
    assert torch.allclose(out.quats, q.expand(50, 4), atol=1e-6)  # identity rotation composed with R
    assert out.colors.shape == (50, 4) and out.opacities.shape == (50,)

    state = {k: v.clone() for k, v in gh.state_dict().items()}
    gh2 = _tiny_gaussian_head()
    gh2.load_points_state(state)
    exp, pose = torch.randn(5), torch.randn(6)
    a = gh.generate(exp, pose, R, T, S, blend)
    b = gh2.generate(exp, pose, R, T, S, blend)
    for name in ("means", "quats", "scales", "opacities", "colors"):
        assert torch.equal(getattr(a, name), getattr(b, name))


def test_gaussian_head_blending_uses_both_branches_where_weights_overlap():
    torch.manual_seed(0)
    gh = _tiny_gaussian_head()
    # three points: on a guide (exp only), in the ramp (both), far away (pose only)
    xyz = torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.0, 0.0], [1.0, 0.0, 0.0]])
    gh.init_points(xyz, torch.randn(3, 6), torch.zeros(1, 3))
    exp, pose = torch.randn(5), torch.randn(6)
    blend = BlendConfig(0.15, 0.25, 1.0, "euclidean")
    out = gh.generate(exp, pose, torch.eye(3), torch.zeros(3), torch.tensor(1.0), blend)
    f = torch.tanh(gh.feature)
    from avatarbench.methods.gaussian_head_avatar.mlps import positional_encoding as pe

    ce = gh.exp_color(torch.cat([f, exp.expand(3, -1)], -1))
    cp = gh.pose_color(torch.cat([f, pe(pose, 4).expand(3, -1)], -1))
    expect = torch.stack([ce[0], 0.5 * ce[1] + 0.5 * cp[1], cp[2]])
    assert torch.allclose(out.colors, expect, atol=1e-6)


def _tiny_mesh_head(landmarks):
    kw = dict(geo_hidden=[32, 32, 32], exp_color_hidden=[16], pose_color_hidden=[8], exp_deform_hidden=[16, 16],
              pose_deform_hidden=[8], feature_dim=6, color_dim=4)
    return MeshHead(5, landmarks, **kw)


def _sphere_mesh_head(seed=0):
    torch.manual_seed(seed)
    # landmarks on one side of the r = 0.5 sphere: surface points near them are expression-driven,
    # the far side pose-driven, a band in between blended (official near 0.1 / far 0.25 on d^2)
    lm = torch.tensor([[0.0, 0.0, 0.5], [0.2, 0.1, 0.44], [-0.2, -0.1, 0.44]])
    mh = _tiny_mesh_head(lm)
    mh.geo.pretrain_sphere(60, radius=0.5, sample_bound=1.0, batch=512, lr=3e-3, generator=torch.Generator().manual_seed(0))
    return mh


def test_mesh_head_reconstruct_matches_the_official_stage1_formulas():
    """Stage 1 (``MeshHeadModule.reconstruct``), against an independent float64 implementation:
    colour = le sigmoid-MLP(F, exp) + lp sigmoid-MLP(F, PE(pose)); X1 = X0 + 0.3 le exp_deform(PE(X0), exp);
    X2 = X1 + 0.3 lp pose_deform(PE(X1), PE(pose)) (on the exp-deformed points); world = S X2 R^T + T."""
    from avatarbench.methods.gaussian_head_avatar.tetgrid import kuhn_tet_grid as grid_fn

    mh = _sphere_mesh_head()
    grid = grid_fn(10, 1.0)
    g = torch.Generator().manual_seed(1)
    exp, pose = torch.randn(5, generator=g), torch.randn(6, generator=g) * 0.3
    R, T, S = _rand_rot(2), torch.tensor([0.05, -0.1, 0.2]), torch.tensor(0.1)
    with torch.no_grad():
        mf = mh.reconstruct(grid, exp, pose, R, T, S, BlendConfig())
    x0, feat = mf.canonical.double().numpy(), mf.features.double().numpy()
    ew = ref_blend(x0, mh.landmarks.detach().double().numpy(), 0.1, 0.25)[:, None]
    assert (ew == 1).any() and (ew == 0).any() and ((ew > 0) & (ew < 1)).any()
    pw = 1 - ew
    n = x0.shape[0]
    e = np.broadcast_to(exp.double().numpy(), (n, 5))
    pp = np.broadcast_to(ref_pe(pose.double().numpy()[None]), (n, 54))
    col = ew * ref_mlp(mh.exp_color, torch.from_numpy(np.concatenate([feat, e], 1))) \
        + pw * ref_mlp(mh.pose_color, torch.from_numpy(np.concatenate([feat, pp], 1)))
    d_exp = ref_mlp(mh.exp_deform, torch.from_numpy(np.concatenate([ref_pe(x0), e], 1)))
    x1 = x0 + d_exp * ew * 0.3
    d_pose = ref_mlp(mh.pose_deform, torch.from_numpy(np.concatenate([ref_pe(x1), pp], 1)))
    x2 = x1 + d_pose * pw * 0.3
    world = 0.1 * x2 @ R.double().numpy().T + T.double().numpy()
    assert np.allclose(mf.colors.double().numpy(), col, atol=1e-5)
    assert np.allclose(mf.exp_deform.double().numpy(), d_exp, atol=1e-5)
    assert np.allclose(mf.pose_deform.double().numpy(), d_pose, atol=1e-5)
    assert np.allclose(mf.deformed.double().numpy(), x2, atol=1e-5)
    assert np.allclose(mf.world.double().numpy(), world, atol=1e-6)


def test_mesh_head_gradients_and_state_round_trip():
    from avatarbench.methods.gaussian_head_avatar.tetgrid import kuhn_tet_grid as grid_fn

    mh = _sphere_mesh_head()
    grid = grid_fn(10, 1.0)
    exp, pose = torch.randn(5), torch.zeros(6)
    mf = mh.reconstruct(grid, exp, pose, torch.eye(3), torch.zeros(3), torch.tensor(1.0), BlendConfig())
    assert mf.faces.shape[0] > 0 and mf.colors.shape == (mf.world.shape[0], 4)
    loss = mf.world.sum() + mf.colors.sum()
    loss.backward()
    assert mh.geo.mlp.layers[0].weight.grad.abs().sum() > 0  # gradients reach the SDF network
    mh2 = _tiny_mesh_head(torch.zeros(3, 3))
    mh2.load_state_dict(mh.state_dict())
    mf2 = mh2.reconstruct(grid, exp, pose, torch.eye(3), torch.zeros(3), torch.tensor(1.0), BlendConfig())
    assert torch.equal(mf.world, mf2.world) and torch.equal(mf.faces, mf2.faces)


def test_copy_from_mesh_head_copies_every_layer_of_the_four_mlps_only():
    """Handoff (``train_gaussianhead.py``): exp/pose colour and deformation MLPs are loaded from
    stage 1; the stage-1 colour MLPs end in a sigmoid and the stage-2 ones have no last op, so the
    copied stage-2 colour is the logit of the stage-1 colour. The attribute MLPs keep their init."""
    mh = _sphere_mesh_head()
    torch.manual_seed(5)
    gh = _tiny_gaussian_head()
    attr_before = {k: v.clone() for k, v in gh.state_dict().items() if "attributes" in k}
    gh.copy_from_mesh_head(mh)
    for name in ("exp_color", "pose_color", "exp_deform", "pose_deform"):
        src, dst = getattr(mh, name), getattr(gh, name)
        assert len(src.layers) == len(dst.layers)
        for a, b in zip(src.layers, dst.layers):
            assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    for k, v in gh.state_dict().items():
        if "attributes" in k:
            assert torch.equal(v, attr_before[k]), k
    x = torch.randn(30, 6 + 5) * 2
    with torch.no_grad():
        assert torch.allclose(torch.sigmoid(gh.exp_color(x)), mh.exp_color(x), atol=1e-6)
        xp = torch.randn(30, 6 + 54)
        assert torch.allclose(torch.sigmoid(gh.pose_color(xp)), mh.pose_color(xp), atol=1e-6)
        xd = torch.randn(30, 27 + 5)
        assert torch.equal(gh.exp_deform(xd), mh.exp_deform(xd))
    bad = GaussianHead(5, exp_color_hidden=[17], pose_color_hidden=[8], exp_attributes_hidden=[16],
                       pose_attributes_hidden=[8], exp_deform_hidden=[16, 16], pose_deform_hidden=[8],
                       feature_dim=6, color_dim=4)
    with pytest.raises(ValueError, match="exp_color"):
        bad.copy_from_mesh_head(mh)


def test_gaussian_head_generate_matches_the_official_stage2_formulas():
    """Stage 2 (``GaussianHeadModule.generate``), against an independent float64 implementation:
    colour/attributes = le MLP_exp(tanh F0, exp) + lp MLP_pose(tanh F0, PE(pose)); both deformation
    MLPs on the canonical X0; X = X0 + 0.3 (le d_exp + lp d_pose); log-scale, quaternion and
    opacity logit get 0.2 x their attribute deltas; quaternion normalised per Gaussian; world:
    S X R^T + T, R q, exp(log s) S."""
    torch.manual_seed(3)
    gh = _tiny_gaussian_head()
    g = torch.Generator().manual_seed(4)
    xyz = (torch.rand(80, 3, generator=g, dtype=torch.float64) - 0.5) * 1.6
    lm = xyz[:4].clone()
    gh.init_points(xyz.float(), torch.randn(80, 6, generator=g), lm.float(), init_opacity=0.3)
    gh = gh.double()
    with torch.no_grad():
        gh.xyz.copy_(xyz)
        gh.landmarks = lm.clone()
    with torch.no_grad():  # non-trivial per-Gaussian state
        gh.rotation.add_(torch.randn(80, 4, generator=g, dtype=torch.float64) * 0.3)
        gh.scales.add_(torch.randn(80, 3, generator=g, dtype=torch.float64) * 0.2)
        gh.opacity.add_(torch.randn(80, 1, generator=g, dtype=torch.float64))
    exp, pose = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64) * 0.3
    import roma

    R = roma.rotvec_to_rotmat(torch.tensor([0.4, -0.3, 0.6], dtype=torch.float64))  # orthonormal in float64
    T, S = torch.tensor([0.02, -0.3, 0.1], dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64)
    with torch.no_grad():
        out = gh.generate(exp, pose, R, T, S, BlendConfig())

    x0 = xyz.numpy()
    ew = ref_blend(x0, lm.numpy(), 0.1, 0.25)[:, None]
    assert (ew == 1).any() and (ew == 0).any() and ((ew > 0) & (ew < 1)).any()
    pw = 1 - ew
    f = np.tanh(gh.feature.detach().numpy())
    e = np.broadcast_to(exp.numpy(), (80, 5))
    pp = np.broadcast_to(ref_pe(pose.numpy()[None]), (80, 54))
    fe, fp = torch.from_numpy(np.concatenate([f, e], 1)), torch.from_numpy(np.concatenate([f, pp], 1))
    color = ew * ref_mlp(gh.exp_color, fe) + pw * ref_mlp(gh.pose_color, fp)
    attr = ew * ref_mlp(gh.exp_attributes, fe) + pw * ref_mlp(gh.pose_attributes, fp)
    pe_x = ref_pe(x0)
    delta = ew * ref_mlp(gh.exp_deform, torch.from_numpy(np.concatenate([pe_x, e], 1))) \
        + pw * ref_mlp(gh.pose_deform, torch.from_numpy(np.concatenate([pe_x, pp], 1)))
    x = x0 + 0.3 * delta
    log_s = gh.scales.detach().numpy() + 0.2 * attr[:, 0:3]
    q = gh.rotation.detach().numpy() + 0.2 * attr[:, 3:7]
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    opacity = 1 / (1 + np.exp(-(gh.opacity.detach().numpy()[:, 0] + 0.2 * attr[:, 7])))
    Rn = R.numpy()
    assert np.allclose(out.colors.numpy(), color, atol=1e-12)
    assert np.allclose(out.canonical.numpy(), x, atol=1e-12)
    assert np.allclose(out.means.numpy(), 0.1 * x @ Rn.T + T.numpy(), atol=1e-12)
    assert np.allclose(out.scales.numpy(), np.exp(log_s) * 0.1, atol=1e-12)
    assert np.allclose(out.opacities.numpy(), opacity, atol=1e-12)
    assert np.allclose(quat_to_matrix(out.quats.numpy()), Rn[None] @ quat_to_matrix(q), atol=1e-10)


# ---------------------------------------------------------------------------------- losses, helpers
def test_silhouette_loss_and_laplacian_values():
    a = torch.tensor([1.0, 1.0, 0.0, 0.0])
    m = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert abs(float(silhouette_loss(a, m)) - (1 - 1 / 3)) < 1e-6
    assert float(silhouette_loss(m, m)) < 1e-6
    # flat grid: interior vertices have zero Laplacian; the umbrella of a raised centre vertex
    verts = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]])
    raised = verts.clone()
    raised[0, 2] = 1.0
    # centre: neighbours mean z 0 -> L = (0,0,1); each rim vertex i: neighbours {0, i-1, i+1} with
    # face counts {2, 1, 1} -> L_z = 0 - (2*1)/4 = -0.5, L_xy = x_i - (x_{i-1} + x_{i+1})/4
    lap = float(laplacian_loss(raised, faces))
    rim_xy = 1.0  # |x_i - 0.25 (x_{i-1} + x_{i+1})|^2 with neighbours orthogonal: 1^2 = 1
    expect = (1.0 + 4 * (0.25 + rim_xy)) / 15
    assert abs(lap - expect) < 1e-9


def test_random_scale_crop_identity_and_padding():
    low = torch.rand(1, 4, 8, 8)
    high = torch.rand(1, 3, 32, 32)
    a, b = random_scale_crop(low, high, 4, 1.0, (0.3, 0.7))
    assert torch.equal(a, low) and torch.equal(b, high)
    a, b = random_scale_crop(low, high, 4, 0.5, (0.0, 0.0))  # zoom out, placed at the corner
    assert a.shape == low.shape and b.shape == high.shape
    assert torch.all(a[..., 4:, :] == 1) and torch.all(b[..., 16:, :] == 1)
    a, b = random_scale_crop(low, high, 4, 1.25, (0.99, 0.99))  # zoom in, crop at the far corner
    assert a.shape == low.shape and b.shape == high.shape
    x, y = random_crop_pair(high, high * 2, (10, 12), (0.5, 0.5))
    assert x.shape[-2:] == (10, 12) and torch.equal(y, 2 * x)


def official_random_crop(low: np.ndarray, high: np.ndarray, k: int, off: tuple[int, int]):
    """Independent re-statement of GHA's ``random_crop`` for a square ``n`` render and a ``4n`` GT:
    nearest resize (``F.interpolate(x, scale_factor=k/n)``: source index ``floor(i n / k)``) to k and
    4k, then pasted into a canvas of ones at ``off`` (k < n) or cropped at ``off`` (k > n); the GT
    offset is 4 x the render's. low: (C, n, n), high: (3, 4n, 4n)."""
    n = low.shape[-1]

    def nearest(a, size):
        idx = (np.arange(size) * a.shape[-1]) // size
        return a[:, idx][:, :, idx]

    ls, hs = nearest(low, k), nearest(high, 4 * k)
    oy, ox = off
    if k < n:
        lo, hi = np.ones_like(low), np.ones_like(high)
        lo[:, oy:oy + k, ox:ox + k] = ls
        hi[:, 4 * oy:4 * oy + 4 * k, 4 * ox:4 * ox + 4 * k] = hs
        return lo, hi
    return ls[:, oy:oy + n, ox:ox + n], hs[:, 4 * oy:4 * oy + 4 * n, 4 * ox:4 * ox + 4 * n]


@pytest.mark.parametrize("k, off", [(13, (2, 1)), (20, (3, 4)), (12, (4, 0))])
def test_random_scale_crop_is_the_official_nearest_zoom(k, off):
    g = torch.Generator().manual_seed(k)
    n = 16
    low, high = torch.rand(1, 5, n, n, generator=g, dtype=torch.float64), torch.rand(1, 3, 4 * n, 4 * n, generator=g,
                                                                                     dtype=torch.float64)
    d = abs(k - n)
    u = ((off[0] + 0.5) / (d + 1), (off[1] + 0.5) / (d + 1))
    a, b = random_scale_crop(low, high, 4, k / n, u, fill=1.0)  # default mode: nearest
    ea, eb = official_random_crop(low[0].numpy(), high[0].numpy(), k, off)
    assert np.array_equal(a[0].numpy(), ea) and np.array_equal(b[0].numpy(), eb)
    # GHA quantises the factor to int(n s) / n: any s in [k/n, (k+1)/n) gives the same result
    a2, b2 = random_scale_crop(low, high, 4, (k + 0.9) / n, u, fill=1.0)
    assert torch.equal(a2, a) and torch.equal(b2, b)
    # the smooth variant (bilinear / area) is a documented option and differs
    a3, _ = random_scale_crop(low, high, 4, k / n, u, fill=1.0, mode="smooth")
    assert not torch.equal(a3, a)
    with pytest.raises(ValueError, match="nearest"):
        random_scale_crop(low, high, 4, k / n, u, mode="bicubic")


def test_subdivision_mouth_box_and_fps():
    verts = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    faces = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    v, f = subdivide_midpoint(verts, faces)
    assert v.shape == (4 + 6, 3) and f.shape == (16, 3)
    _, counts = mesh_edges(f)
    assert bool(torch.all(counts == 2))
    mouth = torch.tensor([[-0.1, -0.3, 0.5], [0.1, -0.3, 0.5], [0.0, -0.25, 0.45], [0.0, -0.35, 0.4]])
    pts = mouth_box_points(mouth, 500, torch.Generator().manual_seed(0))
    centre = torch.tensor([0.0, -0.3, 0.4])
    half = 0.8 * (mouth - centre).abs().max(0).values
    assert bool(torch.all((pts - centre).abs() <= half + 1e-6))
    idx = farthest_point_sampling(torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [5, 0, 0], [2.5, 0, 0]]), 3)
    assert idx.tolist() == [0, 2, 3]
