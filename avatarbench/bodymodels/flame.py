"""The FLAME head model (Li et al. 2017) as used by GaussianAvatars / VHAP, with optional teeth.

Model file resolution (:func:`resolve_flame_path`), first that applies:

1. the ``path`` argument (a ``.pkl`` file, or a folder holding ``flame2023.pkl``,
   ``generic_model.pkl`` or ``flame_synthetic.pkl``);
2. ``$AVATARBENCH_FLAME_MODEL`` (same forms);
3. the procedural stand-in (:mod:`avatarbench.bodymodels.flame_synthetic`), generated once into
   ``avatarbench.paths.cache_dir()/models/flame_synthetic/``.

``FLAME_masks.pkl`` next to the model file is read when present (``FlameModel.masks``, region
name -> vertex ids); with teeth, ``teeth``, ``teeth_upper`` and ``teeth_lower`` are added.

Forward pass (GaussianAvatars' ``FlameHead.forward``): ``betas = [shape, expr]`` drive
``shapedirs[..., :n_shape]`` and ``shapedirs[..., 300:300+n_expr]``; ``static_offset`` is added to
the shaped template before posing; pose = ``[rotation, neck_pose, jaw_pose, eyes_pose]``
(5 joints: root, neck, jaw, left eye, right eye; axis-angle); linear blend skinning with pose
correctives; ``translation`` is added last. ``dynamic_offset`` is accepted and ignored, as in
GaussianAvatars (its loading is commented out upstream and VHAP does not track it by default).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avatarbench.bodymodels.flame_teeth import (
    FLAME_LIP_RING_LOWER,
    FLAME_LIP_RING_UPPER,
    FLAME_NUM_VERTS,
    TEETH_NUM_VERTS,
    add_teeth,
)
from avatarbench.bodymodels.lbs import lbs
from avatarbench.bodymodels.pickle_compat import load_legacy_pickle
from avatarbench.errors import ModelFileError

ENV_VAR = "AVATARBENCH_FLAME_MODEL"
FLAME_URL = "https://flame.is.tue.mpg.de"
MODEL_FILENAMES = ("flame2023.pkl", "generic_model.pkl", "flame_synthetic.pkl")
MASKS_FILENAME = "FLAME_masks.pkl"
JOINT_NAMES = ("root", "neck", "jaw", "left_eye", "right_eye")
N_SHAPE_MAX = 300  # shapedirs[..., :300] = identity, shapedirs[..., 300:] = expression
N_EXPR_MAX = 100
NUM_JOINTS = 5
DRIVING_KEYS = ("shape", "expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation",
                "static_offset", "dynamic_offset")
_POSE_SIZES = {"rotation": 3, "neck_pose": 3, "jaw_pose": 3, "eyes_pose": 6, "translation": 3}


@dataclass
class FlameOutput:
    """Result of :meth:`FlameModel.forward`.

    Attributes:
        verts: (B, V, 3) posed vertices (translation included).
        joints: (B, 5, 3) posed joints (translation included).
        A: (B, 5, 4, 4) per-joint transforms mapping shaped rest-pose points (template + shape +
            expression + static offset) to posed points, translation included.
    """

    verts: torch.Tensor
    joints: torch.Tensor
    A: torch.Tensor


def _missing_message(path: Path, origin: str) -> str:
    return (f"{path}: FLAME model file not found{origin}. FLAME is licence-gated: register at {FLAME_URL}, "
            f"accept the licence, download FLAME 2023 (flame2023.pkl + FLAME_masks.pkl) or FLAME 2020 "
            f"(generic_model.pkl), put them in one folder and pass that .pkl or set {ENV_VAR} to it "
            f"(see docs/body_models.md); leave {ENV_VAR} unset to use the synthetic stand-in")


def resolve_flame_path(path: str | Path | None = None) -> Path:
    """The FLAME model ``.pkl`` to load (see module docstring for the order).

    Raises:
        ModelFileError: an explicitly given path (argument or environment) does not exist.
    """
    origin = ""
    if path is None or str(path) == "":
        env = os.environ.get(ENV_VAR, "").strip()
        if not env:
            from avatarbench.bodymodels.flame_synthetic import ensure_synthetic_flame

            return ensure_synthetic_flame()
        path, origin = env, f" (from ${ENV_VAR})"
    p = Path(path).expanduser()
    if p.is_dir():
        for name in MODEL_FILENAMES:
            if (p / name).is_file():
                return p / name
        pkls = [q for q in sorted(p.glob("*.pkl")) if q.name != MASKS_FILENAME]
        if len(pkls) == 1:
            return pkls[0]
        raise ModelFileError(_missing_message(p / MODEL_FILENAMES[0], origin))
    if not p.is_file():
        raise ModelFileError(_missing_message(p, origin))
    return p


def _check_shape(path: Path, key: str, arr: np.ndarray, expected: tuple, text: str) -> None:
    ok = arr.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, arr.shape))
    if not ok:
        raise ModelFileError(f"{path}: key '{key}' has shape {tuple(arr.shape)} (expected {text})")


@lru_cache(maxsize=4)
def _read_cached(path: str, mtime_ns: int, size: int, masks_stamp: tuple) -> tuple[dict, dict]:
    return _read_flame_file(Path(path))


def read_flame_file(path: str | Path) -> tuple[dict, dict]:
    """Read and validate a FLAME model pickle and its ``FLAME_masks.pkl`` (if present).

    Returns:
        arrays: ``v_template (V,3) f64``, ``faces (F,3) i64``, ``shapedirs (V,3,S) S>=400``,
            ``posedirs (V,3,36)``, ``J_regressor (5,V)`` dense, ``weights (V,5)``, ``parents (5,)``,
            ``uv (V,2)`` or None, ``synthetic`` bool.
        masks: region -> int64 vertex ids ({} when there is no masks file).

    Raises:
        ModelFileError: unreadable file, missing key, or wrong shape (names file and key).
    """
    path = Path(path)
    st = path.stat()
    mp = path.parent / MASKS_FILENAME
    mstamp = (mp.stat().st_mtime_ns, mp.stat().st_size) if mp.is_file() else ()
    arrays, masks = _read_cached(str(path.resolve()), st.st_mtime_ns, st.st_size, mstamp)
    return dict(arrays), dict(masks)


def _read_flame_file(path: Path) -> tuple[dict, dict]:
    data = load_legacy_pickle(path)
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: holds a {type(data).__name__} (expected a FLAME model dict)")
    required = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")
    for key in required:
        if key not in data:
            raise ModelFileError(f"{path}: key '{key}' is missing (expected a FLAME model pickle with keys "
                                 f"{', '.join(required)})")
    v = np.asarray(data["v_template"], np.float64)
    _check_shape(path, "v_template", v, (None, 3), "(V, 3)")
    V = v.shape[0]
    f = np.asarray(data["f"]).astype(np.int64)
    _check_shape(path, "f", f, (None, 3), "(F, 3)")
    if f.min() < 0 or f.max() >= V:
        raise ModelFileError(f"{path}: key 'f' indexes vertices {f.min()}..{f.max()} (expected 0..{V - 1})")
    sd = np.asarray(data["shapedirs"], np.float64)
    _check_shape(path, "shapedirs", sd, (V, 3, None), f"({V}, 3, 400)")
    if sd.shape[2] < N_SHAPE_MAX + 1:
        raise ModelFileError(f"{path}: key 'shapedirs' has shape {sd.shape} (expected ({V}, 3, 400): "
                             f"300 shape + 100 expression)")
    pd = np.asarray(data["posedirs"], np.float64)
    P = (NUM_JOINTS - 1) * 9
    if pd.shape == (P, V * 3):
        pd = pd.T.reshape(V, 3, P)
    _check_shape(path, "posedirs", pd, (V, 3, P), f"({V}, 3, {P})")
    jr = data["J_regressor"]
    jr = np.asarray(jr.toarray() if hasattr(jr, "toarray") else jr, np.float64)
    _check_shape(path, "J_regressor", jr, (NUM_JOINTS, V), f"({NUM_JOINTS}, {V})")
    w = np.asarray(data["weights"], np.float64)
    _check_shape(path, "weights", w, (V, NUM_JOINTS), f"({V}, {NUM_JOINTS})")
    kt = np.asarray(data["kintree_table"]).astype(np.int64)
    _check_shape(path, "kintree_table", kt, (2, NUM_JOINTS), f"(2, {NUM_JOINTS})")
    parents = kt[0].copy()
    parents[0] = -1  # stored as -1 or as 2**32 - 1
    if np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, NUM_JOINTS)):
        raise ModelFileError(f"{path}: key 'kintree_table' has parents {kt[0].tolist()} "
                             f"(expected a tree in topological order, e.g. [-1, 0, 1, 1, 1])")
    uv = data.get("avatarbench_uv")
    if uv is not None:
        uv = np.asarray(uv, np.float32)
        _check_shape(path, "avatarbench_uv", uv, (V, 2), f"({V}, 2)")
    arrays = dict(v_template=v, faces=f, shapedirs=sd, posedirs=pd, J_regressor=jr, weights=w,
                  parents=parents, uv=uv, synthetic="avatarbench_synthetic" in data)

    masks: dict[str, np.ndarray] = {}
    mp = path.parent / MASKS_FILENAME
    if mp.is_file():
        raw = load_legacy_pickle(mp)
        if not isinstance(raw, dict):
            raise ModelFileError(f"{mp}: holds a {type(raw).__name__} (expected a dict of region -> vertex ids)")
        for key, ids in raw.items():
            ids = np.asarray(ids)
            if ids.dtype == bool and ids.shape == (V,):
                ids = np.nonzero(ids)[0]
            if ids.ndim != 1 or (ids.size and (not np.issubdtype(ids.dtype, np.integer)
                                               or ids.min() < 0 or ids.max() >= V)):
                raise ModelFileError(f"{mp}: key '{key}' is not a list of vertex ids in 0..{V - 1} "
                                     f"(expected int array; does this masks file belong to {path.name}?)")
            masks[str(key)] = ids.astype(np.int64)
    return arrays, masks


def _lip_rings(arrays: dict, masks: dict, path: Path | None) -> tuple[np.ndarray, np.ndarray]:
    if "lip_outside_ring_upper" in masks and "lip_outside_ring_lower" in masks:
        up, lo = masks["lip_outside_ring_upper"], masks["lip_outside_ring_lower"]
        if up.shape != (15,) or lo.shape != (15,):
            raise ModelFileError(f"{path.parent / MASKS_FILENAME if path else MASKS_FILENAME}: keys "
                                 f"'lip_outside_ring_upper/lower' have {up.size}/{lo.size} vertices (expected 15 each)")
        return up, lo
    if arrays["v_template"].shape[0] == FLAME_NUM_VERTS:
        return FLAME_LIP_RING_UPPER, FLAME_LIP_RING_LOWER
    raise ModelFileError(f"{path}: teeth need the lip rings 'lip_outside_ring_upper/lower' in {MASKS_FILENAME} "
                         f"next to it (expected FLAME topology with 5023 vertices, or masks); use teeth=False")


class FlameModel(nn.Module):
    """FLAME with optional GaussianAvatars teeth. Buffers are float32 (use ``.double()`` for tests).

    All buffers are constants loaded from the model file and non-persistent: ``state_dict()`` is
    empty, so checkpoints of methods that hold a ``FlameModel`` do not carry ~25 MB of FLAME.

    Attributes:
        faces: (F, 3) long (teeth faces last when ``has_teeth``).
        v_template: (V, 3).
        shapedirs: (V, 3, n_shape + n_expr) shape dims then expression dims.
        posedirs: (36, V*3) pose correctives (SMPL layout).
        J_regressor: (5, V) dense.
        lbs_weights: (V, 5).
        parents: (5,) long, ``[-1, 0, 1, 1, 1]`` for FLAME.
        teeth_faces_mask: (F,) bool.
        vertex_uv: (V, 2) canonical per-vertex coordinates (synthetic stand-in only; teeth get a
            (column/14, row/7) grid), or None.
        masks: region name -> vertex ids (np.int64).
        num_base_verts: vertices without teeth (5023 for FLAME).
        has_teeth, is_synthetic, source (Path or None), n_shape, n_expr.
    """

    def __init__(self, arrays: dict, masks: dict | None = None, *, teeth: bool = True, n_shape: int = 300,
                 n_expr: int = 100, source: Path | None = None):
        super().__init__()
        if not 0 <= n_shape <= N_SHAPE_MAX:
            raise ValueError(f"n_shape={n_shape} (expected 0..{N_SHAPE_MAX})")
        total = arrays["shapedirs"].shape[2]
        if not 0 <= n_expr <= total - N_SHAPE_MAX:
            raise ValueError(f"n_expr={n_expr} (expected 0..{total - N_SHAPE_MAX} for this model file)")
        self.n_shape, self.n_expr = int(n_shape), int(n_expr)
        self.source = Path(source) if source is not None else None
        self.is_synthetic = bool(arrays.get("synthetic", False))
        masks = {k: np.asarray(v, np.int64) for k, v in (masks or {}).items()}
        v, f = arrays["v_template"], arrays["faces"]
        sd, pd, jr, w = arrays["shapedirs"], arrays["posedirs"], arrays["J_regressor"], arrays["weights"]
        uv = arrays.get("uv")
        self.num_base_verts = int(v.shape[0])
        self.has_teeth = bool(teeth)
        teeth_mask = np.zeros(f.shape[0], bool)
        if teeth:
            up, lo = _lip_rings(arrays, masks, self.source)
            t = add_teeth(v, f, sd, pd, jr, w, up, lo, n_shape_dirs=N_SHAPE_MAX)
            v, f, sd, pd = t["v_template"], t["faces"], t["shapedirs"], t["posedirs"]
            jr, w = t["J_regressor"], t["weights"]
            teeth_mask = t["teeth_faces_mask"]
            masks.setdefault("lip_outside_ring_upper", np.asarray(up, np.int64))
            masks.setdefault("lip_outside_ring_lower", np.asarray(lo, np.int64))
            masks["teeth_upper"], masks["teeth_lower"] = t["teeth_upper"], t["teeth_lower"]
            masks["teeth"] = np.concatenate([t["teeth_upper"], t["teeth_lower"]])
            if uv is not None:
                cols, rows = np.meshgrid(np.arange(15) / 14.0, np.arange(8) / 7.0)
                uv = np.concatenate([uv, np.stack([cols, rows], -1).reshape(-1, 2).astype(np.float32)])
        self.masks = masks
        V = v.shape[0]
        dirs = np.concatenate([sd[:, :, :self.n_shape], sd[:, :, N_SHAPE_MAX:N_SHAPE_MAX + self.n_expr]], axis=2)
        f32 = torch.float32
        self.register_buffer("v_template", torch.tensor(v, dtype=f32), persistent=False)
        self.register_buffer("shapedirs", torch.tensor(dirs, dtype=f32), persistent=False)
        posedirs = pd.reshape(V * 3, -1).T.copy()  # (V, 3, 36) -> (36, V*3)
        self.register_buffer("posedirs", torch.tensor(posedirs, dtype=f32), persistent=False)
        self.register_buffer("J_regressor", torch.tensor(jr, dtype=f32), persistent=False)
        self.register_buffer("lbs_weights", torch.tensor(w, dtype=f32), persistent=False)
        self.register_buffer("parents", torch.tensor(arrays["parents"], dtype=torch.long), persistent=False)
        self.register_buffer("faces", torch.tensor(f, dtype=torch.long), persistent=False)
        self.register_buffer("teeth_faces_mask", torch.tensor(teeth_mask), persistent=False)
        uv_t = torch.tensor(uv, dtype=f32) if uv is not None else None
        self.register_buffer("vertex_uv", uv_t, persistent=False)

    # ------------------------------------------------------------------ info
    @property
    def num_verts(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def extra_repr(self) -> str:
        src = "synthetic stand-in" if self.is_synthetic else str(self.source)
        return (f"verts={self.num_verts}, faces={self.num_faces}, teeth={self.has_teeth}, "
                f"n_shape={self.n_shape}, n_expr={self.n_expr}, source={src}")

    # ------------------------------------------------------------------ forward
    def _batched(self, name: str, x, width: int | None, B: int | None) -> torch.Tensor | None:
        if x is None:
            return None
        x = torch.as_tensor(x).to(dtype=self.v_template.dtype, device=self.v_template.device)
        if width is not None and x.dim() == 1:
            x = x[None]
        if width is not None:
            if x.dim() != 2:
                raise ValueError(f"FLAME input '{name}' has shape {tuple(x.shape)} (expected (B, {width}))")
            if x.shape[1] > width:
                raise ValueError(f"FLAME input '{name}' has {x.shape[1]} values (this model uses at most {width})")
            if x.shape[1] < width:
                x = torch.cat([x, x.new_zeros(x.shape[0], width - x.shape[1])], dim=1)
        return x

    def _static_offset(self, off: torch.Tensor) -> torch.Tensor:
        if off.dim() == 2:
            off = off[None]
        if off.dim() != 3 or off.shape[2] != 3:
            raise ValueError(f"static_offset has shape {tuple(off.shape)} (expected (B, {self.num_verts}, 3))")
        n = off.shape[1]
        if n == self.num_verts:
            return off
        if not self.has_teeth and n == self.num_base_verts + TEETH_NUM_VERTS:
            return off[:, : self.num_base_verts]  # tracked with teeth, model without: drop teeth offsets
        if self.has_teeth and n == self.num_base_verts:
            return torch.cat([off, off.new_zeros(off.shape[0], TEETH_NUM_VERTS, 3)], dim=1)
        raise ValueError(f"static_offset has {n} vertices (expected {self.num_verts}"
                         f"{' with teeth' if self.has_teeth else ''})")

    def forward(self, shape=None, expr=None, rotation=None, neck_pose=None, jaw_pose=None, eyes_pose=None,
                translation=None, static_offset=None, dynamic_offset=None) -> FlameOutput:
        """Pose the model. Every input is optional (missing = zeros); batch-1 inputs broadcast.

        Args:
            shape: (B, <=n_shape) identity coefficients (zero-padded), or (n,) shared.
            expr: (B, <=n_expr) expression coefficients (zero-padded).
            rotation, neck_pose, jaw_pose: (B, 3) axis-angle.
            eyes_pose: (B, 6) left eye then right eye, axis-angle.
            translation: (B, 3) added after skinning.
            static_offset: (B|1, V, 3) added to the shaped template before skinning. A (.., V-120, 3)
                offset is zero-padded for the teeth; with ``teeth=False`` a (.., V+120, 3) one is cut.
            dynamic_offset: accepted and ignored (as GaussianAvatars).

        Returns:
            :class:`FlameOutput` (verts (B,V,3), joints (B,5,3), A (B,5,4,4)).
        """
        del dynamic_offset
        ins = {"shape": self._batched("shape", shape, self.n_shape, None),
               "expr": self._batched("expr", expr, self.n_expr, None)}
        raw = dict(rotation=rotation, neck_pose=neck_pose, jaw_pose=jaw_pose, eyes_pose=eyes_pose,
                   translation=translation)
        for k, n in _POSE_SIZES.items():
            ins[k] = self._batched(k, raw[k], n, None)
        off = self._static_offset(self._batched("static_offset", static_offset, None, None)) \
            if static_offset is not None else None
        sizes = {x.shape[0] for x in ins.values() if x is not None} | ({off.shape[0]} if off is not None else set())
        B = max(sizes) if sizes else 1
        if sizes - {1, B}:
            raise ValueError(f"FLAME inputs have inconsistent batch sizes {sorted(sizes)}")
        z = self.v_template.new_zeros
        full = {}
        for k, n in [("shape", self.n_shape), ("expr", self.n_expr)] + list(_POSE_SIZES.items()):
            x = ins[k] if ins[k] is not None else z(1, n)
            full[k] = x.expand(B, n)
        betas = torch.cat([full["shape"], full["expr"]], dim=1)
        pose = torch.cat([full["rotation"], full["neck_pose"], full["jaw_pose"], full["eyes_pose"]], dim=1)
        verts, joints, A = lbs(betas, pose, self.v_template, self.shapedirs, self.posedirs, self.J_regressor,
                               self.parents, self.lbs_weights, extra_offset=off)
        t = full["translation"]
        verts = verts + t[:, None]
        joints = joints + t[:, None]
        A = A.clone()
        A[..., :3, 3] = A[..., :3, 3] + t[:, None]
        return FlameOutput(verts=verts, joints=joints, A=A)

    def forward_dict(self, driving: dict) -> FlameOutput:
        """:meth:`forward` from a driving dict with batch dims (e.g. ``Frame.driving_tensors()``).

        Keys outside :data:`DRIVING_KEYS` are ignored.
        """
        return self.forward(**{k: driving[k] for k in DRIVING_KEYS if k in driving})


def load_flame(path: str | Path | None = None, *, teeth: bool = True, n_shape: int = 300,
               n_expr: int = 100) -> FlameModel:
    """Load FLAME (or the synthetic stand-in) as a :class:`FlameModel`.

    Args:
        path: model ``.pkl`` or its folder; None = ``$AVATARBENCH_FLAME_MODEL`` or the stand-in.
        teeth: add the GaussianAvatars teeth (120 vertices, 168 faces).
        n_shape: identity coefficients used (<= 300).
        n_expr: expression coefficients used (<= 100).

    Raises:
        ModelFileError: missing file (with where to get FLAME), unreadable file, bad key/shape.
    """
    p = resolve_flame_path(path)
    arrays, masks = read_flame_file(p)
    return FlameModel(arrays, masks, teeth=teeth, n_shape=n_shape, n_expr=n_expr, source=p)
