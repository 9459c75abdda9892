"""Projection and tile binning against hand-computed values (gsplat 1.5.3 rules)."""

from __future__ import annotations

import math

import torch

from avatarbench.render.projection import project_gaussians, quat_to_rotmat
from avatarbench.render.tiles import bin_gaussians

F64 = torch.float64


def _cam(fx=50.0, fy=60.0, cx=30.0, cy=20.0):
    return torch.eye(4, dtype=F64)[None], torch.tensor([[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]], dtype=F64)


def _one(mean, scale, opacity=0.5, quat=(1.0, 0.0, 0.0, 0.0), width=64, height=48, **kw):
    vm, K = _cam()
    return project_gaussians(torch.tensor([mean], dtype=F64), torch.tensor([quat], dtype=F64),
                             torch.tensor([scale], dtype=F64), torch.tensor([opacity], dtype=F64), vm, K,
                             width, height, **kw)


def test_on_axis_isotropic_hand_values():
    s, z, o = 0.1, 2.0, 0.5
    p = _one([0.0, 0.0, z], [s, s, s], o)
    va = (50.0 * s / z) ** 2 + 0.3
    vc = (60.0 * s / z) ** 2 + 0.3
    assert torch.allclose(p.means2d[0, 0], torch.tensor([30.0, 20.0], dtype=F64))
    assert torch.allclose(p.conics[0, 0], torch.tensor([1 / va, 0.0, 1 / vc], dtype=F64))
    assert float(p.depths[0, 0]) == z
    extend = min(3.33, math.sqrt(2 * math.log(o * 255)))
    assert p.radii[0, 0].tolist() == [math.ceil(extend * math.sqrt(va)), math.ceil(extend * math.sqrt(vc))]
    assert p.radii.dtype == torch.int32


def test_extent_is_capped_at_3_33_sigma_for_opaque_gaussians():
    p = _one([0.0, 0.0, 2.0], [0.1, 0.1, 0.1], opacity=0.99)
    va = (50.0 * 0.1 / 2.0) ** 2 + 0.3
    assert int(p.radii[0, 0, 0]) == math.ceil(3.33 * math.sqrt(va))


def test_jacobian_uses_clamped_x_over_z():
    # a Gaussian stretched along z, centred far right of the image: x/z = 1.5 > limit
    s = [0.05, 0.05, 1.0]
    x, z = 3.0, 2.0
    p = _one([x, 0.0, z], s, opacity=0.9, width=64)
    fx = 50.0
    lim = (64 - 30.0) / fx + 0.3 * (0.5 * 64 / fx)
    assert x / z > lim
    tx = z * lim
    J = torch.tensor([[fx / z, 0, -fx * tx / z**2]], dtype=F64)
    cov_xx = float((J @ torch.diag(torch.tensor(s, dtype=F64) ** 2) @ J.T)[0, 0]) + 0.3
    assert int(p.radii[0, 0, 0]) > 0  # still visible: its tail reaches the image
    a, b, c = p.conics[0, 0].tolist()
    cov = torch.linalg.inv(torch.tensor([[a, b], [b, c]], dtype=F64))
    assert math.isclose(float(cov[0, 0]), cov_xx, rel_tol=1e-12)
    assert math.isclose(float(p.means2d[0, 0, 0]), fx * x / z + 30.0, rel_tol=1e-12)  # the mean is not clamped


def test_culling_rules():
    assert int(_one([0.0, 0.0, 0.005], [0.1] * 3).radii.abs().sum()) == 0  # nearer than near_plane
    assert int(_one([0.0, 0.0, -1.0], [0.1] * 3).radii.abs().sum()) == 0  # behind
    assert int(_one([0.0, 0.0, 2.0], [0.1] * 3, far_plane=1.5).radii.abs().sum()) == 0
    assert int(_one([0.0, 0.0, 2.0], [0.1] * 3, opacity=1.0 / 256).radii.abs().sum()) == 0  # < 1/255
    assert int(_one([0.0, 0.0, 2.0], [0.1] * 3, opacity=1.0 / 254).radii.abs().sum()) > 0
    assert int(_one([0.0, 0.0, 2.0], [0.001] * 3, radius_clip=3.0).radii.abs().sum()) == 0
    assert int(_one([0.0, 0.0, 2.0], [0.001] * 3, radius_clip=1.0).radii.abs().sum()) > 0
    assert int(_one([20.0, 0.0, 2.0], [0.01] * 3).radii.abs().sum()) == 0  # box right of the image
    p = _one([0.0, 0.0, 2.0], [0.1] * 3)
    assert float(p.means2d.abs().sum()) > 0


def test_box_touching_the_border_is_culled_exactly():
    # mean2d.x + radius_x == 0 is culled (gsplat: <= 0); one pixel more is kept
    s, z = 0.02, 2.0
    va = (50.0 * s / z) ** 2 + 0.3
    r = math.ceil(min(3.33, math.sqrt(2 * math.log(0.5 * 255))) * math.sqrt(va))
    x_edge = (-r - 30.0) * z / 50.0  # mean2d.x = -r
    assert int(_one([x_edge, 0.0, z], [s] * 3).radii.abs().sum()) == 0
    x_in = (-r + 0.5 - 30.0) * z / 50.0
    assert int(_one([x_in, 0.0, z], [s] * 3).radii.abs().sum()) > 0


def test_antialiased_compensation_and_unnormalised_quaternions():
    s, z = 0.02, 2.0
    p = _one([0.0, 0.0, z], [s] * 3, antialiased=True)
    v = (50.0 * s / z) ** 2
    w = (60.0 * s / z) ** 2
    assert math.isclose(float(p.compensations[0, 0]), math.sqrt(v * w / ((v + 0.3) * (w + 0.3))), rel_tol=1e-12)
    q = torch.tensor([0.3, -0.5, 0.2, 0.7], dtype=F64)
    assert torch.allclose(quat_to_rotmat(q), quat_to_rotmat(3.7 * q))
    R = quat_to_rotmat(q)
    assert torch.allclose(R @ R.T, torch.eye(3, dtype=F64)) and math.isclose(float(torch.linalg.det(R)), 1.0)


def test_tile_binning_ranges_and_depth_order():
    means2d = torch.tensor([[[20.5, 9.0], [20.0, 9.0], [3.0, 3.0], [20.0, 9.0]]], dtype=F64)
    radii = torch.tensor([[[5, 3], [2, 2], [1, 1], [2, 2]]], dtype=torch.int32)
    depths = torch.tensor([[3.0, 1.0, 2.0, 1.0]], dtype=F64)  # ties: 1 before 3 (index order)
    bins = bin_gaussians(means2d, radii, depths, tile_size=8, width=40, height=16)
    assert (bins.tiles_x, bins.tiles_y) == (5, 2)
    lists = {}
    for s, tile in enumerate(bins.slot_tiles.tolist()):
        a, b = int(bins.slot_offsets[s]), int(bins.slot_offsets[s + 1])
        lists[tile] = bins.flat_ids[a:b].tolist()
    # Gaussian 0: x in [floor(15.5/8), ceil(25.5/8)) = [1, 4), y in [floor(6/8), ceil(12/8)) = [0, 2)
    tiles0 = {t for t, ids in lists.items() if 0 in ids}
    assert tiles0 == {ty * 5 + tx for ty in range(2) for tx in range(1, 4)}
    # Gaussians 1 and 3: x in [2, 3), y in [0, 2); Gaussian 2: tile (0, 0)
    assert lists[0] == [2]
    assert lists[2] == [1, 3, 0] and lists[7] == [1, 3, 0]  # sorted by depth, ties by index
    assert bins.slot_counts == sorted(bins.slot_counts, reverse=True)
