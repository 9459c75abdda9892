"""The body baseline ``lbs_gaussians`` on a tiny in-memory body subject: surface samples with
barycentric SMPL-X weights, identity posing, training, state_dict round trip, export, registry."""

from __future__ import annotations

import copy

import numpy as np
import torch

from avatarbench.engine.method import Sample
from avatarbench.methods.baseline.lbs_gaussians import LbsGaussians

try:
    from test_animatable_gaussians_support import fake_sample_tensors, method_cfg, tiny_body_subject
except ImportError:  # collected as a package
    from tests.methods.test_animatable_gaussians_support import fake_sample_tensors, method_cfg, tiny_body_subject

torch.set_num_threads(1)


def cfg(n=300):
    return method_cfg("lbs_gaussians", {"model": {"num_gaussians": n}, "train": {"iterations": 5}})


def make(tmp_path):
    subject = tiny_body_subject(tmp_path)
    m = LbsGaussians(cfg(), subject, torch.device("cpu"))
    m.setup(subject.frames("train"))
    return m, subject


def sample(frame, seed=0):
    img, mask = fake_sample_tensors(frame, seed)
    return Sample(frame, img, mask)


def test_samples_lie_on_the_canonical_surface_with_interpolated_weights(tmp_path):
    from avatarbench.geometry.mesh import point_mesh_distance

    m, _ = make(tmp_path)
    cb = m.poser.canonical
    d, _, _ = point_mesh_distance(m.cano_pos, cb.verts, cb.faces)
    assert float(d.max()) < 1e-4  # float32
    torch.testing.assert_close(m.lbs_weights.sum(-1), torch.ones(300), atol=1e-5, rtol=0)
    # the tiny model's weights are one-hot per part: a sample high on the body is skinned to spine3
    top = m.cano_pos[:, 1] > 0.5
    assert bool(top.any()) and bool((m.lbs_weights[top, 9] > 0.99).all())


def test_identity_pose_returns_the_canonical_samples(tmp_path):
    from avatarbench.bodymodels.smplx import da_pose_body_pose

    m, subject = make(tmp_path)
    frame = copy.copy(subject.frames("train")[0])
    frame.driving = dict(frame.driving, body_pose=da_pose_body_pose()[0].numpy(),
                         global_orient=np.zeros(3, np.float32), transl=np.zeros(3, np.float32))
    torch.testing.assert_close(m.geometry(frame), m.cano_pos, atol=1e-5, rtol=0)


def test_training_reduces_the_loss_and_state_round_trip(tmp_path):
    m, subject = make(tmp_path)
    s = sample(subject.frames("train")[0])
    first = m.train_step(s, 0)["loss"]
    for step in range(1, 15):
        last = m.train_step(s, step)["loss"]
    assert last < first
    state = copy.deepcopy(m.state_dict())
    m2 = LbsGaussians(cfg(), subject, torch.device("cpu"))
    m2.setup(subject.frames("train"))
    m2.load_state_dict(state)
    f = subject.frames("self_reenact")[0]
    assert torch.equal(m.render(f).rgb, m2.render(f).rgb)
    assert m.train_step(s, 15)["loss"] == m2.train_step(s, 15)["loss"]
    assert torch.equal(m.color_logit, m2.color_logit)


def test_export_and_registry(tmp_path):
    from plyfile import PlyData

    from avatarbench.engine.registry import get_spec, load_method_class

    m, _ = make(tmp_path)
    (p,) = m.export(tmp_path / "out")
    assert PlyData.read(str(p))["vertex"].count == 300
    spec = get_spec("lbs_gaussians")
    assert spec.kind == "body" and load_method_class("lbs_gaussians") is LbsGaussians
    assert get_spec("animatable_gaussians").kind == "body"
