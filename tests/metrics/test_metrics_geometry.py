"""Point-to-mesh and Chamfer metrics (units, symmetry, self-distance)."""

from __future__ import annotations

import math

import pytest
import torch

from avatarbench.errors import DataError
from avatarbench.geometry import sample_surface
from avatarbench.metrics.geometry import evaluate_geometry, summarize_geometry

torch.set_num_threads(1)


def octahedron(scale: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    v = scale * torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
                             dtype=torch.float64)
    f = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    return v, f


def test_chamfer_of_mesh_to_itself_is_zero():
    v, f = octahedron()
    r = evaluate_geometry(v, v, f, gt_samples="vertices")
    assert r["p2m_mean"] == pytest.approx(0.0, abs=1e-15) and r["chamfer"] == pytest.approx(0.0, abs=1e-15)
    # dense surface samples (other seed) as predictions: pred->GT is exactly 0, GT->pred tends to 0
    pts = sample_surface(v, f, 20000, generator=torch.Generator().manual_seed(5)).points
    r = evaluate_geometry(pts, v, f, gt_samples=2000, seed=1)
    assert r["p2m_mean"] < 1e-15
    assert r["gt_to_pred_mean"] < 2e-3 and r["chamfer"] == pytest.approx(0.5 * r["gt_to_pred_mean"])
    assert r["n_points"] == 20000 and r["n_gt_samples"] == 2000


def test_offset_points_hand_value_in_metres_and_mm():
    v, f = octahedron(scale=1.0)
    n = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64) / math.sqrt(3)
    centroid = v[f[0]].mean(0)  # face (+x, +y, +z), normal n
    pts = (centroid + 0.01 * n)[None]
    r = evaluate_geometry(pts, v, f, gt_samples="vertices")
    assert r["p2m_mean"] == pytest.approx(0.01, abs=1e-12)
    assert r["p2m_mean_mm"] == pytest.approx(10.0, abs=1e-9)
    # GT vertices -> the single predicted point
    g2p = (v - pts).norm(dim=-1).mean().item()
    assert r["gt_to_pred_mean"] == pytest.approx(g2p, abs=1e-12)
    assert r["chamfer"] == pytest.approx(0.5 * (0.01 + g2p), abs=1e-12)
    # scene units in centimetres -> metres
    r_cm = evaluate_geometry(pts * 100, v * 100, f, gt_samples="vertices", unit_to_metres=0.01)
    assert r_cm["chamfer"] == pytest.approx(r["chamfer"], rel=1e-9)


def test_seeded_sampling_is_reproducible_and_errors():
    v, f = octahedron()
    pts = 1.1 * v
    a = evaluate_geometry(pts, v, f, gt_samples=500, seed=3)
    b = evaluate_geometry(pts.numpy(), v.numpy(), f.numpy(), gt_samples=500, seed=3)
    assert a == b
    s = summarize_geometry([a, a])
    assert s["chamfer"] == pytest.approx(a["chamfer"]) and s["n_points"] == 2 * a["n_points"]
    with pytest.raises(DataError):
        evaluate_geometry(torch.zeros(0, 3), v, f)
    with pytest.raises(DataError):
        evaluate_geometry(torch.zeros(4, 2), v, f)
    with pytest.raises(DataError):
        evaluate_geometry(pts, v, f, gt_samples=0)
