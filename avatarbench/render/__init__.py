"""The one Gaussian rasterizer of avatarbench: gsplat on CUDA, a tiled pure-torch twin elsewhere.

``rasterize`` mirrors ``gsplat.rasterization`` (v1.5.3, ``packed=False``): same arguments, same
outputs, same maths. See docs/renderer.md.

Example::

    colors, alphas, meta = rasterize(means, quats, scales, opacities, rgb, viewmats, Ks, W, H)
    meta["means2d"].retain_grad()   # before backward, for densification
"""

from __future__ import annotations

import os

from typing import Literal

import torch
from torch import Tensor

from . import _cpp_backend
from ._gsplat_backend import gsplat_available, rasterization_gsplat
from ._torch_backend import RestoreThreads, rasterization_torch, single_thread, unpin_threads

__all__ = ["rasterize", "RENDER_MODES", "BACKENDS"]

RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
BACKENDS = ("auto", "cpp", "torch", "gsplat")


def _shape_error(name: str, t: Tensor, expected: str) -> ValueError:
    return ValueError(f"rasterize: {name} has shape {tuple(t.shape)} (expected {expected})")


def _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree, backgrounds, render_mode):
    if means.dim() != 2 or means.shape[-1] != 3:
        raise _shape_error("means", means, "(N, 3)")
    N = means.shape[0]
    if viewmats.dim() != 3 or viewmats.shape[-2:] != (4, 4):
        raise _shape_error("viewmats", viewmats, "(C, 4, 4)")
    C = viewmats.shape[0]
    for name, t, shp in (("quats", quats, (N, 4)), ("scales", scales, (N, 3)), ("opacities", opacities, (N,)),
                         ("Ks", Ks, (C, 3, 3))):
        if tuple(t.shape) != shp:
            raise _shape_error(name, t, str(shp))
    if sh_degree is None:
        if not ((colors.dim() == 2 and colors.shape[0] == N) or (colors.dim() == 3 and colors.shape[:2] == (C, N))):
            raise _shape_error("colors", colors, f"(N, D) or (C, N, D) with N={N}, C={C}")
        D = colors.shape[-1]
    else:
        ok = (colors.dim() == 3 and colors.shape[0] == N) or (colors.dim() == 4 and colors.shape[:2] == (C, N))
        if not ok or colors.shape[-1] != 3:
            raise _shape_error("colors (SH)", colors, f"(N, K, 3) or (C, N, K, 3) with N={N}, C={C}")
        if not 0 <= sh_degree <= 4 or (sh_degree + 1) ** 2 > colors.shape[-2]:
            raise ValueError(f"rasterize: sh_degree={sh_degree} needs K >= {(sh_degree + 1) ** 2} coefficients "
                             f"(got K={colors.shape[-2]}; degree must be 0..4)")
        D = 3
    if render_mode not in RENDER_MODES:
        raise ValueError(f"rasterize: render_mode={render_mode!r} (expected one of {RENDER_MODES})")
    if backgrounds is not None:
        Db = 1 if render_mode in ("D", "ED") else D
        if render_mode in ("D", "ED"):
            if backgrounds.dim() != 2 or backgrounds.shape[0] != C:
                raise _shape_error("backgrounds", backgrounds, f"(C, D) with C={C}")
        elif tuple(backgrounds.shape) != (C, Db):
            raise _shape_error("backgrounds", backgrounds, f"({C}, {Db})")


_default_backend = os.environ.get("AVATARBENCH_RENDER_BACKEND", "auto")


def set_default_backend(name: str) -> None:
    """What ``backend="auto"`` means for this process: ``auto`` (gsplat on CUDA, the compiled
    ``cpp`` backend on CPU when it builds, else torch), ``cpp``, ``torch`` or ``gsplat``. The engine sets it from the run config's ``render.backend``, so every
    method renders through the same backend without passing it around."""
    global _default_backend
    if name not in BACKENDS:
        raise ValueError(f"render.backend={name!r} (expected one of {BACKENDS})")
    _default_backend = name


def rasterize(
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
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,
    render_mode: Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"] = "RGB",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    tile_size: int = 16,
    backend: Literal["auto", "cpp", "torch", "gsplat"] = "auto",
    absgrad: bool = False,
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    channel_chunk: int = 32,
) -> tuple[Tensor, Tensor, dict]:
    """Rasterize N 3D Gaussians into C pinhole images (``gsplat.rasterization``, not packed).

    Args:
        means: (N, 3) world positions.
        quats: (N, 4) wxyz rotations; need not be normalised (normalised inside, with gradient).
        scales: (N, 3) activated scales (standard deviations, not log).
        opacities: (N,) activated opacities in [0, 1].
        colors: (N, D) or (C, N, D) features (any D, e.g. 3 or 32), or with ``sh_degree``
            SH coefficients (N, K, 3) or (C, N, K, 3), K >= (sh_degree + 1) ** 2; SH colours are
            ``clamp_min(SH(dir) + 0.5, 0)`` with ``dir`` from the camera centre to the mean.
        viewmats: (C, 4, 4) world-to-camera, OpenCV (x right, y down, z forward).
        Ks: (C, 3, 3) intrinsics; pixel (i, j) has its centre at (j + 0.5, i + 0.5).
        width, height: image size in pixels.
        sh_degree: None for plain features, else the SH degree (0..4) to evaluate.
        backgrounds: (C, D) colour behind the Gaussians (added as ``T_final * bg``); in the depth
            modes the depth channel's background is 0, as in gsplat.
        render_mode: "RGB" (features), "D" (accumulated z), "ED" (D / alpha), "RGB+D", "RGB+ED".
        near_plane, far_plane: cull means with camera z outside [near, far].
        eps2d: screen-space blur added to the 2D covariance diagonal (0.3 px^2).
        radius_clip: cull Gaussians whose pixel radii are both <= this.
        tile_size: tile edge in pixels.
        backend: "auto" (gsplat for float32 CUDA tensors when it imports; on CPU the compiled
            "cpp" backend when it builds, else "torch"), "cpp" (CPU, float32/float64), "torch"
            (any device) or "gsplat" (CUDA, float32 only: gsplat's kernels are single precision).
        absgrad: also accumulate ``meta['means2d'].absgrad`` (sum of per-pixel |grad|) in backward.
        rasterize_mode: "classic" or "antialiased" (opacity x sqrt(det(cov) / det(cov + eps2d I))).
        channel_chunk: gsplat only: channels rasterized per kernel call.

    Returns:
        colors: (C, H, W, D') with D' = D, 1 (D/ED) or D + 1 (RGB+D/RGB+ED).
        alphas: (C, H, W, 1) accumulated opacity ``1 - T_final``.
        meta: dict with ``means2d`` (C, N, 2) (a graph node: call ``.retain_grad()`` before
            backward to read the screen-space gradient), ``radii`` (C, N, 2) int32 (0 = culled),
            ``depths`` (C, N), ``conics`` (C, N, 3), ``opacities`` (C, N), ``width``,
            ``height``, ``n_cameras``, ``tile_size``, ``gaussian_ids`` (None), ``backend``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"rasterize: backend={backend!r} (expected one of {BACKENDS})")
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree, backgrounds, render_mode)
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"rasterize: rasterize_mode={rasterize_mode!r} (expected 'classic' or 'antialiased')")
    if backend == "auto":
        backend = _default_backend
    if backend == "auto":
        if means.is_cuda:
            backend = "gsplat" if means.dtype == torch.float32 and gsplat_available() else "torch"
        else:
            backend = "cpp" if _cpp_backend.available() else "torch"
    kwargs = dict(
        near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip, eps2d=eps2d, sh_degree=sh_degree,
        tile_size=int(tile_size), backgrounds=backgrounds, render_mode=render_mode, absgrad=absgrad,
        rasterize_mode=rasterize_mode,
    )
    if backend == "gsplat":
        if not means.is_cuda:
            raise ValueError("rasterize: backend='gsplat' needs CUDA tensors (use backend='torch' on CPU)")
        return rasterization_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, int(width), int(height),
                                    channel_chunk=channel_chunk, **kwargs)
    if means.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"rasterize: CPU backends support float32/float64, got {means.dtype}")
    unpin_threads()  # a previous backward that stopped early may have left one thread set
    if torch.is_grad_enabled():
        # identity whose backward restores the thread count the compositing backward pinned to 1
        ins = [means, quats, scales, opacities, colors, viewmats, Ks] + ([backgrounds] if backgrounds is not None
                                                                          else [])
        if any(t.requires_grad for t in ins):
            outs = RestoreThreads.apply(*ins)
            means, quats, scales, opacities, colors, viewmats, Ks = outs[:7]
            kwargs["backgrounds"] = outs[7] if backgrounds is not None else None
    if backend == "cpp":
        # the C++ kernel runs on torch.get_num_threads() threads of its own; the small torch ops
        # around it (projection, binning) run on one, which is never slower on a shared machine
        kwargs.update(compositor=_cpp_backend.compositor_for(means, threads=torch.get_num_threads()),
                      backend_name="cpp")
        with single_thread():
            return rasterization_torch(means, quats, scales, opacities, colors, viewmats, Ks, int(width),
                                       int(height), **kwargs)
    with single_thread():  # the torch backend is hundreds of small ops: one thread is never slower
        return rasterization_torch(means, quats, scales, opacities, colors, viewmats, Ks, int(width), int(height),
                                   **kwargs)
