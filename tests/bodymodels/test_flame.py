"""FLAME layer: path resolution, validation errors, and forward-pass semantics (on the stand-in)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import roma
import torch

from avatarbench.bodymodels.flame import ENV_VAR, FlameModel, load_flame, read_flame_file, resolve_flame_path
from avatarbench.bodymodels.flame_synthetic import MASKS_FILENAME, build_synthetic_flame, write_synthetic_flame
from avatarbench.errors import ModelFileError

torch.set_num_threads(1)
DT = torch.float64


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return write_synthetic_flame(tmp_path_factory.mktemp("flame"))


@pytest.fixture(scope="module")
def flame(model_path):
    return load_flame(model_path).double()


def _rand(B, n, scale, seed):
    return scale * torch.randn(B, n, generator=torch.Generator().manual_seed(seed), dtype=DT)


# ----------------------------------------------------------------------------- resolution
def test_missing_explicit_path_says_where_to_get_flame(tmp_path):
    with pytest.raises(ModelFileError) as e:
        load_flame(tmp_path / "flame2023.pkl")
    msg = str(e.value)
    assert "flame2023.pkl" in msg and "https://flame.is.tue.mpg.de" in msg and ENV_VAR in msg
    assert "\n" not in msg


def test_env_var_missing_and_valid(monkeypatch, tmp_path, model_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.pkl"))
    with pytest.raises(ModelFileError, match=r"missing.pkl: FLAME model file not found \(from \$" + ENV_VAR):
        load_flame()
    monkeypatch.setenv(ENV_VAR, str(model_path))
    assert resolve_flame_path() == model_path
    assert resolve_flame_path(model_path.parent) == model_path  # folder form


def test_default_is_the_cached_stand_in(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("AVATARBENCH_HOME", str(tmp_path))
    p = resolve_flame_path()
    assert p == tmp_path / "models" / "flame_synthetic" / "flame_synthetic.pkl"
    assert (p.parent / MASKS_FILENAME).is_file()
    stamp = p.stat().st_mtime_ns
    assert resolve_flame_path() == p and p.stat().st_mtime_ns == stamp  # generated once
    m = load_flame()
    assert m.is_synthetic and m.source == p


# ----------------------------------------------------------------------------- validation
def _write_model(folder, model, masks):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "flame2023.pkl", "wb") as f:
        pickle.dump(model, f, protocol=2)
    if masks is not None:
        with open(folder / MASKS_FILENAME, "wb") as f:
            pickle.dump(masks, f, protocol=2)
    return folder / "flame2023.pkl"


@pytest.mark.parametrize("key,value,pattern", [
    ("weights", np.zeros((10, 5)), r"key 'weights' has shape \(10, 5\)"),
    ("shapedirs", np.zeros((5, 3, 400)), r"key 'shapedirs' has shape"),
    ("posedirs", np.zeros((7, 3, 36)), r"key 'posedirs' has shape"),
    ("kintree_table", np.zeros((2, 4)), r"key 'kintree_table' has shape"),
    ("f", None, r"key 'f' is missing"),
])
def test_bad_model_file_names_file_and_key(tmp_path, key, value, pattern):
    model, masks = build_synthetic_flame(0)
    if value is None:
        del model[key]
    else:
        model[key] = value
    p = _write_model(tmp_path / key, model, masks)
    with pytest.raises(ModelFileError, match=r"flame2023.pkl: " + pattern):
        load_flame(p)


def test_bad_masks_and_missing_lip_rings(tmp_path):
    model, masks = build_synthetic_flame(0)
    V = model["v_template"].shape[0]
    bad = dict(masks, face=np.array([0, V + 5]))
    p = _write_model(tmp_path / "a", model, bad)
    with pytest.raises(ModelFileError, match=r"FLAME_masks.pkl: key 'face'"):
        load_flame(p)
    # no masks file: fine without teeth (masks == {}), an error with teeth (not FLAME topology)
    p = _write_model(tmp_path / "b", model, None)
    assert load_flame(p, teeth=False).masks == {}
    with pytest.raises(ModelFileError, match="lip_outside_ring"):
        load_flame(p, teeth=True)


def test_real_flame_topology_uses_builtin_lip_rings():
    from avatarbench.bodymodels.flame_teeth import FLAME_LIP_RING_UPPER

    rng = np.random.default_rng(0)
    V = 5023
    arrays = dict(v_template=rng.normal(size=(V, 3)) * 0.05, faces=np.array([[0, 1, 2]]),
                  shapedirs=np.zeros((V, 3, 400)), posedirs=np.zeros((V, 3, 36)),
                  J_regressor=np.full((5, V), 1.0 / V), weights=np.tile(np.eye(5)[1], (V, 1)),
                  parents=np.array([-1, 0, 1, 1, 1]), uv=None, synthetic=False)
    m = FlameModel(arrays, {}, teeth=True)
    assert m.num_verts == 5143 and m.num_faces == 1 + 168
    np.testing.assert_array_equal(m.masks["lip_outside_ring_upper"], FLAME_LIP_RING_UPPER)


# ----------------------------------------------------------------------------- forward
def test_counts_and_neutral_forward_is_template(flame, model_path):
    arrays, _ = read_flame_file(model_path)
    V, F = arrays["v_template"].shape[0], arrays["faces"].shape[0]
    assert flame.num_verts == V + 120 and flame.num_faces == F + 168 and flame.num_base_verts == V
    assert flame.faces.dtype == torch.long and flame.lbs_weights.shape == (V + 120, 5)
    assert flame.parents.tolist() == [-1, 0, 1, 1, 1]
    out = flame()
    assert out.verts.shape == (1, V + 120, 3) and out.joints.shape == (1, 5, 3) and out.A.shape == (1, 5, 4, 4)
    torch.testing.assert_close(out.verts[0], flame.v_template)
    torch.testing.assert_close(out.joints[0], flame.J_regressor @ flame.v_template)


def test_translation_and_global_rotation(flame):
    shape, expr = _rand(2, 300, 0.5, 1), _rand(2, 100, 0.5, 2)
    jaw = torch.tensor([[0.1, 0, 0], [0.2, 0.05, 0]], dtype=DT)
    base = flame(shape=shape, expr=expr, jaw_pose=jaw)
    t = torch.tensor([[0.01, -0.02, 0.3], [0.0, 0.1, 0.0]], dtype=DT)
    rot = torch.tensor([[0.3, -0.5, 0.2], [0.0, 1.0, 0.0]], dtype=DT)
    moved = flame(shape=shape, expr=expr, jaw_pose=jaw, rotation=rot, translation=t)
    R = roma.rotvec_to_rotmat(rot)
    J0 = base.joints[:, :1]
    expected = torch.einsum("bij,bvj->bvi", R, base.verts - J0) + J0 + t[:, None]
    torch.testing.assert_close(moved.verts, expected)
    torch.testing.assert_close(moved.joints, torch.einsum("bij,bvj->bvi", R, base.joints - J0) + J0 + t[:, None])
    # A includes the translation: A applied to shaped rest points with weights gives the verts
    shaped = flame.v_template + torch.einsum("bs,vks->bvk", torch.cat([shape, expr], 1), flame.shapedirs)
    no_pose = flame(shape=shape, expr=expr, rotation=rot, translation=t)
    hom = torch.cat([shaped, torch.ones_like(shaped[..., :1])], -1)
    T = torch.einsum("vj,bjmn->bvmn", flame.lbs_weights, no_pose.A)
    torch.testing.assert_close((T @ hom[..., None])[..., :3, 0], no_pose.verts)


def test_zero_padding_broadcast_and_too_long(flame):
    s = _rand(1, 40, 1.0, 3)
    e = _rand(3, 10, 1.0, 4)
    a = flame(shape=s, expr=e)
    b = flame(shape=torch.cat([s, torch.zeros(1, 260, dtype=DT)], 1).expand(3, 300),
              expr=torch.cat([e, torch.zeros(3, 90, dtype=DT)], 1))
    assert a.verts.shape[0] == 3
    torch.testing.assert_close(a.verts, b.verts)
    unbatched = flame(shape=s[0], jaw_pose=torch.tensor([0.1, 0, 0]))
    assert unbatched.verts.shape[0] == 1
    with pytest.raises(ValueError, match="expr"):
        flame(expr=torch.zeros(1, 101))
    with pytest.raises(ValueError, match="batch"):
        flame(expr=torch.zeros(2, 100), jaw_pose=torch.zeros(3, 3))
    small = load_flame(flame.source, n_shape=50, n_expr=20, teeth=False).double()
    assert small.shapedirs.shape[-1] == 70
    torch.testing.assert_close(small(shape=s, expr=e[:1]).verts,
                               b.verts[:1, : small.num_verts])
    with pytest.raises(ValueError, match="shape"):
        small(shape=torch.zeros(1, 300))


def test_static_offset_is_added_before_skinning(flame):
    lo = torch.as_tensor(flame.masks["lip_inside_ring_lower"][5])  # a lower-lip vertex, jaw weight 1
    assert float(flame.lbs_weights[lo, 2]) == pytest.approx(1.0)
    assert float(flame.J_regressor[:, lo].abs().sum()) == 0.0
    off = torch.zeros(1, flame.num_verts, 3, dtype=DT)
    off[0, lo] = torch.tensor([0.001, 0.002, 0.003], dtype=DT)
    jaw = torch.tensor([[0.4, 0.0, 0.0]], dtype=DT)
    d = flame(jaw_pose=jaw, static_offset=off).verts - flame(jaw_pose=jaw).verts
    R = roma.rotvec_to_rotmat(jaw[0])
    torch.testing.assert_close(d[0, lo], R @ off[0, lo])
    assert float(d.abs().sum() - d[0, lo].abs().sum()) == pytest.approx(0.0, abs=1e-12)
    # dynamic_offset is ignored; offsets without the teeth rows are zero-padded
    torch.testing.assert_close(flame(static_offset=off, dynamic_offset=torch.ones_like(off)).verts,
                               flame(static_offset=off[:, : flame.num_base_verts]).verts)
    with pytest.raises(ValueError, match="static_offset"):
        flame(static_offset=torch.zeros(1, 10, 3))


def test_no_teeth_model_cuts_teeth_offsets(model_path):
    m = load_flame(model_path, teeth=False).double()
    off = 0.001 * torch.randn(1, m.num_verts + 120, 3, dtype=DT)
    torch.testing.assert_close(m(static_offset=off).verts[0], m.v_template + off[0, : m.num_verts])
    assert m.teeth_faces_mask.sum() == 0 and "teeth" not in m.masks


def test_forward_dict_and_gradients(flame):
    driving = {"shape": _rand(1, 300, 0.3, 5).float(), "expr": _rand(1, 100, 0.3, 6).float(),
               "jaw_pose": torch.tensor([[0.2, 0.0, 0.0]]), "eyes_pose": torch.zeros(1, 6),
               "timestep": torch.tensor([3])}
    a = flame.forward_dict(driving)
    b = flame(shape=driving["shape"], expr=driving["expr"], jaw_pose=driving["jaw_pose"])
    torch.testing.assert_close(a.verts, b.verts)
    expr = torch.zeros(1, 100, dtype=DT, requires_grad=True)
    jaw = torch.zeros(1, 3, dtype=DT, requires_grad=True)
    flame(expr=expr, jaw_pose=jaw).verts.square().sum().backward()
    assert expr.grad.abs().sum() > 0 and jaw.grad.abs().sum() > 0
