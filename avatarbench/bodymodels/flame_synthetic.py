"""A procedural head model in the FLAME pickle format (stand-in for the licence-gated FLAME).

:func:`write_synthetic_flame` writes ``flame_synthetic.pkl`` (same keys, dtypes and layout as
FLAME 2020/2023: ``v_template``, ``f``, ``shapedirs (V,3,400)`` = 300 shape + 100 expression,
``posedirs (V,3,36)``, ``J_regressor (5,V)`` scipy sparse, ``weights (V,5)``,
``kintree_table (2,5)``, ``J (5,3)``, ``bs_style``, ``bs_type``) and ``FLAME_masks.pkl`` (region ->
vertex ids) into a folder; the regular loader :func:`avatarbench.bodymodels.flame.load_flame`
reads it back. Arrays are plain NumPy (not chumpy objects); pickle protocol 4 (the official files
are Python-2 protocol-2 pickles, which the loader reads too).

The head (FLAME conventions: metres, y up, face towards +z, +x = the subject's left):

- a latitude/longitude surface, denser at the front, from a crown pole to an open neck ring;
  an ellipsoid cranium with nose, brows, cheeks, lips, chin and ears; a neck tube below;
- a mouth slit: the vertices along the mouth line are duplicated, the lower copies and the chin
  are skinned to the jaw joint, so ``jaw_pose`` opens the mouth;
- two eye openings (almond holes) whose rims hug two separate closed eyeball spheres skinned to
  the eye joints (joint 3 = left eye at +x, joint 4 = right eye); the iris direction is each
  eyeball's +z pole;
- shape dims 0-3: head width, face length, nose size, jaw width; 4-299: small smooth fields;
- expression dims 0-3: jaw open, smile, brow raise, blink; 4-99: small smooth fields;
- small pose correctives for neck and jaw rotations, none for the eyes.

Extra key ``avatarbench_uv (V,2)``: canonical per-vertex coordinates (head surface: u = azimuth,
0.5 = front centre, v = 0 at the crown to 1 at the neck ring; eyeballs: u = azimuth about the
gaze axis / 2pi, v = angle from the gaze direction / pi). Extra key ``avatarbench_synthetic``
(``{"version", "seed"}``) marks the file. Real FLAME files have neither key.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 3  # 3: outer lip rings in FLAME's direction (+x to -x)
MODEL_FILENAME = "flame_synthetic.pkl"
MASKS_FILENAME = "FLAME_masks.pkl"

N_SHAPE_TOTAL = 300
N_EXPR_TOTAL = 100

# ---- layout constants (metres) --------------------------------------------------------
_N_COLS = 56                      # azimuth columns (even: mirror symmetric about x = 0)
_AX, _AY, _AZ = 0.076, 0.115, 0.098   # ellipsoid semi-axes (half width, half height, half depth)
_CZ = -0.005                      # ellipsoid centre z
_Y_EYE = 0.022                    # eye centre height
_X_EYE = 0.031                    # eye centre |x| (interpupillary ~6.2 cm)
_R_EYE = 0.0115                   # eyeball radius
_EYE_HW, _EYE_HH = 0.0105, 0.0048  # eye opening half width / half height
_Y_MOUTH = -0.050                 # mouth line target height
_MOUTH_HALF_COLS = 7              # mouth spans 2*7+1 = 15 columns (the lip rings' length)
_Y_NECK_BOTTOM = -0.19
_NECK_ROWS = 8
_EYE_RINGS, _EYE_SEGS = 9, 16
_LID_GAP = 0.0012                 # eyelid rim distance from the eyeball surface
_LID_BULGE = 0.0045               # closed eyelid distance from the eyeball surface


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * (x / sigma) ** 2)


def _column_angles(n: int) -> np.ndarray:
    """Azimuths (n,), phi = 0 at the front (+z), -pi at the back; denser at the front."""
    s = -1.0 + 2.0 * np.arange(n) / n
    return np.pi * (0.35 * s + 0.65 * s ** 3)


def _row_angles() -> np.ndarray:
    """Polar angles (radians) of the ellipsoid rows, from near the crown down to the neck ring."""
    deg = np.concatenate([np.linspace(6.0, 50.0, 9), np.arange(52.0, 130.5, 2.0), [133.0, 136.5, 140.0]])
    return np.deg2rad(deg)


def _head_surface(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Ellipsoid with facial features. theta, phi: same shape (...). Returns (..., 3)."""
    st, ct, sp, cp = np.sin(theta), np.cos(theta), np.sin(phi), np.cos(phi)
    x = _AX * st * sp
    y = _AY * ct
    z = _CZ + _AZ * st * cp
    aphi = np.abs(phi)
    front = np.clip(cp, 0.0, 1.0)
    # lower face narrower than the cranium
    x = x * (1.0 - 0.13 * _smoothstep(-0.01, -0.08, y))
    # nose: ridge from the bridge to the tip, wider at the base
    nose_prof = np.interp(-y, [-0.045, -0.02, 0.012, 0.024, 0.032], [0.0, 0.3, 1.0, 0.35, 0.0])
    nose_sig = np.interp(-y, [-0.03, 0.012, 0.03], [0.085, 0.12, 0.16])
    dz = 0.021 * nose_prof * np.exp(-0.5 * (phi / nose_sig) ** 2)
    # brow ridge, cheeks, lips, chin
    dz += 0.006 * _gauss(y - 0.041, 0.007) * _gauss(phi, 0.75)
    dz += 0.006 * _gauss(y + 0.012, 0.014) * _gauss(aphi - 0.62, 0.22)
    dz += 0.005 * _gauss(y - _Y_MOUTH, 0.009) * _gauss(phi, 0.22)
    dz += 0.016 * _gauss(y + 0.088, 0.011) * _gauss(phi, 0.32)
    z = z + dz * front
    # ears: outward bumps on the sides
    ear = 0.009 * _gauss(y - 0.004, 0.014) * _gauss(aphi - 1.66, 0.11)
    x = x + ear * np.sign(sp)
    return np.stack([x, y, z], axis=-1)


def _surface_z_at(x: float, y: float) -> float:
    """z of the (featured) surface at the front point with the given x, y (by bisection on phi)."""
    theta = np.arccos(np.clip(y / _AY, -1, 1))
    lo, hi = -np.pi / 2, np.pi / 2
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _head_surface(np.array(theta), np.array(mid))[0] < x:
            lo = mid
        else:
            hi = mid
    return float(_head_surface(np.array(theta), np.array(0.5 * (lo + hi)))[2])


def _uv_sphere(center: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed UV sphere with poles on the z axis. Returns verts (n,3), faces (m,3) local ids, uv (n,2)."""
    alphas = np.pi * np.arange(1, _EYE_RINGS + 1) / (_EYE_RINGS + 1)  # symmetric about the equator
    betas = 2 * np.pi * np.arange(_EYE_SEGS) / _EYE_SEGS
    A, Bt = np.meshgrid(alphas, betas, indexing="ij")
    ring = np.stack([np.sin(A) * np.cos(Bt), np.sin(A) * np.sin(Bt), np.cos(A)], -1).reshape(-1, 3)
    unit = np.concatenate([[[0.0, 0.0, 1.0]], ring, [[0.0, 0.0, -1.0]]])
    verts = center + radius * unit
    uv = np.concatenate([[[0.0, 0.0]], np.stack([Bt / (2 * np.pi), A / np.pi], -1).reshape(-1, 2), [[0.0, 1.0]]])
    faces = []
    n_ring = _EYE_SEGS

    def rid(k, s):
        return 1 + k * n_ring + (s % n_ring)

    last = 1 + _EYE_RINGS * n_ring
    for s in range(n_ring):
        faces.append([0, rid(0, s), rid(0, s + 1)])
        faces.append([last, rid(_EYE_RINGS - 1, s + 1), rid(_EYE_RINGS - 1, s)])
        for k in range(_EYE_RINGS - 1):
            a, b, c, d = rid(k, s), rid(k + 1, s), rid(k, s + 1), rid(k + 1, s + 1)
            faces += [[a, b, c], [b, d, c]]
    faces = np.asarray(faces, dtype=np.int64)
    # orient outwards (positive signed volume)
    v0, v1, v2 = (verts[faces[:, i]] - center for i in range(3))
    if np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum() < 0:
        faces = faces[:, ::-1].copy()
    return verts, faces, uv


def _rot_x(angle: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations about +x."""
    c, s = np.cos(angle), np.sin(angle)
    o, z = np.ones_like(angle), np.zeros_like(angle)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _rbf_fields(rng: np.random.Generator, n: int, verts: np.ndarray, centres_from: np.ndarray,
                radius: tuple[float, float], amp: float, decay: float) -> np.ndarray:
    """n small smooth displacement fields (V, 3, n): one Gaussian bump each, random direction."""
    out = np.zeros((verts.shape[0], 3, n))
    for k in range(n):
        c = verts[centres_from[rng.integers(len(centres_from))]]
        r = rng.uniform(*radius)
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        w = np.exp(-0.5 * np.sum((verts - c) ** 2, axis=1) / r ** 2)
        out[:, :, k] = (amp * np.exp(-k / decay)) * w[:, None] * d[None, :]
    return out


def build_synthetic_flame(seed: int = 0) -> tuple[dict, dict]:
    """Build the stand-in model in memory.

    Returns:
        model: dict in the FLAME pickle layout (NumPy arrays; ``J_regressor`` scipy csc).
        masks: region name -> vertex ids (int64 arrays).
    """
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    N = _N_COLS
    phis = _column_angles(N)
    thetas = _row_angles()
    R1 = len(thetas)
    T, Ph = np.meshgrid(thetas, phis, indexing="ij")
    head = _head_surface(T, Ph)  # (R1, N, 3)

    # ---- neck rows: blend the last ring into a tube
    ring_end = head[-1]
    y_end = ring_end[0, 1]
    neck = []
    for k in range(1, _NECK_ROWS + 1):
        t = k / _NECK_ROWS
        y = y_end + (_Y_NECK_BOTTOM - y_end) * t
        s = _smoothstep(0.0, 0.55, np.array(t))
        r = 0.055 + 0.008 * t ** 2
        circ = np.stack([r * np.sin(phis), np.full(N, y), -0.014 + r * np.cos(phis)], -1)
        ring = (1 - s) * ring_end + s * circ
        ring[:, 1] = y
        neck.append(ring)
    grid = np.concatenate([head, np.stack(neck)], axis=0)  # (R, N, 3)
    R = grid.shape[0]
    row_t = np.concatenate([thetas / np.pi, np.linspace(thetas[-1] / np.pi, 1.0, _NECK_ROWS + 1)[1:]])
    row_v = row_t / row_t.max()

    # ---- eyes: centres and sockets (rims hug the eyeballs)
    eye_c = []
    for sx in (1.0, -1.0):  # left (+x) first: joint 3, then right: joint 4
        zs = _surface_z_at(sx * _X_EYE, _Y_EYE)
        eye_c.append(np.array([sx * _X_EYE, _Y_EYE, zs - 0.9 * _R_EYE]))
    r_lid = _R_EYE + _LID_GAP
    flat = grid.reshape(-1, 3).copy()
    for E in eye_c:
        d = np.hypot(flat[:, 0] - E[0], (flat[:, 1] - E[1]) * 1.15)
        front = flat[:, 2] > E[2]
        z_dome = E[2] + np.sqrt(np.clip(r_lid ** 2 - np.minimum(d, r_lid) ** 2, 0.0, None))
        w = (1.0 - _smoothstep(0.9 * _R_EYE, 1.9 * _R_EYE, d)) * front
        flat[:, 2] = (1 - w) * flat[:, 2] + w * z_dome
    grid = flat.reshape(R, N, 3)

    gid = np.arange(R * N).reshape(R, N)
    pole_id = R * N
    pole = np.array([0.0, _AY, _CZ])

    # ---- faces of the grid (quads between rows i, i+1; columns wrap)
    cells = []  # (i, j) of each quad
    for i in range(R - 1):
        for j in range(N):
            cells.append((i, j))
    cells = np.asarray(cells)
    ci, cj = cells[:, 0], cells[:, 1]
    cj1 = (cj + 1) % N
    cell_centre = (grid[ci, cj] + grid[ci, cj1] + grid[ci + 1, cj] + grid[ci + 1, cj1]) / 4

    # eye holes: remove the cells inside an almond around each eye
    hole = np.zeros(len(cells), bool)
    for E in eye_c:
        q = ((cell_centre[:, 0] - E[0]) / _EYE_HW) ** 2 + ((cell_centre[:, 1] - E[1]) / _EYE_HH) ** 2
        hole |= (q < 1.0) & (cell_centre[:, 2] > E[2])

    # mouth slit on the row nearest the target height; the lower side gets duplicated vertices
    m = int(np.argmin(np.abs(grid[:R1, N // 2, 1] - _Y_MOUTH)))
    c0 = N // 2
    slit_cols = np.arange(c0 - _MOUTH_HALF_COLS + 1, c0 + _MOUTH_HALF_COLS)  # interior (13)
    dup_id = {int(j): pole_id + 1 + k for k, j in enumerate(slit_cols)}

    faces = []
    for (i, j), h in zip(cells, hole):
        if h:
            continue
        j1 = (j + 1) % N
        a, b, c, d = gid[i, j], gid[i + 1, j], gid[i, j1], gid[i + 1, j1]
        faces.append([a, b, c])
        faces.append([b, d, c])
    faces = np.asarray(faces, dtype=np.int64)
    # faces below the slit (all corners in rows >= m) use the lower copies of the slit vertices
    to_dup = np.arange(R * N)
    to_dup[gid[m, slit_cols]] = [dup_id[int(j)] for j in slit_cols]
    face_below = (faces // N >= m).all(axis=1)
    faces[face_below] = to_dup[faces[face_below]]
    # crown fan
    fan = np.stack([np.full(N, pole_id), gid[0], gid[0, (np.arange(N) + 1) % N]], -1)
    faces = np.concatenate([fan, faces])

    head_verts = np.concatenate([grid.reshape(-1, 3), pole[None], grid[m, slit_cols]])
    n_head = len(head_verts)
    head_uv = np.concatenate([
        np.stack([np.broadcast_to((phis + np.pi) / (2 * np.pi), (R, N)),
                  np.broadcast_to(row_v[:, None], (R, N))], -1).reshape(-1, 2),
        [[0.5, 0.0]],
        np.stack([(phis[slit_cols] + np.pi) / (2 * np.pi), np.full(len(slit_cols), row_v[m])], -1),
    ])

    # ---- eyeballs
    eye_verts, eye_faces, eye_uv, eye_ids = [], [], [], []
    offset = n_head
    for E in eye_c:
        v, f, uv = _uv_sphere(E, _R_EYE)
        eye_verts.append(v)
        eye_faces.append(f + offset)
        eye_uv.append(uv)
        eye_ids.append(np.arange(offset, offset + len(v)))
        offset += len(v)
    verts = np.concatenate([head_verts] + eye_verts)
    faces = np.concatenate([faces] + eye_faces)
    uv = np.concatenate([head_uv] + eye_uv)

    # ---- drop unreferenced vertices (inside the eye holes) and remap
    used = np.zeros(len(verts), bool)
    used[faces.ravel()] = True
    new_id = np.cumsum(used) - 1
    verts, uv = verts[used], uv[used]
    faces = new_id[faces]
    V = len(verts)

    def remap(ids):
        ids = np.asarray(ids).ravel()
        ids = ids[used[ids]]
        return new_id[ids].astype(np.int64)

    left_eye, right_eye = remap(eye_ids[0]), remap(eye_ids[1])
    is_eye = np.zeros(V, bool)
    is_eye[left_eye] = True
    is_eye[right_eye] = True
    lower_copy = np.zeros(V, bool)
    lower_copy[remap(list(dup_id.values()))] = True
    x, y, z = verts[:, 0], verts[:, 1], verts[:, 2]
    grid_col = np.full(V, -1)
    old_grid = np.arange(R * N)
    grid_col[remap(old_grid)] = (old_grid % N)[used[old_grid]]
    dup_old = np.asarray(list(dup_id.values()))
    grid_col[remap(dup_old)] = slit_cols
    head_mask = ~is_eye
    y_m = grid[m, c0, 1]

    # eye-hole rims: head vertices on a boundary edge near each eye
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(edges, axis=1)
    uniq, counts = np.unique(key, axis=0, return_counts=True)
    boundary_v = np.unique(uniq[counts == 1])
    on_boundary = np.zeros(V, bool)
    on_boundary[boundary_v] = True

    # ---- joints via the regressor
    Jreg = np.zeros((5, V))
    neck_mid_row = R1 + _NECK_ROWS // 2
    Jreg[0, remap(gid[neck_mid_row])] = 1.0 / N
    neck_row = int(np.argmin(np.abs(grid[:R1, c0, 1] - (-0.075))))
    Jreg[1, remap(gid[neck_row])] = 1.0 / N
    hinge_row = int(np.argmin(np.abs(grid[:R1, c0, 1] - (-0.010))))
    hinge_cols = [int(np.argmin(np.abs(phis - s * (np.pi / 2 - 0.1)))) for s in (1.0, -1.0)]
    Jreg[2, remap(gid[hinge_row, hinge_cols])] = 0.5
    Jreg[3, left_eye] = 1.0 / len(left_eye)
    Jreg[4, right_eye] = 1.0 / len(right_eye)
    J = Jreg @ verts
    jaw_J = J[2]

    # ---- skinning weights
    cols_phi = np.where(grid_col >= 0, phis[np.clip(grid_col, 0, N - 1)], 0.0)
    mouth_phi = abs(phis[c0 + _MOUTH_HALF_COLS])
    h = np.interp(np.abs(cols_phi), [0.0, mouth_phi * 0.999, mouth_phi * 1.6, 1.6], [0.0005, 0.0005, 0.012, 0.03])
    below_mouth = np.where(lower_copy, 1.0, _smoothstep(y_m - 0.0002, y_m - 0.0002 - h, y))
    below_mouth = np.where(lower_copy, 1.0, np.where(y >= y_m - 1e-9, 0.0, below_mouth))
    lateral = 1.0 - _smoothstep(0.7, 1.8, np.abs(cols_phi))
    in_front = _smoothstep(jaw_J[2] - 0.02, jaw_J[2] + 0.03, z)
    under_chin = 1.0 - _smoothstep(-0.085, -0.13, y)
    w_jaw = below_mouth * lateral * in_front * under_chin * head_mask
    root_frac = _smoothstep(-0.125, -0.175, y) * head_mask
    W = np.zeros((V, 5))
    W[:, 2] = w_jaw
    W[:, 0] = (1 - w_jaw) * root_frac
    W[:, 1] = (1 - w_jaw) * (1 - root_frac)
    W[is_eye] = 0.0
    W[left_eye, 3] = 1.0
    W[right_eye, 4] = 1.0

    # ---- shape blendshapes
    shapedirs = np.zeros((V, 3, N_SHAPE_TOTAL + N_EXPR_TOTAL))
    eye_centre_of = np.zeros((V, 3))
    eye_centre_of[left_eye] = eye_c[0]
    eye_centre_of[right_eye] = eye_c[1]
    p_field = np.where(is_eye[:, None], eye_centre_of, verts)  # eyeballs move rigidly with their centre
    px, py, pz = p_field[:, 0], p_field[:, 1], p_field[:, 2]
    shapedirs[:, 0, 0] = 0.07 * px                                              # head width
    shapedirs[:, 1, 1] = -0.09 * np.logaddexp(0.0, (_Y_EYE - py) / 0.005) * 0.005  # face length
    nose_prof = np.interp(-py, [-0.045, -0.02, 0.012, 0.024, 0.032], [0.0, 0.3, 1.0, 0.35, 0.0])
    phi_p = np.arctan2(px / _AX, (pz - _CZ) / _AZ)
    shapedirs[:, 2, 2] = 0.006 * nose_prof * _gauss(phi_p, 0.13) * (pz > 0.05)   # nose size
    shapedirs[:, 0, 3] = 0.12 * px * _smoothstep(-0.02, -0.07, py) * (1 - _smoothstep(-0.10, -0.13, py))  # jaw width
    front_ids = np.where(head_mask & (z > -0.03))[0]
    shapedirs[:, :, 4:N_SHAPE_TOTAL] = _rbf_fields(rng, N_SHAPE_TOTAL - 4, p_field, front_ids,
                                                   (0.02, 0.05), 0.0025, 80.0)

    # ---- expression blendshapes (eyeballs get none)
    e0 = N_SHAPE_TOTAL
    expr = np.zeros((V, 3, N_EXPR_TOTAL))
    expr[:, 1, 0] = -0.008 * w_jaw                                  # jaw open (lower face down/back)
    expr[:, 2, 0] = -0.002 * w_jaw
    expr[:, 1, 0] += 0.0015 * _gauss(y - (y_m + 0.004), 0.004) * _gauss(cols_phi, 0.3) * (y > y_m - 1e-9) * head_mask
    for sx in (1.0, -1.0):                                          # smile: corners up and out
        corner = grid[m, c0 + int(sx) * _MOUTH_HALF_COLS]
        g = np.exp(-0.5 * ((x - corner[0]) ** 2 + (y - corner[1]) ** 2) / 0.012 ** 2) * (z > 0.0) * head_mask
        g *= (np.sign(x) == sx) | (np.abs(x) < 1e-9)
        expr[:, 0, 1] += sx * 0.004 * g
        expr[:, 1, 1] += 0.005 * g
        expr[:, 2, 1] += -0.002 * g
    brow = _gauss(y - 0.040, 0.011) * _gauss(cols_phi, 0.75) * (1 - _smoothstep(0.9, 1.4, np.abs(cols_phi)))
    brow *= (y > _Y_EYE + _EYE_HH) * head_mask
    expr[:, 1, 2] = 0.005 * brow                                    # brow raise
    for E in eye_c:                                                 # blink: upper lids rotate down
        near = head_mask & (np.abs(x - E[0]) < 1.6 * _EYE_HW) & (z > E[2])
        rim = near & on_boundary & (np.abs(x - E[0]) < 1.3 * _EYE_HW) & (np.abs(y - E[1]) < 3 * _EYE_HH)
        up_rim, lo_rim = rim & (y > E[1]), rim & (y < E[1])
        a_up = np.arcsin(np.clip((verts[up_rim, 1] - E[1]).max() / r_lid, -1, 1))
        a_lo = np.arcsin(np.clip((E[1] - verts[lo_rim, 1]).max() / r_lid, -1, 1))
        alpha0 = a_up + a_lo
        rim_top = np.interp(x, np.sort(verts[up_rim, 0]), verts[up_rim, 1][np.argsort(verts[up_rim, 0])])
        wx = np.sqrt(np.clip(1 - ((x - E[0]) / (1.05 * _EYE_HW)) ** 2, 0, 1))
        wy = np.where(y <= rim_top + 1e-4, 1.0, np.exp(-0.5 * ((y - rim_top) / 0.005) ** 2))
        w = wx * wy * near * (y > E[1] + 1e-4)
        Rm = _rot_x(alpha0 * w)
        rel = verts - E
        rot = np.einsum("vij,vj->vi", Rm, rel)
        # the closing lid also bulges out so that it stays in front of the cornea
        radius = np.linalg.norm(rel, axis=1)
        target = radius + w * np.clip(_R_EYE + _LID_BULGE - radius, 0.0, None)
        moved = E + rot / np.maximum(radius, 1e-12)[:, None] * target[:, None]
        expr[:, :, 3] += (moved - verts) * (w > 0)[:, None]
    face_ids = np.where(head_mask & (z > 0.02) & (y > -0.10) & (y < 0.06))[0]
    expr[:, :, 4:] = _rbf_fields(rng, N_EXPR_TOTAL - 4, verts, face_ids, (0.01, 0.025), 0.0015, 60.0)
    expr[is_eye] = 0.0
    shapedirs[:, :, e0:] = expr

    # ---- pose correctives: small, neck and jaw only
    posedirs = np.zeros((V, 3, 36))
    neck_region = _gauss(y + 0.11, 0.025) * (z > -0.01) * head_mask
    posedirs[:, 2, 0 * 9 + 7] = -0.004 * neck_region                # nodding: front of the neck folds in
    cheek = w_jaw * (1 - w_jaw) * 4 * head_mask
    posedirs[:, 0, 1 * 9 + 7] = -0.004 * cheek * np.sign(x)         # jaw open: cheeks pulled in
    posedirs[:, 1, 1 * 9 + 7] = -0.002 * cheek

    # ---- masks (real FLAME region names where they exist, plus synthetic extras)
    ring_rows_off = max(1, int(round(0.006 / abs(grid[m - 1, c0, 1] - grid[m, c0, 1]))))
    mouth_cols = np.arange(c0 - _MOUTH_HALF_COLS, c0 + _MOUTH_HALF_COLS + 1)
    masks = {
        # outer rings run from the subject's left to right (+x to -x), as FLAME's, so that the
        # official teeth triangles built on them face out of the teeth
        "lip_outside_ring_upper": remap(gid[m - ring_rows_off, mouth_cols[::-1]]),
        "lip_outside_ring_lower": remap(gid[m + ring_rows_off, mouth_cols[::-1]]),
        "lip_inside_ring_upper": remap(gid[m, mouth_cols]),
        "lip_inside_ring_lower": remap(np.concatenate([[gid[m, mouth_cols[0]]], dup_old, [gid[m, mouth_cols[-1]]]])),
        "left_eyeball": left_eye,
        "right_eyeball": right_eye,
    }
    hm = head_mask
    face = hm & (z > 0.005) & (y > -0.105) & (y < 0.075) & (np.abs(cols_phi) < 1.25)
    masks["face"] = np.where(face)[0]
    masks["scalp"] = np.where(hm & ~face & (y > -0.02) & ((y > 0.06) | (z < 0.0)))[0]
    masks["forehead"] = np.where(face & (y > _Y_EYE + 0.012))[0]
    masks["nose"] = np.where(face & (np.abs(cols_phi) < 0.22) & (y < _Y_EYE + 0.005) & (y > -0.032))[0]
    masks["lips"] = np.where(hm & (np.abs(y - y_m) < 0.009) & (np.abs(cols_phi) <= mouth_phi * 1.05) & (z > 0))[0]
    for side, E in (("left", eye_c[0]), ("right", eye_c[1])):
        reg = hm & (np.hypot(x - E[0], y - E[1]) < 0.022) & (z > E[2])
        masks[f"{side}_eye_region"] = np.where(reg)[0]
    masks["eye_region"] = np.union1d(masks["left_eye_region"], masks["right_eye_region"])
    masks["neck"] = np.where(hm & (y < -0.095) & ~face)[0]
    masks["boundary"] = remap(gid[R - 1])
    for side, sx in (("left", 1.0), ("right", -1.0)):
        masks[f"{side}_ear"] = np.where(hm & (np.abs(cols_phi - sx * 1.66) < 0.3) & (np.abs(y - 0.004) < 0.03))[0]
    masks = {k: np.asarray(v, dtype=np.int64) for k, v in masks.items()}

    J_sparse = sp.csc_matrix(Jreg)
    model = {
        "v_template": verts.astype(np.float64),
        "f": faces.astype(np.uint32),
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "J_regressor": J_sparse,
        "J": J,
        "weights": W,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "avatarbench_uv": uv.astype(np.float32),
        "avatarbench_synthetic": {"version": GENERATOR_VERSION, "seed": int(seed)},
    }
    return model, masks


def _atomic_pickle(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=4)
    os.replace(tmp, path)


def write_synthetic_flame(folder: str | Path, seed: int = 0) -> Path:
    """Write the stand-in model (``flame_synthetic.pkl`` + ``FLAME_masks.pkl``) into ``folder``.

    Deterministic: the same seed gives the same bytes. Takes well under a second.

    Returns:
        the path of ``flame_synthetic.pkl``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, masks = build_synthetic_flame(seed)
    path = folder / MODEL_FILENAME
    _atomic_pickle(masks, folder / MASKS_FILENAME)
    _atomic_pickle(model, path)
    return path


def ensure_synthetic_flame(seed: int = 0) -> Path:
    """The cached stand-in model file, generated once into ``cache_dir()/models/flame_synthetic/``.

    Regenerated when the cached file comes from another generator version.
    """
    from avatarbench.paths import cache_dir

    folder = cache_dir() / "models" / "flame_synthetic"
    if seed != 0:
        folder = folder.with_name(f"flame_synthetic_seed{seed}")
    path = folder / MODEL_FILENAME
    stamp = folder / "VERSION"
    want = f"{GENERATOR_VERSION} {seed}"
    if path.is_file() and (folder / MASKS_FILENAME).is_file() and stamp.is_file() \
            and stamp.read_text().strip() == want:
        return path
    write_synthetic_flame(folder, seed)
    tmp = stamp.with_name(f".VERSION.{os.getpid()}.tmp")
    tmp.write_text(want + "\n")
    os.replace(tmp, stamp)
    return path
