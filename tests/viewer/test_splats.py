"""Frame -> splat conversion: covariances, SH colours, and viser's float16 packing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from avatarbench.engine.method import FrameGaussians
from avatarbench.viewer.splats import choose_scene_scale, covariances, float16_roundtrip, relative_covariance_error, to_splats, \
    view_colors


def _random_gaussians(n=500, scale_mm=(1.0, 1.0), seed=0, sh_degree=None):
    g = torch.Generator().manual_seed(seed)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    lo, hi = scale_mm
    scales = (lo + (hi - lo) * torch.rand(n, 3, generator=g, dtype=torch.float64)) * 1e-3
    means = 0.1 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    colors = torch.rand(n, 3, generator=g, dtype=torch.float64) if sh_degree is None else \
        0.3 * torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g, dtype=torch.float64)
    return FrameGaussians(means, quats, scales, torch.rand(n, generator=g, dtype=torch.float64), colors, sh_degree)


def _viser_received(cov: np.ndarray) -> np.ndarray:
    """What viser's own packer stores (its GaussianSplatHandle code), decoded back to (N, 3, 3)."""
    from viser._scene_handles import GaussianSplatHandle

    buf = np.zeros((len(cov), 8), dtype=np.uint32)
    GaussianSplatHandle._pack_covariances(buf, np.asarray(cov, dtype=np.float32))
    tri = np.ascontiguousarray(buf[:, 4:7]).view(np.float16).astype(np.float64)  # (N, 6): 00 01 02 11 12 22
    out = np.empty((len(cov), 3, 3))
    for k, (i, j) in enumerate([(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]):
        out[:, i, j] = out[:, j, i] = tri[:, k]
    return out


def test_covariance_matches_scipy_rotation():
    g = _random_gaussians(50, (0.5, 5.0))
    q = g.quats.numpy()
    R = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()  # scipy: xyzw, normalises
    ref = np.einsum("nij,nj,nkj->nik", R, g.scales.numpy() ** 2, R)
    np.testing.assert_allclose(covariances(g.quats, g.scales).numpy(), ref, rtol=1e-12, atol=1e-20)


def test_to_splats_scales_scene_and_keeps_plain_colours():
    g = _random_gaussians(20)
    sp = to_splats(g, camera_center=None, scene_scale=10.0)
    assert sp.centers.shape == (20, 3) and sp.covariances.shape == (20, 3, 3)
    assert sp.rgbs.shape == (20, 3) and sp.opacities.shape == (20, 1)
    assert sp.centers.dtype == np.float32
    np.testing.assert_allclose(sp.centers, g.means.numpy() * 10, rtol=1e-6)
    np.testing.assert_allclose(sp.covariances, covariances(g.quats, g.scales).numpy() * 100, rtol=1e-6)
    np.testing.assert_allclose(sp.rgbs, g.colors.numpy(), rtol=1e-6)
    np.testing.assert_allclose(sp.opacities[:, 0], g.opacities.numpy(), rtol=1e-6)


def test_sh_colours_are_evaluated_for_the_view():
    # degree 1, one Gaussian at the origin seen from +x: dir = (-1, 0, 0) (camera -> mean);
    # colour = C0 c0 - C1 y c1 + C1 z c2 - C1 x c3 + 0.5 (gsplat convention)
    C0, C1 = 0.28209479177387814, 0.48860251190292
    sh = torch.tensor([[[0.1, 0.2, -0.3], [0.4, 0.0, 0.0], [0.0, 0.5, 0.0], [0.3, -0.2, 0.1]]], dtype=torch.float64)
    g = FrameGaussians(torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[1.0, 0, 0, 0]]),
                       torch.full((1, 3), 0.01), torch.ones(1), sh, sh_degree=1)
    x = -1.0
    expect = C0 * sh[0, 0] - C1 * x * sh[0, 3] + 0.5
    np.testing.assert_allclose(view_colors(g, np.array([2.0, 0.0, 0.0]))[0].numpy(),
                               expect.clamp(0, 1).numpy(), rtol=1e-12)
    # from +z the z-term is used instead: dir = (0, 0, -1)
    expect_z = C0 * sh[0, 0] + C1 * (-1.0) * sh[0, 2] + 0.5
    np.testing.assert_allclose(view_colors(g, np.array([0.0, 0.0, 3.0]))[0].numpy(),
                               expect_z.clamp(0, 1).numpy(), rtol=1e-12)


def test_float16_roundtrip_matches_viser_packing():
    g = _random_gaussians(200, (0.3, 4.0))
    cov = to_splats(g, None, 10.0).covariances
    np.testing.assert_array_equal(float16_roundtrip(cov), _viser_received(cov))


@pytest.mark.parametrize("scale_mm,plain_median_above,chosen", [((1.0, 1.0), 0.01, 10.0), ((0.5, 0.5), 0.015, 100.0),
                                                                ((0.5, 3.0), 0.005, 10.0), ((5.0, 20.0), None, 10.0)])
def test_scene_scale_keeps_float16_covariance_error_below_0p1_percent(scale_mm, plain_median_above, chosen):
    g = _random_gaussians(2000, scale_mm, seed=1)
    exact = covariances(g.quats, g.scales).numpy()
    plain = to_splats(g, None, scene_scale=1.0)
    s = choose_scene_scale(g.scales)
    assert s == chosen  # x10 lifts (1 mm)^2 into float16's normal range; 0.5 mm needs x100
    scaled = to_splats(g, None, scene_scale=s)
    err_plain = relative_covariance_error(exact, _viser_received(plain.covariances), 1.0)
    err_scaled = relative_covariance_error(exact, _viser_received(scaled.covariances), s)
    # metric millimetre Gaussians: variances ~1e-6 fall in float16's subnormal range
    if plain_median_above is not None:
        assert np.median(err_plain) > plain_median_above, np.median(err_plain)
    assert err_scaled.max() < 1e-3, err_scaled.max()


def test_relative_error_of_one_subnormal_variance_by_hand():
    # (1 mm)^2 = 1e-6: float16 subnormal spacing is 2^-24 ~ 5.96e-8, so 1e-6 is stored as 17 * 2^-24
    cov = np.diag([1e-6, 1e-6, 1e-6])[None]
    stored = 17 * 2.0 ** -24
    expect = abs(stored - 1e-6) / 1e-6
    assert math.isclose(relative_covariance_error(cov, float16_roundtrip(cov))[0], expect, rel_tol=1e-9)
    assert expect > 0.01
