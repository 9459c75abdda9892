"""Camera conventions: OpenGL -> OpenCV, full intrinsics (fx != fy, off-centre cx, cy), resizing.

Expected pixel positions are computed by hand from the pinhole model u = fx X/Z + cx, v = fy Y/Z + cy
(OpenCV: x right, y down, z forward), in float64.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_vhap as fx  # noqa: E402

from avatarbench.data import load_vhap  # noqa: E402
from avatarbench.data.camera import Camera, stack_cameras  # noqa: E402

torch.set_num_threads(1)
DT = torch.float64


def _gl_camera_on_z(fx_=100.0, fy_=120.0, cx=30.5, cy=20.25, w=64, h=48) -> Camera:
    """OpenGL camera at (0, 0, 2) with identity rotation: it looks down -z at the origin."""
    c2w = torch.eye(4, dtype=DT)
    c2w[2, 3] = 2.0
    return Camera.from_opengl_c2w(c2w, fx_, fy_, cx, cy, w, h, id=3)


def test_opengl_camera_looking_at_origin_projects_origin_to_principal_point():
    cam = _gl_camera_on_z()
    uvz = cam.project(torch.zeros(1, 3, dtype=DT))[0]
    torch.testing.assert_close(uvz, torch.tensor([30.5, 20.25, 2.0], dtype=DT))


def test_opengl_to_opencv_axes_and_anisotropic_focal():
    cam = _gl_camera_on_z()
    # world +x is image right, world +y (up) is image up (smaller v); depth is 2
    uvz = cam.project(torch.tensor([[0.1, 0.2, 0.0], [0.0, 0.0, 1.0]], dtype=DT))
    expected = torch.tensor([[30.5 + 100 * 0.1 / 2, 20.25 - 120 * 0.2 / 2, 2.0],
                             [30.5, 20.25, 1.0]], dtype=DT)
    torch.testing.assert_close(uvz, expected)
    # the OpenCV camera-to-world has y and z flipped with respect to the OpenGL one
    torch.testing.assert_close(cam.cam_to_world[:3, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=DT)))
    torch.testing.assert_close(cam.center, torch.tensor([0.0, 0.0, 2.0], dtype=DT))


def test_yawed_camera_right_axis():
    # camera at +x looking at the origin: OpenGL z (backwards) = +x, right = up x z = -z
    c2w = torch.tensor([[0.0, 0, 1, 2], [0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1]], dtype=DT)
    cam = Camera.from_opengl_c2w(c2w, 50.0, 60.0, 10.0, 12.0, 20, 24)
    uvz = cam.project(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -0.1], [0.0, 0.3, 0.0]], dtype=DT))
    expected = torch.tensor([[10.0, 12.0, 2.0], [10.0 + 50 * 0.1 / 2, 12.0, 2.0], [10.0, 12.0 - 60 * 0.3 / 2, 2.0]],
                            dtype=DT)
    torch.testing.assert_close(uvz, expected)
    torch.testing.assert_close(cam.opengl_c2w, c2w)


def test_resized_scales_intrinsics_per_axis_and_keeps_pixel_edges():
    cam = _gl_camera_on_z()
    small = cam.resized(16, 24)  # x by 1/4, y by 1/2
    assert (small.width, small.height) == (16, 24)
    torch.testing.assert_close(small.K, torch.tensor([[25.0, 0, 7.625], [0, 60.0, 10.125], [0, 0, 1]], dtype=DT))
    torch.testing.assert_close(small.world_to_cam, cam.world_to_cam)
    pts = torch.tensor([[0.05, -0.1, 0.3], [0.2, 0.1, -0.5]], dtype=DT)
    big, sm = cam.project(pts), small.project(pts)
    torch.testing.assert_close(sm[:, 0], big[:, 0] * 16 / 64)
    torch.testing.assert_close(sm[:, 1], big[:, 1] * 24 / 48)
    assert small.meta is not cam.meta


def test_scaled_rounds_size_and_uses_the_exact_ratio():
    cam = Camera.from_intrinsics(1850.0, 1860.0, 280.0, 390.0, 550, 802, torch.eye(4, dtype=DT))
    q = cam.scaled(0.25)
    assert (q.width, q.height) == (round(550 * 0.25), round(802 * 0.25)) == (138, 200)
    assert q.fx == pytest.approx(1850.0 * 138 / 550) and q.cx == pytest.approx(280.0 * 138 / 550)
    assert q.fy == pytest.approx(1860.0 * 200 / 802) and q.cy == pytest.approx(390.0 * 200 / 802)


def test_camera_value_equality_and_stacking():
    a, b = _gl_camera_on_z(), _gl_camera_on_z()
    assert a == b and a != _gl_camera_on_z(cx=31.0)
    viewmats, Ks = stack_cameras([a, b.resized(32, 24)])
    assert viewmats.shape == (2, 4, 4) and Ks.shape == (2, 3, 3) and Ks.dtype == torch.float32
    assert float(Ks[1, 0, 0]) == pytest.approx(50.0)


# ------------------------------------------------------------------ cameras read from a VHAP folder
@pytest.fixture(scope="module")
def union(tmp_path_factory):
    return fx.write_union(tmp_path_factory.mktemp("vhapcam"))


def test_loaded_cameras_use_full_intrinsics_and_convert_conventions(union):
    subject = load_vhap(union.root)
    for split in ("train", "novel_view", "self_reenact"):
        for f in subject.frames(split):
            ci = f.camera.id
            fx_, fy_, cx, cy = fx.intrinsics(ci)
            assert fx_ != fy_ and cx != fx.W / 2
            torch.testing.assert_close(f.camera.K, torch.tensor([[fx_, 0, cx], [0, fy_, cy], [0, 0, 1]], dtype=DT))
            k = [s.name for s in union.sequences].index(f.sequence)
            centre = torch.tensor(fx.seq_shift(k), dtype=DT)
            # every fixture camera looks at its sequence's head centre, 1 m away
            torch.testing.assert_close(f.camera.project(centre[None])[0], torch.tensor([cx, cy, 1.0], dtype=DT))
            # a point 0.1 m above the centre appears fy * 0.1 pixels higher
            up = f.camera.project((centre + torch.tensor([0, 0.1, 0], dtype=DT))[None])[0]
            assert float(up[1]) == pytest.approx(cy - fy_ * 0.1, abs=1e-9)


def test_loaded_cameras_scale_consistently(union):
    subject = load_vhap(union.root, scale=0.5)
    cam = subject.cameras[5]
    fx_, fy_, cx, cy = fx.intrinsics(5)
    assert (cam.width, cam.height) == (6, 8)
    torch.testing.assert_close(cam.K, torch.tensor([[fx_ / 2, 0, cx / 2], [0, fy_ / 2, cy / 2], [0, 0, 1]], dtype=DT))
    assert cam.meta["native_size"] == (fx.W, fx.H)
    gl = torch.tensor(fx.opengl_c2w(5, fx.seq_shift(0)), dtype=DT)
    torch.testing.assert_close(cam.opengl_c2w, gl)


def test_look_at_projects_target_to_principal_point_and_up_upwards():
    import torch as _t

    from avatarbench.data.camera import Camera as _C

    cam = _C.look_at([0.3, 0.2, 1.0], [0.0, 0.05, 0.0], 100.0, 110.0, 31.0, 47.0, 64, 96)
    p = cam.project(_t.tensor([[0.0, 0.05, 0.0], [0.0, 0.15, 0.0]], dtype=_t.float64))
    _t.testing.assert_close(p[0, :2], _t.tensor([31.0, 47.0], dtype=_t.float64))
    assert p[1, 1] < p[0, 1] and p[0, 2] > 0  # world up is image up; target in front
    _t.testing.assert_close(cam.center, _t.tensor([0.3, 0.2, 1.0], dtype=_t.float64))
