"""Animatable Gaussians as an AvatarMethod on a tiny in-memory body subject: canonical Gaussians from
the position maps, training stages, PCA on novel poses only, state_dict round trip
(bit-exact resume), export; plus the end-to-end smoke comparison with lbs_gaussians (slow)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from avatarbench.engine.method import Sample
from avatarbench.methods.animatable_gaussians.method import AnimatableGaussians, cosine_lr

try:
    from test_animatable_gaussians_support import fake_sample_tensors, tiny_ag_cfg, tiny_body_subject
except ImportError:  # collected as a package
    from tests.methods.test_animatable_gaussians_support import fake_sample_tensors, tiny_ag_cfg, tiny_body_subject

torch.set_num_threads(1)


def make(tmp_path, **cfg_extra) -> tuple[AnimatableGaussians, object]:
    subject = tiny_body_subject(tmp_path)
    m = AnimatableGaussians(tiny_ag_cfg(**cfg_extra), subject, torch.device("cpu"))
    m.setup(subject.frames("train"))
    return m, subject


def sample(frame, seed=0) -> Sample:
    img, mask = fake_sample_tensors(frame, seed)
    return Sample(frame, img, mask)


def test_canonical_gaussians_come_from_the_position_maps(tmp_path):
    m, _ = make(tmp_path)
    S = m.maps.size
    n_f, n_b = int(m.maps.mask[0].sum()), int(m.maps.mask[1].sum())
    assert m.num_gaussians() == n_f + n_b > 50
    torch.testing.assert_close(m.cano_pos[:n_f], m.maps.position[0].reshape(S * S, 3)[m.idx_front])
    torch.testing.assert_close(m.cano_pos[n_f:], m.maps.position[1].reshape(S * S, 3)[m.idx_back])
    torch.testing.assert_close(m.lbs_weights.sum(-1), torch.ones(m.num_gaussians()), atol=1e-5, rtol=0)
    # front Gaussians lie in front of (larger z than) the back Gaussians of the same pixel
    same = torch.isin(m.idx_front, m.idx_back)
    assert bool((m.cano_pos[:n_f][same][:, 2] >= m.cano_pos[n_f:][torch.isin(m.idx_back, m.idx_front)][:, 2]).all())
    # base scale: 3-NN distance of a regular grid of pixel spacing extent / S (0.0625 m)
    assert float(torch.exp(m.base_log_scale).median()) == pytest.approx(2.0 / S, rel=0.35)


def test_training_stages_logs_and_pca_on_novel_poses_only(tmp_path):
    m, subject = make(tmp_path)
    assert [s.name for s in m.stages()] == ["pretrain", "train"]
    train = subject.frames("train")
    logs0 = m.train_step(sample(train[0]), 0)  # pretrain
    assert np.isfinite(logs0["loss"]) and "l1" not in logs0
    logs = m.train_step(sample(train[1]), 1)
    assert {"l1", "offset", "psnr", "lr", "perceptual_loss"} <= set(logs)
    assert m.pca is not None and m.pca.num_components <= 3  # 3 training poses
    assert m.render(train[0]).extras["pca"] is False
    novel = m.render(subject.frames("self_reenact")[0])
    assert novel.extras["pca"] is True
    assert novel.rgb.shape == (train[0].camera.height, train[0].camera.width, 3)
    assert float(novel.rgb.min()) >= 0.0 and float(novel.rgb.max()) <= 1.0
    assert m.geometry(train[0]).shape == (m.num_gaussians(), 3)


def test_cosine_schedule():
    assert cosine_lr(0, 100, 1.0) == pytest.approx(1.0)
    assert cosine_lr(50, 100, 1.0) == pytest.approx(0.05 + 0.95 * 0.5)
    assert cosine_lr(100, 100, 1.0) == pytest.approx(0.05)


def test_state_dict_round_trip_is_bit_exact(tmp_path):
    m, subject = make(tmp_path)
    train = subject.frames("train")
    for step in range(3):
        m.train_step(sample(train[step], step), step)
    state = copy.deepcopy(m.state_dict())
    assert {"net", "optimizer", "template", "gaussians", "pca", "generator"} <= set(state)
    m2 = AnimatableGaussians(tiny_ag_cfg(), subject, torch.device("cpu"))
    m2.setup(train)
    m2.load_state_dict(state)
    f = subject.frames("self_reenact")[1]
    assert torch.equal(m.render(f).rgb, m2.render(f).rgb)
    # resuming continues exactly like the uninterrupted run
    a = m.train_step(sample(train[4], 4), 3)
    b = m2.train_step(sample(train[4], 4), 3)
    assert a["loss"] == b["loss"]
    for (k, p), (_, q) in zip(m.net.state_dict().items(), m2.net.state_dict().items()):
        assert torch.equal(p, q), k


def test_export_writes_posed_gaussians_and_template(tmp_path):
    from plyfile import PlyData

    m, subject = make(tmp_path)
    paths = m.export(tmp_path / "export")
    names = sorted(p.name for p in paths)
    assert names == ["gaussians_00000.ply", "template.ply"]
    g = PlyData.read(str(tmp_path / "export" / "gaussians_00000.ply"))["vertex"]
    assert g.count == m.num_gaussians()
    means = np.stack([g["x"], g["y"], g["z"]], 1)
    np.testing.assert_allclose(means, m.geometry(subject.frames("train")[0]).numpy(), atol=1e-6)
    t = PlyData.read(str(tmp_path / "export" / "template.ply"))
    assert t["face"].count == m.template_faces.shape[0]


@pytest.mark.slow
def test_smoke_runs_beat_the_lbs_baseline_on_novel_poses(tmp_path):
    """End to end through the engine on synth_body_a (smoke presets): AG > lbs_gaussians PSNR."""
    from avatarbench.engine.config import RunRequest
    from avatarbench.engine.run import execute

    res = {}
    for name in ("lbs_gaussians", "animatable_gaussians"):
        out = execute(RunRequest(method=name, split="self_reenact", preset="smoke", subject="synth_body_a"),
                      tmp_path / name, echo=lambda *a: None, progress=False)
        res[name] = float(out.results["metrics"]["psnr"])
    assert res["animatable_gaussians"] > res["lbs_gaussians"], res


def test_official_perceptual_term_is_active_with_the_verified_weights(tmp_path, lpips_weights, monkeypatch):
    """loss.lpips = 0.1 (the official weight) with the real converted VGG backbone: the term is
    computed on the mask crop, enters the loss and is recorded as enabled."""
    from avatarbench.metrics import lpips_setup

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_torch_home"))
    monkeypatch.delenv("AVATARBENCH_LPIPS_BACKBONE", raising=False)
    monkeypatch.delenv("AVATARBENCH_TEST_ONLY_RANDOM_LPIPS_BACKBONE", raising=False)
    m, subject = make(tmp_path, loss={"lpips": 0.1, "lpips_crop": {"size": 64}})
    assert m.perceptual.enabled and lpips_setup.CONVERTED_FILES["vgg"] in m.perceptual_loss_status
    train = subject.frames("train")
    m.train_step(sample(train[0]), 0)  # pretrain
    logs = m.train_step(sample(train[1]), 1)
    assert logs["perceptual_loss"].startswith("enabled") and 0.0 < logs["lpips"] < 2.0
    w = m.cfg.loss
    expect = float(w.l1) * logs["l1"] + float(w.offset) * logs["offset"] + 0.1 * logs["lpips"]
    assert abs(logs["loss"] - expect) < 1e-5
