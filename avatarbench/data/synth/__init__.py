"""Synthetic datasets with exact ground truth (geometry, parameters, images).

- :mod:`.head`: synthetic head subjects in the VHAP/NeRSemble format
  (:func:`~avatarbench.data.synth.head.ensure_synthetic_head`,
  :func:`~avatarbench.data.synth.head.generate_synthetic_heads`);
- :mod:`.mesh_raster`: the independent z-buffer mesh rasterizer that renders the ground truth;
- :mod:`.rig`, :mod:`.appearance`, :mod:`.motion`, :mod:`.vhap_writer`: the capture rig, the
  procedural appearance, the FLAME driving sequences and the VHAP layout writer.

Import the submodules directly (this package import stays light).
"""

from __future__ import annotations

__all__ = ["head", "mesh_raster", "rig", "appearance", "motion", "vhap_writer"]
