"""GaussianAvatars-style teeth: geometry by hand, blendshapes/skinning, and behaviour in the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatarbench.bodymodels.flame_teeth import (
    FLAME_LIP_RING_LOWER,
    FLAME_LIP_RING_UPPER,
    ROWS,
    TEETH_NUM_FACES,
    TEETH_NUM_VERTS,
    add_teeth,
    teeth_faces,
    teeth_vertices,
)

torch.set_num_threads(1)


def _toy_lips(reverse: bool = False):
    """15 upper ring vertices at y=+0.01 and 15 lower at y=-0.01, on the plane z=0.1 -> g = 0.02;
    columns run along +x, or along -x (as FLAME's rings) with ``reverse``."""
    xs = np.linspace(-0.02, 0.02, 15)[::-1 if reverse else 1]
    up = np.stack([xs, np.full(15, 0.01), np.full(15, 0.1)], 1)
    lo = np.stack([xs, np.full(15, -0.01), np.full(15, 0.1)], 1)
    v = np.concatenate([up, lo, [[0.0, 0.0, 0.0]]])
    return v, np.arange(15), np.arange(15, 30), xs


def test_teeth_vertices_by_hand():
    v, ru, rl, xs = _toy_lips()
    t = teeth_vertices(v, ru, rl).reshape(8, 15, 3)
    g = 0.02
    expected = {  # (y, z) of each row; x follows the lip columns
        "upper_root": (0.1 * g + 2 * g, 0.1 - 1.5 * g),
        "lower_root": (-0.1 * g - 2 * g, 0.1 - 1.5 * g - 0.4 * g),
        "upper_edge": (0.1 * g, 0.1 - 1.5 * g),
        "lower_edge": (-0.1 * g, 0.1 - 1.5 * g - 0.4 * g),
        "upper_root_back": (0.1 * g + 2 * g, 0.1 - 2.5 * g),
        "upper_edge_back": (0.1 * g, 0.1 - 2.5 * g),
        "lower_root_back": (-0.1 * g - 2 * g, 0.1 - 2.9 * g),
        "lower_edge_back": (-0.1 * g, 0.1 - 2.9 * g),
    }
    for k, name in enumerate(ROWS):
        y, z = expected[name]
        np.testing.assert_allclose(t[k, :, 0], xs, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(t[k, :, 1], y, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(t[k, :, 2], z, atol=1e-12, err_msg=name)


# A few triangles of the official list (GaussianAvatars flame_model/flame.py, FlameHead.add_teeth),
# local teeth ids, with their index in the 168 teeth faces: each strip's first quad, the quads on
# both sides of the middle column (where the diagonal flips) and its last quad.
OFFICIAL_TEETH_TRIANGLES = {
    0: (0, 31, 30), 1: (0, 1, 31), 12: (6, 37, 36), 13: (6, 7, 37), 14: (7, 8, 37), 15: (8, 38, 37),
    27: (14, 44, 43),                                                   # upper front
    28: (60, 75, 76), 29: (60, 76, 61), 41: (66, 82, 67), 42: (67, 82, 68), 43: (68, 82, 83),
    55: (74, 88, 89),                                                   # upper back
    56: (75, 30, 76), 57: (76, 30, 31), 69: (82, 36, 37), 70: (82, 37, 38), 71: (82, 38, 83),
    83: (88, 44, 89),                                                   # upper biting surface
    84: (45, 46, 15), 85: (46, 16, 15), 97: (52, 22, 21), 98: (52, 23, 22), 99: (52, 53, 23),
    111: (58, 59, 29),                                                  # lower front
    112: (90, 106, 105), 113: (90, 91, 106), 125: (96, 97, 112), 126: (97, 98, 112),
    127: (98, 113, 112), 139: (104, 119, 118),                          # lower back
    140: (105, 106, 45), 141: (106, 46, 45), 153: (112, 52, 51), 154: (112, 53, 52),
    155: (112, 113, 53), 167: (118, 119, 59),                           # lower biting surface
}


def test_teeth_faces_are_the_official_triangles():
    f, is_upper = teeth_faces()
    assert f.shape == (TEETH_NUM_FACES, 3) and f.dtype == np.int64 and is_upper.sum() == 84
    assert bool(is_upper[:84].all()) and not bool(is_upper[84:].any())
    for i, tri in OFFICIAL_TEETH_TRIANGLES.items():
        assert tuple(f[i]) == tri, (i, tuple(f[i]), tri)
    # every quad of every strip is covered once: 6 strips x 14 quads x 2 triangles, no repeats
    assert len({tuple(sorted(t)) for t in f}) == TEETH_NUM_FACES
    assert np.isin(f[is_upper] // 15, [k for k, r in enumerate(ROWS) if r.startswith("upper")]).all()


def test_official_teeth_normals_face_outwards_on_the_flame_lip_order():
    """With the lip rings ordered as in FLAME (column 0 on the subject's left, +x: vertex 1713 is
    at x = +0.024 m and 2830 at -0.024 m in the template), the official triangles face out of the
    teeth: front plates +z, back plates -z, the upper biting surface down, the lower one up."""
    v, ru, rl, _ = _toy_lips(reverse=True)
    t = teeth_vertices(v, ru, rl)
    f, _ = teeth_faces()
    n = np.cross(t[f[:, 1]] - t[f[:, 0]], t[f[:, 2]] - t[f[:, 0]])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    want = [(0, 0, 1), (0, 0, -1), (0, -1, 0), (0, 0, 1), (0, 0, -1), (0, 1, 0)]  # per strip of 28
    for s, w in enumerate(want):
        np.testing.assert_allclose(n[28 * s:28 * (s + 1)], np.tile(w, (28, 1)), atol=1e-12, err_msg=str(s))
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    assert np.unique(edges, axis=0, return_counts=True)[1].max() <= 2


def test_stand_in_teeth_face_outwards_too(tmp_path):
    """The procedural stand-in lists its outer lip rings in FLAME's direction (+x to -x), so the
    official triangles face out of its teeth as well (the synthetic ground truth shades them)."""
    from avatarbench.bodymodels.flame import load_flame
    from avatarbench.bodymodels.flame_synthetic import write_synthetic_flame

    m = load_flame(write_synthetic_flame(tmp_path)).double()
    ring = m.v_template[torch.as_tensor(m.masks["lip_outside_ring_upper"])]
    assert bool((ring[1:, 0] < ring[:-1, 0]).all())  # +x to -x
    t = m.v_template[m.num_base_verts:].numpy()
    f, _ = teeth_faces()
    n = np.cross(t[f[:, 1]] - t[f[:, 0]], t[f[:, 2]] - t[f[:, 0]])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    for s, (axis, sign) in enumerate([(2, 1), (2, -1), (1, -1), (2, 1), (2, -1), (1, 1)]):
        assert (sign * n[28 * s:28 * (s + 1), axis] > 0.8).all(), s


def test_add_teeth_blendshapes_and_skinning():
    v, ru, rl, _ = _toy_lips()
    V = len(v)
    rng = np.random.default_rng(0)
    sd = rng.normal(size=(V, 3, 8))
    pd = rng.normal(size=(V, 3, 36))
    jr = rng.random(size=(5, V))
    w = rng.dirichlet(np.ones(5), size=V)
    faces = np.array([[0, 15, 1]])
    out = add_teeth(v, faces, sd, pd, jr, w, ru, rl, n_shape_dirs=5)
    assert out["v_template"].shape == (V + 120, 3) and out["faces"].shape == (1 + 168, 3)
    assert out["teeth_faces_mask"].sum() == 168 and not out["teeth_faces_mask"][0]
    col_mean = 0.5 * (sd[ru] + sd[rl])
    tsd = out["shapedirs"][V:].reshape(8, 15, 3, 8)
    for k in range(8):
        np.testing.assert_allclose(tsd[k, :, :, :5], col_mean[:, :, :5])
    assert (tsd[..., 5:] == 0).all()  # expression dims
    assert (out["posedirs"][V:] == 0).all() and (out["J_regressor"][:, V:] == 0).all()
    np.testing.assert_array_equal(out["J_regressor"][:, :V], jr)
    tw = out["weights"][V:]
    np.testing.assert_array_equal(tw[out["teeth_upper"] - V], np.eye(5)[[1] * 60])
    np.testing.assert_array_equal(tw[out["teeth_lower"] - V], np.eye(5)[[2] * 60])
    with pytest.raises(ValueError):
        add_teeth(v, faces, sd, pd, jr, w, ru[:14], rl, n_shape_dirs=5)


def test_flame_ring_constants():
    assert FLAME_LIP_RING_UPPER.shape == (15,) and FLAME_LIP_RING_LOWER.shape == (15,)
    assert len(set(FLAME_LIP_RING_UPPER) | set(FLAME_LIP_RING_LOWER)) == 30
    assert max(FLAME_LIP_RING_UPPER.max(), FLAME_LIP_RING_LOWER.max()) < 5023


def test_teeth_in_model_follow_neck_and_jaw(tmp_path):
    from avatarbench.bodymodels.flame import load_flame
    from avatarbench.bodymodels.flame_synthetic import write_synthetic_flame

    path = write_synthetic_flame(tmp_path)
    m = load_flame(path).double()
    m0 = load_flame(path, teeth=False)
    Vb = m.num_base_verts
    assert m.num_verts == m0.num_verts + 120 and m.num_faces == m0.num_faces + 168
    assert int(m.teeth_faces_mask.sum()) == 168 and bool(m.teeth_faces_mask[-168:].all())
    np.testing.assert_array_equal(np.sort(m.masks["teeth"]), np.arange(Vb, Vb + 120))
    up, lo = torch.as_tensor(m.masks["teeth_upper"]), torch.as_tensor(m.masks["teeth_lower"])

    jaw = torch.tensor([[0.3, 0.0, 0.0]], dtype=torch.float64)
    out = m(jaw_pose=jaw)
    rest = m.v_template
    torch.testing.assert_close(out.verts[0, up], rest[up])  # upper teeth stay
    # lower teeth: rigid rotation about the jaw joint
    Rj = out.A[0, 2, :3, :3]
    expected = (rest[lo] - out.joints[0, 2]) @ Rj.T + out.joints[0, 2]
    torch.testing.assert_close(out.verts[0, lo], expected)
    assert (out.verts[0, lo, 1] < rest[lo, 1] - 1e-3).all()

    neck = torch.tensor([[0.0, 0.4, 0.0]], dtype=torch.float64)
    o2 = m(neck_pose=neck)
    torch.testing.assert_close(o2.verts[0, up], (rest[up] - o2.joints[0, 1]) @ o2.A[0, 1, :3, :3].T + o2.joints[0, 1])
