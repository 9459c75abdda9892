"""Stage-1 geometry network: SDF + tet-vertex offset + 128-d feature on PE(xyz).

GHA's ``geo_mlp [27, 256 x 5, 132]`` with the skip at layer 3 and a final Tanh. Output channels:
``[0]`` SDF, ``[1:4]`` tet-vertex offset (tanh-ed; the mesh head applies a second tanh and scales
it to half a grid cell), ``[4:]`` the per-vertex feature (in (-1, 1); stage 2 stores its atanh).
Before training the SDF is fitted to a sphere (``pretrain_sphere``).
"""

from __future__ import annotations

import torch
from torch import nn

from .mlps import SkipMLP, encoded_dim, positional_encoding


class GeometryNet(nn.Module):
    """PE(xyz) -> (sdf, offset, feature).

    Args:
        hidden: hidden widths (GHA: five 256s).
        feature_dim: feature width (GHA: 128).
        n_freqs: positional-encoding frequencies (GHA: 4 -> 27 input channels).
    """

    def __init__(self, hidden: list[int], feature_dim: int = 128, n_freqs: int = 4):
        super().__init__()
        self.n_freqs = int(n_freqs)
        self.feature_dim = int(feature_dim)
        self.mlp = SkipMLP([encoded_dim(3, self.n_freqs), *hidden, 4 + self.feature_dim], last_op="tanh")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (N, 3) -> sdf (N,), offset (N, 3) in (-1, 1), feature (N, feature_dim) in (-1, 1)."""
        out = self.mlp(positional_encoding(x, self.n_freqs))
        return out[..., 0], out[..., 1:4], out[..., 4:]

    def sdf(self, x: torch.Tensor, chunk: int = 262144) -> torch.Tensor:
        """(N, 3) -> (N,) SDF, evaluated in chunks (use under ``torch.no_grad`` for big grids)."""
        if x.shape[0] <= chunk:
            return self.forward(x)[0]
        return torch.cat([self.forward(x[i:i + chunk])[0] for i in range(0, x.shape[0], chunk)])

    def pretrain_sphere(self, steps: int, radius: float = 1.0, sample_bound: float = 1.5, batch: int = 8192,
                        lr: float = 1e-3, generator: torch.Generator | None = None) -> float:
        """Fit the SDF to ``|x| - radius`` on uniform samples in ``[-sample_bound, sample_bound]^3``
        (GHA: 300 Adam steps, lr 1e-3, 8 x 1024 samples, radius 1, bound 1.5). Returns the last loss."""
        device = next(self.parameters()).device
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        with torch.enable_grad():
            return self._fit_sphere(opt, steps, radius, sample_bound, batch, generator, device)

    def _fit_sphere(self, opt, steps, radius, sample_bound, batch, generator, device) -> float:
        loss = torch.zeros(())
        for _ in range(int(steps)):
            x = (torch.rand((batch, 3), generator=generator, device="cpu") * 2 - 1).to(device) * sample_bound
            target = x.norm(dim=-1) - radius
            loss = torch.mean((self.forward(x)[0] - target) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return float(loss.detach())
