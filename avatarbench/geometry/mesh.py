"""Triangle-mesh utilities shared by every method and by the geometry metrics (pure torch).

Conventions:

- ``verts``: (..., V, 3) float tensor; leading batch dims are allowed wherever noted.
- ``faces``: (F, 3) long tensor of vertex indices, shared by all batch elements.
- Face normals follow the right-hand rule: ``n = (v1 - v0) x (v2 - v0)`` (counter-clockwise
  faces seen from outside point outwards).
- All functions are differentiable with respect to ``verts`` (the Laplacian *weights* of
  :func:`cotangent_weights` too), except where a docstring says otherwise.

Laplacians come in two forms:

- *edge form* (differentiable, batched): ``edges (E, 2)`` of undirected pairs plus ``weights``
  ``(E,)`` or ``(..., E)``, applied with :func:`apply_laplacian`;
- *sparse form*: a ``torch.sparse_coo_tensor`` (V, V) from :func:`laplacian_matrix`, for
  ``torch.sparse.mm``.

Both use the sign convention ``(L x)_i = x_i - sum_j w_ij x_j / sum_j w_ij`` (normalised) or
``(L x)_i = sum_j w_ij (x_i - x_j)`` (unnormalised), so smooth/flat regions map to ~0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = [
    "face_vertices",
    "face_normals",
    "face_areas",
    "vertex_normals",
    "mesh_edges",
    "uniform_weights",
    "cotangent_weights",
    "apply_laplacian",
    "laplacian_matrix",
    "uniform_laplacian",
    "cotangent_laplacian",
    "laplacian_smoothing_loss",
    "SurfaceSample",
    "sample_surface",
    "point_triangle_distance",
    "closest_point_on_triangle",
    "point_mesh_distance",
    "point_mesh_distance_bruteforce",
]


def _check_faces(faces: torch.Tensor, num_verts: int | None = None) -> torch.Tensor:
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces: shape {tuple(faces.shape)}, expected (F, 3)")
    faces = faces.long()
    if num_verts is not None and faces.numel() and (faces.min() < 0 or faces.max() >= num_verts):
        raise ValueError(f"faces: indices outside [0, {num_verts})")
    return faces


def face_vertices(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Gather the corners of every face.

    Args:
        verts: (..., V, 3).
        faces: (F, 3) long.

    Returns:
        (..., F, 3, 3): ``out[..., f, k]`` is corner ``k`` of face ``f``.
    """
    faces = _check_faces(faces, verts.shape[-2])
    return verts[..., faces, :]


def face_normals(verts: torch.Tensor, faces: torch.Tensor, normalized: bool = True,
                 eps: float = 1e-12) -> torch.Tensor:
    """Per-face normals ``(v1 - v0) x (v2 - v0)``.

    Args:
        verts: (..., V, 3).
        faces: (F, 3).
        normalized: unit length if True, else the raw cross product (length = 2 * area).

    Returns:
        (..., F, 3).
    """
    fv = face_vertices(verts, faces)
    n = torch.cross(fv[..., 1, :] - fv[..., 0, :], fv[..., 2, :] - fv[..., 0, :], dim=-1)
    if normalized:
        n = n / n.norm(dim=-1, keepdim=True).clamp_min(eps)
    return n


def face_areas(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Triangle areas.

    Args:
        verts: (..., V, 3).
        faces: (F, 3).

    Returns:
        (..., F).
    """
    return 0.5 * face_normals(verts, faces, normalized=False).norm(dim=-1)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Area-weighted vertex normals (sum of the raw face normals of incident faces, normalised).

    Vertices without faces get a zero normal.

    Args:
        verts: (..., V, 3).
        faces: (F, 3).

    Returns:
        (..., V, 3).
    """
    faces = _check_faces(faces, verts.shape[-2])
    fn = face_normals(verts, faces, normalized=False)  # (..., F, 3)
    out = torch.zeros_like(verts)
    for k in range(3):
        out = out.index_add(-2, faces[:, k], fn)
    return out / out.norm(dim=-1, keepdim=True).clamp_min(eps)


def mesh_edges(faces: torch.Tensor, unique: bool = True) -> torch.Tensor:
    """Edges of a triangle mesh.

    Args:
        faces: (F, 3).
        unique: if True, each undirected edge once with ``i < j``, sorted; if False, the 3F
            per-face edges ``(v0,v1), (v1,v2), (v2,v0)`` of every face in face order (interior
            edges then appear twice, once per adjacent face).

    Returns:
        (E, 2) long.
    """
    faces = _check_faces(faces)
    e = torch.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], dim=1).reshape(-1, 2)
    if not unique:
        return e
    e, _ = e.sort(dim=1)
    return torch.unique(e, dim=0)


def uniform_weights(faces: torch.Tensor, face_weighted: bool = False,
                    dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform ("umbrella") Laplacian weights in edge form.

    Args:
        faces: (F, 3).
        face_weighted: if False every neighbour has weight 1; if True an edge's weight is the
            number of faces it belongs to (1 on the boundary, 2 inside), as in implementations
            that accumulate neighbour differences face by face (e.g. nvdiffrec-style
            ``laplace_regularizer_const`` used by Gaussian Head Avatar's mesh stage).

        dtype: dtype of the weights.

    Returns:
        edges (E, 2) long with ``i < j``, weights (E,).
    """
    faces = _check_faces(faces)
    e = mesh_edges(faces, unique=False)
    e, _ = e.sort(dim=1)
    edges, counts = torch.unique(e, dim=0, return_counts=True)
    w = counts.to(dtype) if face_weighted else torch.ones(edges.shape[0], dtype=dtype, device=faces.device)
    return edges, w


def cotangent_weights(verts: torch.Tensor, faces: torch.Tensor, eps: float = 1e-12
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cotangent Laplacian weights ``w_ij = (cot a_ij + cot b_ij) / 2`` in edge form.

    ``a_ij`` and ``b_ij`` are the angles opposite edge (i, j) in its (one or two) adjacent faces.
    Weights can be negative for obtuse triangles. Differentiable w.r.t. ``verts``.

    Args:
        verts: (..., V, 3).
        faces: (F, 3).

    Returns:
        edges (E, 2) long with ``i < j`` (same order as :func:`mesh_edges`), weights (..., E).
    """
    faces = _check_faces(faces, verts.shape[-2])
    fv = face_vertices(verts, faces)  # (..., F, 3, 3)
    edges = mesh_edges(faces, unique=True)
    V = verts.shape[-2]
    key_all = edges[:, 0] * V + edges[:, 1]
    out = verts.new_zeros(verts.shape[:-2] + (edges.shape[0],))
    for k in range(3):  # corner k is opposite the edge (k+1, k+2)
        i, j = (k + 1) % 3, (k + 2) % 3
        a = fv[..., i, :] - fv[..., k, :]
        b = fv[..., j, :] - fv[..., k, :]
        cot = (a * b).sum(-1) / torch.cross(a, b, dim=-1).norm(dim=-1).clamp_min(eps)
        ei = torch.minimum(faces[:, i], faces[:, j])
        ej = torch.maximum(faces[:, i], faces[:, j])
        idx = torch.searchsorted(key_all, ei * V + ej)
        out = out.index_add(-1, idx, 0.5 * cot)
    return edges, out


def apply_laplacian(x: torch.Tensor, edges: torch.Tensor, weights: torch.Tensor,
                    normalize: bool = True, eps: float = 1e-12) -> torch.Tensor:
    """Apply a symmetric edge-form Laplacian to per-vertex values.

    Args:
        x: (..., V, D) per-vertex values (e.g. positions, D=3).
        edges: (E, 2) undirected edges.
        weights: (E,) or (..., E) edge weights (broadcast against x's batch dims).
        normalize: ``x_i - sum_j w_ij x_j / sum_j w_ij`` if True, else ``sum_j w_ij (x_i - x_j)``.
            Isolated vertices map to 0.

    Returns:
        (..., V, D).
    """
    i, j = edges[:, 0], edges[:, 1]
    w = weights.unsqueeze(-1).to(x.dtype)  # (..., E, 1)
    xi, xj = x[..., i, :], x[..., j, :]
    diff = torch.zeros_like(x)
    diff = diff.index_add(-2, i, w * (xi - xj))
    diff = diff.index_add(-2, j, w * (xj - xi))
    if not normalize:
        return diff
    wsum = x.new_zeros(torch.broadcast_shapes(w.shape[:-2], x.shape[:-2]) + (x.shape[-2], 1))
    wsum = wsum.index_add(-2, i, w.expand(wsum.shape[:-2] + w.shape[-2:]))
    wsum = wsum.index_add(-2, j, w.expand(wsum.shape[:-2] + w.shape[-2:]))
    safe = torch.where(wsum.abs() > eps, wsum, torch.ones_like(wsum))
    return torch.where(wsum.abs() > eps, diff / safe, torch.zeros_like(diff))


def laplacian_matrix(edges: torch.Tensor, weights: torch.Tensor, num_verts: int,
                     normalize: bool = True, eps: float = 1e-12) -> torch.Tensor:
    """Sparse (V, V) Laplacian matching :func:`apply_laplacian` (``L @ x == apply_laplacian(x)``).

    Args:
        edges: (E, 2).
        weights: (E,) (no batch dims).
        num_verts: V.
        normalize: see :func:`apply_laplacian`.

    Returns:
        coalesced ``torch.sparse_coo_tensor`` of shape (V, V), dtype of ``weights``.
    """
    if weights.ndim != 1:
        raise ValueError(f"weights: shape {tuple(weights.shape)}, expected (E,) for a sparse matrix")
    i, j = edges[:, 0], edges[:, 1]
    V = num_verts
    deg = weights.new_zeros(V).index_add(0, i, weights).index_add(0, j, weights)
    if normalize:
        ok = deg.abs() > eps
        inv = torch.where(ok, 1.0 / torch.where(ok, deg, torch.ones_like(deg)), torch.zeros_like(deg))
        off_ij, off_ji = -weights * inv[i], -weights * inv[j]
        diag = ok.to(weights.dtype)
    else:
        off_ij, off_ji = -weights, -weights
        diag = deg
    ar = torch.arange(V, device=edges.device)
    rows = torch.cat([i, j, ar])
    cols = torch.cat([j, i, ar])
    vals = torch.cat([off_ij, off_ji, diag])
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (V, V), check_invariants=True).coalesce()


def uniform_laplacian(faces: torch.Tensor, num_verts: int, face_weighted: bool = False,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sparse (V, V) normalised uniform Laplacian ``(L x)_i = x_i - mean_{j in N(i)} x_j``."""
    edges, w = uniform_weights(faces, face_weighted, dtype)
    return laplacian_matrix(edges, w, num_verts, normalize=True)


def cotangent_laplacian(verts: torch.Tensor, faces: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Sparse (V, V) cotangent Laplacian of one mesh (``verts`` (V, 3); not differentiable as sparse)."""
    if verts.ndim != 2:
        raise ValueError(f"verts: shape {tuple(verts.shape)}, expected (V, 3) for a sparse matrix")
    edges, w = cotangent_weights(verts.detach(), faces)
    return laplacian_matrix(edges, w, verts.shape[0], normalize=normalize)


def laplacian_smoothing_loss(verts: torch.Tensor, faces: torch.Tensor, kind: str = "uniform",
                             reduction: str = "mean_squared", face_weighted: bool = False) -> torch.Tensor:
    """Laplacian smoothness regulariser on vertex positions.

    Args:
        verts: (..., V, 3).
        faces: (F, 3).
        kind: ``"uniform"`` (normalised umbrella operator) or ``"cotangent"`` (normalised by the
            weight sum; weights recomputed from ``verts`` and differentiated through).
        reduction: ``"mean_squared"``: mean over all (..., V, 3) entries of ``(L v)^2``;
            ``"mean_norm"``: mean over (..., V) of ``||(L v)_i||_2``.
        face_weighted: uniform only, see :func:`uniform_weights`.

    Returns:
        scalar tensor.
    """
    faces = _check_faces(faces, verts.shape[-2])
    if kind == "uniform":
        edges, w = uniform_weights(faces.to(verts.device), face_weighted, verts.dtype)
    elif kind in ("cotangent", "cot"):
        edges, w = cotangent_weights(verts, faces)
    else:
        raise ValueError(f"kind: {kind!r}, expected 'uniform' or 'cotangent'")
    lv = apply_laplacian(verts, edges, w, normalize=True)
    if reduction == "mean_squared":
        return lv.pow(2).mean()
    if reduction == "mean_norm":
        return lv.norm(dim=-1).mean()
    raise ValueError(f"reduction: {reduction!r}, expected 'mean_squared' or 'mean_norm'")


class SurfaceSample(NamedTuple):
    """Points sampled on a mesh surface.

    Attributes:
        points: (n, 3), differentiable w.r.t. the vertices.
        face_index: (n,) long, the face each point lies on.
        barycentric: (n, 3) barycentric coordinates (w.r.t. the face's corners 0, 1, 2).
    """

    points: torch.Tensor
    face_index: torch.Tensor
    barycentric: torch.Tensor


def sample_surface(verts: torch.Tensor, faces: torch.Tensor, n: int,
                   generator: torch.Generator | None = None) -> SurfaceSample:
    """Sample ``n`` points uniformly by area on a triangle mesh.

    Faces are drawn with probability proportional to their area; the point inside a face uses
    the square-root parameterisation ``b = (1 - sqrt(u), sqrt(u) (1 - v), sqrt(u) v)``, which is
    uniform on the triangle. Reproducible for a seeded ``generator`` (random numbers are drawn on
    the generator's device, CPU by default, and moved to ``verts.device``).

    Args:
        verts: (V, 3).
        faces: (F, 3).
        n: number of samples.
        generator: optional seeded ``torch.Generator``.

    Returns:
        :class:`SurfaceSample` (points (n, 3), face_index (n,), barycentric (n, 3)).
    """
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"verts: shape {tuple(verts.shape)}, expected (V, 3)")
    faces = _check_faces(faces, verts.shape[0]).to(verts.device)
    areas = face_areas(verts.detach(), faces).double()
    if faces.shape[0] == 0 or float(areas.sum()) <= 0:
        raise ValueError("sample_surface: mesh has zero total area")
    gdev = generator.device if generator is not None else torch.device("cpu")
    fidx = torch.multinomial(areas.to(gdev), n, replacement=True, generator=generator).to(verts.device)
    uv = torch.rand(n, 2, generator=generator, device=gdev, dtype=torch.float64).to(verts.device)
    su = uv[:, 0].sqrt()
    bary = torch.stack([1 - su, su * (1 - uv[:, 1]), su * uv[:, 1]], dim=-1).to(verts.dtype)
    fv = verts[faces[fidx]]  # (n, 3, 3)
    pts = (bary.unsqueeze(-1) * fv).sum(dim=1)
    return SurfaceSample(pts, fidx, bary)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den with 0 where den == 0 (and a finite gradient there)."""
    ok = den != 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def closest_point_on_triangle(points: torch.Tensor, tris: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closest point on each triangle to each point (paired, broadcasting).

    Region-based test (vertex regions, edge regions, interior) on the barycentric projections
    (the standard Voronoi-region method, e.g. Ericson, *Real-Time Collision Detection* §5.1.5),
    vectorised with ``torch.where``. Degenerate triangles fall back to their closest
    vertex/edge.

    Args:
        points: (..., 3).
        tris: (..., 3, 3) triangle corners, broadcastable against ``points``.

    Returns:
        closest (..., 3) and barycentric coordinates (..., 3) of the closest point.
    """
    a, b, c = tris[..., 0, :], tris[..., 1, :], tris[..., 2, :]
    ab, ac = b - a, c - a
    ap, bp, cp = points - a, points - b, points - c
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    vc = d1 * d4 - d3 * d2
    vb = d5 * d2 - d1 * d6
    va = d3 * d6 - d5 * d4

    one, zero = torch.ones_like(d1), torch.zeros_like(d1)
    # interior
    den = va + vb + vc
    v_in, w_in = _safe_div(vb, den), _safe_div(vc, den)
    bary = torch.stack([1 - v_in - w_in, v_in, w_in], dim=-1)
    # regions in reverse priority, so that earlier tests (vertices first) win
    t_bc = _safe_div(d4 - d3, (d4 - d3) + (d5 - d6))
    in_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
    bary = torch.where(in_bc[..., None], torch.stack([zero, 1 - t_bc, t_bc], -1), bary)
    t_ac = _safe_div(d2, d2 - d6)
    in_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    bary = torch.where(in_ac[..., None], torch.stack([1 - t_ac, zero, t_ac], -1), bary)
    in_c = (d6 >= 0) & (d5 <= d6)
    bary = torch.where(in_c[..., None], torch.stack([zero, zero, one], -1), bary)
    t_ab = _safe_div(d1, d1 - d3)
    in_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    bary = torch.where(in_ab[..., None], torch.stack([1 - t_ab, t_ab, zero], -1), bary)
    in_b = (d3 >= 0) & (d4 <= d3)
    bary = torch.where(in_b[..., None], torch.stack([zero, one, zero], -1), bary)
    in_a = (d1 <= 0) & (d2 <= 0)
    bary = torch.where(in_a[..., None], torch.stack([one, zero, zero], -1), bary)

    closest = bary[..., 0:1] * a + bary[..., 1:2] * b + bary[..., 2:3] * c
    return closest, bary


def point_triangle_distance(points: torch.Tensor, tris: torch.Tensor, squared: bool = False
                            ) -> torch.Tensor:
    """Exact Euclidean distance from each point to its paired (filled) triangle.

    Differentiable w.r.t. points and triangle corners (the gradient of the unsquared distance
    is 0 where the distance is exactly 0).

    Args:
        points: (..., 3).
        tris: (..., 3, 3), broadcastable against ``points``.
        squared: return the squared distance.

    Returns:
        (...,) distances.
    """
    closest, _ = closest_point_on_triangle(points, tris)
    d2 = (points - closest).pow(2).sum(-1)
    if squared:
        return d2
    pos = d2 > 0
    return torch.where(pos, torch.where(pos, d2, torch.ones_like(d2)).sqrt(), torch.zeros_like(d2))


def point_mesh_distance(points: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor,
                        chunk_pairs: int = 2 ** 21, k_seed: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact distance from each point to a triangle mesh surface (with exact pruning).

    For each point an upper bound ``U`` is the exact distance to the ``k_seed`` faces with the
    nearest centroids; a face can only be closer if ``|p - centroid_f| - radius_f <= U``
    (``radius_f`` = its bounding-sphere radius around the centroid), so the exact point-triangle
    test runs only on those candidate pairs. Candidates come from KD-trees over the centroids
    (one per radius class) for CPU tensors, and from a dense chunked centroid-distance matrix on
    other devices. The search runs without autograd; the distance to the winning face is then
    recomputed with autograd, so the result is differentiable w.r.t. ``points`` and ``verts``.
    Worst case (points far from a mesh of similar-sized faces) degrades to brute force O(N F);
    memory stays bounded by ``chunk_pairs``.

    Args:
        points: (N, 3).
        verts: (V, 3).
        faces: (F, 3).
        chunk_pairs: memory budget in point-face pairs per chunk.
        k_seed: faces used for the initial upper bound.

    Returns:
        distance (N,), face_index (N,) long, closest point (N, 3).
    """
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points: shape {tuple(points.shape)}, expected (N, 3)")
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"verts: shape {tuple(verts.shape)}, expected (V, 3)")
    faces = _check_faces(faces, verts.shape[0]).to(verts.device)
    if faces.shape[0] == 0:
        raise ValueError("point_mesh_distance: mesh has no faces")
    tris = verts[faces]  # (F, 3, 3)
    with torch.no_grad():
        if points.device.type == "cpu":
            best = _nearest_face_kdtree(points.detach(), tris.detach(), k_seed, chunk_pairs)
        else:
            best = _nearest_face_dense(points.detach(), tris.detach(), k_seed, chunk_pairs)
    sel = tris[best]
    closest, _ = closest_point_on_triangle(points, sel)
    d = point_triangle_distance(points, sel)
    return d, best, closest


def _face_bounds(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Centroids (F, 3) float64, bounding radii (F,) float64 and an absolute slack for (F, 3, 3) tris."""
    cen = t.double().mean(dim=1)
    rad = (t.double() - cen[:, None]).norm(dim=-1).amax(dim=1)
    extent = float((cen - cen.mean(0)).norm(dim=-1).max() + rad.max()) + 1e-30
    eps = torch.finfo(t.dtype).eps
    return cen, rad, 16 * eps * extent


def _argmin_pairs(p: torch.Tensor, t: torch.Tensor, pi: torch.Tensor, fi: torch.Tensor,
                  n: int, eval_pairs: int) -> torch.Tensor:
    """Index of the nearest face among candidate pairs (pi, fi); every point needs >= 1 pair."""
    d2 = torch.cat([point_triangle_distance(p[pi[c:c + eval_pairs]], t[fi[c:c + eval_pairs]], squared=True)
                    for c in range(0, pi.shape[0], eval_pairs)])
    dmin = torch.full((n,), float("inf"), dtype=d2.dtype, device=p.device)
    dmin.scatter_reduce_(0, pi, d2, reduce="amin", include_self=True)
    hit = d2 <= dmin[pi]
    arg = torch.full((n,), t.shape[0], dtype=torch.long, device=p.device)
    arg.scatter_reduce_(0, pi[hit], fi[hit], reduce="amin", include_self=True)
    return arg


def _nearest_face_dense(points: torch.Tensor, t: torch.Tensor, k_seed: int, chunk_pairs: int) -> torch.Tensor:
    """Nearest face per point via dense chunked centroid distances (any device)."""
    N, F_ = points.shape[0], t.shape[0]
    cen, rad, slack = _face_bounds(t)
    centre = cen.mean(0)
    cen = cen - centre
    cen_sq = cen.pow(2).sum(-1)
    k = min(k_seed, F_)
    step = max(1, chunk_pairs // F_)
    eval_pairs = max(1024, chunk_pairs // 8)
    best = torch.empty(N, dtype=torch.long, device=points.device)
    for s in range(0, N, step):
        p = points[s:s + step]
        pc = p.double() - centre
        d_c = (pc.pow(2).sum(-1, keepdim=True) + cen_sq[None] - 2.0 * pc @ cen.T).clamp_min_(0).sqrt_()  # (n, F)
        seed = d_c.topk(k, dim=1, largest=False).indices  # (n, k)
        upper = point_triangle_distance(p[:, None, :], t[seed]).amin(dim=1).double()
        pi, fi = ((d_c - rad[None]) <= (upper[:, None] + slack)).nonzero(as_tuple=True)
        best[s:s + step] = _argmin_pairs(p, t, pi, fi, p.shape[0], eval_pairs)
    return best


def _nearest_face_kdtree(points: torch.Tensor, t: torch.Tensor, k_seed: int, chunk_pairs: int) -> torch.Tensor:
    """Nearest face per point via KD-trees over face centroids, one per radius class (CPU)."""
    import numpy as np
    from scipy.spatial import cKDTree

    N, F_ = points.shape[0], t.shape[0]
    cen, rad, slack = _face_bounds(t)
    cen_np, rad_np = cen.numpy(), rad.numpy()
    k = min(k_seed, F_)
    _, seed = cKDTree(cen_np).query(points.double().numpy(), k=k)
    seed = torch.from_numpy(np.asarray(seed).reshape(N, k)).long()
    upper = point_triangle_distance(points[:, None, :], t[seed]).amin(dim=1).double().numpy()
    # radius classes (powers of two around the median) keep the ball queries tight for meshes
    # with faces of very different sizes
    med = max(float(np.median(rad_np)), 1e-30)
    cls = np.clip(np.floor(np.log2(np.maximum(rad_np, 1e-30) / med)), -3, 8).astype(np.int64)
    step = max(1, chunk_pairs // 64)
    eval_pairs = max(1024, chunk_pairs // 8)
    pts64 = points.double().numpy()
    best = torch.empty(N, dtype=torch.long)
    groups = [(np.nonzero(cls == c)[0]) for c in np.unique(cls)]
    trees = [(g, cKDTree(cen_np[g]), float(rad_np[g].max())) for g in groups]
    for s in range(0, N, step):
        P = pts64[s:s + step]
        U = upper[s:s + step]
        pis, fis = [], []
        for g, tree, rmax in trees:
            lists = tree.query_ball_point(P, r=U + rmax + slack)
            counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
            if counts.sum() == 0:
                continue
            fi = g[np.concatenate([np.asarray(x, dtype=np.int64) for x in lists if len(x)])]
            pi = np.repeat(np.arange(len(lists)), counts)
            keep = np.linalg.norm(P[pi] - cen_np[fi], axis=1) - rad_np[fi] <= U[pi] + slack
            pis.append(pi[keep])
            fis.append(fi[keep])
        pi = torch.from_numpy(np.concatenate(pis))
        fi = torch.from_numpy(np.concatenate(fis))
        best[s:s + step] = _argmin_pairs(points[s:s + step], t, pi, fi, P.shape[0], eval_pairs)
    return best


def point_mesh_distance_bruteforce(points: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor,
                                   chunk_pairs: int = 2 ** 21) -> torch.Tensor:
    """Reference O(N F) distance from points (N, 3) to a mesh, for tests and benchmarks. Returns (N,)."""
    faces = _check_faces(faces, verts.shape[0]).to(verts.device)
    tris = verts[faces]
    step = max(1, chunk_pairs // tris.shape[0])
    out = [point_triangle_distance(points[s:s + step, None, :], tris[None]).amin(dim=1)
           for s in range(0, points.shape[0], step)]
    return torch.cat(out) if out else points.new_zeros(0)
