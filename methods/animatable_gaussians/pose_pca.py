"""PCA pose projection: keep novel driving poses inside the training-pose subspace.

Animatable Gaussians (official ``MvRgbDatasetBase.compute_pca`` / ``transform_pca``) fits
``sklearn.decomposition.PCA(n_components=20)`` on the flattened valid pixels of the front posed
position maps of all training frames. At test time a driving map is projected, every coefficient
is clamped to ``+- sigma * sqrt(explained_variance)`` (``sigma`` = 2) and the map is rebuilt:

    c = (x - mean) V^T,   c_k <- clamp(c_k, -sigma sqrt(lambda_k), +sigma sqrt(lambda_k)),   x' = mean + c V

with ``V`` (K, D) the orthonormal principal directions and ``lambda_k = s_k^2 / (n - 1)`` the
explained variances (sklearn's convention). Our fit uses the n x n Gram matrix in float64 (cheap
for n frames << D features), which gives the same components as an SVD of the centred data.
"""

from __future__ import annotations

import torch

__all__ = ["PosePCA"]


class PosePCA:
    """A fitted PCA with clamped projection.

    Attributes:
        mean: (D,) float32; components: (K, D) orthonormal rows; variances: (K,) explained
        variances (descending); sigma: the clamp in standard deviations.
    """

    def __init__(self, mean: torch.Tensor, components: torch.Tensor, variances: torch.Tensor, sigma: float = 2.0):
        if components.dim() != 2 or mean.shape != components.shape[1:] or variances.shape != components.shape[:1]:
            raise ValueError(f"PosePCA: mean {tuple(mean.shape)}, components {tuple(components.shape)}, "
                             f"variances {tuple(variances.shape)} are inconsistent")
        self.mean = mean
        self.components = components
        self.variances = variances
        self.sigma = float(sigma)

    @property
    def num_components(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    @torch.no_grad()
    def fit(cls, X: torch.Tensor, n_components: int = 20, sigma: float = 2.0) -> "PosePCA":
        """Fit on samples X (n, D). ``n_components`` is capped at ``min(n, D)``; components with
        (numerically) zero variance are kept with variance 0 (their coefficients clamp to 0)."""
        if X.dim() != 2 or X.shape[0] < 1:
            raise ValueError(f"PosePCA.fit: X has shape {tuple(X.shape)}, expected (n >= 1, D)")
        n, D = X.shape
        Xd = X.double()
        mean = Xd.mean(0)
        Xc = Xd - mean
        K = min(int(n_components), n, D)
        gram = Xc @ Xc.T  # (n, n) = U S^2 U^T
        evals, evecs = torch.linalg.eigh(gram)
        order = torch.argsort(evals, descending=True)[:K]
        s2 = evals[order].clamp_min(0.0)
        U = evecs[:, order]
        scale = torch.where(s2 > 1e-12 * max(float(s2.max()) if s2.numel() else 0.0, 1e-300),
                            s2.rsqrt(), torch.zeros_like(s2))
        comps = (U.T @ Xc) * scale[:, None]  # (K, D) = S^-1 U^T Xc; zero rows for zero-variance directions
        var = s2 / max(n - 1, 1)
        # deterministic sign: largest-magnitude entry of each component positive
        idx = comps.abs().argmax(1)
        sign = torch.sign(comps.gather(1, idx[:, None]).squeeze(1))
        sign[sign == 0] = 1.0
        comps = comps * sign[:, None]
        return cls(mean.to(X.dtype), comps.to(X.dtype), var.to(X.dtype), sigma)

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., K) unclamped coefficients."""
        return (x - self.mean.to(x)) @ self.components.to(x).T

    def project(self, x: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Project (..., D) onto the subspace, coefficients clamped to +- sigma * std (``clamp``)."""
        c = self.coefficients(x)
        if clamp:
            bound = self.sigma * self.variances.to(x).clamp_min(0).sqrt()
            c = torch.maximum(torch.minimum(c, bound), -bound)
        return self.mean.to(x) + c @ self.components.to(x)

    def state_dict(self) -> dict:
        return {"mean": self.mean.detach().cpu(), "components": self.components.detach().cpu(),
                "variances": self.variances.detach().cpu(), "sigma": self.sigma}

    @classmethod
    def from_state_dict(cls, state: dict) -> "PosePCA":
        return cls(state["mean"], state["components"], state["variances"], float(state["sigma"]))
