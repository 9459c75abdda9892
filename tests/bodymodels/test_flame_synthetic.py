"""The procedural FLAME stand-in: file format, determinism, geometry and controls."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
import roma
import scipy.sparse as sp
import torch

from avatarbench.bodymodels.flame import load_flame
from avatarbench.bodymodels.flame_synthetic import MASKS_FILENAME, MODEL_FILENAME, write_synthetic_flame

torch.set_num_threads(1)
DT = torch.float64


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth")
    t0 = time.perf_counter()
    path = write_synthetic_flame(folder, seed=0)
    return path, time.perf_counter() - t0


@pytest.fixture(scope="module")
def flame(written):
    return load_flame(written[0], teeth=False).double()


def _expr(i, a):
    e = torch.zeros(1, 100, dtype=DT)
    e[0, i] = a
    return e


def _shape(i, a):
    s = torch.zeros(1, 300, dtype=DT)
    s[0, i] = a
    return s


def _ids(flame, name):
    return torch.as_tensor(flame.masks[name])


def test_file_format_matches_flame(written):
    path, seconds = written
    assert path.name == MODEL_FILENAME and (path.parent / MASKS_FILENAME).is_file()
    with open(path, "rb") as f:
        d = pickle.load(f)  # plain pickle: no chumpy needed
    V = d["v_template"].shape[0]
    assert 2000 <= V <= 4500
    assert d["v_template"].dtype == np.float64 and d["f"].dtype == np.uint32 and d["f"].shape[1] == 3
    assert d["shapedirs"].shape == (V, 3, 400) and d["posedirs"].shape == (V, 3, 36)
    assert sp.issparse(d["J_regressor"]) and d["J_regressor"].shape == (5, V)
    assert d["weights"].shape == (V, 5) and np.allclose(d["weights"].sum(1), 1.0)
    np.testing.assert_array_equal(d["kintree_table"], [[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]])
    np.testing.assert_allclose(d["J"], d["J_regressor"] @ d["v_template"], atol=1e-12)
    assert d["avatarbench_uv"].shape == (V, 2) and d["avatarbench_uv"].min() >= 0 and d["avatarbench_uv"].max() <= 1
    with open(path.parent / MASKS_FILENAME, "rb") as f:
        masks = pickle.load(f)
    for key in ("lip_outside_ring_upper", "lip_outside_ring_lower", "left_eyeball", "right_eyeball", "face",
                "scalp", "lips", "nose", "forehead", "neck", "boundary", "eye_region"):
        assert len(masks[key]) > 0 and masks[key].max() < V, key
    assert len(masks["lip_outside_ring_upper"]) == len(masks["lip_outside_ring_lower"]) == 15


def test_deterministic_bytes(tmp_path, written):
    a = write_synthetic_flame(tmp_path / "a", seed=0)
    c = write_synthetic_flame(tmp_path / "c", seed=1)
    assert a.read_bytes() == written[0].read_bytes()
    assert (a.parent / MASKS_FILENAME).read_bytes() == (written[0].parent / MASKS_FILENAME).read_bytes()
    assert c.read_bytes() != a.read_bytes()


def test_mesh_is_clean(flame):
    f = flame.faces.numpy()
    V = flame.num_verts
    assert np.bincount(f.ravel(), minlength=V).min() > 0  # no unused vertices
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert counts.max() == 2  # manifold edges
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed)  # consistent orientation
    v = flame.v_template.numpy()
    for name in ("left_eyeball", "right_eyeball"):  # closed spheres, outward
        ids = flame.masks[name]
        ef = f[np.isin(f, ids).all(1)]
        e = np.sort(np.concatenate([ef[:, [0, 1]], ef[:, [1, 2]], ef[:, [2, 0]]]), axis=1)
        assert (np.unique(e, axis=0, return_counts=True)[1] == 2).all()
        c = v[ids].mean(0)
        vol = np.einsum("ij,ij->i", v[ef[:, 0]] - c, np.cross(v[ef[:, 1]] - c, v[ef[:, 2]] - c)).sum() / 6
        assert vol > 0
    # head surface normals point away from the head's axis
    head = ~np.isin(f, np.concatenate([flame.masks["left_eyeball"], flame.masks["right_eyeball"]])).any(1)
    t = v[f[head]]
    n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    out = t.mean(1) - np.array([0.0, 0.0, -0.005])
    out[:, 1] = np.where(t.mean(1)[:, 1] < -0.09, 0.0, out[:, 1])  # the neck is a tube
    assert (np.einsum("ij,ij->i", n, out) > 0).mean() > 0.97


def test_head_proportions_and_facing(flame):
    v = flame.v_template.numpy()
    face = flame.masks["face"]
    lo, hi = v.min(0), v.max(0)
    assert 0.13 < hi[0] - lo[0] < 0.2          # width
    assert 0.25 < hi[1] - lo[1] < 0.35         # crown to neck bottom
    head = v[v[:, 1] > -0.09]
    assert 0.17 < head[:, 1].max() - head[:, 1].min() < 0.23
    assert np.abs(head.min(0) + head.max(0)).max() / 2 < 0.02   # centred near the origin
    tip = v[np.argmax(v[:, 2])]                # nose tip: frontmost, on the midline, face towards +z
    assert tip[2] > 0.1 and abs(tip[0]) < 1e-6 and -0.03 < tip[1] < 0.01
    assert np.isin(np.argmax(v[:, 2]), flame.masks["nose"])
    np.testing.assert_allclose(np.sort(v[:, 0]), np.sort(-v[:, 0]), atol=1e-9)  # mirror symmetric
    assert v[face, 2].mean() > 0.05
    J = flame().joints[0].numpy()
    assert J[3, 0] > 0.02 and J[4, 0] < -0.02  # left eye at +x
    assert J[2, 1] > v[flame.masks["lip_inside_ring_upper"], 1].mean()  # jaw hinge above the mouth


def test_jaw_pose_opens_the_mouth(flame):
    up, lo = _ids(flame, "lip_inside_ring_upper"), _ids(flame, "lip_inside_ring_lower")
    rest = flame.v_template
    torch.testing.assert_close(rest[up], rest[lo])  # closed at rest: duplicated slit vertices
    v = flame(jaw_pose=torch.tensor([[0.3, 0.0, 0.0]], dtype=DT)).verts[0]
    torch.testing.assert_close(v[up], rest[up])
    gap = (v[up, 1] - v[lo, 1])[1:-1]  # without the shared mouth corners
    assert gap.min() > 0.005 and gap.max() < 0.05
    chin = v[_ids(flame, "lip_outside_ring_lower")]
    assert (chin[:, 1] < rest[_ids(flame, "lip_outside_ring_lower"), 1] - 0.005).all()
    forehead = _ids(flame, "forehead")
    torch.testing.assert_close(v[forehead], rest[forehead])


def test_eyes_pose_rotates_eyeballs_about_their_centres(flame):
    rv = torch.tensor([[0.0, 0.4, 0.0, -0.2, 0.1, 0.0]], dtype=DT)
    out = flame(eyes_pose=rv)
    rest = flame.v_template
    for k, name, r in ((3, "left_eyeball", rv[0, :3]), (4, "right_eyeball", rv[0, 3:])):
        ids = _ids(flame, name)
        c = out.joints[0, k]
        torch.testing.assert_close(c, rest[ids].mean(0))
        R = roma.rotvec_to_rotmat(r)
        torch.testing.assert_close(out.verts[0, ids], (rest[ids] - c) @ R.T + c)
        front = ids[torch.argmax(rest[ids, 2])]  # the iris pole looks along +z at rest
        d = torch.nn.functional.normalize(out.verts[0, front] - c, dim=0)
        torch.testing.assert_close(d, R[:, 2])
    others = torch.ones(flame.num_verts, dtype=torch.bool)
    others[_ids(flame, "left_eyeball")] = False
    others[_ids(flame, "right_eyeball")] = False
    torch.testing.assert_close(out.verts[0, others], rest[others])


def _disp(flame, **kw):
    return (flame(**kw).verts[0] - flame.v_template).norm(dim=-1)


def _front_hit_is_eyeball(v, faces, eye_ids, x, y):
    """Whether the frontmost surface along the -z ray through (x, y) belongs to the eyeball."""
    t = v[faces]
    a, b, c = t[:, 0], t[:, 1], t[:, 2]
    den = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    ok = np.abs(den) > 1e-14
    den = np.where(ok, den, 1.0)
    w0 = ((b[:, 0] - x) * (c[:, 1] - y) - (b[:, 1] - y) * (c[:, 0] - x)) / den
    w1 = ((c[:, 0] - x) * (a[:, 1] - y) - (c[:, 1] - y) * (a[:, 0] - x)) / den
    w2 = 1 - w0 - w1
    inside = ok & (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    z = np.where(inside, w0 * a[:, 2] + w1 * b[:, 2] + w2 * c[:, 2], -np.inf)
    return bool(np.isin(faces[np.argmax(z), 0], eye_ids))


def test_expression_controls(flame):
    rest = flame.v_template
    # 0: jaw-open-like: lower lip down, upper lip still
    v = flame(expr=_expr(0, 2.0)).verts[0]
    lo, up = _ids(flame, "lip_inside_ring_lower")[1:-1], _ids(flame, "lip_inside_ring_upper")[1:-1]
    assert (v[lo, 1] < rest[lo, 1] - 0.01).all() and (v[up, 1] >= rest[up, 1] - 1e-9).all()
    # 1: smile: mouth corners up and out
    v = flame(expr=_expr(1, 1.0)).verts[0]
    corners = _ids(flame, "lip_inside_ring_upper")[[0, -1]]
    dv = v[corners] - rest[corners]
    assert (dv[:, 1] > 0.003).all() and (dv[:, 0] * rest[corners, 0] > 0).all()
    # 2: brow raise: forehead up, mouth untouched
    d = _disp(flame, expr=_expr(2, 1.0))
    assert d[_ids(flame, "forehead")].max() > 0.004 and d[_ids(flame, "lips")].max() < 1e-9
    # 3: blink: at 1 the upper lids cover the eyeball centre, at 0 the eyeball is visible
    f = flame.faces.numpy()
    J = flame().joints[0].numpy()
    for a, visible in ((0.0, True), (1.0, False)):
        vv = flame(expr=_expr(3, a)).verts[0].numpy()
        for k, name in ((3, "left_eyeball"), (4, "right_eyeball")):
            assert _front_hit_is_eyeball(vv, f, flame.masks[name], J[k, 0], J[k, 1]) == visible, (a, name)
    # all four are localised: the back of the head and the neck bottom never move
    far = torch.as_tensor(np.where((rest[:, 2] < -0.06).numpy() | (rest[:, 1] < -0.15).numpy())[0])
    for i in range(4):
        d = _disp(flame, expr=_expr(i, 1.0))
        assert d.max() > 0.003 and d[far].max() < 1e-6, i
    # the rest are small smooth fields; no expression moves the eyeballs
    eyes = torch.cat([_ids(flame, "left_eyeball"), _ids(flame, "right_eyeball")])
    for i in (4, 50, 99):
        d = _disp(flame, expr=_expr(i, 1.0))
        assert 1e-5 < d.max() < 0.003 and d[eyes].max() < 1e-12


def test_shape_controls(flame):
    rest = flame.v_template
    width = lambda v: float(v[:, 0].max() - v[:, 0].min())  # noqa: E731
    v = flame(shape=_shape(0, 1.0)).verts[0]
    assert width(v) > 1.05 * width(rest)
    v = flame(shape=_shape(1, 1.0)).verts[0]
    chin = _ids(flame, "lip_outside_ring_lower")
    assert (v[chin, 1] < rest[chin, 1] - 0.003).all()
    v = flame(shape=_shape(2, 1.0)).verts[0]
    tip = torch.argmax(rest[:, 2])
    assert v[tip, 2] > rest[tip, 2] + 0.004
    d = _disp(flame, shape=_shape(2, 1.0))
    assert d[_ids(flame, "scalp")].max() < 1e-9  # localised
    v = flame(shape=_shape(3, 1.0)).verts[0]
    jaw = rest[:, 1] < -0.06
    assert width(v[jaw & (rest[:, 1] > -0.09)]) > 1.05 * width(rest[jaw & (rest[:, 1] > -0.09)])
    forehead = _ids(flame, "forehead")
    torch.testing.assert_close(v[forehead], rest[forehead])
    # eyeballs move rigidly with shape changes (sizes kept)
    for i in (0, 1, 10):
        v = flame(shape=_shape(i, 2.0)).verts[0]
        ids = _ids(flame, "left_eyeball")
        torch.testing.assert_close(v[ids] - v[ids].mean(0), rest[ids] - rest[ids].mean(0))
    for i in (4, 100, 299):
        d = _disp(flame, shape=_shape(i, 1.0))
        assert 1e-5 < d.max() < 0.004


def test_skinning_regions(flame):
    W = flame.lbs_weights
    torch.testing.assert_close(W.sum(1), torch.ones(flame.num_verts, dtype=DT))
    assert (W[_ids(flame, "left_eyeball"), 3] == 1).all() and (W[_ids(flame, "right_eyeball"), 4] == 1).all()
    assert (W[_ids(flame, "lip_inside_ring_lower")[1:-1], 2] == 1).all()
    assert (W[_ids(flame, "lip_inside_ring_upper"), 2] == 0).all()
    assert (W[_ids(flame, "boundary"), 0] == 1).all()  # neck ring on the root joint
    assert (W[_ids(flame, "forehead"), 1] == 1).all()
