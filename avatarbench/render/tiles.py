"""Tile binning of projected Gaussians (the torch counterpart of gsplat's ``isect_tiles``).

Every visible (camera, Gaussian) pair is listed once per screen tile its radius box touches,
with gsplat's tile range ``[floor((m - r) / ts), ceil((m + r) / ts))`` clamped to the grid.
The pairs are sorted by tile, then by depth (ties by Gaussian index, as gsplat's stable radix
sort of ``image | tile | depth`` keys). Instead of gsplat's per-tile offsets in tile order, the
non-empty tiles are put in *slots* ordered by decreasing list length, so that consecutive slots
can be batched into dense ``(tiles, list length, pixels)`` blocks with little padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TileBins:
    """Per-tile, depth-sorted Gaussian lists.

    Attributes:
        tile_size: tile edge in pixels.
        tiles_x, tiles_y: tile grid size per image.
        n_images: number of images (cameras).
        flat_ids: (M,) long index into the flattened (n_images * N) Gaussians, sorted by
            slot then depth.
        pos_in_slot: (M,) long position of each entry inside its slot's list.
        slot_of: (M,) long slot of each entry.
        slot_tiles: (S,) long global tile id ``image * tiles_y * tiles_x + ty * tiles_x + tx``
            of each slot (non-empty tiles, longest list first).
        slot_offsets: (S + 1,) long start of each slot in ``flat_ids``.
        slot_counts: python list of the S list lengths (non-increasing).
    """

    tile_size: int
    tiles_x: int
    tiles_y: int
    n_images: int
    flat_ids: Tensor
    pos_in_slot: Tensor
    slot_of: Tensor
    slot_tiles: Tensor
    slot_offsets: Tensor
    slot_counts: list[int]

    @property
    def n_tiles(self) -> int:
        """Tiles per image."""
        return self.tiles_x * self.tiles_y

    @property
    def n_isects(self) -> int:
        return int(self.flat_ids.shape[0])

    def chunks(self, max_elements: int, min_fill: float = 0.6) -> list[tuple[int, int, int]]:
        """Group consecutive slots into blocks ``(s0, s1, L)`` padded to length ``L``.

        A block holds at most ``max_elements`` (tiles x L x pixels) entries (but at least one
        tile) and ends early when a list is shorter than ``min_fill * L``.
        """
        P = self.tile_size * self.tile_size
        counts = self.slot_counts
        out: list[tuple[int, int, int]] = []
        s0, S = 0, len(counts)
        while s0 < S:
            L = counts[s0]
            cap = max(1, max_elements // max(1, L * P))
            s1 = s0 + 1
            limit = min(S, s0 + cap)
            thresh = min_fill * L
            while s1 < limit and counts[s1] >= thresh:
                s1 += 1
            out.append((s0, s1, L))
            s0 = s1
        return out


@torch.no_grad()
def bin_gaussians(
    means2d: Tensor, radii: Tensor, depths: Tensor, tile_size: int, width: int, height: int
) -> TileBins:
    """List the tiles each visible Gaussian touches, sorted by tile then depth.

    Args:
        means2d: (I, N, 2) pixel positions.
        radii: (I, N, 2) int pixel half-extents; a Gaussian is visible when both are > 0.
        depths: (I, N) sort keys (camera z).
        tile_size: tile edge in pixels.
        width, height: image size.

    Returns:
        :class:`TileBins`.
    """
    I, N = depths.shape
    device = means2d.device
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    n_tiles = tiles_x * tiles_y

    visible = (radii > 0).all(dim=-1).reshape(-1)
    ids = torch.nonzero(visible).squeeze(1)  # flat (I*N) indices, ascending
    m2d = means2d.detach().reshape(-1, 2)[ids]
    rad = radii.reshape(-1, 2)[ids].to(m2d.dtype)
    ts = float(tile_size)
    x0 = torch.floor((m2d[:, 0] - rad[:, 0]) / ts).clamp(0, tiles_x).long()
    x1 = torch.ceil((m2d[:, 0] + rad[:, 0]) / ts).clamp(0, tiles_x).long()
    y0 = torch.floor((m2d[:, 1] - rad[:, 1]) / ts).clamp(0, tiles_y).long()
    y1 = torch.ceil((m2d[:, 1] + rad[:, 1]) / ts).clamp(0, tiles_y).long()
    nx = x1 - x0
    counts = nx * (y1 - y0)

    # depth rank over the visible list (stable: ties keep ascending flat index)
    order = torch.argsort(depths.detach().reshape(-1)[ids], stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=device)

    owner = torch.repeat_interleave(torch.arange(ids.numel(), device=device), counts)
    start = torch.cumsum(counts, 0) - counts
    k = torch.arange(owner.numel(), device=device) - start[owner]
    nxo = nx[owner]
    tx = x0[owner] + k % nxo
    ty = y0[owner] + torch.div(k, nxo, rounding_mode="floor")
    image = torch.div(ids[owner], N, rounding_mode="floor")
    tile = image * n_tiles + ty * tiles_x + tx

    tile_counts = torch.bincount(tile, minlength=I * n_tiles)
    nonempty = torch.nonzero(tile_counts).squeeze(1)
    by_len = torch.argsort(tile_counts[nonempty], descending=True, stable=True)
    slot_tiles = nonempty[by_len]
    slot_counts_t = tile_counts[slot_tiles]
    slot_of_tile = torch.full((I * n_tiles,), -1, dtype=torch.long, device=device)
    slot_of_tile[slot_tiles] = torch.arange(slot_tiles.numel(), device=device)

    key = slot_of_tile[tile] * max(1, ids.numel()) + rank[owner]
    perm = torch.argsort(key)
    slot_of = slot_of_tile[tile][perm]
    flat_ids = ids[owner[perm]]
    slot_offsets = torch.zeros(slot_tiles.numel() + 1, dtype=torch.long, device=device)
    slot_offsets[1:] = torch.cumsum(slot_counts_t, 0)
    pos_in_slot = torch.arange(flat_ids.numel(), device=device) - slot_offsets[slot_of]
    return TileBins(
        tile_size=tile_size,
        tiles_x=tiles_x,
        tiles_y=tiles_y,
        n_images=I,
        flat_ids=flat_ids,
        pos_in_slot=pos_in_slot,
        slot_of=slot_of,
        slot_tiles=slot_tiles,
        slot_offsets=slot_offsets,
        slot_counts=slot_counts_t.tolist(),
    )
