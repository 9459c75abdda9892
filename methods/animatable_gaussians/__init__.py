"""Animatable Gaussians (Li et al., CVPR 2024): template-guided pose-dependent Gaussian maps.

Modules: :mod:`.method` (the AvatarMethod), :mod:`.lbs_volume`, :mod:`.template`,
:mod:`.position_maps`, :mod:`.styleunet`, :mod:`.avatar_net`, :mod:`.posing`, :mod:`.pose_pca`,
:mod:`.losses`. See docs/methods/animatable_gaussians.md.
"""
