"""Gaussian Head Avatar against the official training code (YuelangX/Gaussian-Head-Avatar d006861):
the stage-1 loss composition, the stage-1 -> stage-2 handoff, the per-group learning rates, the
low-resolution L1 on the un-augmented render, the canonical grid check. Each against hand-computed
values or an independent implementation (the float64 references of test_gha_units)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from avatarbench.engine.method import Sample
from avatarbench.errors import ConfigError
from avatarbench.paths import configs_dir
from tests.methods.test_gha_method import _cfg, head_subject  # noqa: F401  (module fixture)
from tests.methods.test_gha_units import ref_mlp, ref_pe


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _method(subject, cfg, seed=0):
    from avatarbench.methods.gaussian_head_avatar.method import GaussianHeadAvatar

    torch.manual_seed(seed)
    m = GaussianHeadAvatar(cfg, subject, "cpu")
    m.setup(subject.frames("train"))
    return m


def _no_lpips(**over):
    """The tiny config without the LPIPS term (so no backbone is needed and nothing warns)."""
    g = dict(over.pop("gaussian", {}))
    g["loss_weights"] = {"perceptual": 0.0}
    return _cfg(gaussian=g, **over)


def _sample(frame):
    return Sample(frame, frame.image(), frame.mask())


def ref_laplacian(verts: np.ndarray, faces: np.ndarray) -> float:
    """GHA's ``laplace_regularizer_const``: per face corner, the two edge vectors to the other
    corners are added to the corner's sum and 2 to its count; mean of (sum / count)^2."""
    term = np.zeros_like(verts)
    norm = np.zeros((verts.shape[0], 1))
    for a, b, c in ((0, 1, 2), (1, 0, 2), (2, 0, 1)):
        va, vb, vc = verts[faces[:, a]], verts[faces[:, b]], verts[faces[:, c]]
        np.add.at(term, faces[:, a], (vb - va) + (vc - va))
        np.add.at(norm, faces[:, a], 2.0)
    return float(np.mean((term / np.maximum(norm, 1.0)) ** 2))


# ---------------------------------------------------------------------------------- stage 1
def test_stage1_loss_is_the_official_weighted_sum_of_independently_computed_terms(head_subject):
    """``MeshHeadTrainer``: 0.1 L_rgb + 0.1 L_sil + 1 L_def + 0.01 L_offset + 0.1 L_lmk + 100 L_lap."""
    from avatarbench.methods.gaussian_head_avatar.losses import resize_chw

    cfg = _no_lpips(mesh={"iterations": 5})
    w = cfg.mesh.loss_weights
    assert dict(w) == {"rgb": 0.1, "silhouette": 0.1, "deform": 1.0, "offset": 0.01, "landmark_sdf": 0.1,
                       "laplacian": 100.0}
    m = _method(head_subject, cfg)
    m._pretrain_sphere()
    frame = head_subject.frames("train")[0]
    sample = _sample(frame)
    mh = m.mesh_head
    cond = m.cond.encode(frame.driving)
    with torch.no_grad():
        mf = mh.reconstruct(m.grid, cond.exp, cond.pose, cond.R, cond.T, cond.S, m.blend)
        # L_def: neutral landmarks moved by the tet offset field, then by 0.3 exp_deform (weight 1)
        lm = mh.landmarks.detach()
        _, off, _ = mh.geo(lm)
        x = (lm + torch.tanh(off) * 0.5 * m.grid.cell_size).double().numpy()
        e = np.broadcast_to(cond.exp.double().numpy(), (x.shape[0], cond.exp.numel()))
        moved = x + 0.3 * ref_mlp(mh.exp_deform, torch.from_numpy(np.concatenate([ref_pe(x), e], 1)))
        l_def = float(np.mean((moved - cond.guides.double().numpy()) ** 2))
        l_lmk = float(mh.geo(lm)[0].abs().double().mean())
        l_off = float((mf.exp_deform.double() ** 2).sum(-1).mean() + (mf.pose_deform.double() ** 2).sum(-1).mean())
        l_lap = ref_laplacian(mf.world.double().numpy(), mf.faces.numpy())
        # the RGB / silhouette views: the sample plus views_per_step - 1 cameras drawn by the method RNG
        state = m.gen.get_state()
        others = [f for f in m.frames_by_timestep[frame.timestep] if f.camera.id != frame.camera.id]
        k = min(int(cfg.mesh.views_per_step) - 1, len(others))
        views = [frame] + [others[i] for i in torch.randperm(len(others), generator=m.gen)[:k].tolist()]
        m.gen.set_state(state)
        l_rgb = l_sil = 0.0
        for f in views:
            cam = m._mesh_camera(f.camera)
            rgb, alpha = m._render_mesh(mf, cam)
            gt = resize_chw(f.image().permute(2, 0, 1)[None], (cam.height, cam.width), "area")[0].permute(1, 2, 0)
            gm = resize_chw(f.mask().permute(2, 0, 1)[None], (cam.height, cam.width), "area")[0].permute(1, 2, 0)
            l_rgb += float((rgb.double() - gt.double()).abs().mean())
            a, g = alpha.double(), gm.double()
            l_sil += float(1 - (a * g).sum() / (a + g - a * g).sum())
        l_rgb, l_sil = l_rgb / len(views), l_sil / len(views)
    logs = m.train_step(sample, 0)
    for key, val in (("loss_def", l_def), ("loss_lmk", l_lmk), ("loss_offset", l_off), ("loss_lap", l_lap),
                     ("loss_rgb", l_rgb), ("loss_sil", l_sil)):
        assert logs[key] == pytest.approx(val, rel=1e-4, abs=1e-7), key
    total = 0.1 * l_rgb + 0.1 * l_sil + 1.0 * l_def + 0.01 * l_off + 0.1 * l_lmk + 100.0 * l_lap
    assert logs["loss"] == pytest.approx(total, rel=1e-4)
    assert min(l_def, l_lmk, l_off, l_lap, l_rgb, l_sil) > 0  # every term is live


# ---------------------------------------------------------------------------------- handoff
def test_stage1_to_stage2_handoff_matches_train_gaussianhead(head_subject):
    """X0 = the neutral mesh vertices on the refined grid, F0 = atanh(vertex features), zero-feature
    mouth points in the official box, landmarks copied, identity rotations, opacity 0.3, scales
    log sqrt(mean squared distance to the 3 nearest neighbours) (``distCUDA2``)."""
    from avatarbench.methods.gaussian_head_avatar.tetgrid import kuhn_tet_grid

    cfg = _no_lpips(mesh={"iterations": 2})
    m = _method(head_subject, cfg)
    for step in range(2):
        m.train_step(_sample(head_subject.frames("train")[step]), step)
    with torch.no_grad():
        mesh = m.mesh_head.extract(kuhn_tet_grid(int(cfg.gaussian.grid_res), float(cfg.mesh.grid_bound)))
    m._build_gaussians()
    gh = m.gaussian_head
    n_mesh, n_mouth = mesh.verts.shape[0], int(cfg.gaussian.mouth_points)
    assert n_mesh > 50 and gh.num_points == n_mesh + n_mouth
    assert torch.equal(gh.xyz[:n_mesh].detach(), mesh.verts)
    assert torch.allclose(torch.tanh(gh.feature[:n_mesh]).detach(), mesh.feats, atol=1e-5)
    assert torch.equal(gh.feature[n_mesh:].detach(), torch.zeros(n_mouth, gh.feature.shape[1]))
    assert torch.equal(gh.landmarks, m.mesh_head.landmarks.detach())
    # mouth points: box centred at the mouth points' mean, z moved to their minimum, half-size 0.8 max|p - c|
    mouth = m.cond.neutral_canonical[m.cond.mouth_ids].double()
    c = mouth.mean(0)
    c[2] = mouth[:, 2].min()
    half = 0.8 * (mouth - c).abs().max(0).values
    assert bool(torch.all((gh.xyz[n_mesh:].detach().double() - c).abs() <= half + 1e-6))
    # per-Gaussian init, brute force
    x = gh.xyz.detach().double()
    d2 = torch.cdist(x, x) ** 2
    d2.fill_diagonal_(float("inf"))
    mean3 = d2.topk(3, largest=False).values.mean(1).clamp_min(1e-7)
    assert torch.allclose(gh.scales.detach().double(), torch.log(torch.sqrt(mean3))[:, None].expand(-1, 3), atol=1e-5)
    assert torch.equal(gh.rotation.detach(), torch.tensor([[1.0, 0, 0, 0]]).expand(gh.num_points, 4))
    assert torch.allclose(torch.sigmoid(gh.opacity.detach()), torch.full((gh.num_points, 1), 0.3))
    for name in ("exp_color", "pose_color", "exp_deform", "pose_deform"):
        for a, b in zip(getattr(m.mesh_head, name).layers, getattr(gh, name).layers):
            assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias), name


# ---------------------------------------------------------------------------------- optimiser
def test_stage2_learning_rates_per_group_are_the_official_multiples_of_lr_net(head_subject):
    """``train_gaussianhead.py``: SR and the six MLPs lr_net; xyz 0.1, feature 0.1, scales 0.3,
    rotation 0.1, opacity 1.0 x lr_net; delta_poses lr_pose 1e-5 (lr_net 1e-4). Stage 1
    (``train_meshhead.py``): landmarks lr_lmk 1e-4, every network lr_net 1e-3."""
    paper_lr = OmegaConf.load(configs_dir() / "methods" / "gaussian_head_avatar.yaml").method.gaussian.lr
    cfg = _no_lpips()
    cfg.gaussian.lr = paper_lr
    cfg.mesh.lr_net, cfg.mesh.lr_landmarks = 1e-3, 1e-4
    m = _method(head_subject, cfg)
    m._make_gaussian_optimizer()
    lr_of = {}
    for group in m.gauss_opt.param_groups:
        for p in group["params"]:
            assert id(p) not in lr_of  # each parameter in one group
            lr_of[id(p)] = group["lr"]
    gh, lr_net = m.gaussian_head, 1e-4
    expect = {id(gh.xyz): 0.1 * lr_net, id(gh.feature): 0.1 * lr_net, id(gh.scales): 0.3 * lr_net,
              id(gh.rotation): 0.1 * lr_net, id(gh.opacity): lr_net, id(m.delta_poses): 1e-5}
    for name in ("exp_color", "pose_color", "exp_attributes", "pose_attributes", "exp_deform", "pose_deform"):
        expect.update({id(p): lr_net for p in getattr(gh, name).parameters()})
    expect.update({id(p): lr_net for p in m.sr.parameters()})
    assert set(lr_of) == set(expect)
    for k, v in expect.items():
        assert lr_of[k] == pytest.approx(v, rel=1e-12)
    mesh_lr = {id(p): g["lr"] for g in m.mesh_opt.param_groups for p in g["params"]}
    assert mesh_lr.pop(id(m.mesh_head.landmarks)) == pytest.approx(1e-4)
    assert set(mesh_lr) == {id(p) for n, p in m.mesh_head.named_parameters() if n != "landmarks"}
    assert all(v == pytest.approx(1e-3) for v in mesh_lr.values())


# ---------------------------------------------------------------------------------- stage-2 losses
def test_lowres_l1_uses_the_unaugmented_render_and_only_sr_sees_the_zoom(head_subject):
    """``GaussianHeadTrainer``: ``loss_rgb_lr = L1(render[:3], GT_coarse)`` on the render *before*
    ``random_crop``; ``loss_rgb_hr = L1(SR(crop(render)), crop(GT))``."""
    from avatarbench.methods.gaussian_head_avatar.losses import random_scale_crop

    cfg = _no_lpips(mesh={"iterations": 0}, gaussian={"augment_scale": [1.25, 1.25], "augment_mode": "nearest"})
    m = _method(head_subject, cfg)
    m._build_gaussians()
    frame = head_subject.frames("train")[1]
    sample = _sample(frame)
    with torch.no_grad():
        gf = m._gaussian_frame(frame, refine=True)
        feat, _ = m._render_features(gf, m._lowres_camera(frame.camera))
        H, W = sample.image.shape[:2]
        h, w = H // 4, W // 4
        feat = feat[..., :h, :w].double()
        gt = sample.image.permute(2, 0, 1)[None, :, :h * 4, :w * 4].double()
        gt_low = F.avg_pool2d(gt, 4)  # exact 4x4 block means
        l_lr = float((feat[:, :3] - gt_low).abs().mean())
        state = m.gen.get_state()
        s = float(torch.rand(1, generator=m.gen))
        u = torch.rand(2, generator=m.gen).tolist()
        m.gen.set_state(state)
        s = 1.25 + 0.0 * s
        a, b = random_scale_crop(feat.float(), gt.float(), 4, s, (u[0], u[1]), fill=1.0,
                                 mode=str(cfg.gaussian.augment_mode))
        l_hr = float((m.sr(a).double() - b.double()).abs().mean())
        l_hr_unaug = float((m.sr(feat.float()).double() - gt).abs().mean())
        l_lr_aug = float((a[:, :3].double() - F.avg_pool2d(b.double(), 4)).abs().mean())
    assert abs(l_lr - l_lr_aug) > 1e-3 and abs(l_hr - l_hr_unaug) > 1e-4  # the zoom matters here
    logs = m.train_step(sample, 0)
    assert logs["loss_lr"] == pytest.approx(l_lr, rel=1e-5)
    assert logs["loss_hr"] == pytest.approx(l_hr, rel=1e-5)
    assert logs["loss"] == pytest.approx(l_lr + l_hr, rel=1e-5)


# ---------------------------------------------------------------------------------- canonical grid
def test_tet_grid_must_contain_the_head_in_canonical_units(head_subject):
    """At the official 0.1 m unit a ~0.3 m head (neck included) reaches ~1.5 units from the centre:
    a [-1, 1]^3 grid cannot hold it, and the error names the field."""
    with pytest.raises(ConfigError, match=r"method\.mesh\.grid_bound=1\.0"):
        _method(head_subject, _no_lpips(mesh={"grid_bound": 1.0}))
    m = _method(head_subject, _no_lpips())
    base = m.cond.neutral_canonical[: m.flame.num_base_verts]
    half = (base.max(0).values - base.min(0).values) / 2
    assert torch.allclose(m.cond.half_extent, half, atol=1e-6) and 1.4 < float(half.max()) < 1.7
    assert float(m.cfg.mesh.grid_bound) > float(half.max())
