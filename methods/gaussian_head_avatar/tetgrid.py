"""Regular tetrahedral grids for DMTet (generated here; no kaolin, no downloaded ``tets_data.npz``).

The cube ``[-bound, bound]^3`` is cut into ``res^3`` cubes and every cube into the 6 tetrahedra of
the Kuhn (Freudenthal) triangulation: for each permutation ``(a, b, c)`` of the axes the tet is the
monotone lattice path ``000 -> e_a -> e_a + e_b -> 111``. All cubes use the same axis order, so
the face diagonals of neighbouring cubes coincide and the tetrahedralisation is conforming
(every interior triangle is shared by exactly two tets). Vertices are the ``(res+1)^3`` lattice
points, unique by construction (index ``(i*(res+1) + j)*(res+1) + k``), and every tet is stored
with positive orientation (``det[v1-v0, v2-v0, v3-v0] > 0``).

Refining a grid from ``res`` to ``2 res`` (what GHA does with ``kaolin.ops.mesh.subdivide_tetmesh``
before stage 2) is done by generating the grid again at ``2 res``: the vertex set of a once
subdivided Kuhn grid is exactly the lattice of the doubled grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import torch

#: the 6 local edges of a tetrahedron, as pairs of local vertex indices
TET_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def _kuhn_local_tets() -> torch.Tensor:
    """(6, 4, 3) int64: corner offsets (0/1 per axis) of the 6 Kuhn tets of the unit cube."""
    out = []
    for perm in permutations(range(3)):
        corner = [0, 0, 0]
        path = [tuple(corner)]
        for axis in perm:
            corner[axis] = 1
            path.append(tuple(corner))
        out.append(path)
    return torch.tensor(out, dtype=torch.long)


def lattice_index(ijk: torch.Tensor, res: int) -> torch.Tensor:
    """Flat vertex index of lattice coordinates ``ijk`` (..., 3) in a grid with ``res`` cubes per axis."""
    n = res + 1
    return (ijk[..., 0] * n + ijk[..., 1]) * n + ijk[..., 2]


@dataclass
class TetGrid:
    """A tetrahedral grid.

    Attributes:
        verts: (V, 3) float32 vertex positions.
        tets: (T, 4) int64 vertex indices, positively oriented.
        res: cubes per axis.
        bound: half-size of the cube the grid spans.
    """

    verts: torch.Tensor
    tets: torch.Tensor
    res: int
    bound: float

    @property
    def cell_size(self) -> float:
        return 2.0 * self.bound / self.res

    def to(self, device) -> "TetGrid":
        return TetGrid(self.verts.to(device), self.tets.to(device), self.res, self.bound)


def kuhn_tet_grid(res: int, bound: float = 1.0, device=None) -> TetGrid:
    """The Kuhn tetrahedralisation of ``[-bound, bound]^3`` with ``res`` cubes per axis.

    Returns a :class:`TetGrid` with ``(res+1)^3`` vertices and ``6 res^3`` tets.
    """
    if res < 1:
        raise ValueError(f"tet grid resolution must be >= 1, got {res}")
    n = res + 1
    ax = torch.arange(n, device=device)
    ijk = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), dim=-1).reshape(-1, 3)
    verts = (ijk.to(torch.float32) * (2.0 * bound / res) - bound).contiguous()

    # orient the 6 template tets once (all cubes are translates of the unit cube), then add each
    # cube's base vertex index: (C, 6, 4) int64 without any (C, 6, 4, 3) intermediate
    local = _kuhn_local_tets().reshape(24, 3)  # corner offsets of the 6 tets
    order = orient_tets_positive(local.to(torch.float64), torch.arange(24).reshape(6, 4))
    tmpl = lattice_index(local[order.reshape(-1)], res).reshape(6, 4).to(device)  # index offsets
    c = torch.arange(res, device=device)
    base = lattice_index(torch.stack(torch.meshgrid(c, c, c, indexing="ij"), dim=-1).reshape(-1, 3), res)  # (C,)
    tets = (base[:, None, None] + tmpl[None]).reshape(-1, 4)
    return TetGrid(verts=verts, tets=tets, res=res, bound=float(bound))


def tet_signed_volumes(verts: torch.Tensor, tets: torch.Tensor) -> torch.Tensor:
    """(T,) six times the signed volume, ``det[v1-v0, v2-v0, v3-v0]``."""
    v = verts[tets]
    e = v[:, 1:] - v[:, :1]  # (T, 3, 3) rows = edges
    return torch.linalg.det(e.to(torch.float64)).to(verts.dtype)


def orient_tets_positive(verts: torch.Tensor, tets: torch.Tensor) -> torch.Tensor:
    """Swap the last two vertices of negatively oriented tets. tets: (T, 4) -> (T, 4)."""
    neg = tet_signed_volumes(verts, tets) < 0
    out = tets.clone()
    out[neg, 2], out[neg, 3] = tets[neg, 3], tets[neg, 2]
    return out


def tet_edges(tets: torch.Tensor) -> torch.Tensor:
    """(E, 2) unique undirected edges (sorted pairs) of a tet mesh (T, 4)."""
    pairs = torch.tensor(TET_EDGES, device=tets.device)
    e = tets[:, pairs].reshape(-1, 2)
    e, _ = torch.sort(e, dim=1)
    return torch.unique(e, dim=0)


def tet_faces(tets: torch.Tensor) -> torch.Tensor:
    """(F, 3) unique triangles (sorted vertex triples) of a tet mesh (T, 4)."""
    tri = torch.tensor([(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)], device=tets.device)
    f = tets[:, tri].reshape(-1, 3)
    f, _ = torch.sort(f, dim=1)
    return torch.unique(f, dim=0)
