"""Pure-PyTorch tiled rasterizer (CPU or any device), gsplat 1.5.3 maths, hand-written backward.

Pipeline (same order as ``gsplat.rasterization``): :func:`project_gaussians` (autograd) ->
colours / SH -> :func:`bin_gaussians` -> :class:`_RasterizeTiles` (custom autograd Function).

How a block of tiles is rasterized (``Tc`` tiles, lists padded to ``L``, ``P = ts*ts`` pixels):

- the per-pixel log-alpha ``log(o) - sigma`` is a quadratic polynomial of the pixel position
  relative to the tile centre, so one ``(P, 6) @ (Tc, 6, L)`` matmul evaluates it for the whole
  block (``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy``, ``dx = mean - pixel``);
- ``alpha = min(0.999, exp(.))``, zeroed below 1/255 (skipped, as gsplat; ``sigma < 0`` cannot
  occur because the conic is positive definite);
- ``T_after = cumprod(1 - alpha)`` along the depth-sorted list; a Gaussian contributes iff
  ``T_after > 1e-4`` (gsplat stops *before* the Gaussian that would bring T to <= 1e-4, and
  T is non-increasing, so this is a prefix of the list);
- ``w = alpha * T_before``; colours ``= w @ colors`` (batched matmul); ``T_final`` is
  ``T_after`` at the last contributing entry.

The backward recomputes a block's alphas instead of storing them and uses
``dL/dalpha_k = g_k T_k - (sum_{i>k} w_i g_i + T_final (bg.v - v_alpha)) / (1 - alpha_k)``
with ``g_i = colors_i . v_out``; sums over a tile's pixels of ``dL/dsigma * monomial`` (from
which the conic, mean and opacity gradients follow in closed form) come from one
``(Tc, 6, P) @ (Tc, P, L)`` batched matmul. See docs/renderer.md.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from .projection import ALPHA_THRESHOLD, project_gaussians
from .sh import eval_sh
from .tiles import TileBins, bin_gaussians

ALPHA_MAX = 0.999
T_MIN = 1e-4
DEFAULT_BLOCK_ELEMENTS = 1 << 18
"""Entries (tiles x list length x pixels) evaluated at once; bounds memory."""


# ------------------------------------------------------------------------------------------
# tile geometry helpers
# ------------------------------------------------------------------------------------------
def _pixel_basis(tile_size: int, dtype, device) -> Tensor:
    """(P, 6) monomials (1, px, py, px^2, px*py, py^2) of pixel centres relative to the tile centre."""
    r = torch.arange(tile_size, dtype=dtype, device=device) + 0.5 - 0.5 * tile_size
    py, px = torch.meshgrid(r, r, indexing="ij")
    px, py = px.reshape(-1), py.reshape(-1)
    return torch.stack([torch.ones_like(px), px, py, px * px, px * py, py * py], dim=-1)


def _tiles_to_image(t: Tensor, n_images: int, bins: TileBins, width: int, height: int) -> Tensor:
    """(I * n_tiles, P, D) -> (I, H, W, D)."""
    ts, tx, ty = bins.tile_size, bins.tiles_x, bins.tiles_y
    D = t.shape[-1]
    img = t.reshape(n_images, ty, tx, ts, ts, D).permute(0, 1, 3, 2, 4, 5)
    return img.reshape(n_images, ty * ts, tx * ts, D)[:, :height, :width]


def _image_to_tiles(img: Tensor, bins: TileBins) -> Tensor:
    """(I, H, W, D) -> (I * n_tiles, P, D), zero-padded to whole tiles."""
    ts, tx, ty = bins.tile_size, bins.tiles_x, bins.tiles_y
    I, H, W, D = img.shape
    if H != ty * ts or W != tx * ts:
        img = torch.nn.functional.pad(img, (0, 0, 0, tx * ts - W, 0, ty * ts - H))
    t = img.reshape(I, ty, ts, tx, ts, D).permute(0, 1, 3, 2, 4, 5)
    return t.reshape(I * ty * tx, ts * ts, D)


def _block_index(bins: TileBins, s0: int, s1: int, L: int, dummy: int) -> Tensor:
    """(Tc, L) flat Gaussian ids of slots [s0, s1), padded with ``dummy``."""
    a, b = int(bins.slot_offsets[s0]), int(bins.slot_offsets[s1])
    idx = torch.full((s1 - s0, L), dummy, dtype=torch.long, device=bins.flat_ids.device)
    idx[bins.slot_of[a:b] - s0, bins.pos_in_slot[a:b]] = bins.flat_ids[a:b]
    return idx


def _tile_centres(bins: TileBins, tiles: Tensor, dtype) -> tuple[Tensor, Tensor]:
    """Pixel coordinates of the centres of global tile ids ``tiles`` (any shape)."""
    local = tiles % bins.n_tiles
    ty = torch.div(local, bins.tiles_x, rounding_mode="floor")
    tx = local - ty * bins.tiles_x
    h = 0.5 * bins.tile_size
    return (tx * bins.tile_size + h).to(dtype), (ty * bins.tile_size + h).to(dtype)


def _next_down(value: float, dtype: torch.dtype) -> float:
    """The largest number of ``dtype`` below ``value`` (so ``x > next_down`` <=> ``x >= value``)."""
    v = torch.tensor(value, dtype=dtype)
    return float(torch.nextafter(v, torch.tensor(-float("inf"), dtype=dtype)))


@contextmanager
def single_thread():
    """Run the enclosed torch ops on one intra-op thread, restoring the count afterwards.

    The compositing loop is hundreds of small ops per call; with 2+ threads on a machine where
    other processes hold the cores every op waits for a descheduled worker (measured 15x slower
    at 20k Gaussians / 256^2 on a shared 2-core box, issue 11). One thread is never slower here.
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


_pinned_from: list[int] = []  # the thread count to restore after a pinned backward, if any


def pin_one_thread() -> None:
    """Called at the end of a compositing backward: the projection/SH backward that follows is
    many small ops, which collapse with 2+ threads on a busy machine (issue 11), so they run on
    one thread until :class:`RestoreThreads` (at rasterize()'s inputs) puts the count back."""
    n = torch.get_num_threads()
    if n > 1 and not _pinned_from:
        _pinned_from.append(n)
        torch.set_num_threads(1)


def unpin_threads() -> None:
    """Restore the thread count saved by :func:`pin_one_thread` (no-op when nothing is pinned)."""
    if _pinned_from:
        torch.set_num_threads(_pinned_from.pop())


class RestoreThreads(torch.autograd.Function):
    """Identity on rasterize()'s inputs whose backward restores the thread count (see
    :func:`pin_one_thread`). A backward that stops before the inputs (``autograd.grad`` w.r.t.
    ``means2d`` only) leaves one thread set until the next rasterize() call restores it."""

    @staticmethod
    def forward(ctx, *tensors):
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def backward(ctx, *grads):
        unpin_threads()
        return grads


class _Block:
    """Per-pixel quantities of one block of tiles, each (Tc, P, L).

    Uses float "gates" built with ``F.threshold``/``sign`` instead of boolean masks: on CPU
    they are several times faster than ``where``/``masked_fill``.
    """

    def __init__(self, basis: Tensor, mx: Tensor, my: Tensor, ca: Tensor, cb: Tensor, cc: Tensor, logop: Tensor):
        dtype = mx.dtype
        # log-alpha coefficients of (1, px, py, px^2, px py, py^2), each (Tc, L)
        k0 = logop - (0.5 * ca * mx * mx + 0.5 * cc * my * my + cb * mx * my)
        coef = torch.stack([k0, ca * mx + cb * my, cc * my + cb * mx, -0.5 * ca, -cb, -0.5 * cc], dim=1)
        raw = torch.bmm(basis.expand(coef.shape[0], -1, -1), coef)  # (Tc, P, L)
        raw.clamp_min_(-80.0).exp_()  # o * exp(-sigma); the clamp avoids slow denormals (alpha < 1/255 anyway)
        self.raw = raw
        # skip alpha < 1/255 (i.e. keep raw >= 1/255), then clamp to 0.999
        self.alpha = F.threshold(raw, _next_down(ALPHA_THRESHOLD, dtype), 0.0).clamp_max_(ALPHA_MAX)
        self.one_minus = 1.0 - self.alpha
        T_after = torch.cumprod(self.one_minus, dim=-1)
        # a Gaussian contributes iff the transmittance after it stays > 1e-4 (a prefix of the list)
        self.T_inc = F.threshold(T_after, T_MIN, 0.0)  # T_after where contributing, else 0
        del T_after
        tf = F.threshold(self.T_inc, 0.0, float("inf")).amin(dim=-1)  # last contributing T_after
        self.T_final = tf.masked_fill_(torch.isinf(tf), 1.0)  # (Tc, P)
        self.w = self.alpha * self.T_inc
        self.w.div_(self.one_minus)  # alpha * T_before, 0 where not contributing


def _gather_block(idx: Tensor, m2d: Tensor, con: Tensor, logop: Tensor, cxt: Tensor, cyt: Tensor):
    mx = m2d[idx, 0] - cxt[:, None]
    my = m2d[idx, 1] - cyt[:, None]
    c = con[idx]
    return mx, my, c[..., 0], c[..., 1], c[..., 2], logop[idx]


class _RasterizeTiles(torch.autograd.Function):
    """Alpha compositing of binned Gaussians; inputs flattened over images.

    forward(means2d (I,N,2), conics (I,N,3), colors (I,N,D), opacities (I,N), backgrounds (I,D)
    or None, bins, width, height, absgrad, block_elements) -> (colors (I,H,W,D), alphas (I,H,W,1)).
    Tile-layout buffers are (I * n_tiles, D, P) (channels first, pixels last).
    """

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, bins: TileBins, width, height, absgrad, block):
        I, N, D = colors.shape
        dtype, device = colors.dtype, colors.device
        dummy = I * N
        m2d, con, col, logop = _flat_inputs(means2d, conics, colors, opacities)
        basis = _pixel_basis(bins.tile_size, dtype, device)
        P = basis.shape[0]
        n_all = I * bins.n_tiles
        out_t = torch.zeros(n_all, D, P, dtype=dtype, device=device)
        tf_t = torch.ones(n_all, P, dtype=dtype, device=device)
        for s0, s1, L in bins.chunks(block):
            tiles = bins.slot_tiles[s0:s1]
            idx = _block_index(bins, s0, s1, L, dummy)
            cxt, cyt = _tile_centres(bins, tiles, dtype)
            blk = _Block(basis, *_gather_block(idx, m2d, con, logop, cxt, cyt))
            colT = col[idx].transpose(1, 2).contiguous()  # (Tc, D, L)
            out_t[tiles] = torch.bmm(colT, blk.w.transpose(1, 2))  # (Tc, D, P)
            tf_t[tiles] = blk.T_final
            del blk
        if backgrounds is not None:
            img_of_tile = torch.div(torch.arange(n_all, device=device), bins.n_tiles, rounding_mode="floor")
            out_t = out_t + backgrounds[img_of_tile][:, :, None] * tf_t[:, None, :]
        out = _tiles_to_image(out_t.transpose(1, 2), I, bins, width, height).contiguous()
        alphas = (1.0 - _tiles_to_image(tf_t[..., None], I, bins, width, height)).contiguous()
        ctx.save_for_backward(means2d, conics, colors, opacities, backgrounds, tf_t)
        ctx.bins, ctx.absgrad, ctx.block = bins, absgrad, block
        ctx.has_bg = backgrounds is not None
        return out, alphas

    @staticmethod
    def backward(ctx, v_out, v_alphas):
        with single_thread():
            grads = _RasterizeTiles._backward(ctx, v_out, v_alphas)
        pin_one_thread()
        return grads

    @staticmethod
    def _backward(ctx, v_out, v_alphas):
        means2d, conics, colors, opacities, backgrounds, tf_t = ctx.saved_tensors
        bins: TileBins = ctx.bins
        I, N, D = colors.shape
        dtype, device = colors.dtype, colors.device
        dummy = I * N
        m2d, con, col, logop = _flat_inputs(means2d, conics, colors, opacities)
        op = opacities.detach().reshape(-1)
        basis = _pixel_basis(bins.tile_size, dtype, device)
        basisT = basis.T.contiguous()  # (6, P)
        P = basis.shape[0]
        n_all = I * bins.n_tiles

        if v_out is None:
            v_out = torch.zeros(I, *v_alphas.shape[1:3], D, dtype=dtype, device=device)
        vo_t = _image_to_tiles(v_out.to(dtype), bins).contiguous()  # (n_all, P, D)
        voT_t = vo_t.transpose(1, 2).contiguous()  # (n_all, D, P)
        if v_alphas is None:
            va_t = torch.zeros(n_all, P, dtype=dtype, device=device)
        else:
            va_t = _image_to_tiles(v_alphas.to(dtype), bins)[..., 0]
        img_of_tile = torch.div(torch.arange(n_all, device=device), bins.n_tiles, rounding_mode="floor")
        if ctx.has_bg:
            bgv_t = (vo_t * backgrounds.detach()[img_of_tile][:, None, :]).sum(-1)
        else:
            bgv_t = torch.zeros_like(va_t)
        rhs_t = tf_t * (bgv_t - va_t)  # T_final (bg . v - v_alpha), per pixel

        g_m2d = torch.zeros(dummy + 1, 2, dtype=dtype, device=device)
        g_con = torch.zeros(dummy + 1, 3, dtype=dtype, device=device)
        g_col = torch.zeros(dummy + 1, D, dtype=dtype, device=device)
        g_op = torch.zeros(dummy + 1, dtype=dtype, device=device)
        g_abs = torch.zeros(dummy + 1, 2, dtype=dtype, device=device) if ctx.absgrad else None
        clamp_gate = _next_down(-ALPHA_MAX, dtype)  # -raw > clamp_gate <=> raw <= 0.999

        for s0, s1, L in bins.chunks(ctx.block):
            tiles = bins.slot_tiles[s0:s1]
            Tc = s1 - s0
            idx = _block_index(bins, s0, s1, L, dummy)
            cxt, cyt = _tile_centres(bins, tiles, dtype)
            mx, my, ca, cb, cc, lo = _gather_block(idx, m2d, con, logop, cxt, cyt)
            blk = _Block(basis, mx, my, ca, cb, cc, lo)
            vo, voT = vo_t[tiles], voT_t[tiles]  # (Tc,P,D), (Tc,D,P)
            flat = idx.reshape(-1)
            # colours: dL/dc_k = sum_p w_kp v_p
            g_col.index_add_(0, flat, torch.bmm(voT, blk.w).transpose(1, 2).reshape(-1, D))

            # dL/dalpha_k = (g_k T_k - sum_{i>k} w_i g_i - T_final (bg.v - v_a)) / (1 - alpha_k), k contributing
            g = torch.bmm(vo, col[idx].transpose(1, 2))  # (Tc,P,L) colour_k . v_p
            after = torch.cumsum(blk.w * g, dim=-1)
            after = after[..., -1:] - after  # sum_{i>k} w_i g_i (0 past the last contributor)
            g.mul_(blk.T_inc)
            g.sub_(after)
            del after
            contrib = torch.sign(blk.T_inc)  # 1 where contributing
            g.addcmul_(contrib, rhs_t[tiles][:, :, None], value=-1.0)
            g.div_(blk.one_minus)  # dL/dalpha
            # dL/dsigma = -alpha dL/dalpha where alpha = o exp(-sigma) is neither skipped nor clamped
            a_gate = F.threshold(blk.raw.neg_(), clamp_gate, 0.0)  # -raw where raw <= 0.999, else 0
            a_gate.mul_(torch.sign(blk.alpha))  # 0 where skipped
            q = g.mul_(a_gate).neg_()  # alpha * dL/dalpha on the gated entries = -dL/dsigma
            del blk, a_gate, contrib
            mom = torch.bmm(basisT.expand(Tc, -1, -1), q)  # (Tc, 6, L): sums over pixels of q * monomial
            s0_, s1_, s2_, s3_, s4_, s5_ = (-mom).unbind(1)  # the same sums for dL/dsigma
            ex = mx * s0_ - s1_  # sum dL/dsigma * dx
            ey = my * s0_ - s2_  # sum dL/dsigma * dy
            v_mx = ca * ex + cb * ey
            v_my = cb * ex + cc * ey
            v_ca = 0.5 * (mx * mx * s0_ - 2.0 * mx * s1_ + s3_)
            v_cb = mx * my * s0_ - mx * s2_ - my * s1_ + s4_
            v_cc = 0.5 * (my * my * s0_ - 2.0 * my * s2_ + s5_)
            g_m2d.index_add_(0, flat, torch.stack([v_mx, v_my], -1).reshape(-1, 2))
            g_con.index_add_(0, flat, torch.stack([v_ca, v_cb, v_cc], -1).reshape(-1, 3))
            g_op.index_add_(0, flat, mom[:, 0].reshape(-1))  # divided by the opacity below
            if g_abs is not None:  # sum over pixels of |per-pixel dL/dmean2d|
                px, py = basis[:, 1][None, :, None], basis[:, 2][None, :, None]
                dx = mx[:, None, :] - px
                dy = my[:, None, :] - py
                vx = (ca[:, None, :] * dx + cb[:, None, :] * dy).mul_(q).abs_().sum(1)
                vy = (cb[:, None, :] * dx + cc[:, None, :] * dy).mul_(q).abs_().sum(1)
                g_abs.index_add_(0, flat, torch.stack([vx, vy], -1).reshape(-1, 2))
            del q

        # dL/do = sum_p exp(-sigma) dL/dalpha = (sum_p q) / o
        pos = op > 0
        v_op = torch.where(pos, g_op[:dummy] / torch.where(pos, op, torch.ones_like(op)), torch.zeros_like(op))
        v_bg = None
        if ctx.has_bg and ctx.needs_input_grad[4]:
            v_bg = (vo_t * tf_t[..., None]).reshape(I, -1, D).sum(1)
        if g_abs is not None:
            means2d.absgrad = g_abs[:dummy].reshape(I, N, 2)
        return (
            g_m2d[:dummy].reshape(I, N, 2),
            g_con[:dummy].reshape(I, N, 3),
            g_col[:dummy].reshape(I, N, D),
            v_op.reshape(I, N),
            v_bg,
            None, None, None, None, None,
        )


def _flat_inputs(means2d, conics, colors, opacities):
    """Flatten over images and append a dummy zero-opacity Gaussian used for padding."""
    I, N, D = colors.shape
    z = means2d.new_zeros
    m2d = torch.cat([means2d.detach().reshape(-1, 2), z(1, 2)])
    con = torch.cat([conics.detach().reshape(-1, 3), z(1, 3)])
    col = torch.cat([colors.detach().reshape(-1, D), z(1, D)])
    op = torch.cat([opacities.detach().reshape(-1), z(1)])
    logop = torch.log(op.clamp_min(1e-30))
    return m2d, con, col, logop


def rasterize_to_pixels(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    radii: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    tile_size: int = 16,
    backgrounds: Tensor | None = None,
    absgrad: bool = False,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    compositor=None,
) -> tuple[Tensor, Tensor, TileBins]:
    """Composite projected Gaussians front to back (gsplat ``rasterize_to_pixels``, not packed).

    Args:
        means2d: (I, N, 2); conics: (I, N, 3); colors: (I, N, D); opacities: (I, N);
        radii: (I, N, 2) int (0 = culled); depths: (I, N) sort keys;
        backgrounds: (I, D) or None.
        compositor: the compositing autograd Function (default: this module's pure-torch one;
            the compiled backend passes its C++ one).

    Returns:
        colors (I, H, W, D), alphas (I, H, W, 1), the :class:`TileBins` used.
    """
    fn = _RasterizeTiles if compositor is None else compositor
    if fn is not _RasterizeTiles and not means2d.is_cuda:  # the compiled backend bins in C++ too
        from ._cpp_backend import bin_gaussians_cpp

        bins = bin_gaussians_cpp(means2d, radii, depths, tile_size, width, height)
    else:
        bins = bin_gaussians(means2d, radii, depths, tile_size, width, height)
    if fn is _RasterizeTiles:
        with single_thread():
            out, alphas = fn.apply(
                means2d, conics, colors, opacities, backgrounds, bins, width, height, absgrad, block_elements
            )
        return out, alphas, bins
    out, alphas = fn.apply(
        means2d, conics, colors, opacities, backgrounds, bins, width, height, absgrad, block_elements
    )
    return out, alphas, bins


def rasterization_torch(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    tile_size: int = 16,
    backgrounds: Tensor | None = None,
    render_mode: str = "RGB",
    absgrad: bool = False,
    rasterize_mode: str = "classic",
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    compositor=None,
    backend_name: str = "torch",
) -> tuple[Tensor, Tensor, dict]:
    """The torch backend of :func:`avatarbench.render.rasterize` (arguments validated there).

    ``compositor``/``backend_name``: the compiled backend reuses this pipeline with its C++
    compositing Function (see ``_cpp_backend.py``).
    """
    C = viewmats.shape[0]
    N = means.shape[0]
    proj = project_gaussians(
        means, quats, scales, opacities, viewmats, Ks, width, height,
        eps2d=eps2d, near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip,
        antialiased=(rasterize_mode == "antialiased"),
    )
    radii, means2d, depths, conics = proj.radii, proj.means2d, proj.depths, proj.conics
    ops = opacities[None, :].expand(C, N)
    if proj.compensations is not None:
        ops = ops * proj.compensations

    if sh_degree is None:
        cols = colors if colors.dim() == 3 else colors[None].expand(C, N, colors.shape[-1])
    else:
        campos = torch.linalg.inv(viewmats)[:, :3, 3]  # (C,3)
        dirs = means[None, :, :] - campos[:, None, :]  # (C,N,3)
        shs = colors if colors.dim() == 4 else colors[None].expand(C, *colors.shape)
        visible = (radii > 0).all(-1)  # gsplat evaluates SH only for visible Gaussians
        cols = eval_sh(sh_degree, shs, dirs) * visible[..., None]

    bgs = backgrounds
    if render_mode in ("RGB+D", "RGB+ED"):
        cols = torch.cat([cols, depths[..., None]], dim=-1)
        if bgs is not None:
            bgs = torch.cat([bgs, bgs.new_zeros(C, 1)], dim=-1)
    elif render_mode in ("D", "ED"):
        cols = depths[..., None]
        if bgs is not None:
            bgs = bgs.new_zeros(C, 1)

    render, alphas, bins = rasterize_to_pixels(
        means2d, conics, cols.contiguous(), ops.contiguous(), radii, depths, width, height,
        tile_size=tile_size, backgrounds=bgs, absgrad=absgrad, block_elements=block_elements,
        compositor=compositor,
    )
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alphas.clamp(min=1e-10)], dim=-1)

    meta = {
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": ops,
        "tile_width": bins.tiles_x,
        "tile_height": bins.tiles_y,
        "n_isects": bins.n_isects,
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_cameras": C,
        "backend": backend_name,
    }
    return render, alphas, meta
