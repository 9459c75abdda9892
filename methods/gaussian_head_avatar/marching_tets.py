"""Differentiable marching tetrahedra (DMTet's surface extraction), written in PyTorch.

Sign convention: ``sdf < 0`` is inside, ``sdf >= 0`` outside. Every tet edge whose end points lie
on different sides carries one surface vertex at the zero crossing of the linear interpolant,

    p = p_a + w (p_b - p_a),   w = s_a / (s_a - s_b),

so positions (and any per-vertex features, interpolated with the same ``w``) are differentiable
with respect to both the grid vertex positions and the SDF values. Surface vertices are shared
between neighbouring tets (deduplicated by their grid edge), so the mesh is watertight wherever
the surface does not reach the grid boundary. A tet with one (or three) inside vertices yields a
triangle, one with two a quad split into two triangles. Faces are oriented so that their normal
``(v1-v0) x (v2-v0)`` points outside (towards positive SDF): within a tet the zero set of the linear
interpolant has normal ``grad f``, and ``grad f . (mean(outside verts) - mean(inside verts)) > 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tetgrid import TET_EDGES


def _triangle_table() -> tuple[torch.Tensor, torch.Tensor]:
    """(16, 2, 3) local edge ids of the triangles per inside-code, (16,) triangle count.

    code = sum_i inside_i * 2^i over the tet's 4 vertices; unused slots are -1.
    """
    edge_id = {frozenset(e): k for k, e in enumerate(TET_EDGES)}
    table = torch.full((16, 2, 3), -1, dtype=torch.long)
    count = torch.zeros(16, dtype=torch.long)
    for code in range(16):
        inside = [i for i in range(4) if code >> i & 1]
        outside = [i for i in range(4) if not code >> i & 1]
        if len(inside) in (1, 3):
            lone, others = (inside[0], outside) if len(inside) == 1 else (outside[0], inside)
            table[code, 0] = torch.tensor([edge_id[frozenset((lone, o))] for o in others])
            count[code] = 1
        elif len(inside) == 2:
            (a, b), (c, d) = inside, outside
            ac, ad, bd, bc = (edge_id[frozenset(p)] for p in ((a, c), (a, d), (b, d), (b, c)))
            table[code, 0] = torch.tensor([ac, ad, bd])
            table[code, 1] = torch.tensor([ac, bd, bc])
            count[code] = 2
    return table, count


_TABLE, _COUNT = _triangle_table()


@dataclass
class SurfaceMesh:
    """Output of :func:`marching_tets`.

    Attributes:
        verts: (M, 3) surface vertex positions.
        faces: (F, 3) int64, outward oriented.
        feats: (M, C) interpolated features, or None.
        edges: (M, 2) int64 grid vertex ids of the tet edge each surface vertex lies on.
        weights: (M,) interpolation weight ``w`` along that edge.
    """

    verts: torch.Tensor
    faces: torch.Tensor
    feats: torch.Tensor | None
    edges: torch.Tensor
    weights: torch.Tensor


def crossing_tets(tets: torch.Tensor, sdf: torch.Tensor) -> torch.Tensor:
    """(T,) bool: tets with both inside (sdf < 0) and outside vertices. tets (T, 4), sdf (V,)."""
    occ = (sdf < 0)[tets]
    n = occ.sum(dim=1)
    return (n > 0) & (n < 4)


def marching_tets(verts: torch.Tensor, tets: torch.Tensor, sdf: torch.Tensor,
                  feats: torch.Tensor | None = None) -> SurfaceMesh:
    """Extract the zero level set of ``sdf`` on a tet mesh.

    Args:
        verts: (V, 3) grid vertex positions (may be deformed; differentiable).
        tets: (T, 4) int64 vertex ids.
        sdf: (V,) signed distance values (differentiable); negative inside.
        feats: (V, C) per-vertex features to interpolate onto the surface, or None.
    Returns:
        :class:`SurfaceMesh` (empty tensors when the level set does not cross the grid).
    """
    device = verts.device
    sdf = sdf.reshape(-1)
    V = verts.shape[0]
    with torch.no_grad():
        occ_all = sdf < 0
        occ = occ_all[tets]  # (T, 4)
        n_in = occ.sum(dim=1)
        valid = (n_in > 0) & (n_in < 4)
        tv = tets[valid]  # (Tv, 4)
        ov = occ[valid]
        pairs = torch.tensor(TET_EDGES, device=device)  # (6, 2)
        e = tv[:, pairs]  # (Tv, 6, 2)
        e_sorted, _ = torch.sort(e, dim=-1)
        crosses = ov[:, pairs[:, 0]] != ov[:, pairs[:, 1]]  # (Tv, 6)
        keys = e_sorted[..., 0] * V + e_sorted[..., 1]  # (Tv, 6)
        uniq, inv = torch.unique(keys[crosses], return_inverse=True)
        edge_vid = torch.full(keys.shape, -1, dtype=torch.long, device=device)
        edge_vid[crosses] = inv
        ends = torch.stack([uniq // V, uniq % V], dim=1)  # (M, 2)

        code = (ov.long() * (2 ** torch.arange(4, device=device))).sum(dim=1)  # (Tv,)
        table = _TABLE.to(device)[code]  # (Tv, 2, 3)
        count = _COUNT.to(device)[code]
        tri_local = torch.cat([table[:, 0], table[count == 2, 1]], dim=0)  # (F, 3)
        tri_tet = torch.cat([torch.arange(tv.shape[0], device=device),
                             torch.nonzero(count == 2).reshape(-1)])  # (F,)
        faces = torch.gather(edge_vid[tri_tet], 1, tri_local)  # (F, 3)

    s_a, s_b = sdf[ends[:, 0]], sdf[ends[:, 1]]
    w = s_a / (s_a - s_b)  # crossing edges only: s_a and s_b have different signs
    p_a, p_b = verts[ends[:, 0]], verts[ends[:, 1]]
    mverts = p_a + w[:, None] * (p_b - p_a)
    mfeats = None
    if feats is not None:
        f_a, f_b = feats[ends[:, 0]], feats[ends[:, 1]]
        mfeats = f_a + w[:, None] * (f_b - f_a)

    with torch.no_grad():
        if faces.shape[0] > 0:
            pv = verts.detach()[tv[tri_tet]]  # (F, 4, 3)
            inside = ov[tri_tet].to(pv.dtype)[..., None]  # (F, 4, 1)
            c_in = (pv * inside).sum(1) / inside.sum(1)
            c_out = (pv * (1 - inside)).sum(1) / (1 - inside).sum(1)
            tri = mverts.detach()[faces]
            normal = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
            flip = (normal * (c_out - c_in)).sum(-1) < 0
            faces = torch.where(flip[:, None], faces[:, [0, 2, 1]], faces)
    return SurfaceMesh(verts=mverts, faces=faces, feats=mfeats, edges=ends, weights=w)


def mesh_edges(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Undirected edges of a triangle mesh and how many faces use each.

    Returns:
        edges: (E, 2) sorted vertex pairs; counts: (E,) number of incident faces.
    """
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], dim=0)
    e, _ = torch.sort(e, dim=1)
    return torch.unique(e, dim=0, return_counts=True)


def mesh_area(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Total surface area (scalar) of a triangle mesh."""
    tri = verts[faces]
    return 0.5 * torch.linalg.norm(torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1), dim=-1).sum()
