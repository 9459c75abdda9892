"""Chunked brute-force k-nearest neighbours (pure torch; CPU and CUDA).

Replaces ``pytorch3d.ops.knn_points`` and simple-knn's ``distCUDA2`` for the sizes avatars need
(1e3 to 1e5 points). By default candidates are found with the fast ``|q|^2 + |r|^2 - 2 q.r``
expansion (matmul) in blocks of ``chunk x chunk``, after centring both sets on the reference
centroid (which removes the cancellation error caused by a large common offset); the distances of
the k winners are then recomputed exactly as ``|q - r|`` (returned values are exact and
differentiable w.r.t. ``query`` and ``ref``). The expansion's absolute error in squared distance
is about ``eps * extent^2`` (float32: ~1e-7 for a 1 m cloud), so neighbours closer than that to a
tie may be swapped. ``exact=True`` uses ``sum((q - r)^2)`` blocks instead (slower, exact ranking).

On CPU, ``backend="auto"`` answers the search with ``scipy.spatial.cKDTree`` instead (the
brute-force search costs O(N M): ~30 s for 5e4 x 5e4 points on one core, the KD-tree well under
a second); the returned distances are recomputed in torch either way.
"""

from __future__ import annotations

import torch

__all__ = ["knn", "mean_knn_distance"]


def knn(query: torch.Tensor, ref: torch.Tensor, k: int, chunk: int = 2048, *,
        squared: bool = False, exclude_self: bool = False, exact: bool = False,
        backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours of every query point among the reference points.

    Args:
        query: (N, D) (D is usually 3).
        ref: (M, D).
        k: number of neighbours (``k <= M``, or ``k <= M - 1`` with ``exclude_self``).
        chunk: block size along N and M (memory ~ ``chunk**2`` floats per block).
        squared: return squared distances (like ``pytorch3d.ops.knn_points``) instead of
            Euclidean distances.
        exclude_self: ``query`` and ``ref`` are the same point set; never return ``i`` as a
            neighbour of ``i`` (what 3DGS-style scale initialisation wants).
        exact: rank with exact differences instead of the matmul expansion (memory
            ``chunk**2 * D`` per block; use a smaller ``chunk``).
        backend: ``"torch"`` (chunked brute force, any device), ``"scipy"`` (KD-tree on CPU
            float64, exact ranking) or ``"auto"`` (scipy for CPU tensors, else torch).

    Returns:
        dists (N, k) ascending, idx (N, k) long indices into ``ref``.
    """
    if query.ndim != 2 or ref.ndim != 2 or query.shape[1] != ref.shape[1]:
        raise ValueError(f"knn: query {tuple(query.shape)} and ref {tuple(ref.shape)}, expected (N, D) and (M, D)")
    N, M = query.shape[0], ref.shape[0]
    if exclude_self and N != M:
        raise ValueError("knn: exclude_self needs query and ref to be the same point set")
    avail = M - 1 if exclude_self else M
    if not 1 <= k <= avail:
        raise ValueError(f"knn: k={k} but only {avail} candidate reference points")
    dev = query.device
    if backend not in ("auto", "torch", "scipy"):
        raise ValueError(f"knn: backend {backend!r}, expected 'auto', 'torch' or 'scipy'")
    if backend == "scipy" or (backend == "auto" and dev.type == "cpu"):
        idx_out = _knn_idx_scipy(query, ref, k, exclude_self)
    else:
        idx_out = _knn_idx_torch(query, ref, k, chunk, exclude_self, exact)
    # exact distances of the winners (differentiable), then re-sort by them
    d2 = (query[:, None, :] - ref[idx_out]).pow(2).sum(-1)
    d2, order = d2.sort(dim=1)
    idx_out = idx_out.gather(1, order)
    if squared:
        return d2, idx_out
    pos = d2 > 0
    d = torch.where(pos, torch.where(pos, d2, torch.ones_like(d2)).sqrt(), torch.zeros_like(d2))
    return d, idx_out


def _knn_idx_scipy(query: torch.Tensor, ref: torch.Tensor, k: int, exclude_self: bool) -> torch.Tensor:
    """Neighbour indices (N, k) from a KD-tree on CPU (float64)."""
    from scipy.spatial import cKDTree

    r = ref.detach().cpu().double().numpy()
    q = query.detach().cpu().double().numpy()
    kk = k + 1 if exclude_self else k
    _, idx = cKDTree(r).query(q, k=kk)
    idx = torch.from_numpy(idx.reshape(q.shape[0], kk)).long()
    if exclude_self:
        drop = idx == torch.arange(q.shape[0])[:, None]
        no_self = ~drop.any(dim=1)
        drop[no_self, -1] = True  # self not among the k+1 (duplicates at distance 0): drop the farthest
        keep_order = drop.to(torch.int8).argsort(dim=1, stable=True)[:, :k]
        idx = idx.gather(1, keep_order)
    return idx.to(query.device)


def _knn_idx_torch(query: torch.Tensor, ref: torch.Tensor, k: int, chunk: int, exclude_self: bool,
                   exact: bool) -> torch.Tensor:
    """Neighbour indices (N, k) by chunked brute force (any device)."""
    N, M = query.shape[0], ref.shape[0]
    dev = query.device
    idx_out = torch.empty(N, k, dtype=torch.long, device=dev)
    with torch.no_grad():
        centre = ref.detach().mean(dim=0, keepdim=True)
        q_all = query.detach() - centre
        r_all = ref.detach() - centre
        r_sq = r_all.pow(2).sum(-1)
        for qs in range(0, N, chunk):
            q = q_all[qs:qs + chunk]
            q_sq = q.pow(2).sum(-1, keepdim=True)
            best_d = torch.full((q.shape[0], 0), float("inf"), dtype=q.dtype, device=dev)
            best_i = torch.empty((q.shape[0], 0), dtype=torch.long, device=dev)
            for rs in range(0, M, chunk):
                r = r_all[rs:rs + chunk]
                if exact:
                    d = (q[:, None, :] - r[None, :, :]).pow(2).sum(-1)
                else:
                    d = (q_sq + r_sq[rs:rs + chunk][None] - 2.0 * q @ r.T).clamp_min_(0)
                if exclude_self:
                    qi = torch.arange(qs, qs + q.shape[0], device=dev)[:, None]
                    ri = torch.arange(rs, rs + r.shape[0], device=dev)[None]
                    d = d.masked_fill(qi == ri, float("inf"))
                kk = min(k, d.shape[1])
                dv, di = d.topk(kk, dim=1, largest=False)
                cat_d = torch.cat([best_d, dv], 1)
                cat_i = torch.cat([best_i, di + rs], 1)
                kk = min(k, cat_d.shape[1])
                best_d, sel = cat_d.topk(kk, dim=1, largest=False)
                best_i = cat_i.gather(1, sel)
            idx_out[qs:qs + chunk] = best_i
    return idx_out


def mean_knn_distance(points: torch.Tensor, k: int = 3, chunk: int = 2048, squared: bool = True,
                      backend: str = "auto") -> torch.Tensor:
    """Mean (squared by default) distance to the ``k`` nearest *other* points.

    The quantity 3DGS-style initialisers use for the initial scale (simple-knn ``distCUDA2``
    returns the mean squared distance to the 3 nearest neighbours; scale = sqrt of it).

    Args:
        points: (N, 3) with N > k.

    Returns:
        (N,).
    """
    d, _ = knn(points, points, k, chunk, squared=squared, exclude_self=True, backend=backend)
    return d.mean(dim=1)
