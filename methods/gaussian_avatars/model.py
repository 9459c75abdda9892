"""GaussianAvatars' model pieces: Gaussian initialisation, per-timestep FLAME fine-tuning and the
local -> global transform through the shared binding utility.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from avatarbench.errors import DataError

#: FLAME pose/translation keys fine-tuned per training timestep, with their widths
FLAME_DYNAMIC = {"rotation": 3, "neck_pose": 3, "jaw_pose": 3, "eyes_pose": 6, "translation": 3}
#: the fine-tuning learning-rate groups (official names: pose, trans, expr)
FLAME_POSE_KEYS = ("rotation", "neck_pose", "jaw_pose", "eyes_pose")
#: what a driver contributes to a render; the identity (shape, static offset) is always the trained one
MOTION_KEYS = ("expr", *FLAME_DYNAMIC)

SH_C0 = 0.28209479177387814


def rgb_to_sh(rgb: torch.Tensor) -> torch.Tensor:
    """The DC SH coefficient whose colour is ``rgb`` (``rgb = C0 * sh + 0.5``)."""
    return (rgb - 0.5) / SH_C0


def init_gaussian_params(num_faces: int, sh_degree: int, init_opacity: float = 0.1, *,
                         device: torch.device | str = "cpu", generator: torch.Generator | None = None
                         ) -> dict[str, torch.Tensor]:
    """One Gaussian per face in its triangle's local frame (official ``create_from_pcd(None)``).

    local mean 0 (the centroid), log scale 0 (global scale = k), identity rotation, opacity
    ``init_opacity``, SH DC = U(0,1)/255 stored directly as the coefficient (the official code
    writes ``rand/255`` into ``features_dc`` without RGB2SH, so the initial colour is ~0.5 grey),
    higher SH bands 0.

    Returns:
        ``means`` (F,3), ``scales`` (F,3), ``quats`` (F,4) wxyz, ``opacities`` (F,) logits,
        ``sh0`` (F,1,3), ``shN`` (F,(sh_degree+1)^2-1,3).
    """
    k = (sh_degree + 1) ** 2
    dc = torch.rand((num_faces, 3), generator=generator, dtype=torch.float64) / 255.0
    quats = torch.zeros(num_faces, 4)
    quats[:, 0] = 1.0
    out = {
        "means": torch.zeros(num_faces, 3),
        "scales": torch.zeros(num_faces, 3),
        "quats": quats,
        "opacities": torch.full((num_faces,), math.log(init_opacity / (1 - init_opacity))),
        "sh0": dc.to(torch.float32)[:, None, :],
        "shN": torch.zeros(num_faces, k - 1, 3),
    }
    return {n: t.to(device) for n, t in out.items()}


def _fit_rows(a: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad or truncate the last axis of ``a`` to ``n``."""
    a = np.asarray(a, dtype=np.float32).reshape(-1)
    if a.shape[0] >= n:
        return a[:n]
    return np.concatenate([a, np.zeros(n - a.shape[0], np.float32)])


def fit_static_offset(offset: torch.Tensor | np.ndarray | None, num_verts: int) -> torch.Tensor | None:
    """(V', 3) or (1, V', 3) static offset zero-padded / truncated to (1, num_verts, 3)."""
    if offset is None:
        return None
    t = torch.as_tensor(np.asarray(offset) if not isinstance(offset, torch.Tensor) else offset, dtype=torch.float32)
    t = t.reshape(-1, t.shape[-1])[None]
    v = t.shape[1]
    if v > num_verts:
        t = t[:, :num_verts]
    elif v < num_verts:
        t = torch.nn.functional.pad(t, (0, 0, 0, num_verts - v))
    return t


class FlameTrack(nn.Module):
    """FLAME parameters of the training timesteps, fine-tuned during training.

    Parameters (one row per training timestep, sorted): ``expr`` (T, n_expr), ``rotation``,
    ``neck_pose``, ``jaw_pose``, ``translation`` (T, 3), ``eyes_pose`` (T, 6). Buffers: ``shape``
    (1, n_shape) and ``static_offset`` (1, V, 3) from the first training timestep (not optimised,
    as in the official code), ``timesteps`` (T,) long, and ``*_orig`` copies of the tracked values.
    """

    def __init__(self, driving_by_timestep: dict[int, dict[str, np.ndarray]], n_shape: int, n_expr: int,
                 num_verts: int):
        super().__init__()
        if not driving_by_timestep:
            raise DataError("train split", "has no timesteps", "at least one training frame")
        ts = sorted(driving_by_timestep)
        first = driving_by_timestep[ts[0]]
        if "shape" not in first:
            raise DataError(f"timestep {ts[0]}", "driving parameters lack 'shape'", "FLAME parameters")
        self.register_buffer("timesteps", torch.tensor(ts, dtype=torch.long))
        self.register_buffer("shape", torch.from_numpy(_fit_rows(first["shape"], n_shape))[None])
        so = fit_static_offset(first.get("static_offset"), num_verts)
        self.register_buffer("static_offset", so if so is not None else torch.zeros(1, num_verts, 3))
        widths = dict(FLAME_DYNAMIC, expr=n_expr)
        self.params = nn.ParameterDict()
        for key, w in widths.items():
            rows = np.stack([_fit_rows(driving_by_timestep[t].get(key, np.zeros(w)), w) for t in ts])
            self.params[key] = nn.Parameter(torch.from_numpy(rows))
            self.register_buffer(f"{key}_orig", torch.from_numpy(rows.copy()))
        self._row = {t: i for i, t in enumerate(ts)}

    def has(self, timestep: int) -> bool:
        return int(timestep) in self._row

    def row(self, timestep: int) -> int:
        return self._row[int(timestep)]

    def identity(self) -> dict[str, torch.Tensor]:
        """The trained identity: ``shape`` (1, n_shape) and ``static_offset`` (1, V, 3)."""
        return {"shape": self.shape, "static_offset": self.static_offset}

    def driving(self, timestep: int, original: bool = False) -> dict[str, torch.Tensor]:
        """Driving tensors with batch dim 1 for a training timestep (differentiable)."""
        i = self.row(timestep)
        out = {"shape": self.shape, "static_offset": self.static_offset}
        for key in self.params:
            src = getattr(self, f"{key}_orig") if original else self.params[key]
            out[key] = src[i:i + 1]
        return out

    def export_arrays(self, tracked: dict[int, dict[str, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
        """The parameters in the official ``flame_param.npz`` layout (``FlameGaussianModel.flame_param``),
        every array float32, one row per timestep 0..T-1:

        ``shape`` (n_shape,), ``static_offset`` (1, V, 3), ``expr`` (T, n_expr), ``rotation``,
        ``neck_pose``, ``jaw_pose``, ``translation`` (T, 3), ``eyes_pose`` (T, 6) and
        ``dynamic_offset`` (T, V, 3) (zeros: the official code never fills or uses it).

        Rows of training timesteps hold the fine-tuned values; rows of the other timesteps in
        ``tracked`` (timestep -> driving dict, e.g. the held-out sequence) their tracked values, as
        the official model keeps them; any other row is zero (the official initial value).
        T = 1 + the largest timestep of either.
        """
        ts = self.timesteps.cpu().numpy()
        tracked = {int(t): d for t, d in (tracked or {}).items() if not self.has(int(t))}
        n = int(max([int(ts.max())] + list(tracked))) + 1
        nv = int(self.static_offset.shape[1])
        out: dict[str, np.ndarray] = {"shape": self.shape[0].detach().cpu().numpy().astype(np.float32)}
        for key, p in self.params.items():
            w = int(p.shape[1])
            dense = np.zeros((n, w), np.float32)
            for t, d in tracked.items():
                if key in d:
                    dense[t] = _fit_rows(d[key], w)
            dense[ts] = p.detach().cpu().numpy()
            out[key] = dense
        out["static_offset"] = self.static_offset.detach().cpu().numpy().astype(np.float32)
        out["dynamic_offset"] = np.zeros((n, nv, 3), np.float32)
        return out


def flame_forward(flame, driving: dict[str, Any]) -> torch.Tensor:
    """Posed FLAME vertices for one set of driving tensors (batch 1).

    The FLAME layer pads shape/expression and adapts a static offset tracked with/without teeth;
    ``dynamic_offset`` is ignored (as in the official
    code, where ``FlameHead.forward`` accepts it but never uses it).

    Returns:
        (V, 3) vertices.
    """
    kwargs = {k: driving[k] for k in ("shape", "expr", *FLAME_DYNAMIC, "static_offset") if k in driving}
    out = flame(**kwargs)
    return out.verts[0]


def to_global(params: dict[str, torch.Tensor], binding: torch.Tensor, verts: torch.Tensor,
              faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Global Gaussians on a posed mesh through the shared binding utility.

    Args:
        params: the local parameters (``means`` (N,3), ``quats`` (N,4), ``scales`` (N,3) log).
        binding: (N,) parent faces.
        verts: (V, 3) posed vertices; faces: (F, 3).
    Returns:
        means (N,3), quats (N,4) wxyz normalised, scales (N,3) activated, face_scaling k (F,1).
    """
    from avatarbench.render.binding import face_frames, local_to_global

    centroid, R, k = face_frames(verts, faces)
    means, quats, scales = local_to_global(params["means"], params["quats"], params["scales"], binding,
                                           centroid, R, k)
    return means, quats, scales, k
