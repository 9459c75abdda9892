"""Tests of the independent ground-truth mesh rasterizer (avatarbench.data.synth.mesh_raster)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avatarbench.data.camera import Camera
from avatarbench.data.synth.mesh_raster import rasterize_mesh, render_mesh, surface_samples


def _axis_camera(W=20, H=16, fx=10.0, fy=10.0, cx=10.3, cy=7.7) -> Camera:
    """Camera at the origin looking down +z (identity world-to-camera)."""
    return Camera.from_intrinsics(fx, fy, cx, cy, W, H, np.eye(4))


def _unproject(cam: Camera, u: float, v: float, z: float) -> list[float]:
    return [(u - cam.cx) * z / cam.fx, (v - cam.cy) * z / cam.fy, z]


def _sample_fraction(lo: float, hi: float, n: int, s: int) -> np.ndarray:
    """Per pixel 0..n-1: fraction of the s sample centres j + (k+0.5)/s inside [lo, hi]."""
    centres = np.arange(n)[:, None] + (np.arange(s)[None, :] + 0.5) / s
    return ((centres >= lo) & (centres <= hi)).mean(1)


@pytest.mark.parametrize("s", [1, 3, 4])
def test_square_coverage_matches_analytic_sample_count(s):
    cam = _axis_camera()
    u0, u1, v0, v1 = 3.2, 14.9, 2.4, 11.1
    z = 2.0
    verts = torch.tensor([_unproject(cam, u0, v0, z), _unproject(cam, u1, v0, z),
                          _unproject(cam, u1, v1, z), _unproject(cam, u0, v1, z)], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    rgb, alpha = render_mesh(verts, faces, cam, lambda smp: torch.zeros(smp.positions.shape[0], 3), supersample=s)
    expected = np.outer(_sample_fraction(v0, v1, cam.height, s), _sample_fraction(u0, u1, cam.width, s))
    np.testing.assert_allclose(alpha[..., 0].numpy(), expected, atol=1e-6)
    frags = rasterize_mesh(verts, faces, cam, supersample=s)
    assert frags.face_id.shape == (cam.height * s, cam.width * s) and frags.bary.shape[-1] == 3
    np.testing.assert_allclose(frags.alpha()[..., 0].numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(frags.depth[frags.mask].numpy(), 2.0, rtol=1e-6)
    # black surface on white background: rgb = 1 - alpha
    np.testing.assert_allclose(rgb.numpy(), np.repeat(1 - expected[..., None], 3, axis=2), atol=1e-6)
    # the coverage integral approaches the analytic area
    assert abs(alpha.sum().item() - (u1 - u0) * (v1 - v0)) < 2 * ((u1 - u0) + (v1 - v0)) / s + 1e-6


def test_triangle_coverage_inside_outside_and_area():
    cam = _axis_camera(W=24, H=20, fx=12.0, fy=12.5, cx=11.0, cy=9.4)
    pix = [(2.3, 3.1), (21.6, 5.2), (8.4, 18.7)]
    verts = torch.tensor([_unproject(cam, u, v, 3.0) for u, v in pix], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    _, alpha = render_mesh(verts, faces, cam, lambda smp: torch.ones(smp.positions.shape[0], 3), supersample=5)
    a = alpha[..., 0].numpy()

    # analytic: a pixel whose 4 corners are all inside has alpha 1, all on the outside of one edge 0
    P = np.array(pix)

    def side(e, x, y):
        (xa, ya), (xb, yb) = P[e], P[(e + 1) % 3]
        return (xb - xa) * (y - ya) - (yb - ya) * (x - xa)

    sgn = np.sign(side(0, *P[2]))
    for i in range(cam.height):
        for j in range(cam.width):
            corners = [(j, i), (j + 1, i), (j, i + 1), (j + 1, i + 1)]
            inside = all(sgn * side(e, x, y) >= 0 for e in range(3) for x, y in corners)
            outside = any(all(sgn * side(e, x, y) < 0 for x, y in corners) for e in range(3))
            if inside:
                assert a[i, j] == pytest.approx(1.0)
            if outside:
                assert a[i, j] == 0.0
    area = 0.5 * abs((P[1, 0] - P[0, 0]) * (P[2, 1] - P[0, 1]) - (P[2, 0] - P[0, 0]) * (P[1, 1] - P[0, 1]))
    assert a.sum() == pytest.approx(area, rel=0.02)


@pytest.mark.parametrize("near_first", [True, False])
def test_depth_test_near_occludes_far(near_first):
    cam = _axis_camera()

    def quad(u0, u1, v0, v1, z):
        return [_unproject(cam, u0, v0, z), _unproject(cam, u1, v0, z), _unproject(cam, u1, v1, z),
                _unproject(cam, u0, v1, z)]

    near = quad(2.0, 12.0, 2.0, 12.0, 2.0)
    far = quad(6.0, 18.0, 4.0, 14.0, 3.0)
    blocks = [near, far] if near_first else [far, near]
    verts = torch.tensor(blocks[0] + blocks[1], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    color = torch.tensor([[1.0, 0, 0]] * 4 + [[0, 0, 1.0]] * 4) if near_first else \
        torch.tensor([[0, 0, 1.0]] * 4 + [[1.0, 0, 0]] * 4)  # near = red, far = blue
    frags = rasterize_mesh(verts, faces, cam, supersample=1)
    rgb, _ = render_mesh(verts, faces, cam, lambda smp: smp.attrs, supersample=1, vertex_attrs=color)
    # pixel (row 8, col 9) is inside both quads: the near one wins
    assert rgb[8, 9].tolist() == [1.0, 0.0, 0.0]
    assert frags.depth[8, 9].item() == pytest.approx(2.0, rel=1e-6)
    # pixel (row 13, col 15) is only inside the far quad
    assert rgb[13, 15].tolist() == [0.0, 0.0, 1.0]
    assert frags.depth[13, 15].item() == pytest.approx(3.0, rel=1e-6)
    assert frags.face_id[0, 0].item() == -1 and math.isinf(frags.depth[0, 0].item())


def _posed_camera() -> Camera:
    """A rotated, off-centre, fx != fy camera looking at the origin from ~1 m."""
    from avatarbench.data.synth.rig import CaptureRig

    return CaptureRig(scale=0.1).cameras()[3]


def test_interpolated_positions_project_to_sample_centres():
    """Perspective-correct barycentrics + pixel convention agree with Camera.project."""
    cam = _posed_camera()
    g = torch.Generator().manual_seed(0)
    verts = (torch.rand(30, 3, generator=g, dtype=torch.float64) - 0.5) * 0.3
    faces = torch.randint(0, 30, (40, 3), generator=g)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    s = 3
    frags = rasterize_mesh(verts, faces, cam, supersample=s)
    assert frags.mask.sum() > 200
    smp = surface_samples(frags, verts, faces, cam)
    proj = cam.project(smp.positions.to(torch.float64))
    centres = (smp.sample_yx.flip(1).to(torch.float64) + 0.5) / s
    np.testing.assert_allclose(proj[:, :2].numpy(), centres.numpy(), atol=2e-3)
    np.testing.assert_allclose(proj[:, 2].numpy(), smp.depth.numpy(), rtol=1e-5)


def test_vertex_projection_lands_in_its_face():
    """A small triangle around a vertex covers the sample containing Camera.project(vertex)."""
    cam = _posed_camera()
    p = torch.tensor([[0.02, -0.01, 0.03]], dtype=torch.float64)
    d = 0.004
    verts = torch.cat([p + torch.tensor([[d, 0, 0]]), p + torch.tensor([[-d, d, 0]]), p + torch.tensor([[-d, -d, 0]])])
    s = 3
    frags = rasterize_mesh(verts, torch.tensor([[0, 1, 2]]), cam, supersample=s)
    uv = cam.project(p)[0, :2] * s
    r, c = int(uv[1]), int(uv[0])
    assert frags.face_id[r, c].item() == 0
    # and the coverage is a compact blob around it
    ys, xs = torch.nonzero(frags.mask, as_tuple=True)
    assert abs(xs.double().mean().item() + 0.5 - uv[0].item()) < 2.0
    assert abs(ys.double().mean().item() + 0.5 - uv[1].item()) < 2.0


def test_backface_culling_and_front_facing():
    cam = _axis_camera()
    # counter-clockwise as seen from the camera at the origin looking down +z (x right, y down)
    verts = torch.tensor([_unproject(cam, 4, 4, 2.0), _unproject(cam, 4, 12, 2.0), _unproject(cam, 14, 4, 2.0)],
                         dtype=torch.float64)
    n = torch.cross(verts[1] - verts[0], verts[2] - verts[0], dim=0)
    assert n[2] < 0  # normal points toward the camera (-z)
    front = torch.tensor([[0, 1, 2]])
    back = torch.tensor([[0, 2, 1]])
    assert rasterize_mesh(verts, front, cam, 1, cull_backfaces=True).mask.any()
    assert not rasterize_mesh(verts, back, cam, 1, cull_backfaces=True).mask.any()
    frags = rasterize_mesh(verts, back, cam, 1)
    assert not surface_samples(frags, verts, back, cam).front_facing.any()
    frags = rasterize_mesh(verts, front, cam, 1)
    assert surface_samples(frags, verts, front, cam).front_facing.all()
