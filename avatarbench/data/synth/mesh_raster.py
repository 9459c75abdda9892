"""An independent z-buffer triangle rasterizer (pure torch, CPU friendly) for ground truth.

This renderer produces the *ground-truth* images of the synthetic datasets, so it shares no code
with the Gaussian renderer it is used to evaluate. It is a classic supersampled rasterizer:

1. project the vertices with the :class:`~avatarbench.data.camera.Camera` (OpenCV, full K,
   pixel centres at +0.5), then scale to a ``supersample x supersample`` sample grid;
2. enumerate, for every triangle, the sample centres inside its screen bounding box (one flat
   vectorised batch, chunked for memory), keep those inside the triangle (edge functions);
3. resolve visibility with a z-buffer: a per-sample ``scatter_reduce(amin)`` of an int64 key
   ``quantised depth << 24 | face id`` (deterministic, ties broken by the lower face id);
4. return per-sample face id, perspective-correct barycentrics, depth and coverage.

:func:`render_mesh` shades the covered samples with a user ``shade_fn`` and box-filters the
samples back to pixels (antialiasing); the coverage average is the alpha matte.

Sample ``(r, c)`` of the supersampled grid has its centre at pixel coordinates
``((c + 0.5) / s, (r + 0.5) / s)``, i.e. the sample grid of pixel ``(i, j)`` is centred on the
pixel centre ``(j + 0.5, i + 0.5)`` for odd ``s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from avatarbench.data.camera import Camera

_FACE_BITS = 24
_DEPTH_BITS = 38
_MAX_CANDIDATES = 4_000_000  # candidate (triangle, sample) pairs per chunk
_SIZE_CLASSES = torch.tensor([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024,
                              1536, 2048, 3072, 4096, 8192, 16384, 32768])


@dataclass
class Fragments:
    """Rasterizer output on the supersampled grid (``Hs = H * s``, ``Ws = W * s``).

    Attributes:
        face_id: (Hs, Ws) int64, index of the visible face, -1 where empty.
        bary: (Hs, Ws, 3) float32 perspective-correct barycentrics of the visible face (0 if empty).
        depth: (Hs, Ws) float32 camera-space z of the visible surface, +inf where empty.
        mask: (Hs, Ws) bool coverage.
        supersample: s.
    """

    face_id: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor
    supersample: int

    def alpha(self) -> torch.Tensor:
        """(H, W, 1) float32 pixel coverage: the fraction of each pixel's s x s samples covered."""
        return box_downsample(self.mask.to(torch.float32)[..., None], self.supersample)


@dataclass
class SurfaceSamples:
    """Per-sample surface information handed to a ``shade_fn`` (N = number of covered samples).

    Attributes:
        positions: (N, 3) world positions.
        normals: (N, 3) unit interpolated (smooth) vertex normals, world space, as given by the
            mesh winding (not flipped toward the camera).
        face_normals: (N, 3) unit geometric normals of the visible faces (winding order).
        view_dirs: (N, 3) unit vectors from the surface toward the camera centre.
        attrs: (N, D) barycentric interpolation of ``vertex_attrs`` (None when not given).
        face_id: (N,) int64 visible face.
        bary: (N, 3) perspective-correct barycentrics.
        depth: (N,) camera-space z.
        sample_yx: (N, 2) int64 row/column on the supersampled grid.
    """

    positions: torch.Tensor
    normals: torch.Tensor
    face_normals: torch.Tensor
    view_dirs: torch.Tensor
    attrs: torch.Tensor | None
    face_id: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor
    sample_yx: torch.Tensor

    @property
    def front_facing(self) -> torch.Tensor:
        """(N,) bool, the visible side is the front side of the face (winding order)."""
        return (self.face_normals * self.view_dirs).sum(-1) > 0


def _as_float(x, dtype=torch.float64) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(dtype)


def project_to_samples(verts_world: torch.Tensor, camera: Camera, supersample: int) -> torch.Tensor:
    """Project world vertices to the supersampled grid.

    Returns:
        (V, 3) float64: sample-grid x, sample-grid y (centre of sample (r, c) at (c+0.5, r+0.5)),
        camera depth z.
    """
    p = camera.project(_as_float(verts_world))
    return torch.cat([p[:, :2] * supersample, p[:, 2:3]], dim=1)


def rasterize_mesh(verts_world, faces, camera: Camera, supersample: int = 3, *, near: float = 1e-3,
                   cull_backfaces: bool = False) -> Fragments:
    """Rasterize a triangle mesh with a z-buffer on a supersampled grid.

    Args:
        verts_world: (V, 3) world vertex positions.
        faces: (F, 3) vertex indices (any winding; F < 2**24).
        camera: the camera (its width/height set the pixel grid).
        supersample: samples per pixel along each axis (s x s per pixel).
        near: faces with any vertex closer than this (camera z) are dropped (no clipping).
        cull_backfaces: keep only faces seen from their front side (counter-clockwise as seen by
            the camera, i.e. normal ``(v1-v0) x (v2-v0)`` pointing toward the camera).
    Returns:
        :class:`Fragments` on the (H*s, W*s) grid.
    """
    s = int(supersample)
    Hs, Ws = camera.height * s, camera.width * s
    faces = torch.as_tensor(np.asarray(faces) if not isinstance(faces, torch.Tensor) else faces).long()
    if faces.shape[0] >= 2 ** _FACE_BITS:
        raise ValueError(f"rasterize_mesh supports fewer than {2 ** _FACE_BITS} faces")
    scr = project_to_samples(verts_world, camera, s)  # (V, 3) float64
    tri = scr[faces]  # (F, 3, 3)
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]

    # twice the signed screen area in the y-down sample grid: < 0 for faces counter-clockwise as
    # seen by the camera (front faces, normal toward the camera)
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    # sample centres at integer + 0.5: first/last sample index whose centre lies in the bbox
    c0 = torch.ceil(x.min(1).values - 0.5).clamp(min=0)
    c1 = torch.floor(x.max(1).values - 0.5).clamp(max=Ws - 1)
    r0 = torch.ceil(y.min(1).values - 0.5).clamp(min=0)
    r1 = torch.floor(y.max(1).values - 0.5).clamp(max=Hs - 1)
    keep = (z.min(1).values > near) & (area.abs() > 1e-12) & (c1 >= c0) & (r1 >= r0)
    if cull_backfaces:
        keep &= area < 0
    fids = torch.nonzero(keep).squeeze(1)

    face_id = torch.full((Hs * Ws,), -1, dtype=torch.int64)
    bary_out = torch.zeros(Hs * Ws, 3, dtype=torch.float32)
    depth_out = torch.full((Hs * Ws,), float("inf"), dtype=torch.float32)
    if fids.numel() == 0:
        return Fragments(face_id.view(Hs, Ws), bary_out.view(Hs, Ws, 3), depth_out.view(Hs, Ws),
                         face_id.view(Hs, Ws) >= 0, s)

    # per-face affine functions of the sample position (x, y): screen barycentrics w0, w1 and
    # the reciprocal depth 1/z (affine in screen space for a planar triangle)
    X, Y, Z = x[fids], y[fids], z[fids]
    ar = area[fids]
    a0 = (Y[:, 1] - Y[:, 2]) / ar
    b0 = (X[:, 2] - X[:, 1]) / ar
    e0 = (X[:, 1] * Y[:, 2] - X[:, 2] * Y[:, 1]) / ar
    a1 = (Y[:, 2] - Y[:, 0]) / ar
    b1 = (X[:, 0] - X[:, 2]) / ar
    e1 = (X[:, 2] * Y[:, 0] - X[:, 0] * Y[:, 2]) / ar
    iz = 1.0 / Z
    ai = a0 * (iz[:, 0] - iz[:, 2]) + a1 * (iz[:, 1] - iz[:, 2])
    bi = b0 * (iz[:, 0] - iz[:, 2]) + b1 * (iz[:, 1] - iz[:, 2])
    ei = e0 * (iz[:, 0] - iz[:, 2]) + e1 * (iz[:, 1] - iz[:, 2]) + iz[:, 2]
    coef = torch.stack([a0, b0, e0, a1, b1, e1, ai, bi, ei], 1).to(torch.float32)  # (K, 9)

    zmax = float(Z.max()) * 1.001
    depth_scale = (2 ** _DEPTH_BITS - 1) / zmax
    col0 = c0[fids].long()
    row0 = r0[fids].long()
    bw = c1[fids].long() - col0 + 1
    bh = r1[fids].long() - row0 + 1
    zbuf = torch.full((Hs * Ws,), torch.iinfo(torch.int64).max, dtype=torch.int64)

    # group the triangles by bounding-box size class (max side rounded up to _SIZE_CLASSES), test
    # each group's (K, ch, cw) sample grids with broadcasting -- no per-sample gathers
    group = torch.bucketize(torch.maximum(bw, bh), _SIZE_CLASSES)
    order = torch.argsort(group, stable=True)
    g_sorted = group[order]
    uniq, g_counts = torch.unique_consecutive(g_sorted, return_counts=True)
    bounds = torch.cumsum(g_counts, 0).tolist()
    start = 0
    for g, stop in zip(uniq.tolist(), bounds):
        members = order[start:stop]
        start = stop
        ch = int(bh[members].max())
        cw = int(bw[members].max())
        per = max(1, _MAX_CANDIDATES // (ch * cw))
        for m0 in range(0, members.numel(), per):
            sel = members[m0:m0 + per]
            cf = coef[sel]  # (k, 9)
            px = (col0[sel].to(torch.float32) + 0.5)[:, None] + torch.arange(cw, dtype=torch.float32)[None]
            py = (row0[sel].to(torch.float32) + 0.5)[:, None] + torch.arange(ch, dtype=torch.float32)[None]
            if cw > 1 or ch > 1:  # samples beyond a triangle's own bounding box: NaN fails every test
                px = px.masked_fill(torch.arange(cw)[None] >= bw[sel][:, None], float("nan"))
                py = py.masked_fill(torch.arange(ch)[None] >= bh[sel][:, None], float("nan"))
            # affine terms split into a per-column (k, 1, cw) and a per-row (k, ch, 1) part
            w0 = (cf[:, 0:1] * px)[:, None, :] + (cf[:, 1:2] * py + cf[:, 2:3])[:, :, None]
            w1 = (cf[:, 3:4] * px)[:, None, :] + (cf[:, 4:5] * py + cf[:, 5:6])[:, :, None]
            eps = -1e-6
            inside = (w0 >= eps) & (w1 >= eps) & (w0 + w1 <= 1.0 - eps)
            ii, yy, xx = torch.nonzero(inside, as_tuple=True)
            if ii.numel() == 0:
                continue
            fsel = sel[ii]
            row = row0[fsel] + yy
            col = col0[fsel] + xx
            c = cf[ii]
            inv_z = c[:, 6] * (col.to(torch.float32) + 0.5) + c[:, 7] * (row.to(torch.float32) + 0.5) + c[:, 8]
            depth = (1.0 / inv_z.to(torch.float64)).clamp(0, zmax)
            key = ((depth * depth_scale).long() << _FACE_BITS) | fids[fsel]
            zbuf.scatter_reduce_(0, row * Ws + col, key, reduce="amin")

    # resolve the winners: face id from the key, perspective-correct barycentrics at the sample
    covered = torch.nonzero(zbuf != torch.iinfo(torch.int64).max).squeeze(1)
    if covered.numel():
        fwin = zbuf[covered] & ((1 << _FACE_BITS) - 1)
        slot_of_face = torch.empty(faces.shape[0], dtype=torch.int64)
        slot_of_face[fids] = torch.arange(fids.numel())
        slot = slot_of_face[fwin]
        px = (covered % Ws).to(torch.float64) + 0.5
        py = torch.div(covered, Ws, rounding_mode="floor").to(torch.float64) + 0.5
        w0 = a0[slot] * px + b0[slot] * py + e0[slot]
        w1 = a1[slot] * px + b1[slot] * py + e1[slot]
        bs = torch.stack([w0, w1, 1.0 - w0 - w1], 1).clamp(min=0)
        bz = bs * iz[slot]
        inv = bz.sum(1)
        face_id[covered] = fwin
        bary_out[covered] = (bz / inv[:, None]).to(torch.float32)
        depth_out[covered] = (1.0 / inv).to(torch.float32)
    face_id = face_id.view(Hs, Ws)
    return Fragments(face_id, bary_out.view(Hs, Ws, 3), depth_out.view(Hs, Ws), face_id >= 0, s)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(V, 3) unit area-weighted vertex normals (counter-clockwise winding = outward)."""
    v = verts.to(torch.float32)
    f = faces.long()
    fn = torch.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=1)
    vn = torch.zeros_like(v)
    vn.index_add_(0, f.reshape(-1), fn.repeat_interleave(3, dim=0))
    return torch.nn.functional.normalize(vn, dim=1, eps=1e-12)


def surface_samples(frags: Fragments, verts_world, faces, camera: Camera, vertex_attrs=None,
                    normals=None) -> SurfaceSamples:
    """Gather the surface information of every covered sample of ``frags``.

    Args:
        verts_world: (V, 3); faces: (F, 3); vertex_attrs: (V, D) or None;
        normals: (V, 3) vertex normals, or None to compute area-weighted ones.
    """
    v = _as_float(verts_world, torch.float32)
    f = torch.as_tensor(np.asarray(faces) if not isinstance(faces, torch.Tensor) else faces).long()
    flat = torch.nonzero(frags.mask.reshape(-1)).squeeze(1)
    Ws = frags.mask.shape[1]
    yx = torch.stack([torch.div(flat, Ws, rounding_mode="floor"), flat % Ws], 1)
    fid = frags.face_id.reshape(-1)[flat]
    b = frags.bary.reshape(-1, 3)[flat]
    vn = vertex_normals(v, f) if normals is None else _as_float(normals, torch.float32)
    # one gather + weighted sum for every interpolated per-vertex quantity
    cols = [v, vn] + ([_as_float(vertex_attrs, torch.float32)] if vertex_attrs is not None else [])
    table = torch.cat(cols, 1)  # (V, 6 + D)
    tri = f[fid]  # (N, 3)
    g = table[tri]  # (N, 3, 6 + D)
    it = torch.bmm(b[:, None, :], g)[:, 0]  # (N, 6 + D)
    pos = it[:, 0:3]
    n = torch.nn.functional.normalize(it[:, 3:6], dim=1, eps=1e-12)
    tv = g[..., 0:3]
    fn = torch.nn.functional.normalize(torch.cross(tv[:, 1] - tv[:, 0], tv[:, 2] - tv[:, 0], dim=1), dim=1, eps=1e-12)
    cam_c = camera.center.to(torch.float32)
    vd = torch.nn.functional.normalize(cam_c[None] - pos, dim=1, eps=1e-12)
    attrs = it[:, 6:] if vertex_attrs is not None else None
    return SurfaceSamples(pos, n, fn, vd, attrs, fid, b, frags.depth.reshape(-1)[flat], yx)


def box_downsample(img: torch.Tensor, s: int) -> torch.Tensor:
    """Average s x s blocks: (H*s, W*s, C) -> (H, W, C)."""
    if s == 1:
        return img
    return torch.nn.functional.avg_pool2d(img.permute(2, 0, 1)[None], s)[0].permute(1, 2, 0)


def render_mesh(verts, faces, camera: Camera, shade_fn: Callable[[SurfaceSamples], torch.Tensor],
                supersample: int = 3, background=(1.0, 1.0, 1.0), *, vertex_attrs=None, normals=None,
                cull_backfaces: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Render a shaded, antialiased image of a mesh.

    Args:
        verts: (V, 3) world vertices; faces: (F, 3).
        camera: the camera (image size = camera.width x camera.height).
        shade_fn: maps :class:`SurfaceSamples` (N covered samples) to (N, 3) linear RGB in [0, 1].
        supersample: s (s x s samples per pixel, box filter).
        background: RGB the image is composited on.
        vertex_attrs: (V, D) per-vertex attributes interpolated for ``shade_fn`` (e.g. canonical
            positions for procedural textures).
        normals: (V, 3) vertex normals, None = area-weighted from the mesh.
    Returns:
        rgb (H, W, 3) float32 composited on ``background``; alpha (H, W, 1) float32 coverage.
    """
    frags = rasterize_mesh(verts, faces, camera, supersample, cull_backfaces=cull_backfaces)
    s = frags.supersample
    Hs, Ws = frags.mask.shape
    buf = torch.empty(Hs, Ws, 3, dtype=torch.float32)
    buf[:] = torch.as_tensor(background, dtype=torch.float32)
    if bool(frags.mask.any()):
        samples = surface_samples(frags, verts, faces, camera, vertex_attrs, normals)
        rgb = shade_fn(samples).to(torch.float32)
        buf[samples.sample_yx[:, 0], samples.sample_yx[:, 1]] = rgb
    return box_downsample(buf, s), frags.alpha()
