"""Every head method renders a driven frame on its TRAINED identity: a driver contributes its
motion (expression, jaw, eyes, neck, rotation, translation), never its shape or static offset.
(GaussianAvatars is checked in test_gaussian_avatars_method.py.)"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from avatarbench.data.camera import Camera
from avatarbench.data.subject import Frame, Subject
from avatarbench.paths import configs_dir

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def flame():
    from avatarbench.bodymodels.flame import load_flame

    return load_flame(None, teeth=True)


def _driving(nv: int, t: int) -> dict[str, np.ndarray]:
    expr = np.zeros(100, np.float32)
    expr[0] = 0.5 * t
    return {"shape": np.zeros(300, np.float32), "expr": expr, "rotation": np.array([0, 0.1 * t, 0], np.float32),
            "neck_pose": np.zeros(3, np.float32), "jaw_pose": np.array([0.1 * t, 0, 0], np.float32),
            "eyes_pose": np.zeros(6, np.float32), "translation": np.array([0, 0, 0.01 * t], np.float32),
            "static_offset": np.zeros((nv, 3), np.float32)}


def _other_identity(d: dict) -> dict:
    out = dict(d)
    out["shape"] = np.linspace(-2.0, 2.0, 300).astype(np.float32)
    out["static_offset"] = np.full_like(d["static_offset"], 0.01)
    return out


def test_baseline_uses_the_trained_identity(flame, tmp_path):
    from avatarbench.methods.baseline.method import FlameGaussians
    from avatarbench.render.binding import face_frames

    nv = int(flame.num_verts)
    cam = Camera.look_at([0.0, 0.0, 0.6], [0.0, 0.0, 0.0], 40.0, 40.0, 12.0, 16.0, 24, 32, up=(0.0, -1.0, 0.0), id=0)
    train = [Frame("s", "A", t, cam, None, None, _driving(nv, t)) for t in (1, 0)]
    test = Frame("s", "B", 7, cam, None, None, _other_identity(_driving(nv, 3)), driver="someone")
    subj = Subject("s", "head", tmp_path, {0: cam}, {"train": train, "self_reenact": [test]}, body_model="flame")
    cfg = OmegaConf.load(configs_dir() / "methods" / "flame_gaussians.yaml").method
    m = FlameGaussians(cfg, subj, torch.device("cpu"))
    m.setup(train)
    got = m.geometry(test)
    own = replace(test, driving={**test.driving, "shape": np.zeros(300, np.float32),
                                 "static_offset": np.zeros((nv, 3), np.float32)})
    want = face_frames(flame.forward_dict(own.driving_tensors()).verts[0], flame.faces)[0]
    torch.testing.assert_close(got, want)
    wrong = face_frames(flame.forward_dict(test.driving_tensors()).verts[0], flame.faces)[0]
    assert float((got - wrong).norm(dim=1).mean()) > 5e-3


def test_gaussian_head_avatar_condition_ignores_the_driver_identity(flame):
    from avatarbench.methods.gaussian_head_avatar.conditioning import FlameConditioning

    nv = int(flame.num_verts)
    cond = FlameConditioning(flame, _driving(nv, 0), n_guides=32)
    d = _driving(nv, 3)
    a, b = cond.encode(d), cond.encode(_other_identity(d))
    for key in ("exp", "pose", "R", "T", "guides", "flame_canonical"):
        torch.testing.assert_close(getattr(a, key), getattr(b, key), msg=key)
    # the motion does reach the condition (the comparison above is not vacuous)
    c = cond.encode(_driving(nv, 1))
    assert not torch.allclose(a.flame_canonical, c.flame_canonical)
    assert math.isfinite(float(a.pose.abs().sum()))
