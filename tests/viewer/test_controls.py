"""Manual driving controls -> parameters, viewer camera conversion, bad-input messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from avatarbench.data.camera import Camera
from avatarbench.viewer import controls as C
from avatarbench.viewer.runs import camera_from_view, camera_pose_wxyz, error_heatmap, group_timeline


def _head_driving():
    rng = np.random.default_rng(0)
    return {"shape": rng.normal(size=300).astype(np.float32), "expr": rng.normal(size=100).astype(np.float32),
            "rotation": np.array([0.1, 0.3, -0.2], np.float32), "neck_pose": np.array([0.05, 0, 0], np.float32),
            "jaw_pose": np.array([0.1, 0.01, 0], np.float32), "eyes_pose": np.zeros(6, np.float32),
            "translation": np.array([0, 0, 0.01], np.float32), "static_offset": np.zeros((10, 3), np.float32)}


def test_zero_controls_leave_the_frame_unchanged():
    d = _head_driving()
    out = C.apply_head_controls(d, {c.name: 0.0 for c in C.head_controls()})
    for k in d:
        np.testing.assert_allclose(out[k], d[k], atol=1e-7)
        assert out[k].dtype == np.float32


def test_head_controls_map_to_flame_parameters():
    d = _head_driving()
    vals = {"jaw_open": 0.3, "jaw_side": -0.1, "expr_0": 1.5, "expr_3": -2.0, "eyes_pitch": 0.2,
            "eyes_yaw": -0.25, "neck_yaw": 0.4, "neck_roll": -0.1}
    out = C.apply_head_controls(d, vals)
    np.testing.assert_allclose(out["jaw_pose"], d["jaw_pose"] + [0.3, -0.1, 0], atol=1e-7)
    exp = d["expr"].copy()
    exp[0] += 1.5
    exp[3] -= 2.0
    np.testing.assert_allclose(out["expr"], exp, atol=1e-6)
    np.testing.assert_allclose(out["eyes_pose"], [0.2, -0.25, 0, 0.2, -0.25, 0], atol=1e-7)
    np.testing.assert_allclose(out["neck_pose"], d["neck_pose"] + [0, 0.4, -0.1], atol=1e-7)
    np.testing.assert_array_equal(out["shape"], d["shape"])
    np.testing.assert_allclose(d["jaw_pose"], [0.1, 0.01, 0], atol=1e-7)  # input untouched


def test_head_rotation_composes_with_the_frame_rotation():
    d = _head_driving()
    out = C.apply_head_controls(d, {"head_pitch": 0.3, "head_yaw": -0.5, "head_roll": 0.2})
    ref = (Rotation.from_rotvec([0.3, 0, 0]) * Rotation.from_rotvec([0, -0.5, 0]) * Rotation.from_rotvec([0, 0, 0.2])
           * Rotation.from_rotvec(d["rotation"].astype(np.float64)))
    np.testing.assert_allclose(Rotation.from_rotvec(out["rotation"]).as_matrix(), ref.as_matrix(), atol=1e-6)
    # same axis: angles add
    same = C.apply_head_controls({"rotation": np.array([0, 0.3, 0], np.float32)}, {"head_yaw": 0.2})
    np.testing.assert_allclose(same["rotation"], [0, 0.5, 0], atol=1e-7)


@pytest.mark.parametrize("rv", [[0.0, 0.0, 0.0], [1e-10, 0, 0], [0.3, -1.2, 0.5], [np.pi - 1e-8, 0, 0],
                                [0, 2.0, 2.0], [-3.0, 0.1, 0.05]])
def test_rotvec_roundtrip_against_scipy(rv):
    R = C.rotvec_to_matrix(rv)
    np.testing.assert_allclose(R, Rotation.from_rotvec(rv).as_matrix(), atol=1e-12)
    back = C.matrix_to_rotvec(R)
    np.testing.assert_allclose(Rotation.from_rotvec(back).as_matrix(), R, atol=1e-7)


def test_body_pose_components_and_orientation():
    rng = np.random.default_rng(1)
    u = np.linalg.qr(rng.normal(size=(63, 2)))[0].T  # two orthonormal directions
    a = rng.normal(size=(400, 1))
    a = 0.5 * (a - a.mean())
    b = rng.normal(size=(400, 1))
    b = b - b.mean()
    b = 0.1 * (b - a * (a.T @ b) / (a.T @ a))  # zero-mean and uncorrelated with a: exact components
    mean = rng.normal(size=63) * 0.05
    poses = mean + a * u[0] + b * u[1]
    pca = C.PosePCA.fit(poses, 4)
    assert pca.components.shape == (4, 63)
    assert abs(abs(pca.components[0] @ u[0]) - 1) < 1e-9 and abs(abs(pca.components[1] @ u[1]) - 1) < 1e-9
    np.testing.assert_allclose(pca.std[:2], [a.std(ddof=1), b.std(ddof=1)], rtol=1e-9)
    drv = {"global_orient": np.array([np.pi, 0, 0], np.float32), "body_pose": poses[0].astype(np.float32),
           "transl": np.zeros(3, np.float32)}
    out = C.apply_body_controls(drv, {"pose_pc_0": 2.0, "orient_yaw": 0.5}, pca)
    np.testing.assert_allclose(out["body_pose"], poses[0] + 2.0 * pca.std[0] * pca.components[0], atol=1e-6)
    ref = Rotation.from_rotvec([0, 0.5, 0]) * Rotation.from_rotvec([np.pi, 0, 0])
    np.testing.assert_allclose(Rotation.from_rotvec(out["global_orient"]).as_matrix(), ref.as_matrix(), atol=1e-6)
    np.testing.assert_array_equal(out["transl"], drv["transl"])


def test_viewer_camera_roundtrip_and_projection():
    cam = Camera.look_at(eye=(0.4, 0.1, 0.9), target=(0, 0, 0), fx=500, fy=500, cx=160, cy=120, width=320,
                         height=240)
    q, t = camera_pose_wxyz(cam)
    fov = 2 * np.arctan(0.5 * cam.height / cam.fy)
    back = camera_from_view(q, t, fov, cam.width / cam.height, cam.height)
    torch.testing.assert_close(back.world_to_cam, cam.world_to_cam, atol=1e-12, rtol=0)
    torch.testing.assert_close(back.K, cam.K, atol=1e-9, rtol=0)
    # viser's convention: R = R_world_camera (OpenCV); the camera looks along its +z column
    R = Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix()
    fwd = R[:, 2]
    np.testing.assert_allclose(fwd, -np.array([0.4, 0.1, 0.9]) / np.linalg.norm([0.4, 0.1, 0.9]), atol=1e-9)


def test_error_heatmap_endpoints():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 255
    h = error_heatmap(a, b, vmax=0.25)
    np.testing.assert_array_equal(h[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(h[1, 1], [0, 0, 0])


def test_group_timeline_orders_steps_and_cameras():
    from avatarbench.data.subject import Frame

    cam = Camera.look_at(eye=(0, 0, 1), target=(0, 0, 0), fx=1, fy=1, cx=1, cy=1, width=2, height=2)
    mk = lambda seq, t, cid: Frame("s", seq, t, Camera(cam.K, cam.world_to_cam, 2, 2, id=cid), None, None, {})  # noqa: E731
    steps = group_timeline([mk("A", 3, 0), mk("A", 3, 1), mk("A", 1, 0), mk("B", 3, 0)])
    assert [(s.sequence, s.timestep, sorted(s.frames)) for s in steps] == [("A", 3, [0, 1]), ("A", 1, [0]),
                                                                            ("B", 3, [0])]
