"""Stage-2 point initialisation helpers: mouth-interior points and midpoint subdivision."""

from __future__ import annotations

import torch


def mouth_box_points(mouth: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform points in a box behind the lips (GHA ``num_add_mouth_points``).

    The box is centred at the mean of the mouth points, with its z centre moved to their rear-most
    z (the face looks along +z), and half-extent ``0.8 max|p - centre|`` per axis.

    Args:
        mouth: (K, 3) canonical mouth points. n: number of points.
    Returns:
        (n, 3) on ``mouth``'s device.
    """
    center = mouth.mean(0).clone()
    center[2] = mouth[:, 2].min()
    max_dist = (mouth - center).abs().max(0).values
    u = torch.rand((int(n), 3), generator=generator).to(mouth)
    return (u - 0.5) * 1.6 * max_dist + center


def subdivide_midpoint(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One 1-to-4 midpoint subdivision. verts (V, 3), faces (F, 3) -> (V + E, 3), (4F, 3).

    Shared edges get one midpoint (vertices are deduplicated by edge)."""
    V = verts.shape[0]
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    e_sorted, _ = torch.sort(e, dim=1)
    uniq, inv = torch.unique(e_sorted[:, 0] * V + e_sorted[:, 1], return_inverse=True)
    a, b = uniq // V, uniq % V
    mids = 0.5 * (verts[a] + verts[b])
    F = faces.shape[0]
    m01, m12, m20 = (inv[:F] + V), (inv[F:2 * F] + V), (inv[2 * F:] + V)
    v0, v1, v2 = faces.unbind(1)
    new_faces = torch.cat([torch.stack([v0, m01, m20], 1), torch.stack([m01, v1, m12], 1),
                           torch.stack([m20, m12, v2], 1), torch.stack([m01, m12, m20], 1)], 0)
    return torch.cat([verts, mids], 0), new_faces
