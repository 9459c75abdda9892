"""CUDA backend: a thin call to ``gsplat.rasterization`` (v1.5.3), imported lazily.

``packed=False`` so that ``meta['means2d']``/``radii``/``depths``/``conics`` are dense
``(C, N, ...)`` tensors, exactly as the torch backend returns them.
"""

from __future__ import annotations

from torch import Tensor


def gsplat_available() -> bool:
    """True when gsplat imports (its CUDA extension is only built/loaded on first use)."""
    try:
        import gsplat  # noqa: F401
    except Exception:  # pragma: no cover - depends on the machine
        return False
    return True


def rasterization_gsplat(
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
    channel_chunk: int = 32,
) -> tuple[Tensor, Tensor, dict]:
    """Forward everything to ``gsplat.rasterization`` (arguments validated by the caller)."""
    from gsplat import rasterization

    render, alphas, meta = rasterization(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmats,
        Ks,
        width,
        height,
        near_plane=near_plane,
        far_plane=far_plane,
        radius_clip=radius_clip,
        eps2d=eps2d,
        sh_degree=sh_degree,
        packed=False,
        tile_size=tile_size,
        backgrounds=backgrounds,
        render_mode=render_mode,
        sparse_grad=False,
        absgrad=absgrad,
        rasterize_mode=rasterize_mode,
        channel_chunk=channel_chunk,
    )
    meta["backend"] = "gsplat"
    return render, alphas, meta
