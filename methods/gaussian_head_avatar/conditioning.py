"""FLAME conditioning for GHA (the suite's protocol choice; GHA itself is BFM-driven).

Every head method in avatarbench is driven by the same VHAP FLAME tracking. GHA's BFM inputs map
to FLAME as follows:

- **expression code** (GHA: 64-d BFM ``exp_coeff``) = ``[expr (100), jaw_pose (3), eyes_pose (6)]``
  = 109-d, fed unencoded like GHA's code.
- **head pose** (GHA: 6-d ``pose`` = axis-angle + translation, plus a scale) = the rigid transform
  of FLAME's head: global ``rotation`` about joint 0, then ``neck_pose`` about joint 1, then
  ``translation``. For a point ``x_f`` of the zero-pose FLAME mesh::

      world = R_g (R_n (x_f - J1) + J1 - J0) + J0 + t = R x_f + t',   R = R_g R_n.

  Canonical space is the zero-pose FLAME space, centred and scaled: ``x_f = s x_c + c`` with ``c``
  the bbox centre of the subject's neutral FLAME head and ``s = canonical_unit`` metres per unit.
  The default 0.1 m is GHA's unit: its canonical space is the BFM09 model space, which the
  official BFM conversion scales to decimetres. Every canonical-unit hyperparameter (deformation
  scale, positional-encoding frequencies, stage-1 landmark/SDF losses, sphere radius, blend
  thresholds) therefore means what it means officially. ``world = S x_c R^T + T`` with ``S = s``,
  ``T = R c + t'`` -- GHA's ``(x S) R^T + T``. The pose code is ``[rotvec(R), T - c]`` (6-d, zero
  at rest; the translation in world metres like GHA's ``pose[3:]``, which is the tracked world
  translation), positionally encoded to 54-d like GHA's.
- **guide points** (GHA: 66 BFM landmarks + 358 subsampled BFM vertices = 424) = a fixed subset of
  FLAME vertices: farthest-point samples of the FLAME ``face`` region (all non-teeth vertices when
  the model has no such mask). Their canonicalised positions (FLAME with the frame's expression,
  jaw and eyes, zero head pose) are the 3D landmark targets of stage 1; their neutral positions
  initialise the learnable neutral landmarks.
- **mouth points**: GHA samples 3000 points in a box around the mouth landmarks (48:66); here
  around the FLAME ``lips`` region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

FLAME_MOTION = ("expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation")


def rotvec_to_rotmat(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrix (Rodrigues, differentiable at 0)."""
    import roma

    return roma.rotvec_to_rotmat(v)


def rotmat_to_rotvec(R: torch.Tensor) -> torch.Tensor:
    import roma

    return roma.rotmat_to_rotvec(R)


def farthest_point_sampling(points: torch.Tensor, n: int) -> torch.Tensor:
    """Deterministic FPS starting from index 0. points: (P, 3) -> (min(n, P),) int64 indices."""
    P = points.shape[0]
    n = min(int(n), P)
    idx = torch.zeros(n, dtype=torch.long)
    d = torch.full((P,), float("inf"), dtype=points.dtype)
    cur = 0
    for i in range(n):
        idx[i] = cur
        d = torch.minimum(d, ((points - points[cur]) ** 2).sum(-1))
        cur = int(torch.argmax(d))
    return idx


@dataclass
class HeadCondition:
    """Per-frame conditioning (all on the method's device, float32, no batch dim).

    Attributes:
        exp: (E,) expression code.
        pose: (6,) pose code ``[rotvec(R), T - c]`` (radians, metres).
        R: (3, 3), T: (3,), S: () -- ``world = S x_c R^T + T``.
        guides: (G, 3) canonical guide points of this frame (stage-1 landmark targets).
        flame_canonical: (V, 3) the frame's zero-pose FLAME vertices in canonical units.
    """

    exp: torch.Tensor
    pose: torch.Tensor
    R: torch.Tensor
    T: torch.Tensor
    S: torch.Tensor
    guides: torch.Tensor
    flame_canonical: torch.Tensor

    def to_world(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3) canonical -> (N, 3) world."""
        return self.S * x @ self.R.T + self.T


class FlameConditioning:
    """Turns FLAME driving dicts into :class:`HeadCondition` for one subject.

    Args:
        flame: the FLAME layer (``avatarbench.bodymodels.flame.FlameModel``) on the target device.
        identity: the subject's driving dict used for the neutral head (``shape``, ``static_offset``).
        n_expr: expression components used (GHA BFM: 64; FLAME tracking: 100).
        n_guides: number of guide points (GHA: 424).
        canonical_unit: metres per canonical unit (GHA: 0.1, BFM decimetres).
    """

    def __init__(self, flame, identity: dict, *, n_expr: int = 100, n_guides: int = 424,
                 canonical_unit: float = 0.1, use_jaw: bool = True, use_eyes: bool = True):
        self.flame = flame
        self.device = flame.v_template.device
        self.n_expr = int(n_expr)
        self.use_jaw = bool(use_jaw)
        self.use_eyes = bool(use_eyes)
        self.identity = {k: np.asarray(identity[k], dtype=np.float32) for k in ("shape", "static_offset")
                         if k in identity}
        n_base = self._num_base_verts()
        with torch.no_grad():
            neutral = self._flame_zero_pose({})[0]  # (V, 3)
        base = neutral[:n_base]
        lo, hi = base.min(0).values, base.max(0).values
        self.center = (lo + hi) / 2
        if not float(canonical_unit) > 0:
            raise ValueError(f"canonical_unit must be > 0 metres, got {canonical_unit!r}")
        self.scale = float(canonical_unit)
        #: front-to-back extent of the neutral head (FLAME looks along +z), in canonical units
        self.head_length = float((hi[2] - lo[2]) / self.scale)
        self.neutral_canonical = (neutral - self.center) / self.scale  # (V, 3)
        #: (3,) largest |coordinate| of the neutral head (FLAME proper) per axis, canonical units
        self.half_extent = ((hi - lo) / 2 / self.scale).detach().cpu()

        masks = getattr(flame, "masks", {}) or {}
        face = np.asarray(masks.get("face", []), dtype=np.int64)
        face = face[face < n_base]
        cand = torch.as_tensor(face if face.size else np.arange(n_base), dtype=torch.long)
        pick = farthest_point_sampling(self.neutral_canonical[cand].detach().cpu().double(), n_guides)
        self.guide_ids = cand[pick].to(self.device)
        lips = np.asarray(masks.get("lips", []), dtype=np.int64)
        lips = lips[lips < n_base]
        if lips.size == 0:
            lips = self._fallback_mouth_ids(cand, n_base)
        self.mouth_ids = torch.as_tensor(lips, dtype=torch.long, device=self.device)
        self.exp_dim = self.n_expr + (3 if self.use_jaw else 0) + (6 if self.use_eyes else 0)

    # ----------------------------------------------------------------------------------------------
    def _num_base_verts(self) -> int:
        """Vertices of FLAME proper (the teeth GaussianAvatars appends come after them)."""
        return int(getattr(self.flame, "num_base_verts", self.flame.num_verts))

    def _fallback_mouth_ids(self, cand: torch.Tensor, n_base: int) -> np.ndarray:
        """Without a ``lips`` mask: the 18 front-most face vertices with a jaw skinning weight
        above 0.3, among those below the canonical centre (a lower-face stand-in)."""
        w = getattr(self.flame, "lbs_weights", None)
        pts = self.neutral_canonical[cand].detach().cpu()
        score = pts[:, 2].clone()
        if w is not None:
            jw = torch.as_tensor(w)[cand.to(torch.as_tensor(w).device), 2].detach().cpu()
            score[jw < 0.3] = -1e9
        score[pts[:, 1] > 0] = -1e9
        k = min(18, cand.numel())
        return cand[torch.topk(score, k).indices].numpy()

    def _flame_zero_pose(self, driving: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """FLAME with the frame's expression/jaw/eyes and zero head pose.

        Returns verts (V, 3) and joints (J, 3) in FLAME units."""
        d = {}
        for k, v in self.identity.items():
            t = torch.as_tensor(v, dtype=torch.float32, device=self.device)
            d[k] = t.reshape(1, -1, 3) if k == "static_offset" else t.reshape(1, -1)
        for k in ("expr", "jaw_pose", "eyes_pose"):
            if k in driving:
                d[k] = torch.as_tensor(np.asarray(driving[k]), dtype=torch.float32, device=self.device).reshape(1, -1)
        if "expr" in d and d["expr"].shape[1] > self.n_expr:
            d["expr"] = torch.cat([d["expr"][:, :self.n_expr], torch.zeros_like(d["expr"][:, self.n_expr:])], 1)
        out = self.flame.forward_dict(d)
        return out.verts[0], out.joints[0]

    @torch.no_grad()
    def encode(self, driving: dict) -> HeadCondition:
        """driving: FLAME dict of arrays without batch dim (``Frame.driving``) -> HeadCondition."""
        dev = self.device
        verts, joints = self._flame_zero_pose(driving)

        def vec(key: str, n: int) -> torch.Tensor:
            if key not in driving:
                return torch.zeros(n, device=dev)
            return torch.as_tensor(np.asarray(driving[key]), dtype=torch.float32, device=dev).reshape(-1)[:n]

        expr = vec("expr", self.n_expr)
        expr = torch.cat([expr, torch.zeros(self.n_expr - expr.numel(), device=dev)])
        parts = [expr]
        if self.use_jaw:
            parts.append(vec("jaw_pose", 3))
        if self.use_eyes:
            parts.append(vec("eyes_pose", 6))
        exp = torch.cat(parts)

        Rg, Rn = rotvec_to_rotmat(vec("rotation", 3)), rotvec_to_rotmat(vec("neck_pose", 3))
        J0, J1 = joints[0], joints[1]
        R = Rg @ Rn
        t_prime = Rg @ (J1 - Rn @ J1 - J0) + J0 + vec("translation", 3)
        T = R @ self.center + t_prime
        S = torch.tensor(self.scale, device=dev)
        pose = torch.cat([rotmat_to_rotvec(R), T - self.center])
        flame_c = (verts - self.center) / self.scale
        return HeadCondition(exp=exp, pose=pose, R=R, T=T, S=S, guides=flame_c[self.guide_ids],
                             flame_canonical=flame_c)

    def rigid_from_pose(self, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(6,) pose code (possibly refined) -> R (3, 3), T (3,). Inverse of the encoding."""
        return rotvec_to_rotmat(pose[:3]), pose[3:] + self.center
