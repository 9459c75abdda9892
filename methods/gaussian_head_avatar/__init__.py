"""Gaussian Head Avatar (Xu et al., CVPR 2024): DMTet mesh-head initialisation, dynamic Gaussians
with 128-d features, a 32-channel feature render and x4 super-resolution, FLAME-conditioned.

Modules: ``tetgrid`` (Kuhn tet grid), ``marching_tets``, ``mlps``, ``geometry_net`` (SDF network),
``blending``, ``conditioning`` (FLAME protocol), ``mesh_head`` (stage 1), ``gaussian_head``
(stage 2), ``init_points``, ``super_resolution``, ``losses``, ``method`` (the AvatarMethod).
See docs/methods/gaussian_head_avatar.md.
"""
