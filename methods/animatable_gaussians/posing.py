"""Forward LBS from AG's canonical space (SMPL-X Da-pose) to a driving pose.

For a canonical point with skinning weights ``w`` (55,), the official ``transform_cano2live``
blends the per-joint matrices ``T_j = A_live_j A_cano_j^-1`` (all 55 SMPL-X joints, root and
translation included): ``M = sum_j w_j T_j``, ``x_live = M[:3, :3] x + M[:3, 3]``, and Gaussian
rotations are left-multiplied by ``M[:3, :3]`` (not re-orthonormalised before the quaternion
conversion).

The canonical joint transforms ``A_cano`` are those of the canonical SMPL-X built with the frame's
own ``jaw_pose`` and ``expression`` (official ``getitem``; :meth:`SmplxPoser.canonical_transforms`).

The pose *condition* of the networks is posed without the root: ``live_smpl_woRoot`` uses the body
pose, jaw and expression only (global orient, translation and hand poses zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import roma
import torch

__all__ = ["CanonicalBody", "SmplxPoser", "relative_transforms", "blend_transforms", "apply_points",
           "apply_rotations", "CONDITION_KEYS"]

#: driving keys kept for the network's pose condition (official ``live_smpl_woRoot``)
CONDITION_KEYS = ("body_pose", "jaw_pose", "expression")


def relative_transforms(A_live: torch.Tensor, A_cano: torch.Tensor) -> torch.Tensor:
    """``A_live_j A_cano_j^-1``: (..., J, 4, 4) x (J, 4, 4) -> (..., J, 4, 4)."""
    return A_live @ torch.linalg.inv(A_cano)


def blend_transforms(weights: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Per-point blended transforms: weights (N, J), T (J, 4, 4) -> (N, 4, 4)."""
    J = T.shape[-3]
    return (weights @ T.reshape(J, 16)).reshape(-1, 4, 4)


def apply_points(M: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N, 4, 4) x (N, 3) -> (N, 3)."""
    return (M[:, :3, :3] @ x.unsqueeze(-1)).squeeze(-1) + M[:, :3, 3]


def apply_rotations(M: torch.Tensor, quats_wxyz: torch.Tensor) -> torch.Tensor:
    """Left-multiply rotations by the blended 3x3 and return unit quaternions (N, 4) wxyz.

    The blended 3x3 is not re-orthonormalised (as the official code); the matrix -> quaternion
    conversion (roma, Shepperd's method) returns the unit quaternion of its rotation part.
    """
    q = torch.nn.functional.normalize(quats_wxyz, dim=-1)
    R = roma.unitquat_to_rotmat(q[:, [1, 2, 3, 0]])  # roma uses xyzw
    Rp = M[:, :3, :3] @ R
    qp = roma.rotmat_to_unitquat(Rp)
    return qp[:, [3, 0, 1, 2]]


@dataclass
class CanonicalBody:
    """The subject's canonical SMPL-X (Da-pose, zero root).

    Attributes:
        verts: (V, 3); faces: (F, 3) long; weights: (V, 55); A: (55, 4, 4) canonical joint
        transforms; joints: (55, 3).
    """

    verts: torch.Tensor
    faces: torch.Tensor
    weights: torch.Tensor
    A: torch.Tensor
    joints: torch.Tensor


class SmplxPoser:
    """SMPL-X forward passes with the subject's betas (cross-reenactment keeps the target's betas).

    Args:
        model: a :class:`~avatarbench.bodymodels.smplx.SmplxModel` on the method's device.
        betas: (S,) the subject's shape.
        canonical_body_pose: (63,) the canonical body pose (Da-pose).
    """

    def __init__(self, model, betas: torch.Tensor, canonical_body_pose: torch.Tensor, canonical_face: str = "frame"):
        self.model = model
        dev = model.v_template.device
        self.betas = torch.as_tensor(betas, dtype=torch.float32, device=dev).reshape(1, -1)
        self.canonical_body_pose = torch.as_tensor(canonical_body_pose, dtype=torch.float32, device=dev).reshape(1, -1)
        if canonical_face not in ("frame", "neutral"):
            raise ValueError(f"canonical_face={canonical_face!r}: expected 'frame' or 'neutral'")
        self.canonical_face = canonical_face
        with torch.no_grad():
            out = model(betas=self.betas, body_pose=self.canonical_body_pose)
        self.canonical = CanonicalBody(out.verts[0], model.faces, model.lbs_weights, out.A[0], out.joints[0])

    @torch.no_grad()
    def canonical_transforms(self, driving) -> torch.Tensor:
        """(55, 4, 4) canonical joint transforms ``A_cano`` used for a driving dict.

        ``canonical_face='frame'`` (official ``MvRgbDatasetBase.getitem``): the canonical SMPL-X of
        each frame is built with that frame's ``jaw_pose`` and ``expression``, so the jaw rotation
        (and the expression's joint shift) cancels in ``A_live A_cano^-1``: the jaw follows the
        head. ``'neutral'``: a closed jaw and zero expression (the jaw opens through LBS).
        """
        if self.canonical_face == "neutral":
            return self.canonical.A
        d = self._tensors(driving, ("jaw_pose", "expression"))
        if not d:
            return self.canonical.A
        return self.model(betas=self.betas, body_pose=self.canonical_body_pose, **d).A[0]

    def _tensors(self, driving, keys=None) -> dict[str, torch.Tensor]:
        dev = self.betas.device
        out = {}
        for k, v in driving.items():
            if k == "betas" or (keys is not None and k not in keys):
                continue
            out[k] = torch.as_tensor(np.asarray(v), dtype=torch.float32, device=dev).reshape(1, -1)
        return out

    @torch.no_grad()
    def live_transforms(self, driving) -> torch.Tensor:
        """(55, 4, 4) ``A_live A_cano^-1`` for a driving dict (root and translation included)."""
        d = self._tensors(driving)
        out = self.model(betas=self.betas, **{k: v for k, v in d.items() if k in _FORWARD_KEYS})
        return relative_transforms(out.A[0], self.canonical_transforms(driving))

    @torch.no_grad()
    def condition_transforms(self, driving) -> torch.Tensor:
        """(55, 4, 4) transforms of the pose condition (body pose, jaw, expression; no root/hands)."""
        d = self._tensors(driving, CONDITION_KEYS)
        out = self.model(betas=self.betas, **d)
        return relative_transforms(out.A[0], self.canonical_transforms(driving))


_FORWARD_KEYS = ("global_orient", "transl", "body_pose", "jaw_pose", "leye_pose", "reye_pose", "left_hand_pose",
                 "right_hand_pose", "expression")
