"""Render-side lip sync (mouth darkness in the projected lip box) and the frontal default camera of ``say``."""

import numpy as np
import torch

from avatarbench.bodymodels.flame import load_flame
from avatarbench.data.camera import Camera
from avatarbench.data.subject import Frame
from avatarbench.drivers.flame_fit import build_rig
from avatarbench.drivers.lipsync import lip_sync, mouth_boxes, mouth_darkness


def test_mouth_darkness_hand_computed():
    imgs = np.full((3, 10, 12, 3), 255, np.uint8)
    imgs[1, 2:4, 3:5] = 0          # 4 black pixels in a 2x4 box of frame 1 -> darkness 4/8
    imgs[2, 2:4, 3:7] = 51         # luma 0.2 everywhere in the box -> 0.8
    boxes = np.array([[3, 2, 7, 4]] * 3)
    d = mouth_darkness(imgs, boxes)
    np.testing.assert_allclose(d, [0.0, 0.5, 0.8], atol=1e-12)
    assert np.isnan(mouth_darkness(imgs[:1], np.array([[5, 5, 5, 9]])))[0]  # empty box


def _frontal_camera(w=200, h=200, f=400.0, dist=1.0) -> Camera:
    K = torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=torch.float64)
    # camera on +z looking at the origin (OpenCV: x right, y down, z forward)
    w2c = torch.eye(4, dtype=torch.float64)
    w2c[:3, :3] = torch.tensor([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]], dtype=torch.float64)
    w2c[2, 3] = dist
    return Camera(K=K, world_to_cam=w2c, width=w, height=h, id=0, name="0")


def test_mouth_box_contains_projected_lips_and_follows_image_scale():
    model = load_flame(teeth=True)
    cam = _frontal_camera()
    frame = Frame(subject="s", sequence="x", timestep=0, camera=cam, image_path=None, mask_path=None,
                  driving={"expr": np.zeros(100, np.float32)}, background=(1.0, 1.0, 1.0), driver="x", meta={})
    rig = build_rig(model)
    lips = np.concatenate([rig.outer_upper, rig.outer_lower])
    with torch.no_grad():
        uv = cam.project(model.forward_dict(frame.driving_tensors()).verts[0, torch.as_tensor(lips)])[:, :2].numpy()
    (x0, y0, x1, y1), = mouth_boxes(model, [frame], (200, 200))
    assert x0 <= uv[:, 0].min() and uv[:, 0].max() < x1 and y0 <= uv[:, 1].min() and uv[:, 1].max() < y1
    assert (x1 - x0) < 0.5 * 200  # a mouth box, not the whole image
    (hx0, hy0, hx1, hy1), = mouth_boxes(model, [frame], (100, 100))  # half-size render
    assert abs(hx0 - x0 / 2) <= 1.5 and abs(hx1 - x1 / 2) <= 1.5 and abs(hy0 - y0 / 2) <= 1.5


def test_render_measure_recovers_opening_signal():
    """A synthetic 'render' whose mouth box darkens with a known opening signal, 2 frames late."""
    fps, T = 25.0, 100
    t = np.arange(T) / fps
    opening = np.clip(np.sin(2 * np.pi * 1.3 * t), 0, None)
    imgs = np.full((T, 20, 20, 3), 200, np.uint8)
    late = np.concatenate([np.zeros(2), opening[:-2]])
    for i in range(T):
        imgs[i, 8:12, 6:14] = np.uint8(200 * (1 - late[i]))
    d = mouth_darkness(imgs, np.array([[5, 7, 15, 13]] * T))
    r = lip_sync(d, opening, fps)
    assert r["lag_frames"] == 2 and r["corr"] > 0.99


def test_say_default_camera_is_the_frontal_one_for_heads():
    from avatarbench.data.registry import load_subject
    from avatarbench.drivers.say import default_camera

    s = load_subject("synth_head_a")
    cid = default_camera(s)
    centres = {}
    for k, c in s.cameras.items():
        w2c = np.asarray(c.world_to_cam, np.float64)
        centres[k] = -w2c[:3, :3].T @ w2c[:3, 3]
    # the synthetic rig's frontal camera: smallest angle to the face's forward axis (+z)
    frontal = min(centres, key=lambda k: np.arccos(centres[k][2] / np.linalg.norm(centres[k])))
    assert cid == frontal
