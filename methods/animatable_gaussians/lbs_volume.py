"""A canonical LBS weight volume: SMPL-X skinning weights diffused into a 3D grid.

Animatable Gaussians skins points that are not on the SMPL-X surface (loose clothes, the fitted
template) with weights looked up in a volume (official ``gen_data/gen_weight_volume.py``: Kazhdan's
PointInterpolant solved per joint on a 128^3 grid, queried by trilinear ``grid_sample``). This is
our own, simpler construction of such a volume:

1. **Bounds** as the official code: a cube of side ``padding x`` the largest extent of the canonical
   mesh, centred on its bounding-box centre; ``res^3`` samples with the first/last sample on the
   bounds (``align_corners=True`` convention).
2. **Nearest-surface initialisation**: every sample takes the barycentric interpolation of the
   vertex weights at its closest surface point (the official ``ori_weight_volume``); the closest
   point is searched among the faces with the nearest centroids for samples near the surface, and
   far samples take their nearest vertex's weights (:func:`surface_weights`).
3. **Diffusion**: Jacobi iterations of a discrete Laplace equation (each sample becomes the mean
   of its 3x3x3 neighbourhood, a 27-point Laplacian stencil; replicate padding = zero-flux at the
   volume boundary) with the samples
   within ``boundary_band`` voxels of the surface held at their surface values (Dirichlet boundary
   conditions). The result is smooth off the surface (no nearest-bone seams between e.g. the legs)
   and reproduces the surface weights on it.
4. Clip to [0, 1] and renormalise to sum 1 per sample.

Layout: ``weights`` is (J, D, H, W) with D along z, H along y, W along x, i.e. ready for
``torch.nn.functional.grid_sample`` with (x, y, z) normalised coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["LbsWeightVolume", "box3", "build_lbs_weight_volume", "closest_faces", "cube_bounds", "grid_points",
           "surface_weights"]


@dataclass
class LbsWeightVolume:
    """Skinning weights on a regular grid.

    Attributes:
        weights: (J, D, H, W) float32, rows sum to 1 (D = z, H = y, W = x).
        bounds: (2, 3) float32, min and max corner (x, y, z) of the sample grid.
    """

    weights: torch.Tensor
    bounds: torch.Tensor

    @property
    def resolution(self) -> tuple[int, int, int]:
        """(res_x, res_y, res_z)."""
        _, D, H, W = self.weights.shape
        return W, H, D

    @property
    def num_joints(self) -> int:
        return int(self.weights.shape[0])

    def to(self, device) -> "LbsWeightVolume":
        return LbsWeightVolume(self.weights.to(device), self.bounds.to(device))

    def query(self, points: torch.Tensor, chunk: int = 262144) -> torch.Tensor:
        """Trilinear lookup (clamped at the volume border).

        Args:
            points: (N, 3) canonical positions.

        Returns:
            (N, J) weights, renormalised to sum 1.
        """
        w = self.weights
        lo, hi = self.bounds[0].to(points), self.bounds[1].to(points)
        out = []
        for s in range(0, points.shape[0], chunk):
            p = points[s:s + chunk]
            g = (2.0 * (p - lo) / (hi - lo) - 1.0).to(w.dtype)  # (n, 3) in [-1, 1], order (x, y, z)
            v = F.grid_sample(w[None], g[None, None, None], mode="bilinear", padding_mode="border",
                              align_corners=True)  # (1, J, 1, 1, n)
            out.append(v[0, :, 0, 0].T)
        q = torch.cat(out, 0) if out else w.new_zeros(0, w.shape[0])
        return (q / q.sum(-1, keepdim=True).clamp_min(1e-8)).to(points.dtype)


def cube_bounds(verts: torch.Tensor, padding: float = 1.1) -> torch.Tensor:
    """(2, 3): a cube of side ``padding * max extent`` centred on the bounding box of ``verts``."""
    vmin, vmax = verts.min(0).values, verts.max(0).values
    centre = 0.5 * (vmin + vmax)
    half = 0.5 * padding * float((vmax - vmin).max())
    return torch.stack([centre - half, centre + half])


def grid_points(bounds: torch.Tensor, res: tuple[int, int, int]) -> torch.Tensor:
    """(D, H, W, 3) sample positions (x, y, z) of a grid with ``res = (res_x, res_y, res_z)``
    samples spanning ``bounds`` (first and last sample on the bounds)."""
    axes = [torch.linspace(float(bounds[0, a]), float(bounds[1, a]), int(res[a]), dtype=bounds.dtype,
                           device=bounds.device) for a in range(3)]
    zz, yy, xx = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return torch.stack([xx, yy, zz], dim=-1)


def closest_faces(points: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor, k_faces: int = 12,
                  chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closest surface point among the ``k_faces`` faces with the nearest centroids (KD-tree).

    Exact for points near a reasonably uniform mesh; an approximation far from it.

    Args:
        points: (N, 3); verts: (V, 3); faces: (F, 3) long.

    Returns:
        distance (N,), face id (N,) long, barycentrics of the closest point (N, 3).
    """
    from scipy.spatial import cKDTree

    from avatarbench.geometry.mesh import closest_point_on_triangle

    with torch.no_grad():
        dev, dt = points.device, points.dtype
        V = verts.to(dev, dt)
        faces = faces.long().to(dev)
        kf = min(int(k_faces), faces.shape[0])
        centroids = V[faces].mean(1).double().cpu().numpy()
        _, icand = cKDTree(centroids).query(points.detach().double().cpu().numpy(), k=kf)
        icand = torch.as_tensor(np.asarray(icand).reshape(points.shape[0], kf), dtype=torch.long, device=dev)
        dist = torch.empty(points.shape[0], dtype=dt, device=dev)
        fbest = torch.empty(points.shape[0], dtype=torch.long, device=dev)
        bbest = torch.empty(points.shape[0], 3, dtype=dt, device=dev)
        for s in range(0, points.shape[0], chunk):
            cand = icand[s:s + chunk]
            p = points[s:s + chunk]
            closest, bary = closest_point_on_triangle(p[:, None, :].expand(-1, kf, -1), V[faces[cand]])
            d = (closest - p[:, None]).norm(dim=-1)
            best = d.argmin(1)
            ar = torch.arange(p.shape[0], device=dev)
            dist[s:s + chunk] = d[ar, best]
            fbest[s:s + chunk] = cand[ar, best]
            bbest[s:s + chunk] = bary[ar, best]
    return dist, fbest, bbest


def surface_weights(points: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor, vert_weights: torch.Tensor,
                    exact_within: float | None = None, k_faces: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of the closest surface point (barycentric interpolation on the closest face,
    :func:`closest_faces`).

    Args:
        points: (N, 3); verts: (V, 3); faces: (F, 3) long; vert_weights: (V, J).
        exact_within: None = the face search for every point. A distance d = only points whose
            nearest *vertex* is closer than ``d + longest edge`` (they may be within ``d`` of the
            surface) get the face search; the others take their nearest vertex's weights and
            distance (dense grids: most samples are far away).

    Returns:
        weights (N, J) and distance to the surface (N,) (for points without the face search: the
        nearest-vertex distance, an upper bound).
    """
    from scipy.spatial import cKDTree

    with torch.no_grad():
        dev, dt = points.device, points.dtype
        V = verts.to(dev, dt)
        vw = vert_weights.to(dev, dt)
        faces = faces.long().to(dev)
        dv, iv = cKDTree(V.double().cpu().numpy()).query(points.detach().double().cpu().numpy(), k=1)
        dist = torch.as_tensor(dv, dtype=dt, device=dev).reshape(-1)
        w = vw[torch.as_tensor(iv, dtype=torch.long, device=dev).reshape(-1)].clone()
        if exact_within is None:
            near = torch.ones_like(dist, dtype=torch.bool)
        else:
            e = V[faces]
            longest = float(torch.stack([(e[:, 0] - e[:, 1]).norm(dim=-1), (e[:, 1] - e[:, 2]).norm(dim=-1),
                                         (e[:, 2] - e[:, 0]).norm(dim=-1)]).max())
            near = dist <= float(exact_within) + longest
        idx = torch.nonzero(near).squeeze(1)
        if idx.numel():
            d, f, b = closest_faces(points[idx], V, faces, k_faces)
            w[idx] = (b.unsqueeze(-1) * vw[faces[f]]).sum(1)
            dist[idx] = d
    return w, dist


def box3(v: torch.Tensor) -> torch.Tensor:
    """Mean over the 3x3x3 neighbourhood of every sample of (C, D, H, W), replicate borders
    (separable: three 3-tap averages)."""
    for dim in (1, 2, 3):
        n = v.shape[dim]
        lo = torch.cat([v.narrow(dim, 0, 1), v.narrow(dim, 0, n - 1)], dim)
        hi = torch.cat([v.narrow(dim, 1, n - 1), v.narrow(dim, n - 1, 1)], dim)
        v = (lo + v + hi) / 3.0
    return v


@torch.no_grad()
def build_lbs_weight_volume(verts: torch.Tensor, faces: torch.Tensor, vert_weights: torch.Tensor, res: int = 128,
                            *, padding: float = 1.1, iterations: int = 200, boundary_band: float = 0.87,
                            joint_chunk: int = 16, bounds: torch.Tensor | None = None) -> LbsWeightVolume:
    """Diffuse per-vertex skinning weights into a ``res^3`` volume (see the module docstring).

    Args:
        verts: (V, 3) canonical mesh (e.g. SMPL-X in the Da-pose).
        faces: (F, 3) long.
        vert_weights: (V, J) skinning weights.
        res: samples per axis.
        padding: cube side relative to the mesh's largest extent (official 1.1).
        iterations: Jacobi sweeps of the Laplace equation (0 = nearest-surface weights only).
        boundary_band: samples closer to the surface than this many voxel sizes keep their surface
            weights (Dirichlet boundary); 0.87 ~ half a voxel diagonal, so every surface point has
            its 8 trilinear neighbours nearly all fixed.
        joint_chunk: joints diffused at a time (memory).
        bounds: (2, 3) explicit grid bounds instead of the cube.

    Returns:
        :class:`LbsWeightVolume` on ``verts.device``.
    """
    dev = verts.device
    verts = verts.float()
    vert_weights = vert_weights.float().to(dev)
    faces = faces.long().to(dev)
    bounds = cube_bounds(verts, padding) if bounds is None else bounds.to(dev).float()
    pts = grid_points(bounds, (res, res, res))  # (D, H, W, 3)
    voxel = float((bounds[1] - bounds[0]).max()) / max(res - 1, 1)
    w0, dist = surface_weights(pts.reshape(-1, 3), verts, faces, vert_weights, exact_within=boundary_band * voxel)
    fixed = (dist <= boundary_band * voxel).reshape(1, res, res, res)
    J = vert_weights.shape[1]
    vol = w0.T.reshape(J, res, res, res).contiguous()
    if iterations > 0:
        for j0 in range(0, J, joint_chunk):
            v = vol[j0:j0 + joint_chunk].clone()
            keep = v.clone()
            if float(v.abs().max()) == 0.0:  # joints with no weight anywhere stay zero
                continue
            for _ in range(int(iterations)):
                v = torch.where(fixed, keep, box3(v))
            vol[j0:j0 + joint_chunk] = v
    vol = vol.clamp(0.0, 1.0)
    vol = vol / vol.sum(0, keepdim=True).clamp_min(1e-8)
    return LbsWeightVolume(vol, bounds)
