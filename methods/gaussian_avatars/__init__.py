"""GaussianAvatars (Qian et al., CVPR 2024): 3D Gaussians rigged to FLAME triangles.

Modules:

- :mod:`.method`   -- :class:`~.method.GaussianAvatars`, the :class:`AvatarMethod`
- :mod:`.model`    -- Gaussian initialisation, per-timestep FLAME fine-tuning, local -> global
- :mod:`.strategy` -- :class:`~.strategy.BindingStrategy`, density control with binding inheritance
  (gsplat Strategy API)
- :mod:`.losses`   -- L1 + D-SSIM, position and scaling regularisers
- :mod:`.schedule` -- the scaled iteration schedule and the position learning rate
- :mod:`.export`   -- 3DGS PLY files with ``binding_0``

See docs/methods/gaussian_avatars.md.
"""
