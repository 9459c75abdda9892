# Copyright: the taichi-splatting authors (https://github.com/uc-vision/taichi-splatting), version 0.13.
# Licensed under the Apache License, Version 2.0 (see LICENSE and NOTICE in this folder).
#
# BENCHMARK-ONLY ADAPTATION of taichi_splatting/rasterizer/forward.py and backward.py (0.13) so
# that they run on Taichi's x64 CPU backend, which has no block shared arrays, block syncs or warp
# intrinsics. Modifications (made by the avatarbench authors, December 2026):
#   - forward: points/features are read from global memory (`points[overlap_to_point[i]]`)
#     instead of being staged through `ti.simt.block.SharedArray` groups; the per-pixel maths
#     (conic_pdf, 1/255 skip, alpha clamp, saturation stop, last_point_idx) is unchanged.
#   - backward: each thread walks its own pixels' list back to front from its own last valid
#     point (instead of the block-wide maximum from `block_reduce_i32`, a no-op difference: the
#     extra points have `point_index > last_point_pixel`), reads points from global memory, and
#     adds its per-point gradient with `ti.atomic_add` directly (instead of warp sums into
#     shared memory). The per-pixel gradient maths is unchanged. split heuristics removed.
#   - kernels take the RasterConfig fields they use; no CUDA helper library is imported.
# It is NOT part of the avatarbench package; `avatarbench bench render` loads it from here.
"""taichi-splatting 0.13's two rasterizer kernels, adapted to Taichi CPU (benchmark peer only)."""


import importlib.util
import sys
import types
from functools import cache
from pathlib import Path


def _import_without_cuda_lib():
    """Import taichi_splatting's taichi_lib and tiling without running the package __init__
    (which builds CUDA helpers via the tile mapper)."""
    if "taichi_splatting" in sys.modules:  # already set up by an earlier call
        from taichi_splatting.rasterizer import tiling
        from taichi_splatting.taichi_lib import get_library

        return tiling, get_library
    spec = importlib.util.find_spec("taichi_splatting")
    if spec is None:
        raise ImportError("taichi-splatting is not installed (pip install taichi==1.7.4 beartype tqdm "
                          "tensordict; pip install taichi-splatting==0.13 --no-deps)")
    root = Path(spec.submodule_search_locations[0])
    for name, path in (("taichi_splatting", root), ("taichi_splatting.rasterizer", root / "rasterizer")):
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.__path__ = [str(path)]
            sys.modules[name] = mod
    from taichi_splatting.rasterizer import tiling
    from taichi_splatting.taichi_lib import get_library

    return tiling, get_library


@cache
def forward_kernel(tile_size: int, clamp_max_alpha: float, alpha_threshold: float, saturate_threshold: float,
                   feature_size: int):
    import taichi as ti

    tiling, get_library = _import_without_cuda_lib()
    dtype = ti.f32
    lib = get_library(dtype)
    Gaussian2D = lib.Gaussian2D
    feature_vec = ti.types.vector(feature_size, dtype=dtype)
    tile_area = tile_size * tile_size

    @ti.kernel
    def _forward_kernel(
        points: ti.types.ndarray(Gaussian2D.vec, ndim=1),
        point_features: ti.types.ndarray(feature_vec, ndim=1),
        tile_overlap_ranges: ti.types.ndarray(ti.math.ivec2, ndim=1),
        overlap_to_point: ti.types.ndarray(ti.i32, ndim=1),
        image_feature: ti.types.ndarray(feature_vec, ndim=2),
        image_alpha: ti.types.ndarray(dtype, ndim=2),
        image_last_valid: ti.types.ndarray(ti.i32, ndim=2),
    ):
        camera_height, camera_width = image_feature.shape
        tiles_wide = (camera_width + tile_size - 1) // tile_size
        tiles_high = (camera_height + tile_size - 1) // tile_size
        ti.loop_config(block_dim=(tile_area))
        for tile_id, tile_idx in ti.ndrange(tiles_wide * tiles_high, tile_area):
            pixel = tiling.tile_transform(tile_id, tile_idx, tile_size, (1, 1), tiles_wide)
            pixelf = ti.cast(pixel, dtype) + 0.5
            T_i = dtype(1.0)
            accum_feature = feature_vec(0.)
            start_offset, end_offset = tile_overlap_ranges[tile_id]
            pixel_saturated = False
            last_point_idx = start_offset
            for idx in range(start_offset, end_offset):
                if pixel_saturated:
                    break
                point_idx = overlap_to_point[idx]
                uv, uv_conic, point_alpha = Gaussian2D.unpack(points[point_idx])
                gaussian_alpha = lib.conic_pdf(pixelf, uv, uv_conic)
                alpha = point_alpha * gaussian_alpha
                if alpha < ti.static(alpha_threshold):
                    continue
                alpha = ti.min(alpha, ti.static(clamp_max_alpha))
                next_T_i = T_i * (1 - alpha)
                if next_T_i < ti.static(1 - saturate_threshold):
                    pixel_saturated = True
                    continue
                last_point_idx = idx + 1
                accum_feature += point_features[point_idx] * alpha * T_i
                T_i = next_T_i
            if pixel.x < camera_width and pixel.y < camera_height:
                image_feature[pixel.y, pixel.x] = accum_feature
                image_alpha[pixel.y, pixel.x] = 1. - T_i
                image_last_valid[pixel.y, pixel.x] = last_point_idx

    return _forward_kernel


@cache
def backward_kernel(tile_size: int, pixel_stride: tuple, clamp_max_alpha: float, alpha_threshold: float,
                    feature_size: int):
    import taichi as ti
    from taichi.math import ivec2

    tiling, get_library = _import_without_cuda_lib()
    dtype = ti.f32
    lib = get_library(dtype)
    Gaussian2D, vec2 = lib.Gaussian2D, lib.vec2
    feature_vec = ti.types.vector(feature_size, dtype=dtype)
    tile_area = tile_size * tile_size
    thread_pixels = pixel_stride[0] * pixel_stride[1]
    block_area = tile_area // thread_pixels
    pixel_tile = tuple([(i, (i % pixel_stride[0], i // pixel_stride[0])) for i in range(thread_pixels)])
    thread_features = ti.types.matrix(thread_pixels, feature_size, dtype=dtype)
    thread_vector = ti.types.vector(thread_pixels, dtype=dtype)
    thread_index = ti.types.vector(thread_pixels, dtype=ti.i32)

    @ti.kernel
    def _backward_kernel(
        points: ti.types.ndarray(Gaussian2D.vec, ndim=1),
        point_features: ti.types.ndarray(feature_vec, ndim=1),
        tile_overlap_ranges: ti.types.ndarray(ti.math.ivec2, ndim=1),
        overlap_to_point: ti.types.ndarray(ti.i32, ndim=1),
        image_alpha: ti.types.ndarray(dtype, ndim=2),
        image_last_valid: ti.types.ndarray(ti.i32, ndim=2),
        grad_image_feature: ti.types.ndarray(feature_vec, ndim=2),
        grad_points: ti.types.ndarray(Gaussian2D.vec, ndim=1),
        grad_features: ti.types.ndarray(feature_vec, ndim=1),
    ):
        camera_height, camera_width = image_alpha.shape
        tiles_wide = (camera_width + tile_size - 1) // tile_size
        tiles_high = (camera_height + tile_size - 1) // tile_size
        ti.loop_config(block_dim=(block_area))
        for tile_id, tile_idx in ti.ndrange(tiles_wide * tiles_high, block_area):
            pixel_base = tiling.tile_transform(tile_id, tile_idx, tile_size, pixel_stride, tiles_wide)
            last_point_pixel = thread_index(0)
            T_i = thread_vector(1.0)
            grad_pixel_feature = thread_features(0.0)
            for i, offset in ti.static(pixel_tile):
                pixel = ivec2(offset) + pixel_base
                if pixel.y < camera_height and pixel.x < camera_width:
                    last_point_pixel[i] = image_last_valid[pixel.y, pixel.x]
                    T_i[i] = 1.0 - image_alpha[pixel.y, pixel.x]
                    grad_pixel_feature[i, :] = grad_image_feature[pixel.y, pixel.x]
            end_offset = last_point_pixel.max()
            w_i = thread_features(0.0)
            start_offset, _ = tile_overlap_ranges[tile_id]
            for k in range(end_offset - start_offset):
                point_index = end_offset - k
                point_idx = overlap_to_point[point_index - 1]
                uv, uv_conic, point_alpha = Gaussian2D.unpack(points[point_idx])
                feature = point_features[point_idx]
                grad_point = Gaussian2D.vec(0.0)
                grad_feature = feature_vec(0.0)
                has_grad = False
                for i, offset in ti.static(pixel_tile):
                    pixel = ti.cast(pixel_base, dtype) + vec2(offset) + 0.5
                    gaussian_alpha, dp_dmean, dp_dconic = lib.conic_pdf_with_grad(pixel, uv, uv_conic)
                    alpha = point_alpha * gaussian_alpha
                    pixel_grad = (alpha >= ti.static(alpha_threshold)) and (point_index <= last_point_pixel[i])
                    if pixel_grad:
                        has_grad = True
                        alpha = ti.min(alpha, ti.static(clamp_max_alpha))
                        T_i[i] /= (1. - alpha)
                        weight = alpha * T_i[i]
                        grad_feature += weight * grad_pixel_feature[i, :]
                        feature_diff = (feature * T_i[i] - w_i[i, :] / (1. - alpha))
                        alpha_grad_from_feature = feature_diff * grad_pixel_feature[i, :]
                        w_i[i, :] += feature * weight
                        alpha_grad: dtype = alpha_grad_from_feature.sum()
                        grad_point += alpha_grad * Gaussian2D.to_vec(
                            point_alpha * dp_dmean, point_alpha * dp_dconic, gaussian_alpha)
                if has_grad:
                    ti.atomic_add(grad_points[point_idx], grad_point)
                    ti.atomic_add(grad_features[point_idx], grad_feature)

    return _backward_kernel
