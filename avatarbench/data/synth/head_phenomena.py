"""The head phenomena of the synthetic world (see :mod:`avatarbench.data.synth.world` for what each
stands for, its magnitude and source).

- :func:`track_flame_params`: the tracker's view of the true FLAME parameters (``tracking_noise``);
- :class:`HairGeometry`: hair shell + side wall + fringe + lagging locks (``hair_volume``);
- :class:`ExpressionDetail`: folds, bulge and lip roll outside the blendshape span, and the crease
  shading (``expression_detail``);
- :class:`Bust`: neck continuation, shoulders, collar and shirt on FLAME's root joint (``shoulders``);
- :class:`HeadScene`: assembles the FLAME mesh with the switched-on extras into one ground-truth mesh
  and its shader.

All geometry is built in FLAME's shaped rest space (identity shape + static offset, zero pose and
expression) and posed with FLAME's joint transforms ``A`` (B, 5, 4, 4): the hair with the neck joint
(1, the head), the bust with the root joint (0).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from avatarbench.data.synth.appearance import (
    AMBIENT,
    ATTR_DIM,
    FILL_LIGHT,
    KEY_LIGHT,
    HeadAppearance,
    _smooth_vertex_weights,
    _smoothstep,
)
from avatarbench.data.synth.mesh_raster import SurfaceSamples, vertex_normals
from avatarbench.data.synth.world import World

# material ids (last vertex-attribute column of the combined mesh)
MAT_FLAME, MAT_HAIR, MAT_BUST = 0, 1, 2

# ----------------------------------------------------------------------------- tracking noise
#: key -> (jitter sigma, bias amplitude, components) in the parameter's units (rad, m, coefficient)
TRACKING_NOISE = {
    "rotation": (math.radians(0.25), math.radians(0.6), None),
    "neck_pose": (math.radians(0.25), math.radians(0.6), None),
    "translation": (0.0004, np.array([0.0015, 0.0015, 0.003]), None),
    "jaw_pose": (math.radians(0.5), math.radians(1.0), None),
    "eyes_pose": (math.radians(1.0), math.radians(2.0), None),
    "expr": (0.04, 0.08, 20),
}
SHAPE_ERROR_SIGMA = 0.15  # shape coefficients 0-19
SHAPE_ERROR_COMPONENTS = 20
STATIC_OFFSET_RECOVERED = 0.5


def _smooth_bias(rng: np.random.Generator, T: int, dims: int, amp) -> np.ndarray:
    """(T, dims) temporally smooth bias: a constant ~ N(0, (amp/sqrt 2)^2) + one slow sinusoid
    (0.3-1 cycles per sequence) of amplitude amp/sqrt 2; RMS over sequences ~0.87 amp."""
    u = np.linspace(0.0, 1.0, T) if T > 1 else np.zeros(1)
    amp = np.broadcast_to(np.asarray(amp, dtype=np.float64), (dims,)) if np.ndim(amp) else np.full(dims, amp)
    const = rng.normal(size=dims) * amp / math.sqrt(2)
    f = rng.uniform(0.3, 1.0, size=dims)
    ph = rng.uniform(0, 2 * math.pi, size=dims)
    return const[None] + (amp / math.sqrt(2))[None] * np.sin(2 * math.pi * f[None] * u[:, None] + ph[None])


def track_flame_params(params: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """What a tracker delivers for one sequence: truth + smooth bias + per-frame jitter.

    Args:
        params: true ``translation (T,3) rotation (T,3) neck_pose (T,3) jaw_pose (T,3) eyes_pose (T,6)
            expr (T,E)`` float32.
        rng: the sequence's generator.
    Returns:
        the same keys and shapes (float32). Eyes get one common error for both eyes (gaze).
    """
    out = {}
    for key, (jit, bias, comps) in TRACKING_NOISE.items():
        x = params[key].astype(np.float64)
        T, D = x.shape
        d = D if comps is None else min(comps, D)
        if key == "eyes_pose":
            e = _smooth_bias(rng, T, 3, bias) + rng.normal(size=(T, 3)) * jit
            err = np.concatenate([e, e], 1)
        else:
            err = np.zeros((T, D))
            err[:, :d] = _smooth_bias(rng, T, d, bias if np.ndim(bias) == 0 else bias[:d]) \
                + rng.normal(size=(T, d)) * jit
        out[key] = (x + err).astype(np.float32)
    return out


def track_identity(shape: np.ndarray, static_offset: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The tracker's identity: shape (n,) with coefficients 0-19 perturbed, static offset (1,V,3) halved."""
    s = shape.astype(np.float64).copy()
    s[:SHAPE_ERROR_COMPONENTS] += rng.normal(size=SHAPE_ERROR_COMPONENTS) * SHAPE_ERROR_SIGMA
    return s.astype(np.float32), (static_offset * STATIC_OFFSET_RECOVERED).astype(np.float32)


def mesh_difference(verts_a: torch.Tensor, verts_b: torch.Tensor, cameras) -> dict[str, float]:
    """Per-vertex distance between two (T, V, 3) meshes in mm (mean, p95, max) and projected in pixels
    (mean over cameras and vertices; ``cameras`` at the dataset's resolution)."""
    d = (verts_a.double() - verts_b.double()).norm(dim=-1) * 1000.0
    px = []
    for cam in cameras:
        for t in range(verts_a.shape[0]):
            pa = cam.project(verts_a[t].double())[:, :2]
            pb = cam.project(verts_b[t].double())[:, :2]
            px.append((pa - pb).norm(dim=-1).mean())
    return {"mesh_mm_mean": float(d.mean()), "mesh_mm_p95": float(d.flatten().quantile(0.95)),
            "mesh_mm_max": float(d.max()), "pixels_mean": float(torch.stack(px).mean())}


# ----------------------------------------------------------------------------- helpers
def _transform(A: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Apply a (4, 4) transform to (N, 3) points."""
    return p @ A[:3, :3].T + A[:3, 3]


def _rodrigues(w: np.ndarray) -> np.ndarray:
    """(N, 3) rotation vectors -> (N, 3, 3)."""
    th = np.linalg.norm(w, axis=1)
    k = w / np.maximum(th, 1e-12)[:, None]
    K = np.zeros((len(w), 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    K[:, 1, 0], K[:, 2, 0], K[:, 2, 1] = k[:, 2], -k[:, 1], k[:, 0]
    s, c = np.sin(th)[:, None, None], np.cos(th)[:, None, None]
    return np.eye(3)[None] + s * K + (1 - c) * (K @ K)


def _boundary_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) directed edges used by exactly one face (in that face's winding)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(e, 1)
    _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    return e[cnt[inv.ravel()] == 1]


def _lit(col: torch.Tensor, n: torch.Tensor, v: torch.Tensor, ks: float, shin: float) -> torch.Tensor:
    """Blinn-Phong with the studio lights (``n`` already facing the viewer)."""
    diffuse = torch.full((n.shape[0],), AMBIENT)
    spec = torch.zeros(n.shape[0])
    for ldir, inten in (KEY_LIGHT, FILL_LIGHT):
        l = torch.tensor(ldir, dtype=torch.float32)[None]
        ndl = (n * l).sum(1)
        diffuse = diffuse + inten * ndl.clamp(min=0)
        h = torch.nn.functional.normalize(l + v, dim=1)
        spec = spec + inten * (n * h).sum(1).clamp(min=0).pow(shin) * (ndl > 0).float()
    return col * diffuse[:, None] + ks * spec[:, None]


def _subset(s: SurfaceSamples, idx: torch.Tensor) -> SurfaceSamples:
    return SurfaceSamples(*(getattr(s, f)[idx] if getattr(s, f) is not None else None
                            for f in ("positions", "normals", "face_normals", "view_dirs", "attrs", "face_id",
                                      "bary", "depth", "sample_yx")))


# ----------------------------------------------------------------------------- hair
HAIR_CROWN_THICKNESS = 0.012
HAIR_EDGE_THICKNESS = 0.002
FRINGE_THICKNESS = 0.004
FRINGE_LENGTH = 0.015
LOCK_LAG = 0.8
LOCK_MAX_ANGLE = 0.5


class HairGeometry:
    """Hair volume in FLAME's shaped rest space.

    Args:
        canon: (V, 3) identity rest vertices; faces: (F, 3) FLAME faces; masks: FLAME masks;
        app: the identity's appearance (hair region and hairline).
    Attributes:
        rest: (H, 3) rest vertices (shell, wall bottom, locks); faces: (G, 3) local faces;
        lock_root: (H,) index of each lock vertex's root vertex (-1 for rigid vertices);
        lock_s: (H,) position along the lock in [0, 1] (0 for rigid vertices).
    """

    def __init__(self, canon: np.ndarray, faces: np.ndarray, masks: dict, app: HeadAppearance):
        cv = np.asarray(canon, np.float64)
        faces = np.asarray(faces, np.int64)
        V = cv.shape[0]
        n = vertex_normals(torch.from_numpy(cv), torch.from_numpy(faces)).double().numpy()
        p = torch.from_numpy(cv).float()
        hw = app._hair_weight(p, app.noise(p)).double().numpy()
        frozen = np.zeros(V, bool)
        for k in ("left_eyeball", "right_eyeball", "teeth"):
            if k in masks:
                frozen[np.asarray(masks[k])] = True
        c = app.head_center.double().numpy()
        d = cv - c
        cos_front = d[:, 2] / np.maximum(np.linalg.norm(d[:, [0, 2]], axis=1), 1e-9)
        front_line = app.eye_y + 0.065 + app.params.hairline_height
        fringe = (~frozen & (cos_front > 0.55) & (cv[:, 1] > front_line - FRINGE_LENGTH) & (hw <= 0.5)
                  & (np.abs(cv[:, 0]) < 0.05))
        hair = ~frozen & ((hw > 0.5) | fringe)
        fmask = hair[faces].all(1)
        hf = faces[fmask]
        used = np.unique(hf)
        local = -np.ones(V, np.int64)
        local[used] = np.arange(len(used))
        interior = _smooth_vertex_weights((hw > 0.5).astype(np.float64), faces, 4)
        s = np.clip((interior - 0.5) * 2.0, 0.0, 1.0)
        thick = HAIR_EDGE_THICKNESS + (HAIR_CROWN_THICKNESS - HAIR_EDGE_THICKNESS) * s
        thick = np.where(fringe, FRINGE_THICKNESS, thick)
        shell = cv[used] + thick[used, None] * n[used]
        # side wall: each boundary edge of the shell down to (just under) the scalp
        be = _boundary_edges(local[hf])
        bottom = cv[used] - 0.0005 * n[used]
        ns = len(used)
        wall = []
        for a, b in be:
            wall += [[b, a, ns + a], [b, ns + a, ns + b]]
        verts = [shell, bottom]
        fl = [local[hf], np.asarray(wall, np.int64).reshape(-1, 3)]
        root, along = [-np.ones(2 * ns, np.int64)], [np.zeros(2 * ns)]
        # locks: ribbons hanging from the shell at the temples and the back
        base = 2 * ns
        for az, length in ((1.35, 0.06), (-1.35, 0.06), (2.4, 0.07), (-2.4, 0.07), (2.9, 0.05), (-2.9, 0.05)):
            target_dir = np.array([math.sin(az), 0.0, math.cos(az)])
            y_root = app.eye_y + (0.015 if abs(az) < 2 else -0.02)
            cand = np.arange(ns)
            score = -(shell[:, [0, 2]] - c[[0, 2]]) @ target_dir[[0, 2]] + 8.0 * np.abs(shell[:, 1] - y_root)
            r = int(cand[np.argmin(score)])
            r_pos = shell[r]
            out_dir = target_dir * 0.25 + np.array([0.0, -1.0, 0.0])
            out_dir /= np.linalg.norm(out_dir)
            side = np.cross(out_dir, target_dir)
            side /= np.linalg.norm(side)
            K = 7
            rows = []
            for k in range(K):
                t = k / (K - 1)
                centre = r_pos + 0.003 * target_dir + length * t * out_dir
                w = 0.006 * (1.0 - 0.5 * t)
                rows.append([centre - w * side, centre, centre + w * side])
            lv = np.asarray(rows).reshape(-1, 3)
            lf = []
            for k in range(K - 1):
                for j in range(2):
                    a0, a1, b0, b1 = k * 3 + j, k * 3 + j + 1, (k + 1) * 3 + j, (k + 1) * 3 + j + 1
                    lf += [[a0, b0, a1], [a1, b0, b1]]
            verts.append(lv)
            fl.append(np.asarray(lf) + base)
            root.append(np.full(len(lv), base + 1))  # the lock's first centre vertex
            along.append(np.repeat(np.linspace(0, 1, K), 3))
            base += len(lv)
        self.rest = np.concatenate(verts).astype(np.float64)
        self.faces = np.concatenate(fl).astype(np.int64)
        self.lock_root = np.concatenate(root)
        self.lock_s = np.concatenate(along)
        self.num_shell = ns

    def pose(self, A_head: torch.Tensor, omega_head: np.ndarray | None) -> torch.Tensor:
        """(H, 3) posed hair vertices.

        Args:
            A_head: (4, 4) FLAME neck-joint transform of the frame (rest -> posed).
            omega_head: (3,) head rotation change since the previous timestep (rotation vector in
                the head's rest frame), None for the first timestep (no lag).
        """
        p = self.rest.copy()
        if omega_head is not None:
            w = -LOCK_LAG * np.asarray(omega_head, np.float64)
            ang = np.linalg.norm(w)
            if ang > LOCK_MAX_ANGLE:
                w = w * (LOCK_MAX_ANGLE / ang)
            lk = self.lock_root >= 0
            if ang > 0 and lk.any():
                R = _rodrigues(w[None] * (self.lock_s[lk] ** 2)[:, None])
                r = self.rest[self.lock_root[lk]]
                p[lk] = r + np.einsum("nij,nj->ni", R, self.rest[lk] - r)
        return _transform(A_head.double(), torch.from_numpy(p))


# ----------------------------------------------------------------------------- expression detail
BROW_FULL, SMILE_FULL, PUCKER_FULL = 1.2, 1.2, 1.0
FOREHEAD_DEPTH, FOREHEAD_SPACING, FOREHEAD_DARK = 0.0008, 0.009, 0.30
NASOLABIAL_DEPTH, CHEEK_BULGE, NASOLABIAL_DARK = 0.0025, 0.003, 0.35
LIP_ROLL = 0.002


def _act(x: np.ndarray | float, full: float) -> np.ndarray:
    """Nonlinear activation in [0, 1]: smoothstep(0, full, x)."""
    t = np.clip(np.asarray(x, np.float64) / full, 0.0, 1.0)
    return t * t * (3 - 2 * t)


class ExpressionDetail:
    """Expression-dependent displacement and crease shading beyond FLAME's blendshapes.

    Uses the synthetic stand-in's named expression dims (1 smile, 2 brow raise, 4 pucker field).

    Args:
        canon: (V, 3) identity rest vertices; masks: FLAME masks; app: the identity's appearance.
    """

    def __init__(self, canon: np.ndarray, masks: dict, app: HeadAppearance):
        self.canon = np.asarray(canon, np.float64)
        self.eye_y = float(app.eye_y)
        self.front_line = app.eye_y + 0.065 + app.params.hairline_height
        self.lip = np.asarray(app.lip_center if app.lip_center is not None else [0.0, -0.045, 0.08], np.float64)
        V = self.canon.shape[0]
        frozen = np.zeros(V, bool)
        for k in ("left_eyeball", "right_eyeball", "teeth"):
            if k in masks:
                frozen[np.asarray(masks[k])] = True
        self.free = (~frozen).astype(np.float64)
        lips = np.zeros(V)
        if "lips" in masks:
            lips[np.asarray(masks["lips"])] = 1.0
        self.lips = lips
        self.front_z = float(app.front_z)

    @staticmethod
    def activations(expr: np.ndarray) -> dict[str, float]:
        """Per-frame activations in [0, 1] from the (true) expression coefficients (E,)."""
        e = np.asarray(expr, np.float64).reshape(-1)
        return {"brow": float(_act(e[2], BROW_FULL)), "smile": float(_act(e[1], SMILE_FULL)),
                "pucker": float(_act(e[4], PUCKER_FULL))}

    # fields of canonical points p (N, 3) (numpy or torch through the same algebra)
    def _forehead(self, p, lib):
        y0 = self.eye_y + 0.030
        band = (lib.clip((p[:, 1] - y0 + 0.006) / 0.006, 0, 1) * lib.clip((self.front_line - 0.004 - p[:, 1]) / 0.006, 0, 1)
                * lib.clip((0.05 - lib.abs(p[:, 0])) / 0.012, 0, 1) * (p[:, 2] > self.front_z - 0.05))
        phase = (p[:, 1] - y0) / FOREHEAD_SPACING
        creases = 0.0
        for k in range(3):
            creases = creases + lib.exp(-0.5 * ((phase - k) * FOREHEAD_SPACING / 0.0008) ** 2)
        return band, creases, phase

    def _nasolabial(self, p, lib):
        """distance (N,) to the nearer fold line (nose wing -> mouth corner) and the cheek weight."""
        best = None
        cheek = 0.0
        for sx in (1.0, -1.0):
            a = self.lip + np.array([sx * 0.017, 0.027, -0.006])
            b = self.lip + np.array([sx * 0.031, -0.003, -0.008])
            ab = b - a
            t = lib.clip(((p[:, 0] - a[0]) * ab[0] + (p[:, 1] - a[1]) * ab[1]) / float(ab[0] ** 2 + ab[1] ** 2), 0, 1)
            dx = p[:, 0] - (a[0] + t * ab[0])
            dy = p[:, 1] - (a[1] + t * ab[1])
            d = lib.sqrt(dx * dx + dy * dy)
            best = d if best is None else lib.minimum(best, d)
            cc = self.lip + np.array([sx * 0.040, 0.022, -0.012])
            cheek = cheek + lib.exp(-0.5 * ((p[:, 0] - cc[0]) ** 2 + (p[:, 1] - cc[1]) ** 2) / 0.011 ** 2)
        front = p[:, 2] > self.lip[2] - 0.04
        return best, cheek * front, front

    def displacement(self, expr: np.ndarray) -> np.ndarray:
        """(V,) signed displacement along the vertex normal (metres) for one frame."""
        a = self.activations(expr)
        p = self.canon
        band, _, phase = self._forehead(p, np)
        # geometric folds: the skin bunches into ridges between the creases
        fold = -FOREHEAD_DEPTH * 0.5 * (1 + np.cos(2 * np.pi * phase)) * band
        d = a["brow"] * fold
        dist, cheek, front = self._nasolabial(p, np)
        d = d + a["smile"] * (-NASOLABIAL_DEPTH * np.exp(-0.5 * (dist / 0.003) ** 2) * front + CHEEK_BULGE * cheek)
        d = d - a["pucker"] * LIP_ROLL * self.lips
        return d * self.free

    def darkening(self, p: torch.Tensor, act: dict[str, float]) -> torch.Tensor:
        """(N,) multiplicative crease shading in (0, 1] at canonical sample positions ``p`` (N, 3)."""
        band, creases, _ = self._forehead(p, torch)
        dark = FOREHEAD_DARK * act["brow"] * band * torch.clamp(creases, max=1.0)
        dist, _, front = self._nasolabial(p, torch)
        dark = dark + NASOLABIAL_DARK * act["smile"] * torch.exp(-0.5 * (dist / 0.0012) ** 2) * front
        return (1.0 - dark).clamp(0.3, 1.0)


# ----------------------------------------------------------------------------- shoulders
SHOULDER_HALF_WIDTH = 0.19
CHEST_HALF_DEPTH = 0.11
BUST_BOTTOM = -0.40
COLLAR_HEIGHT = 0.02


class Bust:
    """Neck continuation, shoulders and shirt below FLAME's neck ring, in the shaped rest space.

    Args:
        canon: (V, 3) identity rest vertices; masks: FLAME masks (``boundary`` = the neck ring).
    Attributes:
        rest: (B, 3); faces: (G, 3); collar_y, ring_y: canonical heights of the collar top and the ring.
    """

    def __init__(self, canon: np.ndarray, masks: dict, n_around: int = 48, n_rows: int = 22):
        cv = np.asarray(canon, np.float64)
        ring = cv[np.asarray(masks["boundary"])] if "boundary" in masks else cv[cv[:, 1] < cv[:, 1].min() + 0.005]
        cx, cz = ring[:, 0].mean(), ring[:, 2].mean()
        ax = 0.5 * (ring[:, 0].max() - ring[:, 0].min())
        az = 0.5 * (ring[:, 2].max() - ring[:, 2].min())
        y_ring = float(ring[:, 1].mean())
        self.ring_y = y_ring
        self.collar_y = y_ring - 0.006
        ys = np.concatenate([np.linspace(y_ring + 0.025, y_ring, 4)[:-1], np.linspace(y_ring, BUST_BOTTOM, n_rows)])
        th = np.linspace(0, 2 * np.pi, n_around, endpoint=False)
        rows = []
        for y in ys:
            s = float(np.clip((y_ring - 0.008 - y) / 0.06, 0, 1))
            s = s * s * (3 - 2 * s)
            inside = 0.97 if y > y_ring else 0.995
            a = inside * ax + (SHOULDER_HALF_WIDTH - ax) * s ** 0.7
            b = inside * az + (CHEST_HALF_DEPTH - az) * s
            e = 2.0 + 2.0 * s  # superellipse exponent: round neck -> boxy torso
            c, sn = np.cos(th), np.sin(th)
            x = a * np.sign(sn) * np.abs(sn) ** (2 / e)
            z = b * np.sign(c) * np.abs(c) ** (2 / e)
            yy = y - 0.03 * s * (np.abs(x) / max(a, 1e-6)) ** 2  # shoulders slope down
            rows.append(np.stack([cx + x, yy, cz - 0.012 * s + z], 1))
        self.rest = np.concatenate(rows)
        f = []
        R = len(ys)
        for r in range(R - 1):
            for k in range(n_around):
                a0, a1 = r * n_around + k, r * n_around + (k + 1) % n_around
                b0, b1 = a0 + n_around, a1 + n_around
                f += [[a0, a1, b0], [a1, b1, b0]]
        f = np.asarray(f, np.int64)
        # orient outward: a face normal points away from the axis
        v = self.rest
        fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        radial = v[f].mean(1) - np.array([cx, 0.0, cz])
        radial[:, 1] = 0.0
        if float(np.sum(fn * radial)) < 0:
            f = f[:, [0, 2, 1]]
        self.faces = f

    def pose(self, A_root: torch.Tensor) -> torch.Tensor:
        return _transform(A_root.double(), torch.from_numpy(self.rest))


# ----------------------------------------------------------------------------- scene
class HeadScene:
    """The ground-truth mesh of one identity in a world: FLAME (+ detail) + hair + bust, one shader.

    Args:
        model: the FLAME stand-in; canon: (V, 3) identity rest vertices; app: the appearance;
        world: the switched-on phenomena; variant: identity palette index (shirt colour).
    """

    def __init__(self, model, canon: np.ndarray, app: HeadAppearance, world: World, variant: int = 0):
        self.world = world
        self.app = app
        faces = model.faces.numpy().astype(np.int64)
        self.V = canon.shape[0]
        self.flame_faces = torch.from_numpy(faces)
        self.hair = HairGeometry(canon, faces, model.masks, app) if world.has("hair_volume") else None
        self.detail = ExpressionDetail(canon, model.masks, app) if world.has("expression_detail") else None
        self.bust = Bust(canon, model.masks) if world.has("shoulders") else None
        fl, attrs, n = [faces], [torch.cat([app.vertex_attrs, torch.zeros(self.V, 1)], 1)], self.V
        for part, mat in ((self.hair, MAT_HAIR), (self.bust, MAT_BUST)):
            if part is None:
                continue
            fl.append(part.faces + n)
            a = torch.zeros(len(part.rest), ATTR_DIM + 1)
            a[:, 0:3] = torch.from_numpy(part.rest).float()
            a[:, ATTR_DIM] = float(mat)
            attrs.append(a)
            n += len(part.rest)
        self.faces = torch.from_numpy(np.concatenate(fl))
        self.vertex_attrs = torch.cat(attrs)
        shirts = [(0.20, 0.28, 0.45), (0.45, 0.18, 0.16), (0.25, 0.35, 0.25), (0.35, 0.33, 0.30)]
        self.shirt = torch.tensor(shirts[variant % len(shirts)], dtype=torch.float32)
        self.skin = torch.tensor(app.params.skin, dtype=torch.float32)

    def verts(self, flame_verts: torch.Tensor, A: torch.Tensor, expr: np.ndarray,
              omega_head: np.ndarray | None) -> torch.Tensor:
        """(N, 3) ground-truth vertices of one frame.

        Args:
            flame_verts: (V, 3) FLAME posed with the true parameters; A: (5, 4, 4) its joint transforms;
            expr: (E,) true expression; omega_head: head rotation change (see :meth:`HairGeometry.pose`).
        """
        v = flame_verts.double()
        parts = [v]
        if self.detail is not None:
            n = vertex_normals(v, self.flame_faces)
            parts[0] = v + torch.from_numpy(self.detail.displacement(expr))[:, None] * n.double()
        if self.hair is not None:
            parts.append(self.hair.pose(A[1], omega_head))
        if self.bust is not None:
            parts.append(self.bust.pose(A[0]))
        return torch.cat(parts).float()

    def shader(self, expr: np.ndarray):
        """``shade_fn`` of one frame (the crease shading depends on the frame's expression)."""
        act = self.detail.activations(expr) if self.detail is not None else None

        def shade(smp: SurfaceSamples) -> torch.Tensor:
            mat = smp.attrs[:, ATTR_DIM].round().long()
            out = torch.zeros(mat.shape[0], 3)
            i0 = torch.nonzero(mat == MAT_FLAME).squeeze(1)
            if len(i0):
                s0 = _subset(smp, i0)
                s0.attrs = s0.attrs[:, :ATTR_DIM]
                rgb = self.app.shade(s0)
                if act is not None:
                    rgb = rgb * self.detail.darkening(s0.attrs[:, 0:3], act)[:, None]
                out[i0] = rgb
            for m, fn in ((MAT_HAIR, self._shade_hair), (MAT_BUST, self._shade_bust)):
                idx = torch.nonzero(mat == m).squeeze(1)
                if len(idx):
                    out[idx] = fn(_subset(smp, idx))
            return out.clamp(0, 1)

        return shade

    def _facing(self, smp: SurfaceSamples) -> torch.Tensor:
        n = smp.normals.clone()
        back = ~smp.front_facing
        n[back] = -n[back]
        return n

    def _shade_hair(self, smp: SurfaceSamples) -> torch.Tensor:
        p = smp.attrs[:, 0:3].contiguous()
        col = self.app._hair(p, self.app.noise(p))
        return _lit(col, self._facing(smp), smp.view_dirs, 0.14, 14.0)

    def _shade_bust(self, smp: SurfaceSamples) -> torch.Tensor:
        y = smp.attrs[:, 1]
        collar = _smoothstep(self.bust.collar_y + 0.002, self.bust.collar_y - 0.002, y)
        shirt = _smoothstep(self.bust.collar_y - COLLAR_HEIGHT + 0.002, self.bust.collar_y - COLLAR_HEIGHT - 0.002, y)
        white = torch.tensor([0.90, 0.89, 0.86])
        col = self.skin[None] * (1 - collar[:, None]) + white[None] * (collar - shirt)[:, None] \
            + self.shirt[None] * shirt[:, None]
        return _lit(col, self._facing(smp), smp.view_dirs, 0.04, 10.0)


__all__ = ["TRACKING_NOISE", "track_flame_params", "track_identity", "mesh_difference", "HairGeometry",
           "ExpressionDetail", "Bust", "HeadScene"]
