"""The MLP building block and positional encoding shared by both GHA stages.

- :func:`positional_encoding`: NeRF-style, input included, ``n_freqs`` log-spaced frequencies
  ``2^0 .. 2^(n_freqs-1)`` with sin and cos and no pi factor; ``D -> D (1 + 2 n_freqs)``
  (xyz 3 -> 27 and pose 6 -> 54 for ``n_freqs = 4``, as in GHA's ``get_embedder(4)``).
- :class:`SkipMLP`: fully connected layers (GHA uses 1x1 Conv1d, which is the same map) with
  LeakyReLU (slope 0.01) between layers, the input re-concatenated before layer
  ``int(len(dims) / 2)``, and an optional last activation.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def positional_encoding(x: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """x: (..., D) -> (..., D * (1 + 2 n_freqs)), ordered ``[x, sin(x), cos(x), sin(2x), cos(2x), ...]``."""
    out = [x]
    for k in range(n_freqs):
        f = 2.0 ** k
        out += [torch.sin(x * f), torch.cos(x * f)]
    return torch.cat(out, dim=-1)


def encoded_dim(d: int, n_freqs: int) -> int:
    """Width of :func:`positional_encoding` of a ``d``-vector."""
    return d * (1 + 2 * n_freqs)


_LAST_OPS = {None: None, "none": None, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


class SkipMLP(nn.Module):
    """MLP with one input skip connection.

    Args:
        dims: ``[in, hidden..., out]`` (e.g. GHA's ``geo_mlp [27, 256, 256, 256, 256, 256, 132]``).
        last_op: ``None`` | ``"tanh"`` | ``"sigmoid"``.
    Input (..., dims[0]) -> output (..., dims[-1]).
    """

    def __init__(self, dims: list[int], last_op: str | None = None):
        super().__init__()
        if len(dims) < 2:
            raise ValueError(f"an MLP needs at least input and output dims, got {dims}")
        if last_op not in _LAST_OPS:
            raise ValueError(f"unknown last_op {last_op!r}")
        self.dims = [int(d) for d in dims]
        self.skip = len(dims) // 2
        self.last_op = last_op
        self.layers = nn.ModuleList()
        for i in range(len(dims) - 1):
            d_in = self.dims[i] + (self.dims[0] if i == self.skip else 0)
            self.layers.append(nn.Linear(d_in, self.dims[i + 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            if i == self.skip:
                y = torch.cat([y, x], dim=-1)
            y = layer(y)
            if i < n - 1:
                y = F.leaky_relu(y)
        op = _LAST_OPS[self.last_op]
        return op(y) if op is not None else y

    def extra_repr(self) -> str:
        return f"dims={self.dims}, skip={self.skip}, last_op={self.last_op}"
