"""Mesh utilities: normals, areas, Laplacians, surface sampling, exact point-triangle distance."""

from __future__ import annotations

import math

import pytest
import torch

from avatarbench.geometry import (
    apply_laplacian,
    closest_point_on_triangle,
    cotangent_laplacian,
    cotangent_weights,
    face_areas,
    face_normals,
    laplacian_matrix,
    laplacian_smoothing_loss,
    mesh_edges,
    point_mesh_distance,
    point_triangle_distance,
    sample_surface,
    uniform_laplacian,
    uniform_weights,
    vertex_normals,
)
from avatarbench.geometry.mesh import _nearest_face_dense, point_mesh_distance_bruteforce

torch.set_num_threads(1)
DT = torch.float64


def grid_mesh(n: int = 5, jitter: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat n x n grid in z=0 (each quad split along the same diagonal); returns verts, faces, interior ids."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(n, dtype=DT), torch.arange(n, dtype=DT), indexing="ij")
    verts = torch.stack([xs.flatten(), ys.flatten(), torch.zeros(n * n, dtype=DT)], dim=1)
    interior = ((xs > 0) & (xs < n - 1) & (ys > 0) & (ys < n - 1)).flatten()
    if jitter:
        verts[interior, :2] += jitter * (torch.rand(int(interior.sum()), 2, generator=g, dtype=DT) - 0.5)
    faces = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, d, e = r * n + c, r * n + c + 1, (r + 1) * n + c, (r + 1) * n + c + 1
            faces += [[a, b, e], [a, e, d]]
    return verts, torch.tensor(faces), interior.nonzero()[:, 0]


TRI = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=DT)


@pytest.mark.parametrize(
    "point, expected_dist, expected_closest",
    [
        ((0.2, 0.2, 0.5), 0.5, (0.2, 0.2, 0.0)),            # above the face
        ((0.2, 0.3, -0.25), 0.25, (0.2, 0.3, 0.0)),         # below the face
        ((0.5, -0.3, 0.4), 0.5, (0.5, 0.0, 0.0)),           # near edge AB
        ((-0.3, 0.5, 0.4), 0.5, (0.0, 0.5, 0.0)),           # near edge AC
        ((1.0, 1.0, 0.0), math.sqrt(0.5), (0.5, 0.5, 0.0)),  # near edge BC (hypotenuse)
        ((-0.3, -0.4, 0.0), 0.5, (0.0, 0.0, 0.0)),          # near vertex A
        ((1.3, -0.4, 0.0), 0.5, (1.0, 0.0, 0.0)),           # near vertex B
        ((-0.4, 1.3, 0.0), 0.5, (0.0, 1.0, 0.0)),           # near vertex C
        ((0.25, 0.25, 0.0), 0.0, (0.25, 0.25, 0.0)),        # on the face
    ],
)
def test_point_triangle_hand_cases(point, expected_dist, expected_closest):
    p = torch.tensor(point, dtype=DT)
    d = point_triangle_distance(p, TRI)
    c, bary = closest_point_on_triangle(p, TRI)
    assert d.item() == pytest.approx(expected_dist, abs=1e-12)
    assert torch.allclose(c, torch.tensor(expected_closest, dtype=DT), atol=1e-12)
    assert torch.allclose((bary[:, None] * TRI).sum(0), c, atol=1e-12)
    assert bary.min() >= -1e-12 and bary.sum().item() == pytest.approx(1.0)


def test_point_triangle_vs_dense_sampling():
    g = torch.Generator().manual_seed(1)
    tris = torch.randn(40, 3, 3, generator=g, dtype=DT)
    pts = 1.5 * torch.randn(40, 3, generator=g, dtype=DT)
    d = point_triangle_distance(pts, tris)
    # dense barycentric grid on every triangle
    n = 160
    i, j = torch.meshgrid(torch.arange(n + 1, dtype=DT), torch.arange(n + 1, dtype=DT), indexing="ij")
    keep = (i + j) <= n
    u, v = (i[keep] / n), (j[keep] / n)
    bary = torch.stack([1 - u - v, u, v], dim=-1)  # (S, 3)
    samples = torch.einsum("sk,tkd->tsd", bary, tris)  # (T, S, 3)
    dense = (samples - pts[:, None]).norm(dim=-1).min(dim=1).values
    edge = (tris - tris.roll(1, dims=1)).norm(dim=-1).max(dim=1).values
    assert (d <= dense + 1e-12).all(), "exact distance must not exceed any sampled distance"
    assert ((dense - d) <= edge / n * 1.01).all(), "dense sampling must approach the exact distance"


def test_point_triangle_degenerate_no_nan():
    tris = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0]],  # collinear
                         [[1.0, 1, 1], [1, 1, 1], [1, 1, 1]]], dtype=DT)  # a point
    pts = torch.tensor([[0.5, 1.0, 0.0], [1.0, 1.0, 3.0]], dtype=DT, requires_grad=True)
    d = point_triangle_distance(pts, tris)
    assert torch.allclose(d, torch.tensor([1.0, 2.0], dtype=DT))
    d.sum().backward()
    assert torch.isfinite(pts.grad).all()


def test_point_triangle_gradcheck():
    # generic configurations in the face, edge and vertex regions (away from region boundaries)
    pts = torch.tensor([[0.2, 0.3, 0.7], [0.5, -0.4, 0.3], [-0.5, -0.6, 0.2], [0.9, 0.8, -0.3]],
                       dtype=DT, requires_grad=True)
    tris = (TRI + 0.01 * torch.arange(9, dtype=DT).reshape(3, 3)).expand(4, 3, 3).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p, t: point_triangle_distance(p, t), (pts, tris), eps=1e-6, atol=1e-6)


def test_point_mesh_distance_matches_loop_over_faces():
    verts, faces, _ = grid_mesh(4, jitter=0.4, seed=3)
    verts = verts.clone()
    verts[:, 2] = 0.3 * torch.sin(verts[:, 0]) * torch.cos(verts[:, 1])  # non-planar
    g = torch.Generator().manual_seed(2)
    pts = torch.rand(50, 3, generator=g, dtype=DT) * torch.tensor([3.0, 3.0, 1.0], dtype=DT) - torch.tensor([0, 0, 0.5], dtype=DT)
    d, fidx, closest = point_mesh_distance(pts, verts, faces, chunk_pairs=64)  # forces many chunks
    ref = torch.stack([point_triangle_distance(pts, verts[f].expand(50, 3, 3)) for f in faces], dim=1).min(dim=1).values
    assert torch.allclose(d, ref, atol=1e-12)
    assert torch.allclose((pts - closest).norm(dim=-1), d, atol=1e-12)
    assert torch.allclose(point_triangle_distance(pts, verts[faces[fidx]]), d, atol=1e-12)
    assert torch.allclose(point_mesh_distance_bruteforce(pts, verts, faces, chunk_pairs=100), ref, atol=1e-12)


def test_point_mesh_distance_pruning_is_exact_on_a_closed_surface():
    # a fine closed surface (convex hull of sphere points, ~2k faces), points near and far from it
    import numpy as np
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng(0)
    P = rng.normal(size=(1000, 3))
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    verts = torch.tensor(P, dtype=torch.float32)
    faces = torch.tensor(ConvexHull(P).simplices)
    g = torch.Generator().manual_seed(0)
    pts = torch.cat([verts[:300] * (1 + 0.05 * torch.randn(300, 1, generator=g)),
                     3 * torch.randn(30, 3, generator=g), 0.2 * torch.randn(30, 3, generator=g)])
    pts.requires_grad_(True)
    d, fidx, _ = point_mesh_distance(pts, verts, faces, chunk_pairs=2 ** 15)  # CPU: KD-tree candidates
    ref = point_mesh_distance_bruteforce(pts.detach(), verts, faces)
    assert torch.equal(d.detach(), ref)
    # the dense candidate search (used on GPUs) finds faces at the same distance
    fdense = _nearest_face_dense(pts.detach(), verts[faces], 8, 2 ** 15)
    assert torch.equal(point_triangle_distance(pts.detach(), verts[faces[fdense]]), ref)
    d.sum().backward()
    assert torch.isfinite(pts.grad).all()


def test_face_normals_areas_and_vertex_normals():
    verts, faces, _ = grid_mesh(3)
    n = face_normals(verts, faces)
    assert torch.allclose(n, torch.tensor([0.0, 0.0, 1.0], dtype=DT).expand_as(n))
    assert torch.allclose(face_areas(verts, faces), torch.full((faces.shape[0],), 0.5, dtype=DT))
    vn = vertex_normals(verts, faces)
    assert torch.allclose(vn, torch.tensor([0.0, 0.0, 1.0], dtype=DT).expand_as(vn))
    # batched input
    vb = torch.stack([verts, 2 * verts])
    assert face_areas(vb, faces).shape == (2, faces.shape[0])
    assert torch.allclose(face_areas(vb, faces)[1], torch.full((faces.shape[0],), 2.0, dtype=DT))


def test_mesh_edges_counts():
    verts, faces, _ = grid_mesh(3)  # 9 verts, 8 faces: 12 grid edges + 4 diagonals
    e = mesh_edges(faces)
    assert e.shape == (16, 2) and (e[:, 0] < e[:, 1]).all()
    assert mesh_edges(faces, unique=False).shape == (24, 2)
    edges, w = uniform_weights(faces, face_weighted=True)
    assert int(w.sum()) == 24 and set(w.tolist()) == {1.0, 2.0}


def test_laplacian_flat_grid_interior_zero():
    verts, faces, interior = grid_mesh(5)
    L = uniform_laplacian(faces, verts.shape[0], dtype=DT)
    lv = torch.sparse.mm(L, verts)
    assert lv[interior].abs().max() < 1e-12
    assert lv.abs().max() > 0.1  # boundary vertices are not zero (the test is not vacuous)
    # cotangent Laplacian is exactly zero at interior vertices of ANY flat triangulation
    jv, jf, jint = grid_mesh(5, jitter=0.5, seed=7)
    for normalize in (False, True):
        Lc = cotangent_laplacian(jv, jf, normalize=normalize)
        assert torch.sparse.mm(Lc, jv)[jint].abs().max() < 1e-10
    # the uniform one is not, in-plane, for the jittered grid (only z stays 0)
    lu = torch.sparse.mm(uniform_laplacian(jf, jv.shape[0], dtype=DT), jv)[jint]
    assert lu[:, :2].abs().max() > 1e-3 and lu[:, 2].abs().max() == 0


def test_edge_form_matches_sparse_form_and_constants_vanish():
    verts, faces, _ = grid_mesh(4, jitter=0.6, seed=5)
    x = torch.randn(verts.shape[0], 2, dtype=DT)
    for normalize in (True, False):
        edges, w = cotangent_weights(verts, faces)
        L = laplacian_matrix(edges, w, verts.shape[0], normalize=normalize)
        assert torch.allclose(torch.sparse.mm(L, x), apply_laplacian(x, edges, w, normalize=normalize), atol=1e-12)
        assert apply_laplacian(torch.ones_like(x), edges, w, normalize=normalize).abs().max() < 1e-12
    # batched weights/values
    vb = torch.stack([verts, 1.5 * verts])
    eb, wb = cotangent_weights(vb, faces)
    assert wb.shape == (2, edges.shape[0])
    assert torch.allclose(wb[0], wb[1])  # cotangents are scale invariant
    assert apply_laplacian(vb, eb, wb).shape == vb.shape


def test_cotangent_weights_equilateral():
    s3 = math.sqrt(3.0)
    verts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, s3 / 2, 0.0]], dtype=DT)
    edges, w = cotangent_weights(verts, torch.tensor([[0, 1, 2]]))
    assert torch.allclose(w, torch.full((3,), 0.5 / s3, dtype=DT))  # cot 60 deg / 2, one face per edge


def test_laplacian_smoothing_loss_tetrahedron_by_hand():
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3]], dtype=DT, requires_grad=True)
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    loss = laplacian_smoothing_loss(verts, faces, kind="uniform")
    v = verts.detach()
    by_hand = torch.stack([v[i] - (v.sum(0) - v[i]) / 3 for i in range(4)])  # every vertex sees the other 3
    assert loss.item() == pytest.approx(by_hand.pow(2).mean().item(), rel=1e-12)
    loss.backward()
    assert torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0
    lc = laplacian_smoothing_loss(verts, faces, kind="cotangent", reduction="mean_norm")
    assert torch.isfinite(lc)


def test_sample_surface_seeded_on_surface_and_area_weighted():
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [3, 0, 0], [3, 3, 0]], dtype=DT)
    faces = torch.tensor([[0, 1, 2], [1, 3, 4]])  # areas 0.5 and 3
    s1 = sample_surface(verts, faces, 20000, generator=torch.Generator().manual_seed(0))
    s2 = sample_surface(verts, faces, 20000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s1.points, s2.points)
    frac = (s1.face_index == 1).double().mean().item()
    assert frac == pytest.approx(3.0 / 3.5, abs=0.01)
    assert (s1.barycentric >= 0).all() and torch.allclose(s1.barycentric.sum(-1), torch.ones(20000, dtype=DT))
    d, _, _ = point_mesh_distance(s1.points[:500], verts, faces)
    assert d.max() < 1e-12
    # uniform inside a face: mean of samples on face 0 is its centroid
    c0 = s1.points[s1.face_index == 0].mean(0)
    assert torch.allclose(c0, verts[:3].mean(0), atol=0.02)


@pytest.mark.gpu
def test_point_mesh_distance_cuda_matches_cpu():
    verts, faces, _ = grid_mesh(12, jitter=0.5, seed=9)
    verts = verts.float()
    verts[:, 2] = 0.3 * torch.sin(verts[:, 0])
    pts = torch.rand(4000, 3) * 11
    d_cpu, _, _ = point_mesh_distance(pts, verts, faces)
    d_gpu, _, _ = point_mesh_distance(pts.cuda(), verts.cuda(), faces.cuda())
    assert torch.allclose(d_gpu.cpu(), d_cpu, atol=1e-5)
