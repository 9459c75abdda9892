"""The canonical template: an SDF fitted to multi-view masks, or the SMPL-X mesh as the fallback.

Official (``main_template.py``, fact sheet section 3.2): a canonical SDF MLP + colour MLP trained by
volume rendering one frame's training views through a backward (root-finding) LBS warp, then
marching cubes. Ours is a lighter, mask-only fit with the same ingredients (documented as a
deviation in docs/methods/animatable_gaussians.md):

1. **Grid and prior**: a regular grid over the canonical SMPL-X bounding box (+- 5 cm in x, y and
   +- 15 cm in z, as the official ``cano_bounds``). The prior SDF is the SMPL-X mesh's
   (:func:`mesh_sdf_grid`: closed parts by shell filling + exact signed distance near the surface,
   open sheets solidified to 1.5 voxels).
2. **Free voxels**: only voxels within ``band`` (0.1 m, the official ray-sampling band around
   SMPL-X) of the prior surface are optimised; the others keep the prior's sign.
3. **Forward warping instead of root finding**: each voxel centre is skinned to the template
   frames with the LBS weight volume (``M = sum_j w_j A_live_j A_cano_j^-1``) and projected into
   every training view. With the soft occupancy ``o = sigmoid(-phi / beta)`` the losses are
   - *carve*: ``mean(o * mean_views(1 - mask at the voxel's projection))`` -- an occupied voxel
     must project into the masks (exact bilinear mask lookup, no splatting blur);
   - *cover*: every mask pixel must be covered: ``o`` is splatted (bilinear) as optical depth
     ``tau += o * kappa / h * h^3 * fx fy / z^2`` (a solid of thickness L gives ``tau = kappa L / h``),
     the silhouette is ``1 - exp(-tau)``, the loss is the mask-weighted mean of ``-log`` silhouette
     (images reduced so that a voxel covers at most about one pixel);
   - *prior* ``mean((phi - phi_prior)^2) / h^2`` and a Laplacian *smoothness* term.
4. **Mesh**: the largest connected component of ``phi < 0`` (cavities filled), lightly Gaussian
   smoothed, meshed by ``skimage.measure.marching_cubes`` (outward, counter-clockwise faces).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from avatarbench.data.camera import Camera

from .lbs_volume import LbsWeightVolume, box3, grid_points, surface_weights
from .posing import apply_points, blend_transforms

__all__ = ["SilhouetteView", "template_bounds", "mesh_sdf_grid", "fit_template_sdf",
           "sdf_to_mesh", "occupancy_to_sdf", "open_face_mask"]


@dataclass
class SilhouetteView:
    """One training image for the template fit.

    Attributes:
        camera: the camera; mask: (H, W) float in [0, 1] at the camera's resolution;
        transforms: (55, 4, 4) ``A_live A_cano^-1`` of the frame.
    """

    camera: Camera
    mask: torch.Tensor
    transforms: torch.Tensor


def template_bounds(verts: torch.Tensor, margin=(0.05, 0.05, 0.15)) -> torch.Tensor:
    """(2, 3) the canonical body's bounding box grown by ``margin`` (official cano_bounds)."""
    m = torch.as_tensor(margin, dtype=verts.dtype, device=verts.device)
    return torch.stack([verts.min(0).values - m, verts.max(0).values + m])


def occupancy_to_sdf(inside: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) of a boolean (D, H, W) occupancy with voxel ``spacing``
    (sz, sy, sx); the surface sits half a voxel outside the inside voxels' centres."""
    from scipy.ndimage import distance_transform_edt

    if inside.all() or not inside.any():
        raise ValueError("occupancy_to_sdf: the occupancy is empty or full")
    d_out = distance_transform_edt(~inside, sampling=spacing)
    d_in = distance_transform_edt(inside, sampling=spacing)
    half = 0.5 * float(np.min(spacing))
    return np.where(inside, -(d_in - half), d_out - half).astype(np.float32)


def open_face_mask(faces: torch.Tensor, num_verts: int) -> torch.Tensor:
    """(F,) bool: faces of connected components that have boundary edges (open sheets, e.g. a skirt)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = faces.long().cpu().numpy()
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    uniq, counts = np.unique(np.sort(e, 1), axis=0, return_counts=True)
    adj = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(num_verts, num_verts))
    _, label = connected_components(adj, directed=False)
    open_labels = np.unique(label[uniq[counts == 1].reshape(-1)])
    return torch.from_numpy(np.isin(label[f[:, 0]], open_labels))


def _closed_sdf(pts: torch.Tensor, V: torch.Tensor, Fc: torch.Tensor, res, spacing: np.ndarray) -> np.ndarray:
    """Signed distance to closed components (flat, float64)."""
    from scipy.ndimage import binary_fill_holes

    from .lbs_volume import closest_faces

    h = float(spacing.max())
    dummy = torch.zeros(V.shape[0], 1, dtype=torch.float64)
    _, dist = surface_weights(pts, V, Fc, dummy, exact_within=h)
    shell = dist <= 0.5 * np.sqrt(3) * h
    idx = torch.nonzero(shell).squeeze(1)
    d, f, bary = closest_faces(pts[idx], V, Fc)
    tri = V[Fc[f]]
    closest = (bary.unsqueeze(-1) * tri).sum(1)
    normal = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    outward = ((pts[idx] - closest) * normal).sum(-1) > 0
    shape = (res[2], res[1], res[0])
    inside = binary_fill_holes(shell.reshape(shape).numpy())
    # peel the shell voxels on the outer side of their closest face, layer by layer from the exterior
    # (shell voxels deep inside the union -- e.g. near an eyeball inside the head -- stay inside)
    flagged = np.zeros(inside.size, dtype=bool)
    flagged[idx[outward].numpy()] = True
    flagged = flagged.reshape(shape)
    for _ in range(4):
        exterior = np.pad(~inside, 1, constant_values=True)
        touch = np.zeros_like(inside)
        for ax in range(3):
            for sh in (-1, 1):
                touch |= np.roll(exterior, sh, axis=ax)[1:-1, 1:-1, 1:-1]
        peel = flagged & inside & touch
        if not peel.any():
            break
        inside &= ~peel
    inside = inside.reshape(-1)
    outward = torch.from_numpy(~inside[idx.numpy()])
    if not inside.any():
        return dist.numpy().astype(np.float64)
    sdf = occupancy_to_sdf(inside.reshape(shape), spacing[::-1].copy()).reshape(-1).astype(np.float64)
    sdf[idx.numpy()] = np.where(outward.numpy(), d.numpy(), -d.numpy())
    return sdf


@torch.no_grad()
def mesh_sdf_grid(verts: torch.Tensor, faces: torch.Tensor, bounds: torch.Tensor,
                  res: tuple[int, int, int], sheet_thickness_voxels: float = 1.5) -> torch.Tensor:
    """Prior SDF of a body mesh on a grid: the union of its closed and its open components.

    - Closed components: voxels within half a voxel diagonal of the surface form a shell; inside =
      the shell filled (``binary_fill_holes``), minus the shell voxels on the outer side of their
      closest face that are reachable from the exterior (peeled layer by layer). The SDF is the exact signed point-mesh distance near the surface and the
      distance transform of the occupancy elsewhere.
    - Open components (with boundary edges, e.g. a garment sheet): solidified to a shell of
      ``sheet_thickness_voxels`` voxels, ``sdf = distance - thickness / 2``.

    Args:
        res: (res_x, res_y, res_z). Returns (D=res_z, H=res_y, W=res_x) float32 (metres).
    """
    V = verts.detach().double().cpu()
    Fall = faces.long().cpu()
    pts = grid_points(bounds.double().cpu(), res).reshape(-1, 3)
    spacing = ((bounds[1] - bounds[0]).double().cpu() / (torch.tensor(res, dtype=torch.float64) - 1)).numpy()
    h = float(spacing.max())
    is_open = open_face_mask(Fall, V.shape[0])
    sdf = np.full(pts.shape[0], np.inf)
    if (~is_open).any():
        sdf = np.minimum(sdf, _closed_sdf(pts, V, Fall[~is_open], res, spacing))
    if is_open.any():
        dummy = torch.zeros(V.shape[0], 1, dtype=torch.float64)
        _, d = surface_weights(pts, V, Fall[is_open], dummy, exact_within=2 * h)
        sdf = np.minimum(sdf, d.numpy() - 0.5 * sheet_thickness_voxels * h)
    return torch.from_numpy(sdf.reshape(res[2], res[1], res[0]).astype(np.float32))


def _reduced_view(view: SilhouetteView, voxel: float, centre: torch.Tensor, max_px_per_voxel: float
                  ) -> tuple[Camera, torch.Tensor]:
    """The view at a resolution where a voxel covers at most ``max_px_per_voxel`` pixels."""
    cam = view.camera
    z = float((cam.world_to_cam[:3, :3].double() @ centre.double().cpu() + cam.world_to_cam[:3, 3].double())[2])
    px = voxel * max(cam.fx, cam.fy) / max(z, 1e-6)
    s = min(1.0, max_px_per_voxel / max(px, 1e-9))
    if s >= 0.999:
        return cam, view.mask
    w, h = max(8, int(round(cam.width * s))), max(8, int(round(cam.height * s)))
    m = F.interpolate(view.mask[None, None].float(), size=(h, w), mode="area")[0, 0]
    return cam.resized(w, h), m


def _splat_silhouette(pts: torch.Tensor, occ: torch.Tensor, cam: Camera, kappa_over_h: float, voxel_volume: float
                      ) -> torch.Tensor:
    """Silhouette (H, W) of occupancies ``occ`` (N,) at world points ``pts`` (N, 3) (bilinear splat)."""
    dev = pts.device
    R = cam.world_to_cam[:3, :3].to(dev, pts.dtype)
    t = cam.world_to_cam[:3, 3].to(dev, pts.dtype)
    pc = pts @ R.T + t
    z = pc[:, 2].clamp_min(1e-3)
    u = cam.fx * pc[:, 0] / z + cam.cx - 0.5  # pixel-centre coordinates
    v = cam.fy * pc[:, 1] / z + cam.cy - 0.5
    W, H = cam.width, cam.height
    contrib = occ * (kappa_over_h * voxel_volume * cam.fx * cam.fy) / z ** 2
    u0, v0 = torch.floor(u), torch.floor(v)
    tau = torch.zeros(H * W, dtype=pts.dtype, device=dev)
    for du in (0, 1):
        for dv in (0, 1):
            uu, vv = u0 + du, v0 + dv
            wgt = (1 - (u - uu).abs()) * (1 - (v - vv).abs())
            ok = (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H) & (pc[:, 2] > 1e-3)
            idx = (vv.clamp(0, H - 1) * W + uu.clamp(0, W - 1)).long()
            tau = tau.index_add(0, idx, torch.where(ok, wgt * contrib, torch.zeros_like(contrib)))
    return 1.0 - torch.exp(-tau.reshape(H, W))


def _sample_mask(mask: torch.Tensor, cam: Camera, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear mask values at the projections of ``pts`` (N, 3) and whether they fall in the image."""
    dev = pts.device
    R = cam.world_to_cam[:3, :3].to(dev, pts.dtype)
    t = cam.world_to_cam[:3, 3].to(dev, pts.dtype)
    pc = pts @ R.T + t
    z = pc[:, 2].clamp_min(1e-3)
    u = cam.fx * pc[:, 0] / z + cam.cx  # pixel-edge coordinates (centre of pixel j at j + 0.5)
    v = cam.fy * pc[:, 1] / z + cam.cy
    W, H = cam.width, cam.height
    g = torch.stack([2 * u / W - 1, 2 * v / H - 1], dim=-1).to(mask.dtype)
    m = F.grid_sample(mask[None, None], g[None, None], mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = (u >= 0) & (u <= W) & (v >= 0) & (v <= H) & (pc[:, 2] > 1e-3)
    return m[0, 0, 0].to(pts.dtype), inside


def fit_template_sdf(body_verts: torch.Tensor, body_faces: torch.Tensor, volume: LbsWeightVolume,
                     views: list[SilhouetteView], *, res=(64, 64, 32), margin=(0.05, 0.05, 0.15),
                     band: float = 0.1, iterations: int = 200, views_per_step: int = 4, lr: float | None = None,
                     beta_voxels: float = 0.5, kappa: float = 2.0, carve_weight: float = 1.0,
                     cover_weight: float = 1.0, prior_weight: float = 0.01, smooth_weight: float = 0.1,
                     max_px_per_voxel: float = 1.0, seed: int = 0, device: torch.device | str = "cpu"
                     ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Fit a canonical SDF grid to multi-view masks (see the module docstring).

    Losses: ``carve`` = mean over free voxels of ``o * mean_views(1 - mask at the voxel's projection)``
    (an occupied voxel must project into the masks; exact, no splatting blur), ``cover`` = the
    masks' mean ``-log`` rendered silhouette (every mask pixel must be covered; splatted at a
    reduced resolution), ``prior`` and ``smooth`` as in the module docstring.

    Args:
        body_verts, body_faces: the canonical SMPL-X (prior and grid bounds).
        volume: the LBS weight volume (skins the voxel centres).
        views: training images of the template frame(s).
        res: grid samples (x, y, z).

    Returns:
        sdf (D, H, W) float32 on CPU, bounds (2, 3), and statistics.
    """
    dev = torch.device(device)
    bounds = template_bounds(body_verts.detach().cpu().float(), margin)
    prior = mesh_sdf_grid(body_verts, body_faces, bounds, tuple(res)).to(dev)
    spacing = ((bounds[1] - bounds[0]) / (torch.tensor(res, dtype=torch.float32) - 1)).to(dev)
    h = float(spacing.max())
    pts = grid_points(bounds.to(dev), tuple(res)).reshape(-1, 3)
    phi_prior = prior.reshape(-1)
    free = phi_prior.abs() <= band
    fixed_inside = (~free) & (phi_prior < 0)
    active = free | fixed_inside
    act_idx = torch.nonzero(active).squeeze(1)
    free_in_act = free[act_idx]
    weights = volume.to(dev).query(pts[act_idx])  # (A, J)
    phi = torch.nn.Parameter(phi_prior[free].clone())
    opt = torch.optim.Adam([phi], lr=float(lr) if lr else 0.25 * h)
    beta = beta_voxels * h
    vol = float(spacing.prod())
    g = torch.Generator().manual_seed(int(seed))
    # per view: skinned active voxels, the mask at the free voxels' projections, a reduced view
    outside_sum = torch.zeros(int(free.sum()), device=dev)
    outside_cnt = torch.zeros(int(free.sum()), device=dev)
    prepared = []
    for vw in views:
        M = blend_transforms(weights, vw.transforms.to(dev, weights.dtype))
        p = apply_points(M, pts[act_idx])
        m_at, in_img = _sample_mask(vw.mask.to(dev).float(), vw.camera, p[free_in_act])
        outside_sum += torch.where(in_img, 1.0 - m_at.clamp(0, 1), torch.zeros_like(m_at))
        outside_cnt += in_img.float()
        cam, m = _reduced_view(vw, h, p.mean(0), max_px_per_voxel)
        prepared.append((cam, m.to(dev), p))
    if not prepared:
        raise ValueError("fit_template_sdf: no views")
    outside = outside_sum / outside_cnt.clamp_min(1)  # (free,) mean over views of 1 - mask
    losses = []
    full = phi_prior.clone()
    for it in range(int(iterations)):
        occ_free = torch.sigmoid(-phi / beta)
        l_carve = (occ_free * outside).mean()
        sel = torch.randperm(len(prepared), generator=g)[:max(1, int(views_per_step))].tolist()
        occ_act = torch.ones(act_idx.numel(), device=dev).masked_scatter(free_in_act, occ_free)
        l_cover = 0.0
        for i in sel:
            cam, m, p = prepared[i]
            sil = _splat_silhouette(p, occ_act, cam, kappa / h, vol).clamp(1e-5, 1.0)
            l_cover = l_cover + (m * -torch.log(sil)).sum() / m.sum().clamp_min(1.0)
        l_cover = l_cover / len(sel)
        grid = full.masked_scatter(free, phi).reshape(prior.shape)
        l_prior = ((phi - phi_prior[free]) ** 2).mean() / h ** 2
        l_smooth = ((box3(grid[None])[0] - grid) ** 2).mean() / h ** 2
        loss = carve_weight * l_carve + cover_weight * l_cover + prior_weight * l_prior + smooth_weight * l_smooth
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append((float(l_carve.detach()), float(l_cover.detach())))
    with torch.no_grad():
        sdf = full.masked_scatter(free, phi.detach()).reshape(prior.shape).cpu()
    flipped = int(((sdf.reshape(-1) < 0) != (prior.reshape(-1).cpu() < 0)).sum())
    info = {"iterations": int(iterations), "free_voxels": int(free.sum()), "voxel": h, "views": len(views),
            "carve_first": losses[0][0] if losses else None, "cover_first": losses[0][1] if losses else None,
            "carve_last": losses[-1][0] if losses else None, "cover_last": losses[-1][1] if losses else None,
            "voxels_flipped_vs_smplx": flipped, "inside_voxels": int((sdf < 0).sum())}
    return sdf, bounds, info


def sdf_to_mesh(sdf: torch.Tensor, bounds: torch.Tensor, smooth_sigma: float = 0.5
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Marching cubes (skimage) of the largest inside component of an SDF grid (D, H, W) over ``bounds``.

    Inside voxels of other components are pushed outside and enclosed outside voxels (cavities)
    inside, by half a voxel; the SDF values themselves are kept (sub-voxel surface positions),
    lightly Gaussian-smoothed (``smooth_sigma`` voxels).

    Returns:
        verts (V, 3) float32 and faces (F, 3) long, counter-clockwise seen from outside.
    """
    from scipy.ndimage import binary_fill_holes, gaussian_filter, label
    from skimage.measure import marching_cubes

    D, H, W = sdf.shape
    spacing_xyz = ((bounds[1] - bounds[0]).double() / torch.tensor([W - 1, H - 1, D - 1], dtype=torch.float64)).numpy()
    spacing_zyx = spacing_xyz[::-1].copy()
    half = 0.5 * float(spacing_xyz.min())
    d = sdf.numpy().astype(np.float64)
    inside = d < 0
    lab, n = label(inside)
    if n == 0:
        raise ValueError("sdf_to_mesh: the SDF has no inside voxels")
    sizes = np.bincount(lab.reshape(-1))[1:]
    keep = binary_fill_holes(lab == (1 + int(np.argmax(sizes))))
    d = np.where(keep & ~inside, -half, d)
    d = np.where(~keep & inside, half, d)
    if smooth_sigma > 0:
        d = gaussian_filter(d, smooth_sigma)
    d = np.pad(d, 1, mode="constant", constant_values=max(float(d.max()), half))  # closed at the border
    v, f, _, _ = marching_cubes(d, level=0.0, spacing=tuple(spacing_zyx), gradient_direction="ascent")
    v = v[:, ::-1] - spacing_xyz  # (z, y, x) -> (x, y, z), undo the padding
    verts = torch.from_numpy(np.ascontiguousarray(v)).float() + bounds[0].float()
    # "ascent" (field increasing outward) with our (z, y, x) -> (x, y, z) axis swap yields faces that are
    # counter-clockwise seen from outside (checked by the tests)
    faces = torch.from_numpy(np.ascontiguousarray(f)).long()
    return verts, faces
