"""Viseme / expression targets -> FLAME jaw + expression coefficients, derived geometrically.

Nothing here knows what an expression coefficient means: for whatever FLAME model is loaded
(FLAME 2023 or the procedural stand-in) the mouth quantities of :mod:`avatarbench.drivers.visemes`
are *measured* on the posed mesh, and ``jaw_pose`` (3) + ``expr`` (n_expr) are fitted (float64,
L-BFGS) so that the measurements reach each target, with

- a penalty on the motion of the vertices far from the mouth (forehead, eye regions, nose,
  scalp, when the model's masks name them), so the fit does not distort the rest of the face;
- a small Tikhonov term on ``expr`` and ``jaw_pose``.

Measurements, on the mesh with zero global rotation/translation (FLAME: y up, face towards +z),
from the lip rings (``lip_inside_ring_*`` when the masks have them, as the stand-in does; else
the outer rings ``lip_outside_ring_*``, which for FLAME 2023 are the fixed ids VHAP uses):

- the middle third of the ring columns gives the lip gap (mean upper-lower distance) and the
  lips' forward position (mean z of both outer rings);
- the mouth corners are the first/last columns (mean of upper and lower);
- ``W0`` is the rest (neutral) corner distance; quantities are divided by it.

With the outer rings the gap includes the lips' thickness; subtracting its rest value makes
``opening`` the change of the inner gap to first order (documented in ``docs/drivers.md``).

Brow raise and blink targets are fitted the same way: the lower forehead vertices rise by a
fraction of W0; the upper eyelid (eye-region vertices above and near each eyeball joint, moving
down) closes by the measured lid height.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avatarbench.drivers.visemes import QUANTITIES, VISEMES, target_matrix

_FAR_REGIONS = ("forehead", "eye_region", "nose", "scalp")


@dataclass
class MouthRig:
    """Vertex ids used for the measurements (see module docstring)."""

    gap_upper: np.ndarray
    gap_lower: np.ndarray
    outer_upper: np.ndarray
    outer_lower: np.ndarray
    far: np.ndarray
    rest_gap: float
    rest_width: float
    rest_front: float
    uses_inner_ring: bool


def _rings(model) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    from avatarbench.bodymodels.flame import _lip_rings

    m = model.masks
    if "lip_outside_ring_upper" in m and "lip_outside_ring_lower" in m:
        ou, ol = m["lip_outside_ring_upper"], m["lip_outside_ring_lower"]
    else:
        arrays = {"v_template": np.zeros((model.num_base_verts, 3))}
        ou, ol = _lip_rings(arrays, m, model.source)
    if "lip_inside_ring_upper" in m and "lip_inside_ring_lower" in m and \
            len(m["lip_inside_ring_upper"]) == len(m["lip_inside_ring_lower"]):
        return m["lip_inside_ring_upper"], m["lip_inside_ring_lower"], ou, ol, True
    return ou, ol, ou, ol, False


def _middle(n: int) -> slice:
    k = max(n // 3, 1)
    return slice((n - k) // 2, (n - k) // 2 + k)


def _measure_raw(verts: torch.Tensor, gu, gl, ou, ol) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """verts (B, V, 3) -> (gap (B,), width (B,), front (B,)) in metres."""
    mg, mo = _middle(len(gu)), _middle(len(ou))
    gap = (verts[:, gu[mg]] - verts[:, gl[mg]]).norm(dim=-1).mean(dim=1)
    c0 = 0.5 * (verts[:, ou[0]] + verts[:, ol[0]])
    c1 = 0.5 * (verts[:, ou[-1]] + verts[:, ol[-1]])
    width = (c0 - c1).norm(dim=-1)
    front = 0.5 * (verts[:, ou[mo], 2].mean(dim=1) + verts[:, ol[mo], 2].mean(dim=1))
    return gap, width, front


def build_rig(model, shape: torch.Tensor | None = None) -> MouthRig:
    """Find the measurement vertices of ``model`` and its rest measurements (for ``shape``)."""
    gu, gl, ou, ol, inner = _rings(model)
    mouth = set(np.concatenate([gu, gl, ou, ol]).tolist())
    far = np.unique(np.concatenate([model.masks[r] for r in _FAR_REGIONS if r in model.masks] or
                                   [np.zeros(0, np.int64)]))
    far = np.array([i for i in far.tolist() if i not in mouth], np.int64)
    with torch.no_grad():
        v = _forward(model, shape, None, None)
        g, w, f = _measure_raw(v, gu, gl, ou, ol)
    return MouthRig(np.asarray(gu), np.asarray(gl), np.asarray(ou), np.asarray(ol), far, float(g[0]),
                    float(w[0]), float(f[0]), inner)


def _forward(model, shape, expr, jaw) -> torch.Tensor:
    dt = model.v_template.dtype
    kw = {}
    if shape is not None:
        kw["shape"] = torch.as_tensor(shape, dtype=dt).reshape(1, -1)
    if expr is not None:
        kw["expr"] = expr
    if jaw is not None:
        kw["jaw_pose"] = jaw
    return model(**kw).verts


def measure_mouth(model, rig: MouthRig, verts: torch.Tensor) -> torch.Tensor:
    """Mouth quantities of posed vertices (canonical frame).

    Args:
        verts: (B, V, 3).
    Returns:
        (B, 3): opening, width, protrusion (units of the rest mouth width W0, see module docstring).
    """
    g, w, f = _measure_raw(verts, rig.gap_upper, rig.gap_lower, rig.outer_upper, rig.outer_lower)
    W0 = rig.rest_width
    return torch.stack([(g - rig.rest_gap) / W0, w / W0 - 1.0, (f - rig.rest_front) / W0], dim=-1)


@dataclass
class VisemeBasis:
    """Fitted FLAME coefficients per viseme.

    Attributes:
        jaw: (K, 3) jaw axis-angle per viseme (K = len(VISEMES)).
        expr: (K, n_expr).
        reached: (K, 3) measured quantities after the fit.
        targets: (K, 3).
        brow_expr: (n_expr,) a full brow raise; blink_expr: (n_expr,) a full blink (upper lids).
    """

    jaw: np.ndarray
    expr: np.ndarray
    reached: np.ndarray
    targets: np.ndarray
    brow_expr: np.ndarray
    blink_expr: np.ndarray


def _expr_dirs(model, ids: np.ndarray) -> torch.Tensor:
    """(len(ids)*3, n_expr) float64: the expression blendshapes of vertices ``ids``."""
    sd = model.shapedirs[torch.as_tensor(ids)][:, :, model.n_shape:model.n_shape + model.n_expr]
    return sd.double().reshape(-1, model.n_expr)


def _as64(model):
    import copy

    return model if model.v_template.dtype == torch.float64 else copy.deepcopy(model).double()


def fit_mouth(model, rig: MouthRig, targets: np.ndarray, *, shape=None, weights=(1.0, 1.0, 1.0),
              far_weight: float = 1.0, reg: float = 1e-4, iters: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit jaw opening + expression so the mouth quantities reach ``targets`` (Gauss-Newton, float64).

    The jaw rotates about FLAME's lateral (x) axis only: the hinge of the jaw; its sign and size
    are fitted. The far-from-mouth penalty is exact and quadratic in ``expr`` (those vertices do
    not follow the jaw), the mouth quantities are re-linearised every iteration.

    Args:
        targets: (K, 3) opening, width, protrusion (units of W0).
    Returns:
        (jaw (K, 3), expr (K, n_expr), reached (K, 3)).
    """
    m64 = _as64(model)
    K, n = targets.shape[0], model.n_expr
    tgt = torch.as_tensor(targets, dtype=torch.float64)
    wq = torch.as_tensor(weights, dtype=torch.float64)
    W0 = rig.rest_width
    P = n + 1
    H = reg * torch.eye(P, dtype=torch.float64)
    if len(rig.far):
        S = _expr_dirs(m64, rig.far) / W0
        H[1:, 1:] += far_weight * (S.T @ S) / len(rig.far)
    p = torch.zeros(K, P, dtype=torch.float64)
    shp = None if shape is None else torch.as_tensor(shape, dtype=torch.float64).reshape(1, -1)

    def quantities(p):
        jaw = torch.cat([p[:, :1], p.new_zeros(p.shape[0], 2)], dim=1)
        v = _forward(m64, shp, p[:, 1:], jaw)
        return measure_mouth(m64, rig, v)

    for _ in range(iters):
        x = p.clone().requires_grad_(True)
        q = quantities(x)
        J = torch.stack([torch.autograd.grad(q[:, i].sum(), x, retain_graph=i < 2)[0] for i in range(3)], dim=1)
        r = (q - tgt).detach()  # (K, 3)
        A = torch.einsum("kip,i,kiq->kpq", J, wq, J) + H[None]
        g = torch.einsum("kip,i,ki->kp", J, wq, r) + (H[None] @ p[..., None])[..., 0]
        p = p - torch.linalg.solve(A, g[..., None])[..., 0]
    with torch.no_grad():
        reached = quantities(p)
    jaw = np.zeros((K, 3))
    jaw[:, 0] = p[:, 0].numpy()
    return jaw, p[:, 1:].numpy().copy(), reached.numpy()


def _fit_region(model, rig: MouthRig, ids: np.ndarray, displacement: np.ndarray, *, shape=None,
                reg: float = 1e-4) -> np.ndarray:
    """Expression (n_expr,) moving vertices ``ids`` by ``displacement`` (len(ids), 3), mouth still.

    Linear least squares (expression blendshapes are linear in ``expr``).
    """
    W0 = rig.rest_width
    A = _expr_dirs(model, ids) / W0 / np.sqrt(len(ids))
    mouth = np.concatenate([rig.outer_upper, rig.outer_lower])
    M = _expr_dirs(model, mouth) / W0 / np.sqrt(len(mouth))
    b = torch.as_tensor(displacement, dtype=torch.float64).reshape(-1) / W0 / np.sqrt(len(ids))
    H = A.T @ A + M.T @ M + reg * torch.eye(model.n_expr, dtype=torch.float64)
    return torch.linalg.solve(H, A.T @ b).numpy()


def brow_and_blink(model, rig: MouthRig, shape=None) -> tuple[np.ndarray, np.ndarray]:
    """Expressions for a brow raise (lower forehead up by 0.12 W0) and a blink (upper lids down)."""
    n = model.n_expr
    with torch.no_grad():
        kw = {} if shape is None else {"shape": torch.as_tensor(shape, dtype=torch.float32).reshape(1, -1)}
        out = model(**kw)
    v = out.verts[0].double().numpy()
    J = out.joints[0].double().numpy()
    brow, blink = np.zeros(n), np.zeros(n)
    W0 = rig.rest_width
    if "forehead" in model.masks and len(model.masks["forehead"]):
        fh = model.masks["forehead"]
        y = v[fh, 1]
        low = fh[y <= np.quantile(y, 0.3)]
        disp = np.zeros((len(low), 3))
        disp[:, 1] = 0.12 * W0
        brow = _fit_region(model, rig, low, disp, shape=shape)
    if "eye_region" in model.masks and len(J) >= 5:
        er = model.masks["eye_region"]
        lids, disp = [], []
        for j in (3, 4):
            c = J[j]
            d = v[er] - c
            sel = (np.hypot(d[:, 0], d[:, 1]) < 0.6 * W0) & (d[:, 1] > 0) & (d[:, 2] > 0)
            ids = er[sel]
            if len(ids):
                lids.append(ids)
                dd = np.zeros((len(ids), 3))
                dd[:, 1] = -0.8 * (v[ids, 1] - c[1])
                disp.append(dd)
        if lids:
            blink = _fit_region(model, rig, np.concatenate(lids), np.concatenate(disp), shape=shape)
    return brow, blink


_BASIS_CACHE: dict = {}
#: bump when the fit, the targets or the measurements change (invalidates the disk cache)
FIT_VERSION = 1


def _disk_key(model, shape) -> str | None:
    import hashlib

    from avatarbench.drivers.visemes import VISEME_TARGETS

    if model.source is None or not Path(model.source).is_file():
        return None
    st = Path(model.source).stat()
    h = hashlib.sha256()
    h.update(f"{FIT_VERSION}|{Path(model.source).resolve()}|{st.st_size}|{st.st_mtime_ns}|{model.n_expr}|"
             f"{model.num_verts}|{sorted(VISEME_TARGETS.items())}".encode())
    if shape is not None:
        h.update(np.asarray(shape, np.float32).tobytes())
    return h.hexdigest()[:24]


def viseme_basis(model, shape=None, *, disk_cache: bool = True) -> tuple[MouthRig, VisemeBasis]:
    """Fit every viseme of :data:`VISEMES`, plus brow raise and blink.

    Cached in memory and on disk (``cache_dir()/drivers/visemes_<key>.npz``, key = model file
    path/size/mtime, n_expr, shape, targets and :data:`FIT_VERSION`); the rig is rebuilt from
    the model every time (cheap).
    """
    key = (str(model.source), model.n_expr, model.num_verts,
           None if shape is None else np.asarray(shape, np.float32).tobytes())
    if key in _BASIS_CACHE:
        return _BASIS_CACHE[key]
    rig = build_rig(model, shape)
    names = ("jaw", "expr", "reached", "targets", "brow_expr", "blink_expr")
    dk = _disk_key(model, shape) if disk_cache else None
    path = None
    if dk is not None:
        from avatarbench.paths import cache_dir

        path = cache_dir() / "drivers" / f"visemes_{dk}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    basis = VisemeBasis(*(np.asarray(z[n]) for n in names))
                out = (rig, basis)
                _BASIS_CACHE[key] = out
                return out
            except (OSError, ValueError, KeyError):
                pass  # unreadable cache entry: refit and overwrite
    T = target_matrix()
    jaw, expr, reached = fit_mouth(model, rig, T, shape=shape)
    brow, blink = brow_and_blink(model, rig, shape)
    basis = VisemeBasis(jaw, expr, reached, T, brow, blink)
    if path is not None:
        import os

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **{n: getattr(basis, n) for n in names})
        os.replace(tmp, path)
    out = (rig, basis)
    _BASIS_CACHE[key] = out
    return out


__all__ = ["QUANTITIES", "VISEMES", "MouthRig", "VisemeBasis", "build_rig", "measure_mouth", "fit_mouth",
           "viseme_basis", "brow_and_blink"]
