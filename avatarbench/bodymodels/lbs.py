"""Linear blend skinning shared by the parametric models (FLAME, SMPL-X).

Conventions (the SMPL family's):

- ``pose`` is axis-angle, one 3-vector per joint, joint 0 = root (global rotation).
- Joints are ordered so that ``parents[j] < j`` for every ``j > 0``; ``parents[0]`` is ignored
  (it is ``-1`` in the model files' ``kintree_table``).
- Pose correctives are driven by the flattened ``R_j - I`` of the non-root joints
  (``(J-1) * 9`` features, row-major), as in SMPL/FLAME/SMPL-X.
- ``A[b, j]`` is the relative transform of joint ``j``: it maps a rest-pose (shaped) point to its
  posed position if that point were fully attached to joint ``j``, i.e.
  ``A_j = G_j · translate(-J_j)`` with ``G_j`` the world transform of joint ``j``.
"""

from __future__ import annotations

from typing import Sequence

import roma
import torch


def batch_rodrigues(axis_angle: torch.Tensor) -> torch.Tensor:
    """Axis-angle to rotation matrices.

    Args:
        axis_angle: (..., 3) rotation vectors (angle = norm, in radians).

    Returns:
        (..., 3, 3) rotation matrices (differentiable, also at zero).
    """
    return roma.rotvec_to_rotmat(axis_angle)


def _as_parents(parents: torch.Tensor | Sequence[int], n_joints: int, device) -> torch.Tensor:
    parents = torch.as_tensor(parents, dtype=torch.long, device=device).reshape(-1)
    if parents.numel() != n_joints:
        raise ValueError(f"parents has {parents.numel()} entries, expected {n_joints} (one per joint)")
    if n_joints > 1:
        idx = torch.arange(1, n_joints, device=device)
        if bool(((parents[1:] < 0) | (parents[1:] >= idx)).any()):
            raise ValueError("parents must satisfy 0 <= parents[j] < j for j > 0 (topological order)")
    return parents


def rigid_transforms(rot_mats: torch.Tensor, joints: torch.Tensor,
                     parents: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward kinematics of a kinematic tree.

    Args:
        rot_mats: (B, J, 3, 3) local rotation of each joint (relative to its parent).
        joints: (B, J, 3) rest-pose joint locations.
        parents: (J,) long, parent index of each joint (``parents[0]`` ignored).

    Returns:
        posed_joints: (B, J, 3) joint locations after posing.
        A: (B, J, 4, 4) relative transforms ``G_j · translate(-J_j)`` used for skinning.
    """
    B, J = joints.shape[:2]
    parents = _as_parents(parents, J, joints.device)
    rel = joints.clone()
    if J > 1:
        rel[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    # local 4x4 transforms [R | rel_joint]
    local = torch.zeros(B, J, 4, 4, dtype=rot_mats.dtype, device=rot_mats.device)
    local[..., :3, :3] = rot_mats
    local[..., :3, 3] = rel
    local[..., 3, 3] = 1.0
    world = [local[:, 0]]
    for j in range(1, J):
        world.append(world[int(parents[j])] @ local[:, j])
    G = torch.stack(world, dim=1)  # (B, J, 4, 4)
    posed_joints = G[..., :3, 3]
    # A_j = G_j · translate(-J_j): only the translation column changes, t' = t - R_world J_j
    t = posed_joints - (G[..., :3, :3] @ joints.unsqueeze(-1)).squeeze(-1)
    A = G.clone()
    A[..., :3, 3] = t
    return posed_joints, A


def regress_joints(J_regressor: torch.Tensor, verts: torch.Tensor) -> torch.Tensor:
    """Joint locations from vertices.

    Args:
        J_regressor: (J, V) dense or sparse (COO/CSR) regressor.
        verts: (B, V, 3).

    Returns:
        (B, J, 3).
    """
    if J_regressor.is_sparse or J_regressor.layout != torch.strided:
        return torch.stack([torch.sparse.mm(J_regressor, v) for v in verts], dim=0)
    return torch.einsum("jv,bvk->bjk", J_regressor, verts)


def blend_shapes(coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Linear blendshape offsets.

    Args:
        coeffs: (B, S) coefficients; may be shorter than ``dirs``' last dim (the rest count as zero).
        dirs: (V, 3, S') with ``S <= S'``.

    Returns:
        (B, V, 3) offsets.
    """
    S = coeffs.shape[-1]
    if S > dirs.shape[-1]:
        raise ValueError(f"{S} blendshape coefficients but only {dirs.shape[-1]} directions")
    return torch.einsum("bs,vks->bvk", coeffs, dirs[..., :S])


def lbs(betas: torch.Tensor, pose: torch.Tensor, v_template: torch.Tensor, shapedirs: torch.Tensor,
        posedirs: torch.Tensor, J_regressor: torch.Tensor, parents: torch.Tensor | Sequence[int],
        lbs_weights: torch.Tensor, extra_offset: torch.Tensor | None = None
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shape blendshapes, pose correctives and linear blend skinning.

    Args:
        betas: (B, S) shape (and/or expression) coefficients, matched to ``shapedirs[..., :S]``.
        pose: (B, J*3) axis-angle per joint (joint 0 = global rotation).
        v_template: (V, 3) rest template.
        shapedirs: (V, 3, S') blendshape directions, ``S' >= S``.
        posedirs: (P, V*3) (SMPL layout, ``P = (J-1)*9``) or (V, 3, P) (raw model-file layout).
        J_regressor: (J, V) dense or sparse.
        parents: (J,) long.
        lbs_weights: (V, J) skinning weights (rows sum to 1).
        extra_offset: (B|1, V, 3) or None; added to the shaped vertices before posing (and before
            joint regression), e.g. FLAME's ``static_offset``.

    Returns:
        verts: (B, V, 3) posed vertices.
        joints: (B, J, 3) posed joints.
        A: (B, J, 4, 4) relative joint transforms (see module docstring).
    """
    B = max(betas.shape[0], pose.shape[0])
    V = v_template.shape[0]
    n_joints = lbs_weights.shape[1]
    if pose.shape[-1] != n_joints * 3:
        raise ValueError(f"pose has {pose.shape[-1]} values, expected {n_joints * 3} ({n_joints} joints x 3)")

    v_shaped = v_template.unsqueeze(0) + blend_shapes(betas, shapedirs)
    v_shaped = v_shaped.expand(B, V, 3)
    if extra_offset is not None:
        v_shaped = v_shaped + extra_offset
    joints = regress_joints(J_regressor.to(v_shaped.dtype), v_shaped)

    rot_mats = batch_rodrigues(pose.reshape(pose.shape[0], n_joints, 3)).expand(B, n_joints, 3, 3)
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    pose_feature = (rot_mats[:, 1:] - eye).reshape(B, -1)
    if posedirs.dim() == 2:
        pose_offsets = (pose_feature @ posedirs).reshape(B, V, 3)
    else:
        pose_offsets = torch.einsum("bp,vkp->bvk", pose_feature, posedirs)
    v_posed = v_shaped + pose_offsets

    posed_joints, A = rigid_transforms(rot_mats, joints, parents)
    T = torch.einsum("vj,bjmn->bvmn", lbs_weights.to(A.dtype), A)  # (B, V, 4, 4)
    verts = (T[..., :3, :3] @ v_posed.unsqueeze(-1)).squeeze(-1) + T[..., :3, 3]
    return verts, posed_joints, A
