"""The pose-dependent networks of Animatable Gaussians (official ``network/avatar.py`` ``AvatarNet``).

:class:`StyleUNetAvatarNet` (the method): three independent :class:`DualStyleUNet` s --
``position_net`` (3 channels per side), ``color_net`` (3) and ``other_net`` (8 = opacity 1,
scale 3, rotation 4) -- all fed the same front posed position map, plus ``viewdir_net`` whose
encoding of the per-pixel view cosine is added to the colour decoders.

:class:`MlpAvatarNet` (ablation ``mlp_instead_of_cnn``): one MLP per Gaussian on
``[PE(canonical xyz), the pose-map value at the Gaussian's pixel, front/back flag, view cosine]``
predicting the same 14 attributes, i.e. the same information without the CNN's receptive field.

Both return per-Gaussian raw outputs ``(N, 14)`` = position offset (3, before the 0.05 scale),
colour (3), opacity (1), scale (3), rotation (4) for Gaussians ordered front pixels then back
pixels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .styleunet import DualStyleUNet, ViewDirEncoder

__all__ = ["StyleUNetAvatarNet", "MlpAvatarNet", "gather_maps", "positional_encoding", "OUT_CHANNELS"]

#: attribute channels per Gaussian: offset, colour, opacity, scale, rotation
OUT_CHANNELS = {"offset": 3, "color": 3, "opacity": 1, "scale": 3, "rotation": 4}


def gather_maps(out: torch.Tensor, ch: int, idx_front: torch.Tensor, idx_back: torch.Tensor) -> torch.Tensor:
    """Per-Gaussian values from a (1, 2 * ch, S, S) front+back map: (N_front + N_back, ch)."""
    S = out.shape[-1]
    flat = out[0].reshape(2 * ch, S * S)
    return torch.cat([flat[:ch, idx_front].T, flat[ch:, idx_back].T], dim=0)


def positional_encoding(x: torch.Tensor, n_freq: int) -> torch.Tensor:
    """NeRF encoding [x, sin(2^k pi x), cos(2^k pi x)]: (N, D) -> (N, D (1 + 2 n_freq))."""
    feats = [x]
    for k in range(n_freq):
        feats += [torch.sin((2.0 ** k) * math.pi * x), torch.cos((2.0 ** k) * math.pi * x)]
    return torch.cat(feats, dim=-1)


class StyleUNetAvatarNet(nn.Module):
    """Three DualStyleUNets + the view-direction encoder.

    Args:
        map_size: output map side S (official 1024); the input pose map is S/2.
        net_kwargs: DualStyleUNet size arguments (style_dim, n_mlp, min_size, channel_base,
            channel_multiplier, max_channels).
        use_viewdir: add the view-direction branch to the colour network.
    """

    def __init__(self, map_size: int, net_kwargs: dict, use_viewdir: bool = True, viewdir_hidden: int | None = None):
        super().__init__()
        inp = map_size // 2
        self.map_size = map_size
        self.position_net = DualStyleUNet(inp, 3, 3, seed=1, **net_kwargs)
        self.color_net = DualStyleUNet(inp, 3, 3, seed=2, **net_kwargs)
        self.other_net = DualStyleUNet(inp, 3, 8, seed=3, **net_kwargs)
        self.use_viewdir = use_viewdir
        if use_viewdir:
            self.viewdir_net = ViewDirEncoder(self.color_net.extra_feature_channels, self.color_net.extra_feature_size,
                                              viewdir_hidden)

    def forward(self, pose_map: torch.Tensor, view_maps: torch.Tensor | None, idx_front: torch.Tensor,
                idx_back: torch.Tensor, **_) -> torch.Tensor:
        """pose_map: (1, 3, S/2, S/2); view_maps: (2, 1, S/2, S/2) front/back view cosines -> (N, 14)."""
        extra = None
        if self.use_viewdir and view_maps is not None:
            extra = self.viewdir_net(view_maps)[None]  # (1, 2, C, s, s)
        pos = gather_maps(self.position_net(pose_map), 3, idx_front, idx_back)
        col = gather_maps(self.color_net(pose_map, extra), 3, idx_front, idx_back)
        oth = gather_maps(self.other_net(pose_map), 8, idx_front, idx_back)
        return torch.cat([pos, col, oth], dim=-1)


class MlpAvatarNet(nn.Module):
    """Per-Gaussian MLP (ablation ``mlp_instead_of_cnn``).

    Args:
        hidden: width; layers: hidden layers; n_freq: positional-encoding frequencies of the
            canonical position.
    """

    def __init__(self, hidden: int = 256, layers: int = 4, n_freq: int = 6, use_viewdir: bool = True):
        super().__init__()
        self.n_freq = n_freq
        self.use_viewdir = use_viewdir
        d_in = 3 * (1 + 2 * n_freq) + 3 + 1 + (1 if use_viewdir else 0)
        mods: list[nn.Module] = []
        d = d_in
        for _ in range(layers):
            mods += [nn.Linear(d, hidden), nn.LeakyReLU(0.2)]
            d = hidden
        self.body = nn.Sequential(*mods)
        self.head = nn.Linear(d, 14)
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)

    def forward(self, pose_map: torch.Tensor, view_maps: torch.Tensor | None, idx_front: torch.Tensor,
                idx_back: torch.Tensor, *, canonical: torch.Tensor, pixel_half: torch.Tensor,
                view_cos: torch.Tensor | None = None) -> torch.Tensor:
        """canonical: (N, 3) positions; pixel_half: (N,) flat index of each Gaussian's pixel in the
        half-resolution pose map; view_cos: (N,) -> (N, 14)."""
        s = pose_map.shape[-1]
        pm = pose_map[0].reshape(3, s * s)[:, pixel_half].T  # (N, 3)
        n_f = idx_front.numel()
        side = torch.cat([torch.zeros(n_f, 1, device=pm.device), torch.ones(idx_back.numel(), 1, device=pm.device)])
        feats = [positional_encoding(canonical, self.n_freq), pm, side]
        if self.use_viewdir:
            feats.append((view_cos if view_cos is not None else torch.zeros(pm.shape[0], device=pm.device))[:, None])
        return self.head(self.body(torch.cat(feats, dim=-1)))
