"""Parametric body models: FLAME (heads) and SMPL-X (bodies), and the shared LBS layer.

- :mod:`avatarbench.bodymodels.lbs`            linear blend skinning (shared)
- :mod:`avatarbench.bodymodels.pickle_compat`  load chumpy-era model pickles without chumpy
- :mod:`avatarbench.bodymodels.flame`          ``load_flame`` / ``FlameModel``
- :mod:`avatarbench.bodymodels.flame_teeth`    GaussianAvatars-style teeth added to FLAME
- :mod:`avatarbench.bodymodels.flame_synthetic` procedural FLAME-format stand-in model
"""

from __future__ import annotations

from avatarbench.bodymodels.lbs import batch_rodrigues, blend_shapes, lbs, regress_joints, rigid_transforms

__all__ = ["batch_rodrigues", "blend_shapes", "lbs", "regress_joints", "rigid_transforms",
           "load_flame", "FlameModel", "FlameOutput"]


def __getattr__(name: str):
    # FLAME names are resolved lazily so that importing the LBS layer stays cheap.
    if name in ("load_flame", "FlameModel", "FlameOutput"):
        from avatarbench.bodymodels import flame

        return getattr(flame, name)
    raise AttributeError(f"module 'avatarbench.bodymodels' has no attribute {name!r}")
