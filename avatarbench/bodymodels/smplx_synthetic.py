"""A procedural SMPL-X-format body model: the stand-in used when the licensed file is absent.

:func:`write_synthetic_smplx` writes ``SMPLX_NEUTRAL.npz`` with the keys, dtypes and layout of
the real SMPL-X file (see :mod:`avatarbench.bodymodels.smplx`) and the same 55-joint tree
(SMPL-X joint order and parents), so every code path that reads SMPL-X runs unchanged. It is NOT
SMPL-X: it is a hand-built mannequin, about 1.72 m tall, ~6.7k vertices:

- torso, neck, arms, legs, feet, palms and 10 fingers are tapered tubes with elliptical cross
  sections along the bone chains (capped ends), the head is an ellipsoid with two eyeballs;
- a LOOSE GARMENT: an open flared skirt from the hips to above the knees, skinned to the pelvis
  and (increasingly toward the hem) the hips, so that plain LBS stretches it between the legs;
- skinning weights blend smoothly (smoothstep ramps) between neighbouring bones at every joint;
- ``J_regressor`` averages the ring of tube vertices around each joint (exact at rest, and for
  every shape since the blendshapes keep ring centroids consistent);
- 10 shape directions (height, girth, shoulders, leg length, hips, head, arms, belly, chest,
  torso length) + 10 expression directions (face bumps), i.e. the v1.0-style ``(V, 3, 20)``;
- small pose correctives (a bulge at hips, knees, shoulders, elbows driven by ``trace(R) - 3``).

Non-standard extra keys (ignored by SMPL-X readers, used by the synthetic subject renderer):
``avatarbench_part`` (V,) int8 part ids (:data:`PARTS`), ``avatarbench_attr`` (V, 3) float32
``[s along the tube in [0, 1], cos(theta), sin(theta)]``, ``avatarbench_version``.

World/model axes as SMPL-X: y up, x to the subject's left, z forward (the face looks along +z);
T-pose at rest (arms along +-x, palms down). Output bytes are deterministic for a seed.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avatarbench.bodymodels.smplx import JOINT_NAMES, NUM_JOINTS, PARENTS

VERSION = "smplx_synthetic-v1"
FILENAME = "SMPLX_NEUTRAL.npz"
NUM_BETAS = 10
NUM_EXPRESSION = 10

#: part ids of ``avatarbench_part``
PARTS = {"torso": 0, "head": 1, "eye": 2, "arm": 3, "palm": 4, "finger": 5, "leg": 6, "foot": 7, "skirt": 8}

J = {n: i for i, n in enumerate(JOINT_NAMES)}


# ------------------------------------------------------------------------------------------ skeleton
def rest_joints(rng: np.random.Generator | None = None) -> np.ndarray:
    """(55, 3) rest joint positions (metres), T-pose, pelvis at the origin.

    ``rng`` jitters proportions by a few millimetres (different seeds = slightly different
    mannequins); None = the nominal skeleton.
    """
    left = {
        "left_hip": (0.085, -0.085, -0.005), "left_knee": (0.095, -0.49, 0.005), "left_ankle": (0.10, -0.875, -0.03),
        "left_foot": (0.11, -0.93, 0.09), "left_collar": (0.07, 0.435, -0.02), "left_shoulder": (0.17, 0.44, -0.025),
        "left_elbow": (0.43, 0.44, -0.035), "left_wrist": (0.67, 0.44, -0.03), "left_eye_smplhf": (0.032, 0.675, 0.095),
        # fingers along +x, palm down, thumb toward +z
        "left_index1": (0.765, 0.438, 0.024), "left_index2": (0.803, 0.437, 0.026),
        "left_index3": (0.827, 0.436, 0.027),
        "left_middle1": (0.768, 0.44, 0.004), "left_middle2": (0.81, 0.439, 0.004),
        "left_middle3": (0.837, 0.438, 0.004),
        "left_pinky1": (0.755, 0.438, -0.036), "left_pinky2": (0.785, 0.437, -0.038),
        "left_pinky3": (0.803, 0.436, -0.039),
        "left_ring1": (0.763, 0.439, -0.016), "left_ring2": (0.801, 0.438, -0.017),
        "left_ring3": (0.826, 0.437, -0.018),
        "left_thumb1": (0.69, 0.433, 0.022), "left_thumb2": (0.72, 0.426, 0.055), "left_thumb3": (0.745, 0.424, 0.07),
    }
    centre = {"pelvis": (0.0, 0.0, 0.0), "spine1": (0.0, 0.11, -0.02), "spine2": (0.0, 0.24, -0.01),
              "spine3": (0.0, 0.30, 0.0), "neck": (0.0, 0.50, -0.02), "head": (0.0, 0.58, 0.0),
              "jaw": (0.0, 0.615, 0.015)}
    out = np.zeros((NUM_JOINTS, 3))
    for n, p in centre.items():
        out[J[n]] = p
    for n, p in left.items():
        out[J[n]] = p
        out[J[n.replace("left_", "right_")]] = (-p[0], p[1], p[2])
    if rng is not None:  # symmetric proportion jitter (limb lengths, widths) of a few mm
        s = 1.0 + rng.uniform(-0.02, 0.02, size=3)
        out = out * s
    return out


# ------------------------------------------------------------------------------------------ mesh parts
@dataclass
class _Mesh:
    """Accumulates vertices with their per-vertex data."""

    verts: list = field(default_factory=list)      # (n, 3) arrays
    faces: list = field(default_factory=list)      # (m, 3) arrays (global ids)
    weights: list = field(default_factory=list)    # (n, 55)
    radial: list = field(default_factory=list)     # (n, 3) offset from the tube axis
    part: list = field(default_factory=list)       # (n,)
    attr: list = field(default_factory=list)       # (n, 3) [s, cos, sin]
    n: int = 0
    joint_rings: dict = field(default_factory=dict)  # joint id -> vertex ids averaged by J_regressor

    def add(self, v, f, w, radial, part, attr) -> int:
        base = self.n
        self.verts.append(v)
        self.faces.append(f + base)
        self.weights.append(w)
        self.radial.append(radial)
        self.part.append(np.full(len(v), part, np.int8))
        self.attr.append(attr)
        self.n += len(v)
        return base


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _knot_weights(s: np.ndarray, knots: list[tuple[float, int]]) -> np.ndarray:
    """(n, 55) weights along a tube: piecewise smoothstep blends between consecutive knots.

    ``knots``: (arc position, joint) sorted by position; before the first / after the last knot
    the weight is all on that knot's joint.
    """
    w = np.zeros((len(s), NUM_JOINTS))
    pos = np.array([k[0] for k in knots])
    for i, si in enumerate(s):
        if si <= pos[0]:
            w[i, knots[0][1]] = 1
            continue
        if si >= pos[-1]:
            w[i, knots[-1][1]] = 1
            continue
        k = int(np.searchsorted(pos, si, side="right")) - 1
        u = _smoothstep((si - pos[k]) / max(pos[k + 1] - pos[k], 1e-9))
        w[i, knots[k][1]] += 1 - u
        w[i, knots[k + 1][1]] += u
    return w


def _tube(mesh: _Mesh, ctrl: np.ndarray, radii: np.ndarray, ref: np.ndarray, knots_at: list[tuple[float, int]],
          part: int, n_around: int, spacing: float, ring_joints: dict[int, int] | None = None,
          cap_start: bool = True, cap_end: bool = True, outward: int = 1) -> None:
    """Add a tube along the polyline ``ctrl`` (K, 3) with elliptical radii (K, 2).

    Args:
        ref: (3,) direction of the first ellipse axis (projected perpendicular to the tangent).
        knots_at: (control index (fractional allowed), joint) skinning knots, converted to arc
            positions.
        spacing: target distance between rings (a ring is always placed at every control point).
        ring_joints: control index -> joint id whose J_regressor row averages that ring.
        outward: +1 for a closed tube (normals away from the axis); the skirt passes +1 too.
    """
    seg = np.linalg.norm(np.diff(ctrl, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    L = cum[-1]
    # ring arc positions: every control point + evenly spaced fill
    s_list = []
    ctrl_ring = {}
    for k in range(len(ctrl) - 1):
        m = max(1, int(math.ceil(seg[k] / spacing)))
        for i in range(m):
            if i == 0:
                ctrl_ring[k] = len(s_list)
            s_list.append(cum[k] + seg[k] * i / m)
    ctrl_ring[len(ctrl) - 1] = len(s_list)
    s_list.append(L)
    s = np.array(s_list)
    centers = np.stack([np.interp(s, cum, ctrl[:, d]) for d in range(3)], 1)
    ra = np.interp(s, cum, radii[:, 0])
    rb = np.interp(s, cum, radii[:, 1])
    # tangents: central differences of the polyline at ring positions
    tang = np.zeros_like(centers)
    for i, si in enumerate(s):
        k = min(int(np.searchsorted(cum, si, side="right")) - 1, len(seg) - 1)
        d = ctrl[k + 1] - ctrl[k]
        if abs(si - cum[k]) < 1e-12 and k > 0:  # at a joint: average both segments
            d = d / np.linalg.norm(d) + (ctrl[k] - ctrl[k - 1]) / np.linalg.norm(ctrl[k] - ctrl[k - 1])
        tang[i] = d / np.linalg.norm(d)
    theta = 2 * np.pi * np.arange(n_around) / n_around
    ct, st = np.cos(theta), np.sin(theta)
    R = len(s)
    verts = np.zeros((R, n_around, 3))
    radial = np.zeros((R, n_around, 3))
    for i in range(R):
        u = ref - np.dot(ref, tang[i]) * tang[i]
        u /= np.linalg.norm(u)
        w = np.cross(tang[i], u)
        off = ra[i] * ct[:, None] * u + rb[i] * st[:, None] * w
        verts[i] = centers[i] + off
        radial[i] = off
    verts = verts.reshape(-1, 3)
    radial = radial.reshape(-1, 3)
    knots = [(float(np.interp(ci, np.arange(len(ctrl)), cum)), j) for ci, j in knots_at]
    w_ring = _knot_weights(s, knots)
    weights = np.repeat(w_ring, n_around, axis=0)
    attr = np.stack([np.repeat(s / max(L, 1e-9), n_around), np.tile(ct, R), np.tile(st, R)], 1)
    faces = []
    for i in range(R - 1):
        a = i * n_around + np.arange(n_around)
        b = i * n_around + (np.arange(n_around) + 1) % n_around
        c, d = a + n_around, b + n_around
        faces.append(np.stack([a, b, d], 1))
        faces.append(np.stack([a, d, c], 1))
    faces = np.concatenate(faces)
    extra_v, extra_w, extra_r, extra_a = [], [], [], []
    nv = len(verts)
    for end, flag in ((0, cap_start), (R - 1, cap_end)):
        if not flag:
            continue
        tip = centers[end] + (-1 if end == 0 else 1) * tang[end] * 0.5 * min(ra[end], rb[end])
        ring = end * n_around + np.arange(n_around)
        nxt = end * n_around + (np.arange(n_around) + 1) % n_around
        cid = nv + len(extra_v)
        extra_v.append(tip)
        extra_w.append(w_ring[end])
        extra_r.append(np.zeros(3))
        extra_a.append([0.0 if end == 0 else 1.0, 1.0, 0.0])
        faces = np.concatenate([faces, np.stack([ring, np.full(n_around, cid), nxt], 1)])
    if extra_v:
        verts = np.concatenate([verts, np.array(extra_v)])
        weights = np.concatenate([weights, np.array(extra_w)])
        radial = np.concatenate([radial, np.array(extra_r)])
        attr = np.concatenate([attr, np.array(extra_a)])
    faces = _orient_outward(verts, faces, radial, centers_for=verts - radial)
    base = mesh.add(verts, faces, weights, radial, part, attr)
    for ci, j in (ring_joints or {}).items():
        r = ctrl_ring[ci]
        mesh.joint_rings[j] = base + r * n_around + np.arange(n_around)


def _orient_outward(verts: np.ndarray, faces: np.ndarray, radial: np.ndarray, centers_for: np.ndarray) -> np.ndarray:
    """Flip the winding of faces whose normal points toward the tube axis (per face)."""
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    n = np.cross(v1 - v0, v2 - v0)
    out = (verts[faces] - centers_for[faces]).mean(1)
    flip = (n * out).sum(1) < 0
    faces = faces.copy()
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return faces


def _ellipsoid(mesh: _Mesh, center: np.ndarray, radii: np.ndarray, lat_y: np.ndarray, n_around: int,
               weight_fn, part: int) -> int:
    """Add a closed ellipsoid with latitude rings at the given heights (relative, strictly inside).

    Returns the base vertex id; rings are stored in order of ``lat_y`` (top to bottom), poles last.
    """
    theta = 2 * np.pi * np.arange(n_around) / n_around
    rows = []
    for y in lat_y:
        r = math.sqrt(max(1.0 - (y / radii[1]) ** 2, 0.0))
        rows.append(np.stack([radii[0] * r * np.cos(theta), np.full(n_around, y), radii[2] * r * np.sin(theta)], 1))
    ring = np.concatenate(rows)
    poles = np.array([[0.0, radii[1], 0.0], [0.0, -radii[1], 0.0]])
    local = np.concatenate([ring, poles])
    verts = center + local
    R = len(lat_y)
    faces = []
    for i in range(R - 1):
        a = i * n_around + np.arange(n_around)
        b = i * n_around + (np.arange(n_around) + 1) % n_around
        faces += [np.stack([a, b, b + n_around], 1), np.stack([a, b + n_around, a + n_around], 1)]
    top, bot = R * n_around, R * n_around + 1
    a = np.arange(n_around)
    b = (a + 1) % n_around
    faces.append(np.stack([a, b, np.full(n_around, top)], 1))
    last = (R - 1) * n_around
    faces.append(np.stack([last + a, np.full(n_around, bot), last + b], 1))
    faces = np.concatenate(faces)
    faces = _orient_outward(verts, faces, local, centers_for=np.repeat(center[None], len(verts), 0))
    weights = weight_fn(local)
    attr = np.stack([0.5 - local[:, 1] / (2 * radii[1]), local[:, 0] / radii[0], local[:, 2] / radii[2]], 1)
    return mesh.add(verts, faces, weights, local, part, attr)


# ------------------------------------------------------------------------------------------ build
@dataclass
class SyntheticSmplx:
    """The arrays of the stand-in model (before writing)."""

    arrays: dict[str, np.ndarray]
    joints: np.ndarray  # (55, 3) rest joints


def build_synthetic_smplx(seed: int = 0, garment: bool = True) -> SyntheticSmplx:
    """Build the procedural model (see the module docstring). Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    Jr = rest_joints(rng)
    m = _Mesh()
    up, fwd, side = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])

    # torso: crotch -> pelvis -> spine1 -> spine2 -> spine3 -> neck -> head -> skull base
    tc = np.array([[0, -0.17, -0.01], Jr[J["pelvis"]], Jr[J["spine1"]], Jr[J["spine2"]], Jr[J["spine3"]],
                   [0, 0.42, -0.015], Jr[J["neck"]], Jr[J["head"]], [0, 0.625, 0.0]])
    tr = np.array([[0.11, 0.085], [0.150, 0.100], [0.130, 0.088], [0.140, 0.095], [0.155, 0.100],
                   [0.165, 0.085], [0.058, 0.058], [0.050, 0.052], [0.045, 0.045]])
    _tube(m, tc, tr, side, [(0.5, J["pelvis"]), (1.3, J["pelvis"]), (1.8, J["spine1"]), (2.5, J["spine2"]),
                            (3.4, J["spine3"]), (5.6, J["spine3"]), (6.5, J["neck"]), (7.4, J["head"])],
          PARTS["torso"], 32, 0.03,
          ring_joints={1: J["pelvis"], 2: J["spine1"], 3: J["spine2"], 4: J["spine3"], 6: J["neck"], 7: J["head"]})

    for sgn, pre in ((1, "left_"), (-1, "right_")):
        hip, knee, ankle, foot = (Jr[J[pre + n]] for n in ("hip", "knee", "ankle", "foot"))
        # leg: inside the pelvis -> hip -> knee -> ankle -> just below the ankle
        lc = np.array([hip + [0, 0.07, 0], hip, (hip + knee) / 2, knee, (knee + ankle) / 2, ankle,
                       ankle + [0, -0.03, 0.0]])
        lr = np.array([[0.075, 0.075], [0.080, 0.082], [0.066, 0.068], [0.050, 0.052], [0.045, 0.048],
                       [0.035, 0.037], [0.034, 0.036]])
        _tube(m, lc, lr, fwd, [(0.4, J["pelvis"]), (1.6, J[pre + "hip"]), (2.7, J[pre + "hip"]),
                               (3.3, J[pre + "knee"]), (4.7, J[pre + "knee"]), (5.2, J[pre + "ankle"])],
              PARTS["leg"], 18, 0.035, ring_joints={1: J[pre + "hip"], 3: J[pre + "knee"], 5: J[pre + "ankle"]})
        # foot: heel -> under the ankle -> ball (foot joint) -> toe tip
        fc = np.array([ankle + [0, -0.035, -0.065], ankle + [0, -0.045, 0.0], foot, foot + [0.004, -0.004, 0.07]])
        fr = np.array([[0.030, 0.028], [0.038, 0.035], [0.042, 0.024], [0.030, 0.016]])
        _tube(m, fc, fr, side, [(1.6, J[pre + "ankle"]), (2.2, J[pre + "foot"])], PARTS["foot"], 14, 0.025,
              ring_joints={2: J[pre + "foot"]})
        # arm: collar -> shoulder -> elbow -> wrist
        col, sho, elb, wri = (Jr[J[pre + n]] for n in ("collar", "shoulder", "elbow", "wrist"))
        ac = np.array([col, sho, (sho + elb) / 2, elb, (elb + wri) / 2, wri])
        ar = np.array([[0.055, 0.05], [0.052, 0.05], [0.043, 0.042], [0.036, 0.036], [0.032, 0.030], [0.026, 0.022]])
        _tube(m, ac, ar, up, [(0.6, J[pre + "collar"]), (1.5, J[pre + "shoulder"]), (2.7, J[pre + "shoulder"]),
                              (3.3, J[pre + "elbow"]), (4.7, J[pre + "elbow"]), (5.0, J[pre + "wrist"])],
              PARTS["arm"], 14, 0.035,
              ring_joints={0: J[pre + "collar"], 1: J[pre + "shoulder"], 3: J[pre + "elbow"], 5: J[pre + "wrist"]})
        # palm: wrist -> knuckles (flat ellipse, thin along y)
        knuck = Jr[[J[pre + f + "1"] for f in ("index", "middle", "ring", "pinky")]].mean(0)
        pc = np.array([wri - sgn * np.array([0.01, 0, 0]), (wri + knuck) / 2, knuck + sgn * np.array([0.008, 0, 0])])
        pr = np.array([[0.024, 0.014], [0.045, 0.016], [0.042, 0.013]])
        _tube(m, pc, pr, fwd, [(0.0, J[pre + "wrist"])], PARTS["palm"], 14, 0.02)
        # fingers: knuckle joint 1 -> 2 -> 3 -> tip
        for fname, rad in (("index", 0.0085), ("middle", 0.009), ("ring", 0.0085), ("pinky", 0.0075), ("thumb", 0.01)):
            j1, j2, j3 = (J[f"{pre}{fname}{k}"] for k in (1, 2, 3))
            p1, p2, p3 = Jr[j1], Jr[j2], Jr[j3]
            tip = p3 + (p3 - p2) / np.linalg.norm(p3 - p2) * 0.022
            start = p1 - (p2 - p1) / np.linalg.norm(p2 - p1) * 0.012
            fc_ = np.array([start, p1, p2, p3, tip])
            fr_ = np.array([[rad, rad * 0.9], [rad, rad * 0.9], [rad * 0.92, rad * 0.85], [rad * 0.85, rad * 0.8],
                            [rad * 0.75, rad * 0.7]])
            _tube(m, fc_, fr_, up, [(0.5, j1), (1.2, j1), (1.8, j2), (2.2, j2), (2.8, j3)], PARTS["finger"], 6, 0.012,
                  ring_joints={1: j1, 2: j2, 3: j3})

    # head ellipsoid (with a latitude ring at the jaw height) and eyes
    hc = np.array([0.0, 0.668, 0.015])
    hr = np.array([0.078, 0.105, 0.095])
    jaw_y = Jr[J["jaw"], 1] - hc[1]
    lat = np.sort(np.unique(np.round(np.concatenate([np.linspace(0.96, -0.96, 21) * hr[1], [jaw_y]]), 6)))[::-1]

    def head_weights(local):
        w = np.zeros((len(local), NUM_JOINTS))
        chin = _smoothstep((jaw_y + 0.005 - local[:, 1]) / 0.03) * _smoothstep((local[:, 2] + 0.01) / 0.04)
        w[:, J["jaw"]] = chin
        w[:, J["head"]] = 1 - chin
        return w

    base = _ellipsoid(m, hc, hr, lat, 32, head_weights, PARTS["head"])
    k = int(np.argmin(np.abs(lat - jaw_y)))
    m.joint_rings[J["jaw"]] = base + k * 32 + np.arange(32)
    # the jaw joint is the centroid of that ring: on the head axis at the ring's height
    for pre in ("left_", "right_"):
        je = J[pre + "eye_smplhf"]
        lat_e = np.linspace(0.8, -0.8, 5) * 0.013
        eb = _ellipsoid(m, Jr[je], np.array([0.013, 0.013, 0.013]), lat_e, 10,
                        lambda local, je=je: np.eye(NUM_JOINTS)[np.full(len(local), je)], PARTS["eye"])
        m.joint_rings[je] = eb + np.arange(5 * 10 + 2)

    if garment:
        # skirt: open flared frustum hanging from the hips (two-sided surface, no caps)
        yt, yb = 0.03, -0.36
        n_rows = 14
        sc = np.stack([np.zeros(n_rows), np.linspace(yt, yb, n_rows), np.full(n_rows, -0.01)], 1)
        h = np.linspace(0, 1, n_rows)
        srad = np.stack([0.158 + 0.13 * h ** 1.2, 0.112 + 0.13 * h ** 1.2], 1)
        before = m.n
        _tube(m, sc, srad, side, [(0.0, J["pelvis"])], PARTS["skirt"], 48, 1.0, cap_start=False, cap_end=False)
        # garment weights: pelvis at the waist, blending into the hip of the same side toward the hem
        idx = np.arange(before, m.n)
        v = m.verts[-1]
        depth = _smoothstep((yt - v[:, 1]) / (yt - yb))
        side_l = _smoothstep(0.5 + 0.5 * v[:, 0] / np.maximum(np.abs(v[:, 0]) + 0.5 * np.abs(v[:, 2] + 0.01), 1e-6))
        hipw = 0.75 * depth
        w = np.zeros((len(idx), NUM_JOINTS))
        w[:, J["pelvis"]] = 1 - hipw
        w[:, J["left_hip"]] = hipw * side_l
        w[:, J["right_hip"]] = hipw * (1 - side_l)
        m.weights[-1] = w

    verts = np.concatenate(m.verts)
    faces = np.concatenate(m.faces).astype(np.uint32)
    weights = np.concatenate(m.weights)
    weights /= weights.sum(1, keepdims=True)
    radial = np.concatenate(m.radial)
    part = np.concatenate(m.part)
    attr = np.concatenate(m.attr).astype(np.float32)
    V = len(verts)

    jreg = np.zeros((NUM_JOINTS, V))
    for j in range(NUM_JOINTS):
        ids = m.joint_rings.get(j)
        if ids is None:
            raise AssertionError(f"no regressor ring for joint {JOINT_NAMES[j]}")
        jreg[j, ids] = 1.0 / len(ids)

    shapedirs = np.zeros((V, 3, NUM_BETAS + NUM_EXPRESSION))
    shapedirs[:, :, :NUM_BETAS] = _shape_dirs(verts, radial, part, Jr)
    shapedirs[:, :, NUM_BETAS:] = _expression_dirs(verts, part, hc, hr, rng)
    posedirs = _pose_dirs(verts, radial, weights)

    kintree = np.stack([np.array([4294967295] + list(PARENTS[1:]), np.int64), np.arange(NUM_JOINTS, dtype=np.int64)])
    Q, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    Q2, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    hand_mean = np.zeros(45)
    for f in range(5):  # a relaxed mean hand: each finger joint slightly curled toward the palm
        for k in range(3):
            hand_mean[(3 * f + k) * 3 + 2] = -0.15 if f < 4 else -0.05
    arrays = {
        "v_template": verts.astype(np.float64),
        "f": faces,
        "shapedirs": shapedirs.astype(np.float64),
        "posedirs": posedirs.astype(np.float64),
        "J_regressor": jreg.astype(np.float64),
        "weights": weights.astype(np.float64),
        "kintree_table": kintree,
        "hands_componentsl": Q.T.astype(np.float64),
        "hands_componentsr": Q2.T.astype(np.float64),
        "hands_meanl": hand_mean,
        "hands_meanr": hand_mean * np.tile([1.0, -1.0, -1.0], 15),
        "avatarbench_part": part,
        "avatarbench_attr": attr,
        "avatarbench_version": np.array(VERSION),
    }
    return SyntheticSmplx(arrays=arrays, joints=jreg @ verts)


def _shape_dirs(v: np.ndarray, radial: np.ndarray, part: np.ndarray, Jr: np.ndarray) -> np.ndarray:
    """(V, 3, 10) shape directions (metres per unit beta)."""
    V = len(v)
    d = np.zeros((V, 3, NUM_BETAS))
    x, y = v[:, 0], v[:, 1]
    sx = np.sign(x) + (x == 0)
    is_head = (part == PARTS["head"]) | (part == PARTS["eye"])
    is_arm = np.isin(part, [PARTS["arm"], PARTS["palm"], PARTS["finger"]])
    is_leg = np.isin(part, [PARTS["leg"], PARTS["foot"]])
    # 0 overall size: 5 % per unit, about the pelvis
    d[:, :, 0] = 0.05 * v
    # 1 girth: radial thickness +12 % per unit (head/eyes/fingers excluded)
    d[:, :, 1] = 0.12 * radial * (~is_head & (part != PARTS["finger"]))[:, None]
    # 2 shoulder width: arms move out, upper torso widens
    up = _smoothstep((y - 0.3) / 0.12)
    d[:, 0, 2] = 0.025 * sx * np.where(is_arm, 1.0, up * np.clip(np.abs(x) / 0.17, 0, 1) * (part == PARTS["torso"]))
    # 3 leg length: everything below the hips moves down (5 cm per unit at the feet)
    d[:, 1, 3] = -0.05 * np.clip((-0.085 - y) / 0.8, 0, 1) * is_leg
    # 4 hip width: legs move out, hip region widens (torso and skirt)
    hipband = np.exp(-(((y + 0.05) / 0.12) ** 2))
    d[:, 0, 4] = 0.02 * sx * np.where(is_leg, 1.0, hipband * np.clip(np.abs(x) / 0.15, 0, 1)
                                      * np.isin(part, [PARTS["torso"], PARTS["skirt"]]))
    # 5 head size: +8 % per unit about the head centre
    hcen = np.array([0.0, 0.668, 0.015])
    d[:, :, 5] = 0.08 * (v - hcen) * is_head[:, None]
    # 6 arm length: 4 cm per unit at the hands
    d[:, 0, 6] = 0.04 * sx * np.clip((np.abs(x) - 0.17) / 0.5, 0, 1) * is_arm
    # 7 belly: forward bulge around the waist
    front = np.clip(radial[:, 2] / (np.linalg.norm(radial, axis=1) + 1e-9), 0, 1)
    d[:, 2, 7] = 0.03 * np.exp(-(((y - 0.12) / 0.1) ** 2)) * front * (part == PARTS["torso"])
    # 8 chest: forward bulge around the chest
    d[:, 2, 8] = 0.02 * np.exp(-(((y - 0.3) / 0.07) ** 2)) * front * (part == PARTS["torso"])
    # 9 torso length: everything above the pelvis moves up (4 cm per unit above the chest)
    d[:, 1, 9] = 0.04 * np.clip(y / 0.45, 0, 1) * ~is_leg
    return d


def _expression_dirs(v: np.ndarray, part: np.ndarray, hc: np.ndarray, hr: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """(V, 3, 10) expression directions: smooth bumps on the face (front of the head)."""
    d = np.zeros((len(v), 3, NUM_EXPRESSION))
    head = part == PARTS["head"]
    local = (v - hc) / hr
    n = local / (np.linalg.norm(local, axis=1, keepdims=True) + 1e-9)
    face = head & (local[:, 2] > 0.3)
    centres = [(0.0, -0.45), (0.35, -0.35), (0.0, 0.45), (0.45, -0.1), (-0.45, -0.1),
               (0.2, 0.2), (-0.2, 0.2), (0.0, -0.7), (0.3, 0.55), (-0.3, 0.55)]
    for e, (cx, cy) in enumerate(centres):
        g = np.exp(-((local[:, 0] - cx) ** 2 + (local[:, 1] - cy) ** 2) / (2 * 0.18 ** 2)) * face
        amp = 0.004 * (1.0 + 0.25 * rng.uniform(-1, 1))
        d[:, :, e] = amp * g[:, None] * n
    d[:, 1, 0] += -0.006 * np.exp(-((local[:, 1] + 0.6) ** 2) / 0.05) * face  # mouth-open: chin down
    return d


def _pose_dirs(v: np.ndarray, radial: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(V, 3, 486) correctives: an outward bulge ``-k (trace(R_j) - 3)`` where joint j blends."""
    V = len(v)
    pd = np.zeros((V, 3, (NUM_JOINTS - 1) * 9))
    nrm = radial / (np.linalg.norm(radial, axis=1, keepdims=True) + 1e-9)
    for name in ("left_hip", "right_hip", "left_knee", "right_knee", "left_shoulder", "right_shoulder",
                 "left_elbow", "right_elbow"):
        j = J[name]
        bump = 4.0 * weights[:, j] * weights[:, PARENTS[j]]
        for diag in (0, 4, 8):
            pd[:, :, 9 * (j - 1) + diag] = -0.004 * bump[:, None] * nrm
    return pd


# ------------------------------------------------------------------------------------------ write
def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            b = io.BytesIO()
            arr = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # keeps 0-d arrays 0-d
            np.lib.format.write_array(b, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, b.getvalue())
    return buf.getvalue()


def write_synthetic_smplx(folder: str | Path, seed: int = 0, garment: bool = True) -> Path:
    """Write the stand-in as ``<folder>/SMPLX_NEUTRAL.npz`` (atomic; deterministic bytes).

    Args:
        folder: output folder (created).
        seed: proportion jitter / expression amplitudes / hand PCA basis.
        garment: include the skirt (default, see the module docstring).

    Returns:
        The written file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = _npz_bytes(build_synthetic_smplx(seed, garment).arrays)
    out = folder / FILENAME
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out


def ensure_synthetic_smplx(folder: str | Path | None = None) -> Path:
    """The stand-in model file, written once (``cache_dir()/models/smplx_synthetic/`` by default).

    A file from another generator version is rewritten.
    """
    if folder is None:
        from avatarbench.paths import cache_dir

        folder = cache_dir() / "models" / "smplx_synthetic"
    folder = Path(folder)
    out = folder / FILENAME
    stamp = folder / "VERSION"
    if out.exists() and stamp.exists() and stamp.read_text().strip() == VERSION:
        return out
    write_synthetic_smplx(folder, seed=0)
    tmp = folder / f".VERSION.{os.getpid()}"
    tmp.write_text(VERSION + "\n")
    os.replace(tmp, stamp)
    return out


__all__ = ["write_synthetic_smplx", "ensure_synthetic_smplx", "build_synthetic_smplx", "rest_joints", "PARTS",
           "VERSION"]
