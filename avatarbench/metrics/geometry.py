"""Geometry metrics: a predicted point set (Gaussian centres, mesh vertices) against a GT mesh.

Per frame, :func:`evaluate_geometry` reports

- ``p2m_mean`` / ``p2m_median`` / ``p2m_p95``: exact Euclidean distance from every predicted
  point to the GT *surface* (point-to-triangle, brute force, chunked), mean / median / 95th
  percentile;
- ``gt_to_pred_mean``: mean distance from points on the GT surface (``n_gt_samples`` samples by
  area from a seeded generator, or the GT vertices when ``gt_samples="vertices"``) to the nearest
  predicted point;
- ``chamfer``: the symmetric Chamfer distance ``(p2m_mean + gt_to_pred_mean) / 2`` (mean of the
  two directions, unsquared L2 distances);

all in metres (``unit_to_metres`` converts scene units) with ``*_mm`` copies in millimetres.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from avatarbench.errors import DataError
from avatarbench.geometry.knn import knn
from avatarbench.geometry.mesh import point_mesh_distance, sample_surface

__all__ = ["point_to_mesh_distance", "chamfer_points_mesh", "evaluate_geometry", "geometry_metrics",
           "summarize_geometry"]


def _as_tensor(x, name: str, dtype=torch.float64) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2 or t.shape[1] != 3:
        raise DataError(f"evaluate_geometry({name})", f"shape {tuple(t.shape)}",
                        "(N, 3)" if name != "gt_faces" else "(F, 3)")
    return t.to(dtype) if name != "gt_faces" else t.long()


def point_to_mesh_distance(points: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor,
                           chunk_pairs: int = 2 ** 21) -> torch.Tensor:
    """Exact distance from each point to the mesh surface.

    Args:
        points: (N, 3); verts: (V, 3); faces: (F, 3).

    Returns:
        (N,) distances (same units as the inputs).
    """
    d, _, _ = point_mesh_distance(points, verts, faces, chunk_pairs=chunk_pairs)
    return d


def chamfer_points_mesh(points: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor, *,
                        gt_samples: int | str = 100_000, seed: int = 0, chunk_pairs: int = 2 ** 21,
                        knn_chunk: int = 4096) -> dict[str, torch.Tensor]:
    """Both directions of the point-set-to-mesh Chamfer distance (unsquared, scene units).

    Args:
        points: (N, 3) predicted points.
        verts, faces: GT mesh (V, 3), (F, 3).
        gt_samples: number of area-uniform samples on the GT surface (seeded by ``seed``), or
            ``"vertices"`` to use the GT vertices.

    Returns:
        ``{"pred_to_gt": (N,), "gt_to_pred": (S,)}`` per-point distances.
    """
    pred_to_gt = point_to_mesh_distance(points, verts, faces, chunk_pairs)
    if gt_samples == "vertices":
        gt_pts = verts
    elif isinstance(gt_samples, int) and gt_samples > 0:
        g = torch.Generator().manual_seed(int(seed))
        gt_pts = sample_surface(verts, faces, gt_samples, generator=g).points
    else:
        raise DataError("evaluate_geometry(gt_samples)", f"{gt_samples!r}", "a positive int or 'vertices'")
    gt_to_pred, _ = knn(gt_pts, points, 1, chunk=knn_chunk)
    return {"pred_to_gt": pred_to_gt, "gt_to_pred": gt_to_pred[:, 0]}


def evaluate_geometry(points, gt_verts, gt_faces, *, gt_samples: int | str = 100_000, seed: int = 0,
                      unit_to_metres: float = 1.0, device: str | torch.device = "cpu",
                      chunk_pairs: int = 2 ** 21) -> dict[str, float]:
    """Geometry metrics for one frame (see module docstring).

    Args:
        points: (N, 3) predicted points (numpy or torch).
        gt_verts: (V, 3) GT mesh vertices, same frame and coordinate system.
        gt_faces: (F, 3) GT mesh faces.
        gt_samples: GT surface samples for the GT->pred direction, or ``"vertices"``.
        seed: seed of the surface sampler (results are reproducible).
        unit_to_metres: scene units -> metres (1.0 for FLAME/SMPL-X in metres).
        device: where to compute (float64 on CPU by default).

    Returns:
        ``p2m_mean, p2m_median, p2m_p95, gt_to_pred_mean, chamfer`` (metres), the same with
        ``_mm`` (millimetres), ``n_points`` and ``n_gt_samples``.
    """
    p = _as_tensor(points, "points").to(device)
    v = _as_tensor(gt_verts, "gt_verts").to(device)
    f = _as_tensor(gt_faces, "gt_faces").to(device)
    if p.shape[0] == 0:
        raise DataError("evaluate_geometry(points)", "no points", "at least one point")
    if not torch.isfinite(p).all() or not torch.isfinite(v).all():
        raise DataError("evaluate_geometry(points)", "NaN or Inf coordinates", "finite values")
    d = chamfer_points_mesh(p, v, f, gt_samples=gt_samples, seed=seed, chunk_pairs=chunk_pairs)
    s = float(unit_to_metres)
    p2g, g2p = d["pred_to_gt"] * s, d["gt_to_pred"] * s
    out = {
        "p2m_mean": float(p2g.mean()),
        "p2m_median": float(p2g.median()),
        "p2m_p95": float(torch.quantile(p2g, 0.95)),
        "gt_to_pred_mean": float(g2p.mean()),
    }
    out["chamfer"] = 0.5 * (out["p2m_mean"] + out["gt_to_pred_mean"])
    for k in list(out):
        out[f"{k}_mm"] = out[k] * 1000.0
    out["n_points"] = int(p.shape[0])
    out["n_gt_samples"] = int(g2p.shape[0])
    return out


geometry_metrics = evaluate_geometry  # name used by avatarbench.engine.evaluate


def summarize_geometry(per_frame: list[Mapping[str, float]]) -> dict[str, float]:
    """Mean over frames of every metric (counts are summed)."""
    if not per_frame:
        return {}
    out: dict[str, float] = {}
    for k in per_frame[0]:
        vals = [r[k] for r in per_frame]
        out[k] = int(sum(vals)) if k.startswith("n_") else float(np.mean(vals))
    return out
