"""Animatable Gaussians building blocks against hand-computed values: modulated convolution, Haar,
StyleUNet shapes and the official parameter count, PCA projection, the LBS weight volume, the
orthographic position maps, the template SDF/marching cubes, and the LBS posing path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avatarbench.methods.animatable_gaussians.lbs_volume import build_lbs_weight_volume, box3, grid_points
from avatarbench.methods.animatable_gaussians.pose_pca import PosePCA
from avatarbench.methods.animatable_gaussians.position_maps import downsample_nearest, render_position_maps
from avatarbench.methods.animatable_gaussians.posing import (SmplxPoser, apply_points, apply_rotations,
                                                            blend_transforms)
from avatarbench.methods.animatable_gaussians.styleunet import (DualStyleUNet, ModulatedConv2d, ViewDirEncoder,
                                                               count_parameters, haar_forward, haar_inverse)
from avatarbench.methods.animatable_gaussians.template import mesh_sdf_grid, open_face_mask, sdf_to_mesh

try:
    from test_animatable_gaussians_support import body_driving, ellipsoid_mesh, write_tiny_smplx
except ImportError:  # collected as a package
    from tests.methods.test_animatable_gaussians_support import body_driving, ellipsoid_mesh, write_tiny_smplx

torch.set_num_threads(1)


# ------------------------------------------------------------------------------ StyleUNet
def test_modulated_conv_matches_hand_computation():
    torch.manual_seed(0)
    mc = ModulatedConv2d(2, 1, 1, style_dim=3, demodulate=True)
    with torch.no_grad():
        mc.weight.copy_(torch.tensor([3.0, -1.0]).reshape(1, 1, 2, 1, 1))
        mc.modulation.weight.copy_(torch.zeros(2, 3))
        mc.modulation.weight[0, 0] = math.sqrt(3)  # EqualLinear scale 1/sqrt(3): s0 = 1 + style0
        mc.modulation.bias.fill_(1.0)
    style = torch.tensor([[1.0, 0.0, 0.0]])  # -> s = (2, 1)
    x = torch.tensor([[[[0.5]], [[2.0]]]])
    a, b, s1, s2 = 3.0, -1.0, 2.0, 1.0
    # W' = (a s1, b s2) / sqrt(2); demodulated by sqrt(sum W'^2 + 1e-8)
    w1, w2 = a * s1 / math.sqrt(2), b * s2 / math.sqrt(2)
    d = math.sqrt(w1 ** 2 + w2 ** 2 + 1e-8)
    expected = (w1 * 0.5 + w2 * 2.0) / d
    with torch.no_grad():
        assert float(mc(x, style)) == pytest.approx(expected, rel=1e-6)
        # without demodulation
        mc.demodulate = False
        assert float(mc(x, style)) == pytest.approx(w1 * 0.5 + w2 * 2.0, rel=1e-6)


def test_modulated_conv_3x3_equals_conv2d_with_modulated_weight():
    torch.manual_seed(1)
    mc = ModulatedConv2d(3, 4, 3, style_dim=5)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    st = torch.randn(2, 5, dtype=torch.float64)
    mc = mc.double()
    y = mc(x, st)
    for b in range(2):
        s = (st[b] @ (mc.modulation.weight * mc.modulation.scale).T) + mc.modulation.bias
        w = mc.scale * mc.weight[0] * s[None, :, None, None]
        w = w / torch.sqrt((w ** 2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        ref = torch.nn.functional.conv2d(x[b:b + 1], w, padding=1)
        torch.testing.assert_close(y[b:b + 1], ref)


def test_haar_round_trip_and_hand_values():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    y = haar_forward(x)
    # LL = (1+2+3+4)/2, LH = (1-2+3-4)/2, HL = (1+2-3-4)/2, HH = (1-2-3+4)/2
    torch.testing.assert_close(y.reshape(-1), torch.tensor([5.0, -1.0, -2.0, 0.0]))
    z = torch.randn(2, 3, 8, 6)
    torch.testing.assert_close(haar_inverse(haar_forward(z)), z)


def test_styleunet_output_shapes():
    """Shapes only; where the view features enter is pinned in test_animatable_gaussians_fidelity."""
    torch.manual_seed(0)
    net = DualStyleUNet(32, 3, 8, style_dim=16, min_size=4, channel_base=128, channel_multiplier=2, max_channels=16)
    vd = ViewDirEncoder(net.extra_feature_channels, net.extra_feature_size, 4)
    x = torch.randn(1, 3, 32, 32)
    extra = vd(torch.randn(2, 1, 32, 32))
    assert extra.shape == (2, net.extra_feature_channels, 16, 16)
    assert net(x, extra[None]).shape == (1, 16, 64, 64)
    with pytest.raises(ValueError):
        net(torch.randn(1, 3, 16, 16))


def test_styleunet_parameter_count_matches_official():
    """The official AvatarNet has 223,648,936 parameters (training log in issue #30)."""
    with torch.device("meta"):
        c3 = count_parameters(DualStyleUNet(512, 3, 3))
        c8 = count_parameters(DualStyleUNet(512, 3, 8))
        vd = count_parameters(ViewDirEncoder(128, 256, 64))
    assert c3 == 74_479_016
    assert c8 == 74_558_616
    assert 2 * c3 + c8 + vd == 223_648_936


# ------------------------------------------------------------------------------ PCA
def test_pca_hand_example_projection_and_clamp():
    X = torch.tensor([[-2.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    pca = PosePCA.fit(X, n_components=1, sigma=2.0)
    torch.testing.assert_close(pca.mean, torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(pca.components.abs(), torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    var = (4 + 1 + 1 + 4) / 3  # sklearn's explained variance (n - 1)
    torch.testing.assert_close(pca.variances, torch.tensor([var], dtype=torch.float64))
    bound = 2 * math.sqrt(var)
    # off-subspace component removed, in-bound coefficient kept
    torch.testing.assert_close(pca.project(torch.tensor([1.5, 0.7], dtype=torch.float64)),
                               torch.tensor([1.5, 0.0], dtype=torch.float64))
    # beyond 2 sigma: clamped
    torch.testing.assert_close(pca.project(torch.tensor([10.0, 0.0], dtype=torch.float64)),
                               torch.tensor([bound, 0.0], dtype=torch.float64))
    torch.testing.assert_close(pca.project(torch.tensor([-10.0, 3.0], dtype=torch.float64)),
                               torch.tensor([-bound, 0.0], dtype=torch.float64))


def test_pca_identity_on_training_span_and_matches_svd():
    g = torch.Generator().manual_seed(0)
    n, D, K = 30, 12, 5
    basis = torch.linalg.qr(torch.randn(D, K, generator=g, dtype=torch.float64))[0].T  # (K, D) orthonormal
    coeffs = torch.randn(n, K, generator=g, dtype=torch.float64) * torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5],
                                                                              dtype=torch.float64)
    mean = torch.randn(D, generator=g, dtype=torch.float64)
    X = mean + coeffs @ basis
    pca = PosePCA.fit(X, n_components=20, sigma=2.0)
    assert pca.num_components == 20 or pca.num_components == min(20, n, D)
    # components agree with an SVD of the centred data (up to sign)
    U, S, Vt = torch.linalg.svd(X - X.mean(0), full_matrices=False)
    for k in range(K):
        assert abs(float(pca.components[k] @ Vt[k])) == pytest.approx(1.0, abs=1e-8)
        assert float(pca.variances[k]) == pytest.approx(float(S[k] ** 2 / (n - 1)), rel=1e-8)
    # inputs inside the span with coefficients within 2 sigma are reproduced exactly
    std = pca.variances[:K].sqrt()
    c = torch.tensor([1.5, -1.9, 0.3, 1.0, -0.2], dtype=torch.float64) * std
    x = pca.mean + c @ pca.components[:K]
    torch.testing.assert_close(pca.project(x), x)
    # a batch of inputs and the unclamped projection
    torch.testing.assert_close(pca.project(X, clamp=False), X)


# ------------------------------------------------------------------------------ LBS volume
def _plate(n: int = 6):
    """A flat square plate z = 0, |x|, |y| <= 0.5, two joints with weights linear in x."""
    xs = torch.linspace(-0.5, 0.5, n + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(xs, xs, indexing="ij")
    v = torch.stack([xx.reshape(-1), yy.reshape(-1), torch.zeros((n + 1) ** 2, dtype=torch.float64)], 1)
    f = []
    for i in range(n):
        for j in range(n):
            a, b, c, d = i * (n + 1) + j, i * (n + 1) + j + 1, (i + 1) * (n + 1) + j, (i + 1) * (n + 1) + j + 1
            f += [[a, b, d], [a, d, c]]
    w = torch.stack([0.5 + v[:, 0], 0.5 - v[:, 0]], 1)
    return v, torch.tensor(f), w


def test_lbs_volume_reproduces_linear_weights_on_the_surface():
    v, f, w = _plate()
    vol = build_lbs_weight_volume(v.float(), f, w.float(), res=17, iterations=20)
    assert vol.weights.shape == (2, 17, 17, 17)
    torch.testing.assert_close(vol.weights.sum(0), torch.ones(17, 17, 17))
    g = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.rand(50, 2, generator=g) * 0.8 - 0.4, torch.zeros(50, 1)], 1)
    expected = torch.stack([0.5 + pts[:, 0], 0.5 - pts[:, 0]], 1)
    torch.testing.assert_close(vol.query(pts), expected, atol=1e-5, rtol=0)


def test_lbs_volume_reproduces_smplx_weights_at_vertices(tmp_path):
    """On the tiny SMPL-X-format model (one-hot parts), vertices whose 2-ring has constant weights
    recover them up to the voxel-scale blur; the mean error over all vertices is small."""
    from avatarbench.bodymodels.smplx import load_smplx

    m = load_smplx(write_tiny_smplx(tmp_path / "SMPLX_NEUTRAL.npz"))
    v, f, w = m.v_template, m.faces, m.lbs_weights
    vol = build_lbs_weight_volume(v, f, w, res=48, iterations=30)
    q = vol.query(v)
    # vertices whose incident faces all have constant weights (the surface weight function is flat there)
    fw = w[f]  # (F, 3, J)
    fdiff = (fw[:, :, None] - fw[:, None, :]).abs().sum(-1).amax(dim=(1, 2))  # (F,)
    diff = torch.zeros(v.shape[0]).scatter_reduce(0, f.reshape(-1), fdiff.repeat_interleave(3), "amax")
    flat = diff == 0
    assert int(flat.sum()) > 50
    torch.testing.assert_close(q[flat], w[flat], atol=3e-2, rtol=0)  # voxel (3.6 cm) scale blur near the pole
    assert float((q - w).abs().sum(-1).mean()) < 0.1
    # diffusion smooths off the surface: a point outside between two parts gets blended weights
    mid = vol.query(torch.tensor([[0.0, 0.3, 0.3]]))[0]
    assert 0.05 < float(mid[0]) < 0.95 and 0.05 < float(mid[9]) < 0.95


def test_box3_is_a_3x3x3_mean_with_replicate_borders():
    x = torch.arange(27.0).reshape(1, 3, 3, 3)
    y = box3(x)
    assert float(y[0, 1, 1, 1]) == pytest.approx(float(x.mean()))
    ref = torch.nn.functional.avg_pool3d(torch.nn.functional.pad(x[None], (1,) * 6, mode="replicate"), 3, stride=1)[0]
    torch.testing.assert_close(y, ref)


# ------------------------------------------------------------------------------ position maps
def _box(lo, hi):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    c = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    # vertex index = 4 ix + 2 iy + iz; faces counter-clockwise from outside
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = []
    for a, b, cc, d in quads:
        f += [[a, b, cc], [a, cc, d]]
    return torch.tensor(c, dtype=torch.float32), torch.tensor(f)


def test_position_maps_of_a_box():
    v, f = _box([-0.3, -0.5, -0.1], [0.3, 0.5, 0.2])
    S, extent = 20, 2.0
    pm = render_position_maps(v, f, S, center=torch.zeros(3), extent=extent)
    # pixel (i, j) centre: x = (j + 0.5 - S/2) * 0.1, y = -(i + 0.5 - S/2) * 0.1
    js = torch.arange(S)
    xs = (js + 0.5 - S / 2) * extent / S
    inside_x = (xs > -0.3) & (xs < 0.3)
    inside_y = (-xs > -0.5) & (-xs < 0.5)  # rows: y = -x(j) for the same index
    expected_mask = inside_y[:, None] & inside_x[None, :]
    assert torch.equal(pm.mask[0], expected_mask) and torch.equal(pm.mask[1], expected_mask)
    m = pm.mask[0]
    torch.testing.assert_close(pm.position[0][m][:, 2], torch.full((int(m.sum()),), 0.2))
    torch.testing.assert_close(pm.position[1][m][:, 2], torch.full((int(m.sum()),), -0.1))
    ii, jj = torch.nonzero(m, as_tuple=True)
    torch.testing.assert_close(pm.position[0][m][:, 0], ((jj + 0.5 - S / 2) * 0.1).float(), atol=1e-6, rtol=0)
    torch.testing.assert_close(pm.position[1][m][:, 1], (-(ii + 0.5 - S / 2) * 0.1).float(), atol=1e-6, rtol=0)
    # front normals point to +z, back to -z (vertex normals of a box corner region are tilted:
    # check the sign only)
    assert bool((pm.normal[0][m][:, 2] > 0).all()) and bool((pm.normal[1][m][:, 2] < 0).all())
    assert torch.equal(pm.position[0][~m], torch.zeros(int((~m).sum()), 3))
    half = downsample_nearest(pm.position, 2)
    assert half.shape == (2, S // 2, S // 2, 3)
    torch.testing.assert_close(half[0, 3, 4], pm.position[0, 6, 8])


def test_position_maps_of_a_tilted_plane():
    """z = 0.1 x + 0.2 y + 0.05 on a square: exact at every covered pixel centre."""
    v = torch.tensor([[-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.5, 0.5, 0.0], [-0.5, 0.5, 0.0]])
    v[:, 2] = 0.1 * v[:, 0] + 0.2 * v[:, 1] + 0.05
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    pm = render_position_maps(v, f, 16, center=torch.zeros(3), extent=2.0)
    p = pm.position[0][pm.mask[0]]
    assert p.shape[0] == 8 * 8
    torch.testing.assert_close(p[:, 2], 0.1 * p[:, 0] + 0.2 * p[:, 1] + 0.05, atol=1e-6, rtol=0)
    # the back map sees the same (single) surface
    torch.testing.assert_close(pm.position[1][pm.mask[1]], p)


# ------------------------------------------------------------------------------ template
def test_sdf_to_mesh_sphere_outward_and_radius():
    b = torch.tensor([[-1.0, -1.0, -0.6], [1.0, 1.0, 0.6]])
    sdf = grid_points(b, (41, 41, 25)).norm(dim=-1) - 0.45
    v, f = sdf_to_mesh(sdf, b, smooth_sigma=0.0)
    n = torch.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1)
    ok = n.norm(dim=-1) > 1e-9  # marching cubes may emit a few zero-area triangles
    assert bool(((n * v[f].mean(1)).sum(-1)[ok] > 0).all())
    assert float((v.norm(dim=-1) - 0.45).abs().max()) < 0.01


def test_mesh_sdf_grid_signs_and_open_sheets():
    v, f = ellipsoid_mesh((0.3, 0.5, 0.2))
    V, Fc = torch.tensor(v), torch.tensor(f)
    assert not bool(open_face_mask(Fc, V.shape[0]).any())
    b = torch.tensor([[-0.5, -0.7, -0.4], [0.5, 0.7, 0.4]])
    sdf = mesh_sdf_grid(V, Fc, b, (21, 29, 17))
    p = grid_points(b, (21, 29, 17))
    inside_true = ((p[..., 0] / 0.3) ** 2 + (p[..., 1] / 0.5) ** 2 + (p[..., 2] / 0.2) ** 2) < 1
    agree = ((sdf < 0) == inside_true).float().mean()
    assert float(agree) > 0.98
    assert float(sdf[8, 14, 10]) < -0.15  # the centre (z, y, x index) is deep inside (~ -0.2)
    # an open sheet (one triangle pair) is solidified to a thin shell
    plate_v = torch.tensor([[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.3, 0.3, 0.0], [-0.3, 0.3, 0.0]],
                           dtype=torch.float64)
    plate_f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    assert bool(open_face_mask(plate_f, 4).all())
    s2 = mesh_sdf_grid(plate_v, plate_f, b, (21, 29, 17))
    assert float(s2[8, 14, 10]) < 0 and float(s2[12, 14, 10]) > 0  # on the sheet inside, 0.2 m off it outside


# ------------------------------------------------------------------------------ posing
def test_lbs_identity_pose_returns_the_template(tmp_path):
    from avatarbench.bodymodels.smplx import da_pose_body_pose, load_smplx

    m = load_smplx(write_tiny_smplx(tmp_path / "SMPLX_NEUTRAL.npz", spread_joints=True))
    poser = SmplxPoser(m, torch.zeros(10), da_pose_body_pose()[0])
    assert float(torch.cdist(poser.canonical.joints[:3], poser.canonical.joints[:3]).max()) > 0.1  # distinct joints
    canonical_driving = {"body_pose": da_pose_body_pose()[0].numpy(), "global_orient": np.zeros(3, np.float32),
                         "transl": np.zeros(3, np.float32)}
    T = poser.live_transforms(canonical_driving)
    torch.testing.assert_close(T, torch.eye(4).expand(55, 4, 4), atol=1e-5, rtol=0)
    x = torch.randn(40, 3) * 0.3
    w = torch.softmax(torch.randn(40, 55), -1)
    torch.testing.assert_close(apply_points(blend_transforms(w, T), x), x, atol=1e-5, rtol=0)
    q = torch.nn.functional.normalize(torch.randn(40, 4), dim=-1)
    q = q * torch.sign(q[:, :1])
    qp = apply_rotations(blend_transforms(w, T), q)
    torch.testing.assert_close(qp * torch.sign(qp[:, :1]), q, atol=1e-5, rtol=0)


def test_forward_lbs_hip_rotation_about_its_joint_by_hand(tmp_path):
    """Joints at distinct vertices. A point skinned to the left hip (joint 1) goes from the canonical
    hip angle R_c (Da-pose) to the live R_l about the hip joint j1, then the root rotation R_g about
    the pelvis j0 and the translation t:  x' = R_g (R_l R_c^T (x - j1) + j1 - j0) + j0 + t."""
    from scipy.spatial.transform import Rotation

    from avatarbench.bodymodels.smplx import da_pose_body_pose, load_smplx

    m = load_smplx(write_tiny_smplx(tmp_path / "SMPLX_NEUTRAL.npz", spread_joints=True))
    da = da_pose_body_pose()[0]
    poser = SmplxPoser(m, torch.zeros(10), da)
    j = poser.canonical.joints.double().numpy()
    d = body_driving(2)
    T = poser.live_transforms(d)
    x = np.array([[0.1, -0.5, 0.05], [0.3, -0.2, -0.1]])
    w = torch.zeros(2, 55)
    w[:, 1] = 1.0
    got = apply_points(blend_transforms(w, T), torch.tensor(x, dtype=torch.float32)).double().numpy()
    Rc = Rotation.from_rotvec(da[0:3].double().numpy()).as_matrix()
    Rl = Rotation.from_rotvec(d["body_pose"][0:3].astype(np.float64)).as_matrix()
    Rg = Rotation.from_rotvec(d["global_orient"].astype(np.float64)).as_matrix()
    local = (x - j[1]) @ (Rl @ Rc.T).T + j[1]
    want = (local - j[0]) @ Rg.T + j[0] + d["transl"].astype(np.float64)
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert np.abs(want - x).max() > 0.05


def test_forward_lbs_from_canonical_matches_smplx_forward(tmp_path):
    """With one-hot weights, no pose correctives and distinct joints, skinning the canonical
    (Da-pose) mesh to a pose with A_live A_cano^-1 reproduces SMPL-X's own forward pass of that
    pose (root + translation)."""
    from avatarbench.bodymodels.smplx import da_pose_body_pose, load_smplx

    m = load_smplx(write_tiny_smplx(tmp_path / "SMPLX_NEUTRAL.npz", spread_joints=True))
    poser = SmplxPoser(m, torch.zeros(10), da_pose_body_pose()[0])
    cb = poser.canonical
    d = body_driving(3)
    T = poser.live_transforms(d)
    posed = apply_points(blend_transforms(cb.weights, T), cb.verts)
    ref = m.forward(**{k: torch.as_tensor(v)[None] for k, v in d.items()}).verts[0]
    torch.testing.assert_close(posed, ref, atol=1e-5, rtol=0)
    # the pose condition ignores root and translation
    Tc = poser.condition_transforms(d)
    d0 = dict(d, global_orient=np.zeros(3, np.float32), transl=np.zeros(3, np.float32))
    torch.testing.assert_close(Tc, poser.live_transforms(d0), atol=1e-6, rtol=0)


def test_template_fit_grows_a_shrunk_prior_towards_the_masks():
    """Masks of an ellipsoid, prior = the same ellipsoid shrunk by 15 %, identity skinning: the
    fitted surface moves towards the true one."""
    from avatarbench.data.synth.mesh_raster import rasterize_mesh
    from avatarbench.methods.animatable_gaussians.lbs_volume import LbsWeightVolume
    from avatarbench.methods.animatable_gaussians.template import SilhouetteView, fit_template_sdf

    try:
        from test_animatable_gaussians_support import ring_camera
    except ImportError:
        from tests.methods.test_animatable_gaussians_support import ring_camera
    radii = np.array([0.25, 0.75, 0.18])
    tv, tf = ellipsoid_mesh(tuple(radii), 16, 24)
    pv, pf = ellipsoid_mesh(tuple(0.85 * radii), 16, 24)
    views = []
    for i in range(6):
        cam = ring_camera(i, 2 * math.pi * i / 6 + 0.2, dist=2.5)
        frags = rasterize_mesh(torch.tensor(tv), torch.tensor(tf), cam, supersample=3)
        cov = torch.nn.functional.avg_pool2d(frags.mask.float()[None, None], 3)[0, 0]
        views.append(SilhouetteView(cam, cov, torch.eye(4).expand(55, 4, 4)))
    vol = LbsWeightVolume(torch.full((55, 2, 2, 2), 1.0 / 55), torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    sdf, bounds, info = fit_template_sdf(torch.tensor(pv).float(), torch.tensor(pf), vol, views, res=(20, 40, 16),
                                         margin=(0.1, 0.1, 0.1), iterations=80, views_per_step=3)
    v, f = sdf_to_mesh(sdf, bounds)

    def radial(points):  # ellipsoid "radius" of points relative to the true surface (1 = on it)
        return np.sqrt(((points / radii) ** 2).sum(-1))

    r_fit = radial(v.numpy())
    r_prior = radial(sdf_to_mesh(mesh_sdf_grid(torch.tensor(pv), torch.tensor(pf), bounds, (20, 40, 16)), bounds)[0]
                     .numpy())
    print("median radial fit", np.median(r_fit), "prior", np.median(r_prior))
    assert abs(np.median(r_fit) - 1.0) < 0.5 * abs(np.median(r_prior) - 1.0)
    assert info["carve_last"] is not None and info["cover_last"] < info["cover_first"]
