"""SMPL-X body model (our own forward pass; no dependency on the ``smplx`` package).

Model file: the licensed ``SMPLX_NEUTRAL.npz`` from https://smpl-x.is.tue.mpg.de (registration
required; not redistributable). Keys read:

=====================  ==============  =====================================================
key                    shape           meaning
=====================  ==============  =====================================================
``v_template``         (V, 3)          rest template (V = 10475 for SMPL-X)
``f``                  (F, 3)          triangles (F = 20908)
``shapedirs``          (V, 3, S)       S = 400 (SMPL-X 2020: 300 shape + 100 expression) or
                                       20 (v1.0/1.1: 10 shape + 10 expression)
``posedirs``           (V, 3, 486)     pose correctives, 54 non-root joints x 9 (R - I)
``J_regressor``        (55, V)         joint regressor (dense or, in ``.pkl`` files, sparse)
``weights``            (V, 55)         skinning weights
``kintree_table``      (2, 55)         row 0 = parents (root entry ignored)
``hands_componentsl``  (45, 45)        hand PCA basis (only with ``use_pca=True``)
``hands_meanl``        (45,)           mean hand pose (only with ``flat_hand_mean=False``)
=====================  ==============  =====================================================

(and the ``...r`` right-hand counterparts). Files without a 400-wide ``shapedirs`` are split
like the ``smplx`` package does: first 10 shape, next (up to) 10 expression directions.

Forward (as Animatable Gaussians configures ``smplx.SMPLX``: ``use_pca=False``,
``flat_hand_mean=True``): the full pose is ``[global_orient (3), body_pose (63), jaw (3),
leye (3), reye (3), left_hand (45), right_hand (45)]`` = 55 joints x 3 axis-angle, in SMPL-X joint
order (:data:`JOINT_NAMES`). The output carries the per-joint skinning transforms ``A`` (which
the ``smplx`` package does not return) **with the translation included**, so that for every vertex
``verts_i = sum_j W_ij A_j [v_posed_rest_i; 1]`` where ``v_posed_rest`` = template + shape and
expression blendshapes + pose correctives.

Model path resolution (:func:`resolve_smplx_path`): explicit argument > ``$AVATARBENCH_SMPLX_MODEL``
> the procedural stand-in (``avatarbench.bodymodels.smplx_synthetic``) in
``cache_dir()/models/smplx_synthetic/SMPLX_NEUTRAL.npz``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avatarbench.bodymodels.lbs import batch_rodrigues, lbs
from avatarbench.errors import ModelFileError

ENV_VAR = "AVATARBENCH_SMPLX_MODEL"
DOWNLOAD_HINT = ("download SMPL-X (SMPLX_NEUTRAL.npz) from https://smpl-x.is.tue.mpg.de after registering, "
                 f"then pass its path or set ${ENV_VAR}=/path/to/SMPLX_NEUTRAL.npz")

NUM_JOINTS = 55
NUM_BODY_JOINTS = 21
NUM_HAND_JOINTS = 15

#: SMPL-X joint order (the 55 skeletal joints; the smplx package's extra landmarks are not included)
JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "jaw",
    "left_eye_smplhf", "right_eye_smplhf",
    "left_index1", "left_index2", "left_index3", "left_middle1", "left_middle2", "left_middle3",
    "left_pinky1", "left_pinky2", "left_pinky3", "left_ring1", "left_ring2", "left_ring3",
    "left_thumb1", "left_thumb2", "left_thumb3",
    "right_index1", "right_index2", "right_index3", "right_middle1", "right_middle2", "right_middle3",
    "right_pinky1", "right_pinky2", "right_pinky3", "right_ring1", "right_ring2", "right_ring3",
    "right_thumb1", "right_thumb2", "right_thumb3",
)

#: SMPL-X kinematic tree (parent of each joint; -1 for the root)
PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)

#: Animatable Gaussians' canonical "Da-pose": hips (joints 1, 2) rotated +-25 deg about z
DA_POSE_HIP_ANGLE = math.radians(25.0)

DRIVING_ARGS = ("betas", "global_orient", "transl", "body_pose", "jaw_pose", "leye_pose", "reye_pose",
                "left_hand_pose", "right_hand_pose", "expression")


def da_pose_body_pose(batch: int = 1, dtype=torch.float32) -> torch.Tensor:
    """(batch, 63) body pose of AG's canonical Da-pose (left hip +25 deg, right hip -25 deg about z)."""
    bp = torch.zeros(batch, NUM_BODY_JOINTS * 3, dtype=dtype)
    bp[:, 0 * 3 + 2] = DA_POSE_HIP_ANGLE   # body joint 0 = left_hip (SMPL-X joint 1)
    bp[:, 1 * 3 + 2] = -DA_POSE_HIP_ANGLE  # body joint 1 = right_hip (SMPL-X joint 2)
    return bp


@dataclass
class SmplxOutput:
    """Result of :meth:`SmplxModel.forward`.

    Attributes:
        verts: (B, V, 3) posed vertices (translation applied).
        joints: (B, 55, 3) posed joints (translation applied).
        A: (B, 55, 4, 4) skinning transforms (``G_j . translate(-J_j)``, translation applied).
        v_shaped: (B, V, 3) rest-pose vertices with shape + expression blendshapes (no pose
            correctives), i.e. the canonical mesh of this shape.
        v_posed_rest: (B, V, 3) ``v_shaped`` + pose correctives (what ``A`` skins).
    """

    verts: torch.Tensor
    joints: torch.Tensor
    A: torch.Tensor
    v_shaped: torch.Tensor | None = None
    v_posed_rest: torch.Tensor | None = None


# --------------------------------------------------------------------------------------------
def resolve_smplx_path(path: str | Path | None = None) -> Path:
    """Which SMPL-X file to load: ``path`` > ``$AVATARBENCH_SMPLX_MODEL`` > the synthetic stand-in.

    A folder is searched for ``SMPLX_NEUTRAL.npz``, ``SMPLX_NEUTRAL_2020.npz``, ``SMPLX_NEUTRAL.pkl``,
    then the same names under ``smplx/``.

    Raises:
        ModelFileError: an explicit path (argument or environment) that does not exist.
    """
    if path is None and os.environ.get(ENV_VAR):
        path, origin = os.environ[ENV_VAR], f"${ENV_VAR}"
    else:
        origin = "path"
    if path is None:
        from avatarbench.bodymodels.smplx_synthetic import ensure_synthetic_smplx

        return ensure_synthetic_smplx()
    p = Path(path).expanduser()
    if p.is_dir():
        for cand in ("SMPLX_NEUTRAL.npz", "SMPLX_NEUTRAL_2020.npz", "SMPLX_NEUTRAL.pkl", "smplx/SMPLX_NEUTRAL.npz",
                     "smplx/SMPLX_NEUTRAL_2020.npz", "smplx/SMPLX_NEUTRAL.pkl"):
            if (p / cand).is_file():
                return p / cand
        raise ModelFileError(f"{p}: no SMPLX_NEUTRAL.npz in this folder ({origin}); {DOWNLOAD_HINT}")
    if not p.is_file():
        raise ModelFileError(f"{p}: SMPL-X model file not found ({origin}); {DOWNLOAD_HINT}")
    return p


def read_smplx_file(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an SMPL-X ``.npz`` (or ``.pkl``) needed by :class:`SmplxModel`."""
    needed = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")
    optional = ("hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr")
    if path.suffix == ".pkl":
        from avatarbench.bodymodels.pickle_compat import load_legacy_pickle

        raw = load_legacy_pickle(path)
        if not isinstance(raw, dict):
            raise ModelFileError(f"{path}: not an SMPL-X model pickle (top level is {type(raw).__name__})")
        return _pick_keys(path, raw, set(raw), needed, optional)
    try:
        z = np.load(path, allow_pickle=False)  # lazy: object-array keys (joint2num, ...) are never read
    except Exception as e:  # noqa: BLE001 - any read failure is a bad model file
        raise ModelFileError(f"{path}: cannot be read as an npz archive ({type(e).__name__}); "
                             f"{DOWNLOAD_HINT}") from None
    with z:
        return _pick_keys(path, z, set(z.files), needed, optional)


def _pick_keys(path: Path, src, keys: set[str], needed: tuple[str, ...], optional: tuple[str, ...]) -> dict:
    missing = [k for k in needed if k not in keys]
    if missing:
        raise ModelFileError(f"{path}: missing key(s) {', '.join(missing)} (expected an SMPL-X model file "
                             f"with {', '.join(needed)})")
    out = {}
    for k in needed + optional:
        if k in keys:
            try:
                out[k] = np.asarray(src[k])
            except ValueError as e:
                raise ModelFileError(f"{path}: key {k!r} is unreadable ({e})") from None
    return out


def _check(cond: bool, path: Path, msg: str) -> None:
    if not cond:
        raise ModelFileError(f"{path}: {msg}")


class SmplxModel(nn.Module):
    """SMPL-X with 55 joints, returning vertices, joints and per-joint transforms.

    Attributes (buffers; move/cast with ``.to``):
        v_template: (V, 3); faces: (F, 3) long; shapedirs: (V, 3, n_betas);
        exprdirs: (V, 3, n_expression); posedirs: (P, V*3) with P = 54*9;
        J_regressor: (55, V); lbs_weights: (V, 55); parents: (55,) long;
        hands_mean: (90,) left then right mean hand pose (zero with ``flat_hand_mean``);
        hands_components_l / _r: (45, 45) PCA bases.

    Args:
        data: the arrays of :func:`read_smplx_file`.
        path: where they came from (for messages and ``self.path``).
        flat_hand_mean: hand poses are relative to the flat hand (True, as Animatable Gaussians)
            or to the file's mean hand (False, the smplx package default).
        use_pca: hand poses given as PCA coefficients (False: full 45-d axis-angle).
    """

    def __init__(self, data: dict[str, np.ndarray], path: str | Path = "<memory>", *, flat_hand_mean: bool = True,
                 use_pca: bool = False, dtype: torch.dtype = torch.float32):
        super().__init__()
        path = Path(path)
        self.path = path
        self.flat_hand_mean = bool(flat_hand_mean)
        self.use_pca = bool(use_pca)
        vt = np.asarray(data["v_template"], np.float64)
        _check(vt.ndim == 2 and vt.shape[1] == 3, path, f"v_template has shape {vt.shape} (expected (V, 3))")
        V = vt.shape[0]
        f = np.asarray(data["f"]).astype(np.int64)
        _check(f.ndim == 2 and f.shape[1] == 3 and f.min() >= 0 and f.max() < V, path,
               f"f has shape {f.shape} / indices outside [0, {V}) (expected (F, 3) vertex ids)")
        sd = np.asarray(data["shapedirs"], np.float64)
        _check(sd.ndim == 3 and sd.shape[:2] == (V, 3) and sd.shape[2] >= 1, path,
               f"shapedirs has shape {sd.shape} (expected ({V}, 3, 400) or ({V}, 3, 20))")
        S = sd.shape[2]
        if S >= 400:
            n_shape, n_expr = 300, 100
        else:  # SMPL-X v1.0/1.1 (and SMPL+H-style) files: 10 shape + up to 10 expression
            n_shape, n_expr = min(10, S), max(0, min(10, S - 10))
        pd = np.asarray(data["posedirs"], np.float64)
        n_pose = (NUM_JOINTS - 1) * 9
        if pd.ndim == 3:
            _check(pd.shape == (V, 3, n_pose), path, f"posedirs has shape {pd.shape} (expected ({V}, 3, {n_pose}))")
            pd = pd.reshape(V * 3, n_pose).T
        _check(pd.shape == (n_pose, V * 3), path, f"posedirs has shape {pd.shape} (expected ({V}, 3, {n_pose}))")
        jr = np.asarray(data["J_regressor"], np.float64)
        _check(jr.shape == (NUM_JOINTS, V), path, f"J_regressor has shape {jr.shape} (expected ({NUM_JOINTS}, {V}))")
        w = np.asarray(data["weights"], np.float64)
        _check(w.shape == (V, NUM_JOINTS), path, f"weights has shape {w.shape} (expected ({V}, {NUM_JOINTS}))")
        kt = np.asarray(data["kintree_table"]).astype(np.int64)
        _check(kt.shape == (2, NUM_JOINTS), path, f"kintree_table has shape {kt.shape} (expected (2, {NUM_JOINTS}))")
        parents = kt[0].copy()
        parents[0] = -1
        _check(all(0 <= parents[j] < j for j in range(1, NUM_JOINTS)), path,
               "kintree_table parents are not in topological order (expected parents[j] < j)")

        def hand(key: str, shape) -> np.ndarray:
            a = data.get(key)
            if a is None:
                return np.zeros(shape) if len(shape) == 1 else np.eye(shape[0])
            a = np.asarray(a, np.float64)
            _check(a.shape == shape, path, f"{key} has shape {a.shape} (expected {shape})")
            return a

        mean = np.concatenate([hand("hands_meanl", (45,)), hand("hands_meanr", (45,))])
        if self.flat_hand_mean:
            mean = np.zeros_like(mean)

        def buf(name, a, dt=dtype):
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(a)).to(dt), persistent=False)

        buf("v_template", vt)
        buf("faces", f, torch.long)
        buf("shapedirs", sd[:, :, :n_shape])
        buf("exprdirs", sd[:, :, n_shape:n_shape + n_expr] if S >= 400 else sd[:, :, 10:10 + n_expr])
        buf("posedirs", pd)
        buf("J_regressor", jr)
        buf("lbs_weights", w)
        buf("parents", parents, torch.long)
        buf("hands_mean", mean)
        buf("hands_components_l", hand("hands_componentsl", (45, 45)))
        buf("hands_components_r", hand("hands_componentsr", (45, 45)))

    # ------------------------------------------------------------------ properties
    @property
    def num_verts(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[2])

    @property
    def num_expression(self) -> int:
        return int(self.exprdirs.shape[2])

    @property
    def joint_names(self) -> tuple[str, ...]:
        return JOINT_NAMES

    # ------------------------------------------------------------------ forward
    def _prep(self, x: torch.Tensor | np.ndarray | None, width: int, B: int, name: str) -> torch.Tensor:
        """(B, width) from an optional (b, w) input: zero-padded, truncated beyond ``width``."""
        dt, dev = self.v_template.dtype, self.v_template.device
        if x is None:
            return torch.zeros(B, width, dtype=dt, device=dev)
        x = torch.as_tensor(x, dtype=dt, device=dev)
        if x.dim() == 1:
            x = x[None]
        if x.dim() != 2 or x.shape[0] not in (1, B):
            raise ValueError(f"SmplxModel.forward: {name} has shape {tuple(x.shape)}, expected ({B}, {width})")
        if x.shape[1] < width:
            x = torch.cat([x, x.new_zeros(x.shape[0], width - x.shape[1])], dim=1)
        elif x.shape[1] > width:
            x = x[:, :width]
        return x.expand(B, width)

    def full_pose(self, global_orient=None, body_pose=None, jaw_pose=None, leye_pose=None, reye_pose=None,
                  left_hand_pose=None, right_hand_pose=None, batch_size: int = 1) -> torch.Tensor:
        """(B, 165) axis-angle of all 55 joints (hand mean added, PCA expanded)."""
        B = batch_size

        def exact(x, width, name):
            if x is not None and torch.as_tensor(x).shape[-1] != width:
                n = torch.as_tensor(x).shape[-1]
                raise ValueError(f"SmplxModel.forward: {name} has {n} values, expected {width}")
            return self._prep(x, width, B, name)

        go = exact(global_orient, 3, "global_orient")
        bp = exact(body_pose, NUM_BODY_JOINTS * 3, "body_pose")
        jaw, le, re = (exact(x, 3, n) for x, n in ((jaw_pose, "jaw_pose"), (leye_pose, "leye_pose"),
                                                     (reye_pose, "reye_pose")))
        if self.use_pca:
            lh = self._prep(left_hand_pose, 45, B, "left_hand_pose")
            rh = self._prep(right_hand_pose, 45, B, "right_hand_pose")
            lh = lh @ self.hands_components_l
            rh = rh @ self.hands_components_r
        else:
            lh = exact(left_hand_pose, 45, "left_hand_pose")
            rh = exact(right_hand_pose, 45, "right_hand_pose")
        hands = torch.cat([lh, rh], dim=1) + self.hands_mean
        return torch.cat([go, bp, jaw, le, re, hands], dim=1)

    def forward(self, betas=None, global_orient=None, transl=None, body_pose=None, jaw_pose=None, leye_pose=None,
                reye_pose=None, left_hand_pose=None, right_hand_pose=None, expression=None) -> SmplxOutput:
        """Pose the model. Every argument is optional (zeros) and may have batch size 1 or B.

        Args:
            betas: (B, S) shape coefficients (zero-padded / truncated to ``num_betas``).
            global_orient: (B, 3); transl: (B, 3); body_pose: (B, 63); jaw_pose, leye_pose,
            reye_pose: (B, 3); left_hand_pose, right_hand_pose: (B, 45) (PCA coefficients when
            ``use_pca``); expression: (B, E) (zero-padded / truncated to ``num_expression``).

        Returns:
            :class:`SmplxOutput` (verts (B, V, 3), joints (B, 55, 3), A (B, 55, 4, 4), ...).
        """
        args = (betas, global_orient, transl, body_pose, jaw_pose, leye_pose, reye_pose, left_hand_pose,
                right_hand_pose, expression)
        B = max([torch.as_tensor(a).reshape(-1, torch.as_tensor(a).shape[-1]).shape[0] for a in args
                 if a is not None] or [1])
        pose = self.full_pose(global_orient, body_pose, jaw_pose, leye_pose, reye_pose, left_hand_pose,
                              right_hand_pose, batch_size=B)
        be = self._prep(betas, self.num_betas, B, "betas")
        ex = self._prep(expression, self.num_expression, B, "expression")
        tr = self._prep(transl, 3, B, "transl")
        coeffs = torch.cat([be, ex], dim=1)
        dirs = torch.cat([self.shapedirs, self.exprdirs], dim=2)
        verts, joints, A = lbs(coeffs, pose, self.v_template, dirs, self.posedirs, self.J_regressor, self.parents,
                               self.lbs_weights)
        verts = verts + tr[:, None]
        joints = joints + tr[:, None]
        A = A.clone()
        A[..., :3, 3] = A[..., :3, 3] + tr[:, None]
        v_shaped = self.v_template[None] + torch.einsum("bs,vks->bvk", coeffs, dirs)
        rot = batch_rodrigues(pose.reshape(B, NUM_JOINTS, 3))
        feat = (rot[:, 1:] - torch.eye(3, dtype=rot.dtype, device=rot.device)).reshape(B, -1)
        v_posed_rest = v_shaped + (feat @ self.posedirs).reshape(B, -1, 3)
        return SmplxOutput(verts=verts, joints=joints, A=A, v_shaped=v_shaped, v_posed_rest=v_posed_rest)

    def forward_dict(self, driving: dict) -> SmplxOutput:
        """Forward from a driving dict (e.g. ``Frame.driving_tensors()``); unknown keys are ignored."""
        return self.forward(**{k: driving[k] for k in DRIVING_ARGS if k in driving})


def load_smplx(path: str | Path | None = None, *, flat_hand_mean: bool = True, use_pca: bool = False,
               dtype: torch.dtype = torch.float32) -> SmplxModel:
    """Load SMPL-X (see :func:`resolve_smplx_path` for which file).

    Raises:
        ModelFileError: missing file (with where to get it and where to put it) or bad contents.
    """
    p = resolve_smplx_path(path)
    return SmplxModel(read_smplx_file(p), p, flat_hand_mean=flat_hand_mean, use_pca=use_pca, dtype=dtype)
