"""Synthetic body subjects: format (AvatarReX layout), determinism, ground truth, caching.

Fast tests use a tiny preset (48 x 64 images, 3 training + 2 novel-pose frames); the real smoke
preset is generated in one ``slow`` test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import avatarbench.data.synth.body as body
from avatarbench.bodymodels.smplx import load_smplx
from avatarbench.bodymodels.smplx_synthetic import PARTS
from avatarbench.data.avatarrex import load_avatarrex
from avatarbench.data.body_splits import body_cross_frames
from avatarbench.data.images import read_image_array
from avatarbench.data.synth.mesh_raster import rasterize_mesh
from avatarbench.errors import ConfigError

TINY = body.BodyPreset(width=48, height=64, n_train=3, n_novel=2, supersample=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    out = {}
    for name in ("synth_body_a", "synth_body_b"):
        d = tmp_path_factory.mktemp(name) / name
        d.mkdir()
        with torch.no_grad():
            body.generate_body_subject(d, name, TINY)
        out[name] = d
    return out


def test_layout_and_loader(tiny):
    root = tiny["synth_body_a"]
    calib = json.loads((root / "calibration_full.json").read_text())
    assert len(calib) == body.NUM_CAMERAS
    for name, c in calib.items():
        assert set(c) == {"K", "R", "T", "imgSize"} and c["imgSize"] == [48, 64]
        for t in range(5):
            assert (root / name / f"{t:08d}.jpg").is_file()
            assert (root / name / "mask" / "pha" / f"{t:08d}.jpg").is_file()
    info = json.loads((root / "avatarbench_subject.json").read_text())
    assert info["synthetic"] is True and info["name"] == "synth_body_a"
    s = load_avatarrex(root)
    assert s.kind == "body" and s.body_model == "smplx" and s.meta["dataset"] == "synthetic_body"
    assert s.body_model_path is not None and s.body_model_path.name == "SMPLX_NEUTRAL.npz"
    assert s.body_model_path.exists()
    assert len(s.frames("train")) == 10 * 3 and s.timesteps("train") == [0, 1, 2]
    assert {f.camera.id for f in s.frames("novel_view")} == set(body.TEST_CAMERAS)
    assert s.timesteps("self_reenact") == [3, 4] and len(s.frames("self_reenact")) == 2 * 2
    assert not ({f.camera.id for f in s.frames("train")} & set(body.TEST_CAMERAS))
    assert s.gt_mesh(4).shape == (load_smplx(s.body_model_path).num_verts, 3)
    assert s.gt_mesh_faces.shape[1] == 3


def test_ground_truth_mesh_is_the_model_plus_a_moving_skirt(tiny):
    s = load_avatarrex(tiny["synth_body_a"])
    model = load_smplx(s.body_model_path, dtype=torch.float64)
    part = np.load(s.body_model_path)["avatarbench_part"]
    skirt = part == PARTS["skirt"]
    for t in (0, 4):
        d = {k: torch.as_tensor(v, dtype=torch.float64)[None] for k, v in s.driving(t).items()}
        lbs = model.forward_dict(d).verts[0].numpy()
        gt = s.gt_mesh(t)
        np.testing.assert_allclose(gt[~skirt], lbs[~skirt], atol=2e-5)  # the body is exactly the tracked model
        off = np.linalg.norm(gt[skirt] - lbs[skirt], axis=1)
        assert off.max() > 0.01  # the garment moves beyond LBS (flare/lag): template adaptivity matters
        # ground contact: the lowest vertex is on the floor y = 0
        assert abs(gt[:, 1].min()) < 0.02


def test_masks_match_an_independent_rasterization(tiny):
    s = load_avatarrex(tiny["synth_body_a"])
    faces = s.gt_mesh_faces
    for f in s.frames("train")[::7] + s.frames("self_reenact")[:2]:
        # coverage of the saved GT mesh, re-rasterized at 4 x 4 samples per pixel
        cov = rasterize_mesh(torch.from_numpy(s.gt_mesh(f.timestep)).double(), faces, f.camera, 4).mask
        cov = cov.float().view(64, 4, 48, 4).mean(dim=(1, 3))
        soft = f.mask()[..., 0]
        assert float((soft - cov).abs().mean()) < 0.02  # JPEG + 2x2 vs 4x4 sampling only
        m = soft > 0.5
        iou = ((cov > 0.5) & m).sum() / ((cov > 0.5) | m).sum()
        assert iou > 0.85
        assert not m[0].any() and not m[-1].any() and not m[:, 0].any() and not m[:, -1].any()
        img = f.image()  # composited on white with the mask
        assert float(img[~m].mean()) > 0.97
        assert float(img[m].mean()) < 0.9


def test_generation_is_deterministic(tiny, tmp_path):
    d = tmp_path / "again"
    d.mkdir()
    with torch.no_grad():
        body.generate_body_subject(d, "synth_body_a", TINY)
    ref = tiny["synth_body_a"]
    files = sorted(p.relative_to(ref) for p in ref.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(d) for p in d.rglob("*") if p.is_file())
    for p in files:
        assert (ref / p).read_bytes() == (d / p).read_bytes(), p


def test_second_subject_differs_and_cross_drives(tiny):
    a, b = load_avatarrex(tiny["synth_body_a"]), load_avatarrex(tiny["synth_body_b"])
    assert not np.allclose(a.driving(0)["betas"], b.driving(0)["betas"])
    assert not np.allclose(a.driving(3)["body_pose"], b.driving(3)["body_pose"])
    ia = read_image_array(a.frames("train")[0].image_path)
    ib = read_image_array(b.frames("train")[0].image_path)
    assert np.abs(ia - ib).mean() > 0.01
    cross = body_cross_frames(a, b)
    assert {f.timestep for f in cross} == {3, 4} and all(f.driver == "synth_body_b" for f in cross)
    for f in cross:
        np.testing.assert_array_equal(f.driving["betas"], a.driving(0)["betas"])
        np.testing.assert_array_equal(f.driving["body_pose"], b.driving(f.timestep)["body_pose"])


def test_ensure_caches_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("AVATARBENCH_HOME", str(tmp_path))
    monkeypatch.setitem(body.PRESETS, "tiny", body.BodyPreset(width=24, height=32, n_train=2, n_novel=1,
                                                             supersample=1))
    p = body.ensure_synthetic_body("synth_body", preset="tiny")
    assert p == tmp_path / "synthetic" / "body" / body.VERSION / "tiny" / "synth_body_a"
    stamp = (p / "smpl_params.npz").stat().st_mtime_ns
    assert body.ensure_synthetic_body("synth_body_a", preset="tiny") == p
    assert (p / "smpl_params.npz").stat().st_mtime_ns == stamp  # not regenerated
    assert not list(p.parent.glob(".tmp-*"))
    with pytest.raises(ConfigError, match="unknown synthetic body subject 'synth_body_c'"):
        body.ensure_synthetic_body("synth_body_c")
    with pytest.raises(ConfigError, match="unknown synthetic body preset"):
        body.ensure_synthetic_body("synth_body_a", preset="huge")


@pytest.mark.slow
def test_smoke_preset_layout(tmp_path, monkeypatch):
    # generation time is measured by benchmarks, not asserted here
    monkeypatch.setenv("AVATARBENCH_HOME", str(tmp_path))
    root = body.ensure_synthetic_body("synth_body_a", preset="smoke")
    s = load_avatarrex(root)
    assert (s.cameras[0].width, s.cameras[0].height) == (128, 128)
    assert len(s.timesteps("train")) == 20 and len(s.timesteps("self_reenact")) == 8
    for f in s.frames("train")[::13] + s.frames("self_reenact"):
        m = f.mask()[..., 0] > 0.05
        assert m.any() and not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())
