"""Teeth added to FLAME the way GaussianAvatars/VHAP do ("teethV3"): 120 vertices, 168 faces.

The teeth are two thin curved plates behind the lips, built from the outer lip rings
(``lip_outside_ring_upper`` / ``lip_outside_ring_lower``, 15 corresponding vertices each, in the
template). With ``g`` the mean distance between corresponding upper and lower ring vertices:

- middle row = midpoints of the ring pairs, all at their mean height, pushed back by ``1.5 g``;
- upper edge = middle + ``0.1 g`` up, upper root = upper edge + ``2 g`` up;
- lower edge = middle - ``0.1 g`` (down) and ``0.4 g`` further back, lower root = ``2 g`` below it;
- back rows = the front rows moved back by the thickness ``1 g``.

Vertex order (8 rows of 15, appended after the FLAME vertices; the same order as VHAP's tracked
``static_offset`` of 5143 vertices): upper root, lower root, upper edge, lower edge, upper root
back, upper edge back, lower root back, lower edge back.

Faces per jaw (84 = 3 strips x 14 quads x 2): the front plate (root-edge), the back plate
(root back-edge back) and the biting surface (edge back-edge), in the official triangle list's
order, diagonals and vertex order (see :data:`TEETH_STRIPS`). With FLAME's lip rings (column 0
on the subject's left, +x) every triangle faces out of the teeth: front plates +z, back plates
-z, the upper biting surface down, the lower one up (the procedural stand-in orders its rings
the same way; on rings running along +x all of them would face inwards).

Blendshapes: the shape dims of every teeth vertex are the mean of its column's upper and lower
lip-ring shape dims; expression dims, pose correctives and joint-regressor columns are zero.
Skinning: weight 1 on joint 1 (neck) for the upper teeth, on joint 2 (jaw) for the lower teeth.

Real FLAME's ``FLAME_masks.pkl`` has no lip-ring keys; for the FLAME topology (5023 vertices)
the rings are the fixed vertex ids below (the ones VHAP and GaussianAvatars use).
"""

from __future__ import annotations

import numpy as np

TEETH_NUM_VERTS = 120
TEETH_NUM_FACES = 168
TEETH_COLS = 15

#: outer lip ring vertex ids of the FLAME 2020/2023 topology (5023 vertices), in corresponding order
FLAME_LIP_RING_UPPER = np.array([1713, 1715, 1716, 1735, 1696, 1694, 1657, 3543,
                                 2774, 2811, 2813, 2850, 2833, 2832, 2830])
FLAME_LIP_RING_LOWER = np.array([1576, 1577, 1773, 1774, 1795, 1802, 1865, 3503,
                                 2948, 2905, 2898, 2881, 2880, 2713, 2712])
FLAME_NUM_VERTS = 5023

# row index of each named row in the 8 x 15 block
ROWS = ("upper_root", "lower_root", "upper_edge", "lower_edge",
        "upper_root_back", "upper_edge_back", "lower_root_back", "lower_edge_back")
_R = {name: k for k, name in enumerate(ROWS)}


def teeth_vertices(v_template: np.ndarray, ring_upper: np.ndarray, ring_lower: np.ndarray) -> np.ndarray:
    """Teeth vertex positions.

    Args:
        v_template: (V, 3) template (metres, y up, face towards +z).
        ring_upper, ring_lower: (15,) corresponding vertex ids of the outer lip rings.

    Returns:
        (120, 3) positions, rows in the order of :data:`ROWS`.
    """
    up = np.asarray(v_template, np.float64)[np.asarray(ring_upper)]
    lo = np.asarray(v_template, np.float64)[np.asarray(ring_lower)]
    g = float(np.linalg.norm(up - lo, axis=1).mean())
    ey, ez = np.array([0.0, g, 0.0]), np.array([0.0, 0.0, g])
    middle = 0.5 * (up + lo)
    middle[:, 1] = middle[:, 1].mean()
    middle = middle - 1.5 * ez
    rows = {}
    rows["upper_edge"] = middle + 0.1 * ey
    rows["upper_root"] = rows["upper_edge"] + 2.0 * ey
    rows["lower_edge"] = middle - 0.1 * ey - 0.4 * ez
    rows["lower_root"] = rows["lower_edge"] - 2.0 * ey
    for name in ("upper_root", "upper_edge", "lower_root", "lower_edge"):
        rows[f"{name}_back"] = rows[name] - 1.0 * ez
    return np.concatenate([rows[name] for name in ROWS], axis=0)


#: The six strips of quads, in the official face order (upper jaw: front, back, biting surface;
#: lower jaw: front, back, biting surface). Each entry: (row A, row B, winding, first-half diagonal).
#: Quad ``c`` (columns c, c+1) has corners A_c, A_c+1, B_c, B_c+1. ``winding`` is the orientation in
#: the (column, row) grid with A at row 0: ``+1`` counter-clockwise, ``-1`` clockwise. The diagonal
#: of the quads left of the middle column (c < 7) is ``"A0B1"`` (A_c - B_c+1) or ``"A1B0"``
#: (A_c+1 - B_c); the quads right of it (c >= 7) take the other one, so every strip is
#: mirror-symmetric about the middle column.
TEETH_STRIPS = (
    ("upper_root", "upper_edge", +1, "A0B1"),
    ("upper_root_back", "upper_edge_back", -1, "A0B1"),
    ("upper_edge_back", "upper_edge", -1, "A1B0"),
    ("lower_edge", "lower_root", +1, "A1B0"),
    ("lower_root_back", "lower_edge_back", +1, "A0B1"),
    ("lower_edge_back", "lower_edge", +1, "A1B0"),
)
_MIDDLE = TEETH_COLS // 2  # 7


def _quad_triangles(a0: int, a1: int, b0: int, b1: int, winding: int, diagonal: str) -> list[tuple[int, int, int]]:
    """The two triangles of one quad, in the official order and vertex order.

    The triangle holding the left edge (A_c, B_c) comes first. Each triangle starts at its A-row
    vertex of lowest column and follows ``winding`` in the (column, row) grid.
    """
    grid = {a0: (0, 0), a1: (1, 0), b0: (0, 1), b1: (1, 1)}
    if diagonal == "A0B1":
        tris = [(a0, b1, b0), (a0, a1, b1)]
    else:
        tris = [(a0, a1, b0), (a1, b1, b0)]
    out = []
    for tri in tris:
        (x0, y0), (x1, y1), (x2, y2) = (grid[v] for v in tri)
        ccw = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0) > 0
        if ccw != (winding > 0):
            tri = (tri[0], tri[2], tri[1])
        first = min((v for v in tri if grid[v][1] == 0), key=lambda v: grid[v][0])
        i = tri.index(first)
        out.append(tri[i:] + tri[:i])
    return out


def teeth_faces() -> tuple[np.ndarray, np.ndarray]:
    """The official teeth triangles (local ids 0..119), in the official order.

    168 = 6 strips x 14 quads x 2, built by the rule of :data:`TEETH_STRIPS`; identical, triangle
    for triangle and vertex for vertex, to the list hard-coded in GaussianAvatars' /
    VHAP's ``FlameHead.add_teeth`` (so ``binding_0`` ids and triangle frames are interchangeable
    with official checkpoints).

    Returns:
        faces: (168, 3) int64, upper jaw first (84), then lower (84).
        is_upper: (168,) bool.
    """
    out = []
    for row_a, row_b, winding, diag in TEETH_STRIPS:
        a, b = _R[row_a] * TEETH_COLS, _R[row_b] * TEETH_COLS
        other = "A1B0" if diag == "A0B1" else "A0B1"
        for c in range(TEETH_COLS - 1):
            out += _quad_triangles(a + c, a + c + 1, b + c, b + c + 1, winding, diag if c < _MIDDLE else other)
    faces = np.asarray(out, dtype=np.int64)
    is_upper = np.zeros(len(faces), bool)
    is_upper[: len(faces) // 2] = True
    return faces, is_upper


def teeth_vertex_groups(num_base_verts: int) -> tuple[np.ndarray, np.ndarray]:
    """Global ids (60,) of the upper and lower teeth vertices for a model with ``num_base_verts``."""
    upper_rows = [_R[r] for r in ROWS if r.startswith("upper")]
    lower_rows = [_R[r] for r in ROWS if r.startswith("lower")]
    cols = np.arange(TEETH_COLS)
    upper = np.concatenate([num_base_verts + r * TEETH_COLS + cols for r in upper_rows])
    lower = np.concatenate([num_base_verts + r * TEETH_COLS + cols for r in lower_rows])
    return upper.astype(np.int64), lower.astype(np.int64)


def add_teeth(v_template: np.ndarray, faces: np.ndarray, shapedirs: np.ndarray, posedirs: np.ndarray,
              J_regressor: np.ndarray, weights: np.ndarray, ring_upper: np.ndarray, ring_lower: np.ndarray,
              n_shape_dirs: int = 300) -> dict[str, np.ndarray]:
    """Append the teeth to a FLAME model's arrays.

    Args:
        v_template: (V, 3); faces: (F, 3); shapedirs: (V, 3, S) (shape dims first, then expression);
        posedirs: (V, 3, P) (raw model-file layout); J_regressor: (J, V) dense; weights: (V, J).
        ring_upper, ring_lower: (15,) outer lip ring vertex ids, in corresponding order.
        n_shape_dirs: how many leading ``shapedirs`` dims are identity shape (copied to the teeth).

    Returns:
        dict with ``v_template (V+120,3)``, ``faces (F+168,3)``, ``shapedirs (V+120,3,S)``,
        ``posedirs (V+120,3,P)``, ``J_regressor (J,V+120)``, ``weights (V+120,J)``,
        ``teeth_upper``/``teeth_lower`` (60,) vertex ids and ``teeth_faces_mask (F+168,)`` bool.
    """
    ring_upper = np.asarray(ring_upper, np.int64)
    ring_lower = np.asarray(ring_lower, np.int64)
    if ring_upper.shape != (TEETH_COLS,) or ring_lower.shape != (TEETH_COLS,):
        raise ValueError(f"lip rings must have {TEETH_COLS} vertices each, "
                         f"got {ring_upper.shape} and {ring_lower.shape}")
    V = v_template.shape[0]
    tv = teeth_vertices(v_template, ring_upper, ring_lower)
    tf, _ = teeth_faces()
    upper, lower = teeth_vertex_groups(V)

    sd_teeth = np.zeros((TEETH_NUM_VERTS,) + shapedirs.shape[1:], dtype=shapedirs.dtype)
    col_mean = 0.5 * (shapedirs[ring_upper, :, :n_shape_dirs] + shapedirs[ring_lower, :, :n_shape_dirs])
    sd_teeth[:, :, :n_shape_dirs] = np.tile(col_mean, (len(ROWS), 1, 1))  # row-major: 8 rows of 15 columns

    w_teeth = np.zeros((TEETH_NUM_VERTS, weights.shape[1]), dtype=weights.dtype)
    w_teeth[upper - V, 1] = 1.0
    w_teeth[lower - V, 2] = 1.0

    F = faces.shape[0]
    mask = np.zeros(F + TEETH_NUM_FACES, bool)
    mask[F:] = True
    return {
        "v_template": np.concatenate([v_template, tv.astype(v_template.dtype)]),
        "faces": np.concatenate([faces.astype(np.int64), tf + V]),
        "shapedirs": np.concatenate([shapedirs, sd_teeth]),
        "posedirs": np.concatenate([posedirs, np.zeros((TEETH_NUM_VERTS,) + posedirs.shape[1:], posedirs.dtype)]),
        "J_regressor": np.concatenate([J_regressor, np.zeros((J_regressor.shape[0], TEETH_NUM_VERTS),
                                                             J_regressor.dtype)], axis=1),
        "weights": np.concatenate([weights, w_teeth]),
        "teeth_upper": upper,
        "teeth_lower": lower,
        "teeth_faces_mask": mask,
    }
