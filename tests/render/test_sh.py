"""Spherical harmonics: orthonormality, the Inria polynomial form, gsplat's colour convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatarbench.render._reference import reference_sh
from avatarbench.render.sh import SH_C0, eval_sh, eval_sh_raw, rgb_to_sh_dc, sh_basis, sh_dc_to_rgb


def _sphere_quadrature(n_theta: int = 12, n_phi: int = 24):
    """Directions (M, 3) and weights (M,) integrating polynomials of degree < 2 n_theta exactly."""
    x, w = np.polynomial.legendre.leggauss(n_theta)  # z = cos(theta)
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    z = np.repeat(x, n_phi)
    r = np.sqrt(1 - z * z)
    p = np.tile(phi, n_theta)
    dirs = np.stack([r * np.cos(p), r * np.sin(p), z], axis=1)
    weights = np.repeat(w, n_phi) * (2 * np.pi / n_phi)
    return torch.tensor(dirs), torch.tensor(weights)


def test_basis_is_orthonormal_up_to_degree_4():
    dirs, w = _sphere_quadrature()
    Y = sh_basis(4, dirs)  # (M, 25)
    gram = Y.T @ (Y * w[:, None])
    assert torch.allclose(gram, torch.eye(25, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_matches_polynomial_form(degree):
    g = torch.Generator().manual_seed(degree)
    sh = torch.randn(50, 16, 3, generator=g, dtype=torch.float64)
    dirs = torch.randn(50, 3, generator=g, dtype=torch.float64) * 3.0  # not unit: normalised inside
    assert torch.allclose(eval_sh_raw(degree, sh, dirs), reference_sh(degree, sh, dirs), atol=1e-12)


def test_hand_values_and_colour_convention():
    sh = torch.zeros(1, 4, 3, dtype=torch.float64)
    sh[0, 0] = torch.tensor([1.0, 0.0, -5.0])
    sh[0, 2] = torch.tensor([0.0, 1.0, 0.0])  # the (l=1, m=0) ~ z coefficient
    up = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64)
    raw = eval_sh_raw(1, sh, up)
    assert torch.allclose(raw, torch.tensor([[SH_C0, 0.4886025119029199, -5 * SH_C0]], dtype=torch.float64))
    rgb = eval_sh(1, sh, up)  # + 0.5, clamp at 0
    assert torch.allclose(rgb, torch.tensor([[SH_C0 + 0.5, 0.4886025119029199 + 0.5, 0.0]], dtype=torch.float64))
    # degree 1 along -x: basis value of coefficient 3 is +0.4886 (gsplat: -0.4886 * x)
    sh2 = torch.zeros(1, 4, 3, dtype=torch.float64)
    sh2[0, 3] = 1.0
    assert torch.allclose(eval_sh_raw(1, sh2, torch.tensor([[-1.0, 0.0, 0.0]], dtype=torch.float64)),
                          torch.full((1, 3), 0.4886025119029199, dtype=torch.float64))


def test_dc_roundtrip_and_partial_bands():
    rgb = torch.rand(7, 3, dtype=torch.float64)
    sh = torch.randn(7, 16, 3, dtype=torch.float64)
    sh[:, 0] = rgb_to_sh_dc(rgb)
    dirs = torch.randn(7, 3, dtype=torch.float64)
    assert torch.allclose(eval_sh(0, sh, dirs), rgb, atol=1e-12)  # degree 0 ignores the other 15
    assert torch.allclose(sh_dc_to_rgb(sh[:, 0]), rgb, atol=1e-12)
    assert torch.allclose(eval_sh_raw(1, sh, dirs), eval_sh_raw(1, sh[:, :4], dirs), atol=1e-12)


def test_gradients_wrt_coefficients_and_directions():
    g = torch.Generator().manual_seed(3)
    sh = torch.randn(4, 16, 3, generator=g, dtype=torch.float64, requires_grad=True)
    dirs = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, d: eval_sh_raw(3, s, d), (sh, dirs))


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        eval_sh(3, torch.zeros(5, 9, 3), torch.zeros(5, 3))  # degree 3 needs 16 coefficients
    with pytest.raises(ValueError):
        eval_sh(1, torch.zeros(5, 4, 3), torch.zeros(4, 3))
