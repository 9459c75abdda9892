"""Tests of the generic LBS layer against hand-computed values (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from avatarbench.bodymodels.lbs import batch_rodrigues, blend_shapes, lbs, rigid_transforms

torch.set_num_threads(1)
DT = torch.float64


def _chain():
    """Two joints at (0,0,0) and (1,0,0); vertices at x = 0, 1, 2 and a half/half vertex at x = 2."""
    v = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [2.0, 0, 0]], dtype=DT)
    W = torch.tensor([[1.0, 0], [0, 1.0], [0, 1.0], [0.5, 0.5]], dtype=DT)
    Jreg = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]], dtype=DT)
    parents = torch.tensor([-1, 0])
    shapedirs = torch.zeros(4, 3, 2, dtype=DT)
    posedirs = torch.zeros(9, 12, dtype=DT)
    return v, W, Jreg, parents, shapedirs, posedirs


def _run_chain(pose):
    v, W, Jreg, parents, shapedirs, posedirs = _chain()
    betas = torch.zeros(1, 2, dtype=DT)
    return lbs(betas, torch.tensor([pose], dtype=DT), v, shapedirs, posedirs, Jreg, parents, W)


def test_batch_rodrigues_90deg_about_z():
    R = batch_rodrigues(torch.tensor([[0.0, 0.0, math.pi / 2]], dtype=DT))[0]
    expected = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=DT)
    torch.testing.assert_close(R, expected)
    assert batch_rodrigues(torch.zeros(2, 5, 3)).shape == (2, 5, 3, 3)


def test_identity_pose_returns_shaped_template():
    g = torch.Generator().manual_seed(0)
    V, S, J = 7, 3, 3
    v = torch.randn(V, 3, generator=g, dtype=DT)
    sd = torch.randn(V, 3, S, generator=g, dtype=DT)
    pd = torch.randn((J - 1) * 9, V * 3, generator=g, dtype=DT)
    Jreg = torch.softmax(torch.randn(J, V, generator=g, dtype=DT), dim=1)
    W = torch.softmax(torch.randn(V, J, generator=g, dtype=DT), dim=1)
    betas = torch.randn(2, S, generator=g, dtype=DT)
    off = torch.randn(2, V, 3, generator=g, dtype=DT)
    verts, joints, A = lbs(betas, torch.zeros(2, J * 3, dtype=DT), v, sd, pd, Jreg, [-1, 0, 1], W, off)
    shaped = v + torch.einsum("bs,vks->bvk", betas, sd) + off
    torch.testing.assert_close(verts, shaped)
    torch.testing.assert_close(joints, torch.einsum("jv,bvk->bjk", Jreg, shaped))
    torch.testing.assert_close(A, torch.eye(4, dtype=DT).expand(2, J, 4, 4))


def test_rotating_child_joint_90deg_moves_chain_as_by_hand():
    verts, joints, _ = _run_chain([0, 0, 0, 0, 0, math.pi / 2])
    expected = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [1.5, 0.5, 0]], dtype=DT)
    torch.testing.assert_close(verts[0], expected)
    torch.testing.assert_close(joints[0], torch.tensor([[0.0, 0, 0], [1, 0, 0]], dtype=DT))


def test_rotating_root_and_child_compose():
    verts, joints, _ = _run_chain([0, 0, math.pi / 2, 0, 0, math.pi / 2])
    # root turns everything by 90 deg about z; joint 1 lands at (0,1,0); vertex 2 turns 180 deg about it
    torch.testing.assert_close(joints[0], torch.tensor([[0.0, 0, 0], [0, 1, 0]], dtype=DT))
    torch.testing.assert_close(verts[0, :3], torch.tensor([[0.0, 0, 0], [0, 1, 0], [-1, 1, 0]], dtype=DT))


def test_rigid_transforms_root_offset_and_A_maps_rest_joints_to_posed():
    g = torch.Generator().manual_seed(1)
    J = 4
    joints = torch.randn(2, J, 3, generator=g, dtype=DT)
    R = batch_rodrigues(torch.randn(2, J, 3, generator=g, dtype=DT))
    parents = torch.tensor([-1, 0, 1, 1])
    posed, A = rigid_transforms(R, joints, parents)
    # root rotates about its own location
    torch.testing.assert_close(posed[:, 0], joints[:, 0])
    # independent chain composition for joint 3 (parent 1, grandparent 0)
    p1 = joints[:, 0:1].mT  # (2,3,1)
    G0R = R[:, 0]
    G1R = G0R @ R[:, 1]
    p_j1 = (G0R @ (joints[:, 1:2] - joints[:, 0:1]).mT + p1).squeeze(-1)
    p_j3 = (G1R @ (joints[:, 3:4] - joints[:, 1:2]).mT).squeeze(-1) + p_j1
    torch.testing.assert_close(posed[:, 1], p_j1)
    torch.testing.assert_close(posed[:, 3], p_j3)
    # A_j maps the rest joint J_j to the posed joint, and has the world rotation
    hom = torch.cat([joints, torch.ones(2, J, 1, dtype=DT)], -1)
    torch.testing.assert_close((A @ hom.unsqueeze(-1)).squeeze(-1)[..., :3], posed)
    torch.testing.assert_close(A[:, 3, :3, :3], G1R @ R[:, 3])
    torch.testing.assert_close(A[..., 3, :], torch.tensor([0.0, 0, 0, 1], dtype=DT).expand(2, J, 4))


def _random_model(seed=0, V=9, J=3, S=4):
    g = torch.Generator().manual_seed(seed)
    return dict(
        v_template=torch.randn(V, 3, generator=g, dtype=DT),
        shapedirs=0.1 * torch.randn(V, 3, S, generator=g, dtype=DT),
        posedirs=0.1 * torch.randn((J - 1) * 9, V * 3, generator=g, dtype=DT),
        J_regressor=torch.softmax(torch.randn(J, V, generator=g, dtype=DT), dim=1),
        parents=torch.tensor([-1, 0, 0]),
        lbs_weights=torch.softmax(3 * torch.randn(V, J, generator=g, dtype=DT), dim=1),
    ), g


def test_A_with_weights_reproduces_verts():
    m, g = _random_model()
    m["posedirs"] = torch.zeros_like(m["posedirs"])
    betas = torch.randn(2, 4, generator=g, dtype=DT)
    pose = torch.randn(2, 9, generator=g, dtype=DT)
    verts, _, A = lbs(betas, pose, **m)
    shaped = m["v_template"] + blend_shapes(betas, m["shapedirs"])
    hom = torch.cat([shaped, torch.ones(2, shaped.shape[1], 1, dtype=DT)], -1)
    per_joint = torch.einsum("bjmn,bvn->bvjm", A, hom)[..., :3]  # (B,V,J,3)
    skinned = torch.einsum("vj,bvjm->bvm", m["lbs_weights"], per_joint)
    torch.testing.assert_close(verts, skinned)


def test_pose_correctives_both_layouts_and_sparse_regressor():
    m, g = _random_model(2)
    V = m["v_template"].shape[0]
    betas = torch.randn(1, 4, generator=g, dtype=DT)
    pose = torch.randn(1, 9, generator=g, dtype=DT)
    verts, joints, A = lbs(betas, pose, **m)
    # (V, 3, P) layout of the same correctives
    m3 = dict(m, posedirs=m["posedirs"].reshape(-1, V, 3).permute(1, 2, 0))
    v2, _, _ = lbs(betas, pose, **m3)
    torch.testing.assert_close(verts, v2)
    ms = dict(m, J_regressor=m["J_regressor"].to_sparse())
    v3, j3, _ = lbs(betas, pose, **ms)
    torch.testing.assert_close(verts, v3)
    torch.testing.assert_close(joints, j3)
    # correctives by hand: offsets = (R_1 - I, R_2 - I) flattened @ posedirs, then skinned with A
    R = batch_rodrigues(pose.reshape(1, 3, 3))
    feat = (R[:, 1:] - torch.eye(3, dtype=DT)).reshape(1, -1)
    v_posed = m["v_template"] + blend_shapes(betas, m["shapedirs"]) + (feat @ m["posedirs"]).reshape(1, V, 3)
    hom = torch.cat([v_posed, torch.ones(1, V, 1, dtype=DT)], -1)
    T = torch.einsum("vj,bjmn->bvmn", m["lbs_weights"], A)
    torch.testing.assert_close(verts, (T @ hom.unsqueeze(-1)).squeeze(-1)[..., :3])


def test_short_betas_use_leading_directions_and_bad_pose_raises():
    m, g = _random_model(3)
    b = torch.randn(1, 2, generator=g, dtype=DT)
    v_short, _, _ = lbs(b, torch.zeros(1, 9, dtype=DT), **m)
    v_pad, _, _ = lbs(torch.cat([b, torch.zeros(1, 2, dtype=DT)], 1), torch.zeros(1, 9, dtype=DT), **m)
    torch.testing.assert_close(v_short, v_pad)
    with pytest.raises(ValueError):
        lbs(b, torch.zeros(1, 6, dtype=DT), **m)
    with pytest.raises(ValueError):
        rigid_transforms(torch.eye(3, dtype=DT).expand(1, 2, 3, 3), torch.zeros(1, 2, 3, dtype=DT), [-1, 1])


def test_gradcheck():
    m, g = _random_model(4, V=5)
    betas = torch.randn(1, 4, generator=g, dtype=DT, requires_grad=True)
    pose = (0.5 * torch.randn(1, 9, generator=g, dtype=DT)).requires_grad_()
    off = (0.1 * torch.randn(1, 5, 3, generator=g, dtype=DT)).requires_grad_()

    def f(b, p, o):
        verts, joints, A = lbs(b, p, extra_offset=o, **m)
        return verts, joints, A

    assert torch.autograd.gradcheck(f, (betas, pose, off))
    # also at the identity pose (roma's small-angle branch)
    assert torch.autograd.gradcheck(f, (betas, torch.zeros(1, 9, dtype=DT, requires_grad=True), off))
