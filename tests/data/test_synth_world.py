"""World variants of the synthetic subjects (issue 12): every phenomenon is present and measurable.

Small sizes: a 34 x 50 head preset with one identity (3 + 2 timesteps) and a 48 x 64 body preset;
the component tests run on the FLAME / SMPL-X stand-ins directly.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import avatarbench.data.synth.body as body
import avatarbench.data.synth.body_phenomena as bp
import avatarbench.data.synth.head_phenomena as hp
from avatarbench.bodymodels.flame import load_flame
from avatarbench.bodymodels.flame_synthetic import ensure_synthetic_flame
from avatarbench.data.synth.head import IDENTITIES, SynthPreset, _build_identity, generate_synthetic_heads
from avatarbench.data.synth.mesh_raster import vertex_normals
from avatarbench.data.synth.world import (
    BODY_PHENOMENA,
    DEFAULT_WORLD,
    HEAD_PHENOMENA,
    World,
    split_world,
    world_variants,
)
from avatarbench.errors import ConfigError

MICRO = SynthPreset("micro", 0.0625, 1, {"synth_head_a": (("EMO-1", 3), ("FREE", 2))})
TINY_BODY = body.BodyPreset(width=48, height=64, n_train=5, n_novel=2, supersample=1)


# ------------------------------------------------------------------------------------ names
def test_world_names_and_default():
    assert DEFAULT_WORLD == "clean"  # the bare names keep today's world until the lead switches
    heads = ("synth_head", "synth_head_a", "synth_head_b")
    assert split_world("synth_head_a", heads, "head") == ("synth_head_a", World("head", ()))
    b, w = split_world("synth_head_a_full", heads, "head")
    assert b == "synth_head_a" and w.phenomena == tuple(sorted(HEAD_PHENOMENA)) and w.tag == "full"
    b, w = split_world("synth_head_b_shoulders+hair_volume", heads, "head")
    assert b == "synth_head_b" and w.phenomena == ("hair_volume", "shoulders")
    assert w.tag == "hair_volume+shoulders"
    assert split_world("synth_head_a_clean", heads, "head")[1].is_clean
    assert split_world("synth_head_c", heads, "head") is None
    with pytest.raises(ConfigError, match="long_hair"):
        World("head", ("long_hair",))
    assert world_variants("body") == ["clean", *BODY_PHENOMENA, "full"]


def test_default_driver_keeps_world():
    from avatarbench.engine.run import default_driver

    assert default_driver("synth_head_a") == "synth_head_b"
    assert default_driver("synth_head_a_full") == "synth_head_b_full"
    assert default_driver("synth_body_b_long_hair") == "synth_body_a_long_hair"
    assert default_driver("/data/x") is None


def test_clean_world_paths_unchanged(tmp_path):
    from avatarbench.data.synth.head import dataset_dir

    assert dataset_dir("tiny", 0, tmp_path) == tmp_path / "tiny"
    assert dataset_dir("tiny", 0, tmp_path, "full") == tmp_path / "tiny_full"
    assert body.synthetic_body_root("synth_body_a").name == "synth_body_a"
    assert body.synthetic_body_root("synth_body_a", world=World("body", ("long_hair",))).name == \
        "synth_body_a_long_hair"


# ------------------------------------------------------------------------------------ head components
@pytest.fixture(scope="module")
def flame_ident():
    m = load_flame(ensure_synthetic_flame(), teeth=True)
    ident = _build_identity(m, IDENTITIES["synth_head_a"], 0, (128, 256))
    return m, ident


def test_tracking_noise_statistics():
    """Per-frame jitter (from first differences) and the per-sequence bias match the stated sigmas."""
    T, n_seq = 400, 60
    zeros = {"translation": np.zeros((T, 3), np.float32), "rotation": np.zeros((T, 3), np.float32),
             "neck_pose": np.zeros((T, 3), np.float32), "jaw_pose": np.zeros((T, 3), np.float32),
             "eyes_pose": np.zeros((T, 6), np.float32), "expr": np.zeros((T, 100), np.float32)}
    means = {k: [] for k in zeros}
    for s in range(n_seq):
        err = hp.track_flame_params(zeros, np.random.default_rng(s))
        for k, (jit, bias, comps) in hp.TRACKING_NOISE.items():
            e = err[k].astype(np.float64)
            d = comps or e.shape[1]
            if s == 0:
                # first differences: jitter * sqrt(2) (the smooth bias changes by < 2 % of that per step)
                est = np.std(np.diff(e[:, :d], axis=0)) / math.sqrt(2)
                assert est == pytest.approx(jit, rel=0.1), k
                assert np.all(e[:, d:] == 0), k  # components past the stated ones are untouched
            means[k].append(e[:, :d].mean(0))
    for k, (_, bias, _) in hp.TRACKING_NOISE.items():
        # the time-mean of (constant ~ N(0, (b/sqrt2)^2) + sinusoid of amplitude b/sqrt2 over 0.3-1
        # cycles) has a std between b/sqrt2 and b
        b = np.asarray(bias, np.float64)
        std = np.std(np.asarray(means[k]), axis=0)
        ref = b if b.ndim == 0 else b[: std.shape[0]]
        assert np.all(std > 0.55 * ref) and np.all(std < 1.15 * ref), k
    shape = np.linspace(1, -1, 300).astype(np.float32)
    off = np.ones((1, 5, 3), np.float32)
    s2, o2 = hp.track_identity(shape, off, np.random.default_rng(0))
    assert np.all(s2[20:] == shape[20:]) and np.any(s2[:20] != shape[:20])
    np.testing.assert_array_equal(o2, off * 0.5)


def test_hair_departs_from_best_flame_fit(flame_ident):
    """The hair shell is 12 mm above the crown; FLAME's best fit of the scalp to it (shape 0-49 and
    expression 0-9 within +-3 sigma) leaves median > 2 mm and p90 > 6 mm; lock tips are > 15 mm (temples) to > 30 mm (back) out."""
    from scipy.optimize import lsq_linear
    from scipy.spatial import cKDTree

    m, ident = flame_ident
    canon = ident.canonical
    hair = hp.HairGeometry(canon, m.faces.numpy(), m.masks, ident.appearance)
    ns = hair.num_shell
    idx = cKDTree(canon).query(hair.rest[ns:2 * ns])[1]  # wall bottoms sit 0.5 mm under their scalp vertex
    thick = np.linalg.norm(hair.rest[:ns] - canon[idx], axis=1)
    assert thick.max() == pytest.approx(hp.HAIR_CROWN_THICKNESS, abs=1e-4)
    assert thick.min() >= hp.HAIR_EDGE_THICKNESS - 1e-4
    S = m.shapedirs.double().numpy()[idx][:, :, list(range(50)) + list(range(300, 310))].reshape(-1, 60)
    r = (hair.rest[:ns] - canon[idx]).reshape(-1)
    fit = lsq_linear(S, r, bounds=(-3, 3))
    res = np.linalg.norm((r - S @ fit.x).reshape(-1, 3), axis=1)
    assert np.median(res) > 0.002 and np.percentile(res, 90) > 0.006
    tips = hair.rest[hair.lock_s == 1.0]
    d_tip = cKDTree(canon).query(tips)[0]
    assert len(tips) == 18 and d_tip.min() > 0.015 and np.median(d_tip) > 0.03  # temple locks lie along the cheeks


def test_hair_locks_lag(flame_ident):
    m, ident = flame_ident
    hair = hp.HairGeometry(ident.canonical, m.faces.numpy(), m.masks, ident.appearance)
    A = torch.eye(4, dtype=torch.float64)
    still = hair.pose(A, None).numpy()
    moved = hair.pose(A, np.array([0.0, 0.2, 0.0])).numpy()
    rigid = hair.lock_root < 0
    np.testing.assert_allclose(moved[rigid], still[rigid])
    tip = hair.lock_s == 1.0
    # independent check (scipy): the tip rotates by -0.8 * 0.2 rad (times s^2 = 1) about +y around its root
    from scipy.spatial.transform import Rotation

    root = still[hair.lock_root[tip]]
    want = root + Rotation.from_rotvec([0.0, -0.16, 0.0]).apply(still[tip] - root)
    np.testing.assert_allclose(moved[tip], want, atol=1e-12)
    assert np.linalg.norm(moved[tip] - still[tip], axis=1).max() > 0.002
    # clamped at 0.5 rad
    big = hair.pose(A, np.array([0.0, 5.0, 0.0])).numpy()
    want = root + Rotation.from_rotvec([0.0, -0.5, 0.0]).apply(still[tip] - root)
    np.testing.assert_allclose(big[tip], want, atol=1e-12)


def test_expression_detail_outside_blendshape_span(flame_ident):
    """Full smile / pucker / brow raise: the displacement's residual after the least-squares
    projection onto FLAME's 100 expression blendshapes exceeds 2 mm / 1 mm / 0.4 mm; creases darken."""
    m, ident = flame_ident
    canon = ident.canonical
    det = hp.ExpressionDetail(canon, m.masks, ident.appearance)
    n = vertex_normals(torch.from_numpy(canon), m.faces).double().numpy()
    E = m.shapedirs.double().numpy()[:, :, 300:].reshape(-1, 100)
    for dim, full, thr in ((1, hp.SMILE_FULL, 0.002), (4, hp.PUCKER_FULL, 0.001), (2, hp.BROW_FULL, 0.0004)):
        ex = np.zeros(100)
        ex[dim] = full
        D = (det.displacement(ex)[:, None] * n).reshape(-1)
        c, *_ = np.linalg.lstsq(E, D, rcond=None)
        assert np.linalg.norm((D - E @ c).reshape(-1, 3), axis=1).max() > thr, dim
    assert np.all(det.displacement(np.zeros(100)) == 0)
    # nonlinear in the coefficient: half the coefficient gives half the smoothstep, not half the displacement
    half = np.zeros(100)
    half[1] = hp.SMILE_FULL / 4
    full = np.zeros(100)
    full[1] = hp.SMILE_FULL
    ratio = np.abs(det.displacement(half)).max() / np.abs(det.displacement(full)).max()
    assert ratio == pytest.approx(0.25 ** 2 * (3 - 2 * 0.25), rel=1e-6)
    # crease shading: on the fold line (nose wing point) at a full smile: 1 - 0.35
    p = torch.tensor(np.array([det.lip + np.array([0.017, 0.027, -0.006])]), dtype=torch.float32)
    p[0, 2] = float(det.lip[2])
    dark = det.darkening(p, {"brow": 0.0, "smile": 1.0, "pucker": 0.0})
    assert float(dark[0]) == pytest.approx(1 - hp.NASOLABIAL_DARK, abs=1e-5)
    assert float(det.darkening(p, {"brow": 0.0, "smile": 0.0, "pucker": 0.0})[0]) == 1.0


def test_bust_below_neck_and_on_root(flame_ident):
    m, ident = flame_ident
    bust = hp.Bust(ident.canonical, m.masks)
    ring_y = ident.canonical[m.masks["boundary"], 1].mean()
    assert bust.rest[:, 1].min() < ring_y - 0.2
    assert bust.rest[:, 0].max() - bust.rest[:, 0].min() == pytest.approx(2 * hp.SHOULDER_HALF_WIDTH, abs=0.01)
    A = torch.eye(4, dtype=torch.float64)
    A[:3, 3] = torch.tensor([0.01, 0.02, 0.03], dtype=torch.float64)
    np.testing.assert_allclose(bust.pose(A).numpy(), bust.rest + [0.01, 0.02, 0.03])


# ------------------------------------------------------------------------------------ head dataset
@pytest.fixture(scope="module")
def head_full(tmp_path_factory):
    out = tmp_path_factory.mktemp("head_full")
    unions = generate_synthetic_heads(out, MICRO, 0, world="full")
    return out, unions["synth_head_a"]


def test_head_full_dataset(head_full):
    from avatarbench.data.vhap import load_vhap

    out, union = head_full
    info = json.loads((union / "avatarbench_subject.json").read_text())
    assert info["name"] == "synth_head_a_full"
    assert info["world"]["variant"] == "full" and all(info["world"]["switches"].values())
    meas = info["world"]["measured"]
    assert 0.5 < meas["tracking_error_mesh_mm_mean"] < 20 and meas["tracking_error_pixels_mean"] > 0
    card = (out / "DATASET_CARD.md").read_text()
    for name in HEAD_PHENOMENA:
        assert f"## `{name}`" in card
    assert "tracking_error_mesh_mm_mean" in card
    seq = next(out.glob("synthA_EMO-1_*"))
    tracked = dict(np.load(seq / "flame_param" / "00001.npz"))
    true = dict(np.load(seq / "flame_param_true" / "00001.npz"))
    assert set(tracked) == set(true)
    for k in ("rotation", "translation", "neck_pose", "jaw_pose", "eyes_pose", "expr", "shape", "static_offset"):
        assert not np.array_equal(tracked[k], true[k]), k
    # the loader reads the tracked parameters; the ground-truth mesh is FLAME(true) + hair + bust
    subj = load_vhap(union)
    f = subj.frames("train")[0]
    t0 = dict(np.load(seq / "flame_param" / "00000.npz"))
    np.testing.assert_allclose(np.asarray(f.driving["rotation"]).reshape(-1), t0["rotation"].reshape(-1), atol=1e-6)
    gt = subj.gt_mesh(f.timestep)
    assert gt.shape[0] > 3780 and subj.gt_mesh_faces.max() == gt.shape[0] - 1
    # shoulders: the lowest image rows are covered (the clean head ends at the neck ring)
    from avatarbench.data.images import read_image_array

    masks = [read_image_array(p) for p in sorted((seq / "fg_masks").glob("00000_*.png"))]
    assert np.mean([float(np.asarray(a)[-1].mean()) > 0.3 for a in masks]) > 0.5


def test_head_generation_deterministic(head_full, tmp_path):
    out, _ = head_full
    generate_synthetic_heads(tmp_path, MICRO, 0, world="full")
    for p in sorted(out.rglob("*")):
        if p.suffix in (".png", ".npy", ".json", ".md") and p.name != "generation_time.json":
            q = tmp_path / p.relative_to(out)
            assert q.read_bytes() == p.read_bytes(), p
        if p.suffix == ".npz":
            a, b = np.load(p), np.load(tmp_path / p.relative_to(out))
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k])


# ------------------------------------------------------------------------------------ body components
def test_garment_depends_on_velocity_history():
    """Same pose, same frame position, different history: the skirt differs (pendulum lag)."""
    from avatarbench.bodymodels.smplx import load_smplx
    from avatarbench.bodymodels.smplx_synthetic import ensure_synthetic_smplx

    f = ensure_synthetic_smplx()
    model = load_smplx(f, dtype=torch.float64)
    with np.load(f) as z:
        part, attr = z["avatarbench_part"], z["avatarbench_attr"]
    o = model()
    verts, A = o.verts[0].numpy(), o.A[0].numpy()
    pose = np.zeros(63)
    still = bp.simulate_garment(np.zeros((4, 3)), np.zeros(4), [(0, 4)])
    walk = np.zeros((4, 3))
    walk[:, 2] = [0.0, 0.1, 0.2, 0.3]  # 1 m/s forward, then arriving at the same last position
    walk[3] = walk[2]
    moving = bp.simulate_garment(walk, np.zeros(4), [(0, 4)])
    assert np.all(still["hem"] == 0)
    a = bp.dynamic_skirt(verts, A, part, attr, pose, still["hem"][3], still["twist"][3], still["yaw_rate"][3])
    b = bp.dynamic_skirt(verts, A, part, attr, pose, moving["hem"][3], moving["twist"][3], moving["yaw_rate"][3])
    sk = part == 8
    d = np.linalg.norm(a[sk] - b[sk], axis=1)
    assert d.max() > 0.02  # > 2 cm at the hem
    assert np.all(a[~sk] == b[~sk])
    # pendulum: one velocity kick dv, undamped-free check of the first substep direction
    p = bp.Pendulum(0.5, 0.2, 1.0)
    x = p.step(np.array([1.0, 0.0, 0.0]))
    assert x[0] < 0  # the hem lags behind the motion
    assert p.omega == pytest.approx(math.sqrt(9.81 / 0.5))


def test_centrifugal_flare_and_twist():
    yaw = np.linspace(0, 2.5, 11)  # 2.5 rad/s
    g = bp.simulate_garment(np.zeros((11, 3)), yaw, [(0, 11)])
    assert g["yaw_rate"][5] == pytest.approx(2.5)
    assert g["twist"][1] < 0  # the skirt twists behind the turn


def test_joint_folds_hand_computed():
    rest = np.array([[0.0, 0.0, 0.0], [0.0125, 0.0, 0.0], [0.0, 0.5, 0.0]])
    joints = np.zeros((55, 3))
    normals = np.tile([0.0, 0.0, 1.0], (3, 1))
    part = np.array([6, 6, 0])  # leg, leg, torso
    pose = np.zeros(63)
    pose[(4 - 1) * 3] = math.pi / 2  # left knee bent 90 degrees
    out = bp.joint_folds(rest.copy(), normals, rest, joints, part, pose)
    # d = 0: amplitude 4 mm * cos(0) * exp(0); d = 12.5 mm: 4 mm * cos(pi) * exp(-0.5 (0.0125/0.03)^2)
    assert out[0, 2] == pytest.approx(0.004)
    assert out[1, 2] == pytest.approx(-0.004 * math.exp(-0.5 * (0.0125 / 0.03) ** 2))
    assert out[2, 2] == 0.0


def test_long_hair_swings():
    head = np.random.default_rng(0).normal(size=(200, 3)) * 0.09 + [0, 1.6, 0]
    hair = bp.LongHair(head)
    A = np.eye(4)
    rest = hair.step(A)
    for x in (0.1, 0.2, 0.3):  # the head moves 1 m/s along +x ...
        A = np.eye(4)
        A[0, 3] = x
        moved = hair.step(A)
    A2 = np.eye(4)
    A2[0, 3] = 0.3
    tips = slice(len(rest) - hair.n_around, len(rest))
    # ... the hair tips trail behind (-x relative to a rigid translation of the rest hair)
    lag = moved[tips, 0] - (rest[tips, 0] + 0.3)
    assert np.all(lag < -0.005)
    assert np.all(np.abs(np.linalg.norm(moved[tips] - moved[: hair.n_around], axis=1) - 0.3) < 0.05)


def test_body_tracking_noise_statistics():
    T = 500
    params = {"global_orient": np.zeros((T, 3)), "transl": np.zeros((T, 3)), "body_pose": np.zeros((T, 63))}
    tr, betas = bp.track_smplx_params(params, np.zeros(10), [(0, T)], np.random.default_rng(1))
    for k in params:
        jit = bp.BODY_TRACKING_NOISE[k][0]
        assert np.std(np.diff(tr[k], axis=0)) / math.sqrt(2) == pytest.approx(jit, rel=0.1), k
    assert np.std(betas) == pytest.approx(bp.BETAS_SIGMA, rel=0.6)


@pytest.fixture(scope="module")
def body_full(tmp_path_factory):
    d = tmp_path_factory.mktemp("body_full") / "synth_body_a_full"
    d.mkdir()
    with torch.no_grad():
        body.generate_body_subject(d, "synth_body_a", TINY_BODY, 0, World.parse("body", "full"))
    return d


def test_body_full_dataset(body_full):
    from avatarbench.data.avatarrex import load_avatarrex

    info = json.loads((body_full / "avatarbench_subject.json").read_text())
    assert info["name"] == "synth_body_a_full" and all(info["world"]["switches"].values())
    assert info["world"]["measured"]["tracking_error"]["mesh_mm_mean"] > 1.0
    tracked, true = np.load(body_full / "smpl_params.npz"), np.load(body_full / "true_params" / "smpl_params.npz")
    for k in ("global_orient", "transl", "body_pose", "betas"):
        assert not np.array_equal(tracked[k], true[k]), k
    subj = load_avatarrex(body_full)
    gt = subj.gt_mesh(0)
    faces = np.load(body_full / "gt_mesh" / "faces.npy")
    assert faces.max() == gt.shape[0] - 1
    card = (body_full / "DATASET_CARD.md").read_text()
    for name in BODY_PHENOMENA:
        assert f"## `{name}`" in card


def test_body_generation_deterministic(body_full, tmp_path):
    d = tmp_path / "again"
    d.mkdir()
    with torch.no_grad():
        body.generate_body_subject(d, "synth_body_a", TINY_BODY, 0, World.parse("body", "full"))
    files = [p for p in sorted(body_full.rglob("*")) if p.is_file() and p.name != "generation_time.json"]
    assert len(files) > 50
    for p in files:
        assert (d / p.relative_to(body_full)).read_bytes() == p.read_bytes(), p
