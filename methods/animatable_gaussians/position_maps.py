"""Front/back orthographic position maps of the canonical template (AG's "Gaussian maps").

Animatable Gaussians renders the canonical template with two orthographic cameras (official
``gen_data/gen_pos_maps.py``): 1 world unit = ``size / 2`` pixels, a 2 m x 2 m window centred on
the canonical body's bounding-box centre; the front camera looks along -z (at the face, which
looks along +z), the back camera along +z and its image is flipped horizontally so that both maps
are pixel-aligned. Every valid pixel of either map holds one Gaussian.

Our own vectorised orthographic z-buffer rasterizer (no OpenGL / PyTorch3D):

- pixel ``(i, j)`` (row, column) of a ``size x size`` map has its centre at
  ``x = cx + (j + 0.5 - size / 2) * extent / size`` and ``y = cy - (i + 0.5 - size / 2) * extent / size``
  (rows go down, y goes up) in BOTH maps (the back map is already flipped into alignment);
- the front map keeps the surface with the largest z at each pixel, the back map the smallest;
- barycentrics are affine in the pixel position (orthographic), so positions and normals are
  interpolated exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["PositionMaps", "pixel_centres", "rasterize_orthographic", "render_position_maps",
           "downsample_nearest"]

_FACE_BITS = 26


@dataclass
class PositionMaps:
    """Front and back maps of a mesh (index 0 = front, 1 = back), pixel-aligned.

    Attributes:
        position: (2, S, S, 3) surface positions (0 where invalid).
        normal: (2, S, S, 3) unit interpolated vertex normals (0 where invalid).
        mask: (2, S, S) bool, a surface was hit.
        face_id: (2, S, S) long, the visible face (-1 where invalid).
        bary: (2, S, S, 3) barycentrics of the visible point in its face.
        center: (3,) window centre; extent: window side in world units.
    """

    position: torch.Tensor
    normal: torch.Tensor
    mask: torch.Tensor
    face_id: torch.Tensor
    bary: torch.Tensor
    center: torch.Tensor
    extent: float

    @property
    def size(self) -> int:
        return int(self.mask.shape[-1])

    def valid_indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat pixel indices (into S*S) of the valid front and back pixels, row-major."""
        S = self.size
        return (torch.nonzero(self.mask[0].reshape(S * S)).squeeze(1),
                torch.nonzero(self.mask[1].reshape(S * S)).squeeze(1))


def pixel_centres(size: int, center: torch.Tensor, extent: float) -> tuple[torch.Tensor, torch.Tensor]:
    """World x of each column and world y of each row: (size,), (size,)."""
    step = extent / size
    k = torch.arange(size, dtype=torch.float64, device=center.device) + 0.5 - size / 2
    xs = float(center[0]) + k * step
    ys = float(center[1]) - k * step
    return xs, ys


@torch.no_grad()
def rasterize_orthographic(verts: torch.Tensor, faces: torch.Tensor, size: int, center: torch.Tensor,
                           extent: float = 2.0, *, keep: str = "max_z", max_candidates: int = 2_000_000
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthographic z-buffer along the z axis.

    Args:
        verts: (V, 3); faces: (F, 3) long.
        size: map side in pixels; center: (3,) window centre; extent: window side (world units).
        keep: ``"max_z"`` (front: the surface nearest to a viewer at +z) or ``"min_z"`` (back).

    Returns:
        face_id (S, S) long (-1 where empty) and bary (S, S, 3) float64.
    """
    if keep not in ("max_z", "min_z"):
        raise ValueError(f"keep={keep!r}, expected 'max_z' or 'min_z'")
    dev = verts.device
    V = verts.double()
    faces = faces.long()
    F_ = faces.shape[0]
    if F_ >= 2 ** _FACE_BITS:
        raise ValueError(f"rasterize_orthographic supports fewer than {2 ** _FACE_BITS} faces")
    step = extent / size
    # continuous pixel coordinates: column u, row v (pixel centre at integer + 0.5)
    u = (V[:, 0] - float(center[0])) / step + size / 2
    v = (float(center[1]) - V[:, 1]) / step + size / 2
    z = V[:, 2] if keep == "max_z" else -V[:, 2]
    U, Vv, Z = u[faces], v[faces], z[faces]  # (F, 3)
    area = (U[:, 1] - U[:, 0]) * (Vv[:, 2] - Vv[:, 0]) - (U[:, 2] - U[:, 0]) * (Vv[:, 1] - Vv[:, 0])
    c0 = torch.ceil(U.min(1).values - 0.5).clamp(min=0)
    c1 = torch.floor(U.max(1).values - 0.5).clamp(max=size - 1)
    r0 = torch.ceil(Vv.min(1).values - 0.5).clamp(min=0)
    r1 = torch.floor(Vv.max(1).values - 0.5).clamp(max=size - 1)
    ok = (area.abs() > 1e-12) & (c1 >= c0) & (r1 >= r0)
    fids = torch.nonzero(ok).squeeze(1)
    face_id = torch.full((size * size,), -1, dtype=torch.long, device=dev)
    bary = torch.zeros(size * size, 3, dtype=torch.float64, device=dev)
    if fids.numel() == 0:
        return face_id.view(size, size), bary.view(size, size, 3)
    zmin, zmax = float(Z[fids].min()), float(Z[fids].max())
    scale = (2 ** (62 - _FACE_BITS) - 1) / max(zmax - zmin, 1e-12)
    key_buf = torch.full((size * size,), -1, dtype=torch.long, device=dev)
    bw = (c1 - c0 + 1).long()
    bh = (r1 - r0 + 1).long()
    side = torch.maximum(bw, bh)
    # process triangles in groups of similar bounding-box size, each as a dense (k, h, w) block
    edges = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
    lo = 0
    for hi in edges:
        sel_all = fids[(side[fids] > lo) & (side[fids] <= hi)]
        lo = hi
        if sel_all.numel() == 0:
            continue
        ch, cw = int(bh[sel_all].max()), int(bw[sel_all].max())
        per = max(1, max_candidates // (ch * cw))
        for s in range(0, sel_all.numel(), per):
            sel = sel_all[s:s + per]
            cols = c0[sel, None] + torch.arange(cw, device=dev, dtype=torch.float64)[None]  # (k, cw)
            rows = r0[sel, None] + torch.arange(ch, device=dev, dtype=torch.float64)[None]  # (k, ch)
            px = (cols + 0.5)[:, None, :].expand(-1, ch, -1)
            py = (rows + 0.5)[:, :, None].expand(-1, -1, cw)
            w = _bary(U[sel], Vv[sel], area[sel], px, py)  # (k, ch, cw, 3)
            inside = (w >= -1e-9).all(-1) & (cols <= c1[sel, None])[:, None, :] & (rows <= r1[sel, None])[:, :, None]
            kk, yy, xx = torch.nonzero(inside, as_tuple=True)
            if kk.numel() == 0:
                continue
            depth = (w[kk, yy, xx] * Z[sel][kk]).sum(-1)
            pix = (rows[kk, yy].long()) * size + cols[kk, xx].long()
            key = (((depth - zmin) * scale).long().clamp(0, 2 ** (62 - _FACE_BITS) - 1) << _FACE_BITS) | sel[kk]
            key_buf.scatter_reduce_(0, pix, key, reduce="amax")
    hit = torch.nonzero(key_buf >= 0).squeeze(1)
    if hit.numel():
        f = key_buf[hit] & ((1 << _FACE_BITS) - 1)
        px = (hit % size).double() + 0.5
        py = torch.div(hit, size, rounding_mode="floor").double() + 0.5
        w = _bary(U[f], Vv[f], area[f], px, py).clamp(min=0)
        face_id[hit] = f
        bary[hit] = w / w.sum(-1, keepdim=True)
    return face_id.view(size, size), bary.view(size, size, 3)


def _bary(U: torch.Tensor, Vv: torch.Tensor, area: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Barycentrics of points (px, py) in 2D triangles; U, Vv (k, 3); px, py (k, ...)."""
    shape = px.shape
    ext = (slice(None),) + (None,) * (len(shape) - 1)
    u0, u1, u2 = U[:, 0][ext], U[:, 1][ext], U[:, 2][ext]
    v0, v1, v2 = Vv[:, 0][ext], Vv[:, 1][ext], Vv[:, 2][ext]
    a = area[ext]
    w0 = ((u1 - px) * (v2 - py) - (u2 - px) * (v1 - py)) / a
    w1 = ((u2 - px) * (v0 - py) - (u0 - px) * (v2 - py)) / a
    return torch.stack([w0, w1, 1.0 - w0 - w1], dim=-1)


def _vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    fn = torch.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]], dim=-1)
    vn = torch.zeros_like(verts).index_add_(0, faces.reshape(-1), fn.repeat_interleave(3, 0))
    return vn / vn.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def render_position_maps(verts: torch.Tensor, faces: torch.Tensor, size: int, center: torch.Tensor | None = None,
                         extent: float = 2.0) -> PositionMaps:
    """Front and back position/normal maps of a mesh (counter-clockwise winding = outward normals).

    Args:
        verts: (V, 3) canonical template; faces: (F, 3).
        size: map side (official 1024).
        center: (3,) window centre; None = the bounding-box centre of ``verts``.
        extent: window side in world units (official 2 m).
    """
    verts = verts.detach()
    faces = faces.long().to(verts.device)
    if center is None:
        center = 0.5 * (verts.min(0).values + verts.max(0).values)
    center = center.to(verts)
    vn = _vertex_normals(verts.double(), faces)
    pos, nrm, msk, fid, bar = [], [], [], [], []
    for keep in ("max_z", "min_z"):
        f, b = rasterize_orthographic(verts, faces, size, center, extent, keep=keep)
        m = f >= 0
        fc = faces[f.clamp_min(0)]  # (S, S, 3)
        p = (b.unsqueeze(-1) * verts.double()[fc]).sum(-2)
        n = (b.unsqueeze(-1) * vn[fc]).sum(-2)
        n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        pos.append(torch.where(m[..., None], p, torch.zeros_like(p)).to(verts.dtype))
        nrm.append(torch.where(m[..., None], n, torch.zeros_like(n)).to(verts.dtype))
        msk.append(m)
        fid.append(f)
        bar.append(b)
    return PositionMaps(torch.stack(pos), torch.stack(nrm), torch.stack(msk), torch.stack(fid), torch.stack(bar),
                        center, float(extent))


def downsample_nearest(maps: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest downsampling of (..., S, S, C) maps by an integer factor: pixels 0, f, 2f, ...
    of every row and column (what ``cv2.resize(..., INTER_NEAREST)`` picks for 1/f)."""
    return maps[..., ::factor, ::factor, :]
