"""SMPL-X layer (our forward pass) and the procedural SMPL-X-format stand-in model.

The reference is an independent float64 NumPy implementation written here (forward kinematics
with scipy rotations, explicit pose correctives from the raw (V, 3, 486) posedirs layout).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from avatarbench.bodymodels.smplx import (JOINT_NAMES, PARENTS, SmplxModel, da_pose_body_pose, load_smplx,
                                          read_smplx_file, resolve_smplx_path)
from avatarbench.bodymodels.smplx_synthetic import (PARTS, VERSION, build_synthetic_smplx, ensure_synthetic_smplx,
                                                    rest_joints, write_synthetic_smplx)
from avatarbench.errors import ModelFileError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return write_synthetic_smplx(tmp_path_factory.mktemp("smplx"), seed=0)


@pytest.fixture(scope="module")
def raw(model_file):
    with np.load(model_file) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def model(model_file):
    return load_smplx(model_file, dtype=torch.float64)


def random_params(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*s, scale=0.3):
        return (torch.rand(*s, generator=g, dtype=torch.float64) * 2 - 1) * scale

    return dict(betas=r(B, 10, scale=1.0), global_orient=r(B, 3, scale=1.0), transl=r(B, 3, scale=1.0),
                body_pose=r(B, 63), jaw_pose=r(B, 3), leye_pose=r(B, 3), reye_pose=r(B, 3),
                left_hand_pose=r(B, 45), right_hand_pose=r(B, 45), expression=r(B, 10, scale=1.0))


def numpy_reference(raw: dict, p: dict, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent SMPL-X forward (float64): verts (V, 3), joints (55, 3) of batch item b."""
    v = raw["v_template"]
    sd = raw["shapedirs"]
    coeff = np.concatenate([p["betas"][b].numpy(), p["expression"][b].numpy()])
    v_shaped = v + np.einsum("vks,s->vk", sd[:, :, :20], coeff)
    J = raw["J_regressor"] @ v_shaped
    pose = np.concatenate([p[k][b].numpy() for k in ("global_orient", "body_pose", "jaw_pose", "leye_pose",
                                                       "reye_pose", "left_hand_pose", "right_hand_pose")])
    Rs = Rotation.from_rotvec(pose.reshape(55, 3)).as_matrix()
    feat = np.concatenate([(Rs[j] - np.eye(3)).reshape(-1) for j in range(1, 55)])
    v_posed = v_shaped + np.einsum("vkp,p->vk", raw["posedirs"], feat)
    G = np.zeros((55, 4, 4))
    for j in range(55):
        L = np.eye(4)
        L[:3, :3] = Rs[j]
        L[:3, 3] = J[j] - (J[PARENTS[j]] if j > 0 else 0)
        G[j] = L if j == 0 else G[PARENTS[j]] @ L
    joints = G[:, :3, 3].copy()
    verts = np.zeros_like(v)
    for j in range(55):
        local = v_posed - J[j]
        verts += raw["weights"][:, j:j + 1] * (local @ G[j, :3, :3].T + G[j, :3, 3])
    t = p["transl"][b].numpy()
    return verts + t, joints + t


# ------------------------------------------------------------------------------------------ forward
def test_identity_pose_gives_the_template(model, raw):
    out = model()
    np.testing.assert_allclose(out.verts[0].numpy(), raw["v_template"], atol=1e-12)
    np.testing.assert_allclose(out.joints[0].numpy(), raw["J_regressor"] @ raw["v_template"], atol=1e-12)
    eye = torch.eye(4, dtype=torch.float64).expand(55, 4, 4)
    # A_j = G_j translate(-J_j) with G_j = translate(J_j) at rest: the identity
    torch.testing.assert_close(out.A[0], eye, atol=1e-12, rtol=0)


def test_forward_matches_independent_numpy_reference(model, raw):
    p = random_params(B=2)
    out = model(**p)
    assert out.verts.shape == (2, model.num_verts, 3) and out.joints.shape == (2, 55, 3)
    assert out.A.shape == (2, 55, 4, 4)
    for b in range(2):
        v_ref, j_ref = numpy_reference(raw, p, b)
        np.testing.assert_allclose(out.verts[b].numpy(), v_ref, atol=1e-10)
        np.testing.assert_allclose(out.joints[b].numpy(), j_ref, atol=1e-10)


def test_A_transforms_reproduce_vertices_and_joints(model):
    p = random_params(B=3, seed=1)
    out = model(**p)
    W = model.lbs_weights
    T = torch.einsum("vj,bjmn->bvmn", W, out.A)
    vh = torch.cat([out.v_posed_rest, torch.ones_like(out.v_posed_rest[..., :1])], -1)
    verts = (T @ vh[..., None])[..., :3, 0]
    torch.testing.assert_close(verts, out.verts, atol=1e-10, rtol=0)
    # A_j maps the rest joint J_j (shaped) to the posed joint J'_j (translation included)
    rest_j = torch.einsum("jv,bvk->bjk", model.J_regressor, out.v_shaped)
    pj = (out.A[..., :3, :3] @ rest_j[..., None])[..., 0] + out.A[..., :3, 3]
    torch.testing.assert_close(pj, out.joints, atol=1e-10, rtol=0)


def test_shape_and_expression_blendshapes(model, raw):
    betas = torch.zeros(1, 10, dtype=torch.float64)
    betas[0, 0] = 1.0  # +5 % size about the pelvis
    out = model(betas=betas)
    np.testing.assert_allclose(out.verts[0].numpy(), raw["v_template"] * 1.05, atol=1e-12)
    short = model(betas=torch.tensor([[0.5, 0.2]], dtype=torch.float64))  # zero-padded
    np.testing.assert_allclose(short.verts[0].numpy(), raw["v_template"] + raw["shapedirs"][:, :, :2] @ [0.5, 0.2],
                               atol=1e-12)
    ex = model(expression=torch.ones(1, 10, dtype=torch.float64))
    moved = np.linalg.norm(ex.verts[0].numpy() - raw["v_template"], axis=1) > 1e-6
    assert moved.any() and set(np.unique(raw["avatarbench_part"][moved])) <= {PARTS["head"]}


def test_hand_pose_conventions(model_file, model):
    with pytest.raises(ValueError, match="left_hand_pose has 12 values, expected 45"):
        model(left_hand_pose=torch.zeros(1, 12, dtype=torch.float64))
    mean_model = load_smplx(model_file, flat_hand_mean=False, dtype=torch.float64)
    hm = mean_model.hands_mean
    assert hm.abs().sum() > 0
    a = mean_model(left_hand_pose=torch.zeros(1, 45, dtype=torch.float64))
    b = model(left_hand_pose=hm[None, :45], right_hand_pose=hm[None, 45:])
    torch.testing.assert_close(a.verts, b.verts)
    pca = load_smplx(model_file, use_pca=True, dtype=torch.float64)
    c = torch.zeros(1, 6, dtype=torch.float64)
    c[0, 0] = 0.7
    want = model(left_hand_pose=0.7 * pca.hands_components_l[0][None])
    torch.testing.assert_close(pca(left_hand_pose=c).verts, want.verts)


def test_forward_dict_and_da_pose(model):
    d = {k: v[:1].float() for k, v in random_params(B=1, seed=3).items()}
    d["unrelated"] = torch.zeros(1)
    a = model.forward_dict(d)
    b = model(**{k: v for k, v in d.items() if k != "unrelated"})
    torch.testing.assert_close(a.verts, b.verts)
    bp = da_pose_body_pose()
    assert bp.shape == (1, 63)
    assert bp[0, 2].item() == pytest.approx(math.radians(25)) and bp[0, 5].item() == pytest.approx(-math.radians(25))
    assert bp.abs().sum().item() == pytest.approx(2 * math.radians(25))
    out = model(body_pose=bp.double())
    lk, rk = JOINT_NAMES.index("left_knee"), JOINT_NAMES.index("right_knee")
    rest = model().joints[0]
    assert out.joints[0, lk, 0] > rest[lk, 0] and out.joints[0, rk, 0] < rest[rk, 0]  # legs apart


# ------------------------------------------------------------------------------------------ stand-in
def test_stand_in_format_and_tree(raw, model):
    for k in ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table",
              "hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr"):
        assert k in raw
    V = raw["v_template"].shape[0]
    assert 3000 <= V <= 8000
    assert raw["shapedirs"].shape == (V, 3, 20) and raw["posedirs"].shape == (V, 3, 486)
    assert raw["J_regressor"].shape == (55, V) and raw["weights"].shape == (V, 55)
    assert list(raw["kintree_table"][1]) == list(range(55))
    assert list(model.parents[1:]) == list(PARENTS[1:]) and len(JOINT_NAMES) == 55
    assert model.num_betas == 10 and model.num_expression == 10
    np.testing.assert_allclose(raw["weights"].sum(1), 1.0, atol=1e-12)
    assert raw["weights"].min() >= 0
    np.testing.assert_allclose(raw["J_regressor"].sum(1), 1.0, atol=1e-12)
    height = np.ptp(raw["v_template"][:, 1])
    assert 1.6 < height < 1.8
    assert raw["avatarbench_version"].item() == VERSION


def test_stand_in_joints_are_where_the_skeleton_was_built(raw):
    J = raw["J_regressor"] @ raw["v_template"]
    ref = rest_joints(np.random.default_rng(0))  # the seed-0 skeleton the mesh was built around
    err = np.linalg.norm(J - ref, axis=1)
    assert err.max() < 1e-3, JOINT_NAMES[int(err.argmax())]
    lh, rh = JOINT_NAMES.index("left_hip"), JOINT_NAMES.index("right_hip")
    assert J[lh, 0] > 0 > J[rh, 0]  # SMPL-X axes: +x is the subject's left


def test_stand_in_skirt_is_skinned_to_pelvis_and_hips(raw):
    sk = raw["avatarbench_part"] == PARTS["skirt"]
    assert sk.sum() > 100
    w = raw["weights"][sk]
    used = set(np.nonzero(w.max(0) > 1e-9)[0])
    assert used == {0, 1, 2}
    v = raw["v_template"][sk]
    hem = v[:, 1] < v[:, 1].min() + 0.01
    left = hem & (v[:, 0] > 0.1)
    assert (w[left, 1] > w[left, 2]).all() and (w[left, 1] > 0.5).all()  # hem follows the same-side hip


def test_stand_in_deterministic_bytes_and_seed(tmp_path):
    a = write_synthetic_smplx(tmp_path / "a", seed=0).read_bytes()
    b = write_synthetic_smplx(tmp_path / "b", seed=0).read_bytes()
    c = write_synthetic_smplx(tmp_path / "c", seed=1).read_bytes()
    assert a == b and a != c
    assert build_synthetic_smplx(0, garment=False).arrays["v_template"].shape[0] < \
        build_synthetic_smplx(0).arrays["v_template"].shape[0]


# ------------------------------------------------------------------------------------------ loading
def test_path_resolution(tmp_path, monkeypatch, model_file):
    monkeypatch.setenv("AVATARBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AVATARBENCH_SMPLX_MODEL", raising=False)
    p = resolve_smplx_path(None)
    assert p == tmp_path / "home" / "models" / "smplx_synthetic" / "SMPLX_NEUTRAL.npz"
    assert (p.parent / "VERSION").read_text().strip() == VERSION
    assert ensure_synthetic_smplx() == p
    monkeypatch.setenv("AVATARBENCH_SMPLX_MODEL", str(model_file))
    assert resolve_smplx_path(None) == model_file
    assert resolve_smplx_path(model_file.parent) == model_file  # a folder holding SMPLX_NEUTRAL.npz
    monkeypatch.setenv("AVATARBENCH_SMPLX_MODEL", str(tmp_path / "nope.npz"))
    with pytest.raises(ModelFileError, match=r"nope.npz: SMPL-X model file not found \(\$AVATARBENCH_SMPLX_MODEL\).*"
                                             r"https://smpl-x.is.tue.mpg.de"):
        load_smplx()
    with pytest.raises(ModelFileError, match="no SMPLX_NEUTRAL.npz in this folder"):
        load_smplx(tmp_path)


def test_bad_model_files(tmp_path, raw):
    bad = dict(raw)
    del bad["posedirs"]
    np.savez(tmp_path / "m1.npz", **bad)
    with pytest.raises(ModelFileError, match="missing key.*posedirs"):
        load_smplx(tmp_path / "m1.npz")
    bad = dict(raw)
    bad["J_regressor"] = raw["J_regressor"][:54]
    np.savez(tmp_path / "m2.npz", **bad)
    with pytest.raises(ModelFileError, match=r"J_regressor has shape \(54, \d+\) \(expected \(55, \d+\)\)"):
        load_smplx(tmp_path / "m2.npz")
    (tmp_path / "m3.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="cannot be read"):
        load_smplx(tmp_path / "m3.npz")


def test_smplx2020_shapedirs_split(raw):
    """A 400-wide shapedirs is 300 shape + 100 expression directions (SMPL-X 2020 layout)."""
    V = raw["v_template"].shape[0]
    data = {k: raw[k] for k in ("v_template", "f", "posedirs", "J_regressor", "weights", "kintree_table")}
    sd = np.zeros((V, 3, 400))
    sd[:, :, :10] = raw["shapedirs"][:, :, :10]
    sd[:, :, 300:310] = raw["shapedirs"][:, :, 10:]
    data["shapedirs"] = sd
    m = SmplxModel(data, dtype=torch.float64)
    assert m.num_betas == 300 and m.num_expression == 100
    ref = SmplxModel({**data, "shapedirs": raw["shapedirs"]}, dtype=torch.float64)
    p = random_params(B=1, seed=5)
    torch.testing.assert_close(m(**p).verts, ref(**p).verts)


def test_read_smplx_file_keys(model_file):
    d = read_smplx_file(model_file)
    assert "avatarbench_part" not in d and d["f"].shape[1] == 3
