"""Gaussian Head Avatar: FLAME conditioning and the method end to end on a tiny FLAME subject."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from avatarbench.data.camera import Camera
from avatarbench.data.images import save_png
from avatarbench.data.subject import Frame, Subject
from avatarbench.engine.method import Sample
from avatarbench.paths import configs_dir


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _flame():
    from avatarbench.bodymodels.flame import load_flame

    return load_flame(teeth=True)


def _driving(rng, shape, n_verts):
    return {"shape": shape, "expr": (rng.normal(size=100) * 0.5).astype(np.float32),
            "rotation": (rng.normal(size=3) * 0.1).astype(np.float32),
            "neck_pose": (rng.normal(size=3) * 0.1).astype(np.float32),
            "jaw_pose": np.array([abs(rng.normal()) * 0.1, 0, 0], np.float32),
            "eyes_pose": (rng.normal(size=6) * 0.05).astype(np.float32),
            "translation": (rng.normal(size=3) * 0.01).astype(np.float32),
            "static_offset": np.zeros((n_verts, 3), np.float32)}


def test_flame_conditioning_matches_flame_rigid_head_motion():
    from avatarbench.methods.gaussian_head_avatar.conditioning import FlameConditioning

    flame = _flame()
    flame.posedirs.zero_()  # pose correctives are not rigid; without them the head moves rigidly
    rng = np.random.default_rng(0)
    shape = (rng.normal(size=300) * 0.5).astype(np.float32)
    cond = FlameConditioning(flame, {"shape": shape}, n_guides=64)
    assert cond.exp_dim == 109 and cond.guide_ids.numel() == 64
    assert set(cond.guide_ids.tolist()) <= set(flame.masks["face"].tolist())
    assert set(cond.mouth_ids.tolist()) == set(flame.masks["lips"].tolist())

    drv = _driving(rng, shape, flame.num_verts)
    c = cond.encode(drv)
    assert torch.allclose(c.exp, torch.cat([torch.as_tensor(drv[k]) for k in ("expr", "jaw_pose", "eyes_pose")]))
    with torch.no_grad():
        full = flame.forward_dict({k: torch.as_tensor(v)[None] for k, v in drv.items()}).verts[0]
    head = flame.lbs_weights[:, 1] > 0.999  # vertices skinned to the neck joint only
    assert int(head.sum()) > 100
    pred = c.to_world(c.flame_canonical)
    assert float((pred[head] - full[head]).abs().max()) < 1e-5
    # the pose code inverts to the same rigid transform; at rest it is zero
    R, T = cond.rigid_from_pose(c.pose)
    assert torch.allclose(R, c.R, atol=1e-6) and torch.allclose(T, c.T, atol=1e-6)
    rest = cond.encode({"shape": shape})
    assert float(rest.pose.abs().max()) < 1e-6 and torch.allclose(rest.guides, cond.neutral_canonical[cond.guide_ids])
    # the pose code's translation is in world metres (GHA's pose[3:] is the tracked world translation)
    moved = cond.encode({**{"shape": shape}, "translation": np.array([0.01, -0.02, 0.03], np.float32)})
    assert torch.allclose(moved.pose[3:], torch.tensor([0.01, -0.02, 0.03]), atol=1e-7)
    assert float(moved.pose[:3].abs().max()) < 1e-7


def test_canonical_unit_is_the_official_decimetre_on_the_stand_in_head():
    """GHA's canonical space is BFM09 in decimetres (3DMM-Fitting-Pytorch's conversion divides the
    micrometre model by 1e5): one canonical unit is 0.1 m, so deform_scale 0.3 moves a point by at
    most 3 cm and the radius-1 sphere is 10 cm. Pinned on the stand-in head in metres."""
    from avatarbench.methods.gaussian_head_avatar.conditioning import FlameConditioning

    flame = _flame()
    cond = FlameConditioning(flame, {}, n_guides=16)
    assert cond.scale == 0.1
    with torch.no_grad():
        v = flame.forward_dict({}).verts[0].double()  # the neutral head in FLAME metres
    base = v[: flame.num_base_verts]
    lo, hi = base.min(0).values, base.max(0).values
    # independent arithmetic: canonical = (metres - bbox centre) / 0.1
    expect = (v - (lo + hi) / 2) / 0.1
    assert torch.allclose(cond.neutral_canonical.double(), expect, atol=1e-5)
    # the stand-in head is 0.305 m tall (neck included) -> 3.05 canonical units; 0.1684 m wide -> 1.684
    ext = cond.neutral_canonical[: flame.num_base_verts]
    size = (ext.max(0).values - ext.min(0).values).double()
    assert torch.allclose(size, (hi - lo) * 10, atol=1e-5)
    assert abs(float(size[1]) - 3.05) < 1e-4 and abs(float(size[0]) - 1.684) < 1e-3
    # one canonical unit maps to 0.1 m in the world (S), and a canonical displacement of 0.3 to 3 cm
    c = cond.encode({})
    assert abs(float(c.S) - 0.1) < 1e-7  # float32
    p = cond.neutral_canonical[:1]
    assert abs(float((c.to_world(p + torch.tensor([[0.3, 0, 0]])) - c.to_world(p)).norm()) - 0.03) < 1e-6
    with pytest.raises(ValueError, match="canonical_unit"):
        FlameConditioning(flame, {}, n_guides=16, canonical_unit=0.0)


# ---------------------------------------------------------------------------------- tiny subject
def _look_camera(yaw_deg: float, size: int, cid: int, center: np.ndarray) -> Camera:
    y = math.radians(yaw_deg)
    C = np.array([math.sin(y), 0.0, math.cos(y)]) * 0.8 + center
    fwd = (center - C) / np.linalg.norm(center - C)
    right = np.cross(np.array([0.0, -1.0, 0.0]), fwd)
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd])
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, -R @ C
    return Camera.from_intrinsics(2.0 * size, 2.0 * size, size / 2, size / 2, size, size, w2c, id=cid)


@pytest.fixture(scope="module")
def head_subject(tmp_path_factory) -> Subject:
    """3 cameras x 3 timesteps of the FLAME stand-in drawn as coloured surface splats, 32 x 32."""
    from avatarbench.methods.gaussian_head_avatar.mesh_head import render_mesh_splats

    root = tmp_path_factory.mktemp("gha_subject")
    flame = _flame()
    rng = np.random.default_rng(1)
    shape = (rng.normal(size=300) * 0.3).astype(np.float32)
    center = np.array([0.0, -0.03, 0.0])
    cams = {i: _look_camera(y, 32, i, center) for i, y in enumerate((-30.0, 0.0, 30.0))}
    v0 = flame.v_template
    col = (v0 - v0.min(0).values) / (v0.max(0).values - v0.min(0).values)
    frames: dict[str, list[Frame]] = {"train": [], "novel_view": [], "self_reenact": []}
    for t in range(3):
        drv = _driving(rng, shape, flame.num_verts)
        drv["rotation"] *= 0.3
        with torch.no_grad():
            v = flame.forward_dict({k: torch.as_tensor(a)[None] for k, a in drv.items()}).verts[0]
        for c, cam in cams.items():
            with torch.no_grad():
                img, a = render_mesh_splats(v, flame.faces, col, cam, background=torch.ones(3), sigma=0.6,
                                            thickness=0.05, backend="torch")
            ip, mp = root / f"img_{t}_{c}.png", root / f"mask_{t}_{c}.png"
            save_png(ip, img.numpy())
            save_png(mp, a[..., 0].numpy())
            split = "self_reenact" if t == 2 else ("novel_view" if c == 2 else "train")
            frames[split].append(Frame("gha_toy", "SEQ", t, cam, ip, mp, drv))
    return Subject("gha_toy", "head", Path(root), cams, frames, body_model="flame")


def _cfg(**overrides):
    y = OmegaConf.load(configs_dir() / "methods" / "gaussian_head_avatar.yaml")
    tiny = OmegaConf.create({
        "render_backend": "torch",
        "conditioning": {"n_guides": 32},
        "mesh": {"iterations": 3, "grid_res": 12, "views_per_step": 2},
        "gaussian": {"iterations": 3, "grid_res": 12, "mouth_points": 20},
    })
    cfg = OmegaConf.merge(y.method, y.presets.smoke.method, tiny)
    for ablation in overrides.pop("ablations", []):
        cfg = OmegaConf.merge(cfg, y.ablations[ablation].get("method", {}))
    return OmegaConf.merge(cfg, OmegaConf.create(overrides))


def _make(subject, cfg, seed=0):
    from avatarbench.methods.gaussian_head_avatar.method import GaussianHeadAvatar

    torch.manual_seed(seed)
    m = GaussianHeadAvatar(cfg, subject, "cpu")
    with pytest.warns(RuntimeWarning, match="perceptual loss is DISABLED"):
        m.setup(subject.frames("train"))
    return m


def _step(m, subject, step):
    frames = subject.frames("train")
    f = frames[step % len(frames)]
    return m.train_step(Sample(f, f.image(), f.mask()), step)


def _params(m):
    out = {f"mesh.{k}": v.detach().clone() for k, v in m.mesh_head.state_dict().items()}
    out.update({f"gauss.{k}": v.detach().clone() for k, v in m.gaussian_head.state_dict().items()})
    if m.sr is not None:
        out.update({f"sr.{k}": v.detach().clone() for k, v in m.sr.state_dict().items()})
    out["delta_poses"] = m.delta_poses.detach().clone()
    return out


def test_end_to_end_stages_render_and_bit_exact_resume(head_subject, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(head_subject.root / "no_torch_home"))  # no VGG weights here
    monkeypatch.delenv("AVATARBENCH_LPIPS_BACKBONE", raising=False)
    monkeypatch.delenv("AVATARBENCH_TEST_ONLY_RANDOM_LPIPS_BACKBONE", raising=False)
    monkeypatch.setenv("AVATARBENCH_LPIPS_WEIGHTS_DIR", str(head_subject.root / "no_converted_lpips"))
    monkeypatch.setenv("AVATARBENCH_LPIPS_AUTO_SETUP", "0")
    cfg = _cfg()
    m = _make(head_subject, cfg)
    assert [s.name for s in m.stages()] == ["mesh", "gaussian"] and m.total_iterations() == 6
    assert m.state_dict()["perceptual_loss"].startswith("disabled (")

    nv = head_subject.frames("novel_view")[0]
    for step in range(3):
        logs = _step(m, head_subject, step)
        assert all(math.isfinite(logs[k]) for k in ("loss", "loss_rgb", "loss_def", "loss_lap"))
        assert logs["mesh_faces"] > 0
    out = m.render(nv)
    assert out.rgb.shape == (32, 32, 3) and out.extras["stage"] == "mesh"
    assert m.geometry(nv).shape[1] == 3 and m.num_gaussians() == 0

    logs = _step(m, head_subject, 3)  # handoff to stage 2
    assert m.gaussians_built and m.num_gaussians() > 20
    assert logs["perceptual_loss"].startswith("disabled (") and logs["perceptual_loss_enabled"] == 0.0
    assert math.isfinite(logs["loss"])
    # the stage-1 colour/deform MLPs seeded stage 2 (until its optimiser moved them)
    out = m.render(nv)
    assert out.rgb.shape == (32, 32, 3) and out.extras["rgb_lowres"].shape == (8, 8, 3)
    assert out.alpha.shape == (32, 32, 1)
    assert float(out.rgb.min()) >= 0 and float(out.rgb.max()) <= 1
    assert m.geometry(nv).shape == (m.num_gaussians(), 3)

    snapshot = copy.deepcopy(m.state_dict())
    for step in (4, 5):
        _step(m, head_subject, step)
    straight = _params(m)

    m2 = _make(head_subject, cfg, seed=123)  # a fresh process: other seed, then the checkpoint
    m2.load_state_dict(snapshot)
    for step in (4, 5):
        _step(m2, head_subject, step)
    resumed = _params(m2)
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k

    files = m.export(head_subject.root / "export")
    assert {p.name for p in files} == {"neutral_mesh.ply", "gaussians_canonical.npz"}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("ablations", [["no_sr"], ["flame_init", "lbs_deform"]])
def test_ablations_train_and_render(head_subject, ablations):
    cfg = _cfg(ablations=ablations)
    from avatarbench.methods.gaussian_head_avatar.method import GaussianHeadAvatar

    torch.manual_seed(0)
    m = GaussianHeadAvatar(cfg, head_subject, "cpu")
    m.setup(head_subject.frames("train"))
    start = int(cfg.mesh.iterations)
    if "flame_init" in ablations:
        assert start == 0 and m.stages()[0].iterations == 0
    for step in range(start, start + 2):
        logs = _step(m, head_subject, step)
        assert math.isfinite(logs["loss"])
    assert m.gaussians_built
    out = m.render(head_subject.frames("novel_view")[0])
    assert out.rgb.shape == (32, 32, 3) and out.extras["rgb_lowres"].shape == (8, 8, 3)
    if "no_sr" in ablations:
        assert m.sr is None
    if "flame_init" in ablations:
        # the FLAME vertices (without teeth; the smoke preset does not subdivide) plus the mouth points
        assert int(cfg.gaussian.flame_init_subdivisions) == 0
        used = torch.unique(m.flame.faces[~m.flame.teeth_faces_mask]).numel()
        assert m.num_gaussians() == used + int(cfg.gaussian.mouth_points)
    if "lbs_deform" in ablations:
        assert m.gaussian_head.lbs_idx.shape == (m.num_gaussians(), 4)


def test_perceptual_term_is_used_when_a_backbone_is_available(head_subject, monkeypatch):
    """With the suite's TEST-ONLY random VGG backbone the 0.1 LPIPS term enters the stage-2 loss."""
    monkeypatch.setenv("AVATARBENCH_TEST_ONLY_RANDOM_LPIPS_BACKBONE", "1")
    from avatarbench.methods.gaussian_head_avatar.method import GaussianHeadAvatar

    cfg = _cfg(mesh={"iterations": 0})
    torch.manual_seed(0)
    m = GaussianHeadAvatar(cfg, head_subject, "cpu")
    m.setup(head_subject.frames("train"))
    assert m.perceptual.enabled and m.perceptual_status.startswith("enabled")
    logs = _step(m, head_subject, 0)
    assert math.isfinite(logs["loss_lpips"]) and logs["perceptual_loss_enabled"] == 1.0
    expect = logs["loss_hr"] + logs["loss_lr"] + 0.1 * logs["loss_lpips"]
    assert abs(logs["loss"] - expect) < 1e-5


@pytest.mark.gpu
def test_gsplat_backend_trains_both_stages(head_subject):
    """Both stages on CUDA through gsplat (32-channel feature map in stage 2)."""
    from avatarbench.methods.gaussian_head_avatar.method import GaussianHeadAvatar

    cfg = _cfg(render_backend="gsplat")
    torch.manual_seed(0)
    m = GaussianHeadAvatar(cfg, head_subject, torch.device("cuda"))
    m.setup(head_subject.frames("train"))
    logs = [_step(m, head_subject, s) for s in range(m.total_iterations())]
    assert all(math.isfinite(lg["loss"]) for lg in logs) and m.gaussians_built
    out = m.render(head_subject.frames("novel_view")[0])
    assert out.rgb.is_cuda and out.rgb.shape == (32, 32, 3) and out.extras["rgb_lowres"].shape == (8, 8, 3)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_smoke_preset_end_to_end(tmp_path):
    """The smoke preset through the engine on the tiny
    synthetic head: training, export, novel-view scoring and geometry against the GT mesh."""
    from avatarbench.data.registry import resolve_synthetic
    from avatarbench.engine.config import RunRequest
    from avatarbench.engine.run import execute

    root = resolve_synthetic("synth_head", preset="tiny")
    req = RunRequest("gaussian_head_avatar", "novel_view", "smoke", None, ("data.scale=1.0", "engine.num_threads=1"),
                     data_path=str(root))
    out = execute(req, tmp_path / "run", echo=lambda *a: None, progress=False)
    r = out.results
    smoke = OmegaConf.load(configs_dir() / "methods" / "gaussian_head_avatar.yaml").presets.smoke.method
    assert r["train"]["iterations"] == smoke.mesh.iterations + smoke.gaussian.iterations
    assert r["num_frames"] > 0 and r["num_gaussians"] > 500
    assert r["metrics"]["psnr"] > 14.0
    assert r["geometry"]["p2m_mean_mm"] < 40.0
    assert (out.run_dir / "export" / "neutral_mesh.ply").exists()
    assert (out.run_dir / "export" / "gaussians_canonical.npz").exists()


def test_official_perceptual_term_is_active_with_the_verified_weights(head_subject, lpips_weights, monkeypatch):
    """With the real (converted, verified) VGG backbone the 0.1 LPIPS-VGG term enters the stage-2
    loss and the method records it as enabled, naming the backbone file."""
    from avatarbench.metrics import lpips_setup
    from avatarbench.methods.gaussian_head_avatar.method import GaussianHeadAvatar

    monkeypatch.setenv("TORCH_HOME", str(head_subject.root / "no_torch_home"))
    monkeypatch.delenv("AVATARBENCH_LPIPS_BACKBONE", raising=False)
    monkeypatch.delenv("AVATARBENCH_TEST_ONLY_RANDOM_LPIPS_BACKBONE", raising=False)
    cfg = _cfg(mesh={"iterations": 0})
    torch.manual_seed(0)
    m = GaussianHeadAvatar(cfg, head_subject, "cpu")
    m.setup(head_subject.frames("train"))
    assert m.perceptual.enabled and not m.perceptual.module.test_only_random_backbone
    assert m.perceptual_loss_status.startswith("enabled") and lpips_setup.CONVERTED_FILES["vgg"] in m.perceptual_loss_status
    assert m.state_dict()["perceptual_loss"] == m.perceptual_loss_status
    logs = _step(m, head_subject, 0)
    assert logs["perceptual_loss_enabled"] == 1.0 and 0.0 < logs["loss_lpips"] < 2.0
    assert abs(logs["loss"] - (logs["loss_hr"] + logs["loss_lr"] + 0.1 * logs["loss_lpips"])) < 1e-5
