"""Expression/pose blending weights from the distance to the guide points.

Paper definition (HHAvatar v3 = GHA): with ``d`` the distance from a point to the nearest guide
point, measured in head lengths,

    lambda_exp(d) = 1                       if d < t1
                  = (t2 - d) / (t2 - t1)    if t1 <= d <= t2
                  = 0                       if d > t2,      lambda_pose = 1 - lambda_exp,

with t1 = 0.15 and t2 = 0.25. The official code applies the same ramp to ``pytorch3d.knn_points``
output, i.e. to *squared* distances, with near 0.1 / far 0.25 in BFM decimetre units (canonical
units here, since the canonical unit is GHA's 0.1 m). ``mode="squared"`` (the default) is that
form: ``d`` is the squared distance and the thresholds apply to d^2. ``mode="euclidean"`` is the
paper's form (distances in head lengths).
"""

from __future__ import annotations

import torch


def nearest_distance(points: torch.Tensor, guides: torch.Tensor) -> torch.Tensor:
    """(N, 3), (G, 3) -> (N,) Euclidean distance to the nearest guide point (differentiable in
    both, like ``pytorch3d.ops.knn_points`` with K=1)."""
    if points.shape[0] == 0:
        return points.new_zeros((0,))
    from avatarbench.geometry.knn import knn

    return knn(points, guides, 1, squared=False)[0][:, 0]


def ramp_weights(d: torch.Tensor, t1: float, t2: float) -> torch.Tensor:
    """(N,) distances -> (N,) lambda_exp = clamp((t2 - d) / (t2 - t1), 0, 1)."""
    if not t2 > t1:
        raise ValueError(f"blend thresholds need t2 > t1, got t1={t1}, t2={t2}")
    return torch.clamp((t2 - d) / (t2 - t1), 0.0, 1.0)


def blend_weights(points: torch.Tensor, guides: torch.Tensor, t1: float = 0.1, t2: float = 0.25,
                  head_length: float = 1.0, mode: str = "squared") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blending weights of the expression and pose branches.

    Args:
        points: (N, 3) canonical positions.
        guides: (G, 3) canonical guide points (GHA: the learnt neutral landmarks).
        t1, t2: thresholds on the squared distance in canonical units (``mode="squared"``, the
            official code's form: 0.1, 0.25) or in head lengths (``mode="euclidean"``, paper: 0.15, 0.25).
        head_length: canonical length of one head length (euclidean mode only).
        mode: ``"squared"`` (official code) | ``"euclidean"`` (paper).
    Returns:
        exp_w (N, 1), pose_w (N, 1), d (N,) the distance the ramp was applied to.
    """
    dist = nearest_distance(points, guides)
    if mode == "euclidean":
        d = dist / head_length
    elif mode == "squared":
        d = dist ** 2
    else:
        raise ValueError(f"blend mode must be 'euclidean' or 'squared', got {mode!r}")
    w = ramp_weights(d, t1, t2)[:, None]
    return w, 1.0 - w, d
