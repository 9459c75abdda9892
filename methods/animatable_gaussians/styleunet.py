"""StyleUNet: a U-Net whose decoders are StyleGAN2 synthesis blocks (plain PyTorch, no custom ops).

Animatable Gaussians (official ``network/styleunet/dual_styleunet.py`` ``DualStyleUNet``) maps a
posed position map to front and back attribute maps with one shared encoder and two StyleGAN2-style
decoders. This is our own implementation of that architecture from the description in the fact
sheet (section 5):

- **Channels**: ``ch(r) = min(max_channels, channel_base * channel_multiplier / r)`` per
  resolution ``r``; the official table (``channel_base`` 16384, multiplier 2, max 512) gives
  256:128, 128:256, 64..8:512 in the encoder and 512, 512, 512, 256, 128, 64 for the decoder
  stages 16 ... 512.
- **Encoder**: ``conv_in`` (blur + stride-2 3x3 conv) halves the input; then one stage per halving
  down to ``min_size``: ``FromRGB`` (1x1 conv of the input, blur-downsampled to the stage's size,
  added to the features) and a ``ConvBlock`` (3x3 conv, blur + stride-2 3x3 conv). The skip
  features the decoders concatenate are ``conv_in``'s output and each ConvBlock's output, taken
  before the next FromRGB is added (official ``cond_list``).
- **Decoders** (front, back): from the ``min_size`` bottleneck, one stage per doubling up to the
  input size: concatenate the same-scale encoder feature (not at ``min_size``, where the decoder
  state IS the bottleneck), a ``comb`` 3x3 conv (shared by the two decoders), a modulated 3x3 conv
  after 2x upsampling, a second modulated 3x3 conv (each with fixed noise, bias, scaled leaky
  ReLU), and a ``ToRGB`` (modulated 1x1 conv without demodulation) producing ``4 * out_ch`` Haar
  wavelet channels, accumulated over the stages; an inverse Haar transform gives ``out_ch`` maps
  at twice the input size.
- **Parameter count**: with the official sizes this gives exactly the fact sheet's 74,479,016
  parameters for ``out_ch = 3`` (mapping 525,312; encoder incl. the shared comb convs 34,375,168;
  each decoder 19,765,388 + 7,960 * out_ch), which is how the shared comb convs were pinned down.
- **Style**: the constant ``ones(1, style_dim) / sqrt(style_dim)`` through a mapping MLP
  (PixelNorm + ``n_mlp`` equalised linear layers, ``lr_mul`` 0.01); the same ``w`` modulates
  every layer (no per-frame latent).
- **View-direction branch** (colour network): extra features (e.g. from :class:`ViewDirEncoder`)
  are added to each side's decoder features at half the input size, after that stage's ToRGB (so
  only the last stage and its ToRGB see them), as the official ``i == 8`` branch.
- **Fixed noise**: one set of noise buffers, shared by the front and back decoders (official).

Modulated convolution (StyleGAN2, Karras et al. 2020): with weight ``W`` (out, in, k, k),
equalised-lr scale ``c = 1 / sqrt(in * k * k)`` and style ``s`` (in,),
``W' = c * W * s[None, :, None, None]`` and, with demodulation,
``W'' = W' / sqrt(sum_{in, k, k} W'^2 + 1e-8)`` per output channel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EqualLinear", "EqualConv2d", "ModulatedConv2d", "StyledConv", "ToRGB", "ConvLayer", "DualStyleUNet",
           "ViewDirEncoder", "blur_downsample", "haar_forward", "haar_inverse", "channel_table", "count_parameters"]

_SQRT2 = math.sqrt(2.0)


def channel_table(r: int, channel_base: int, channel_multiplier: int, max_channels: int) -> int:
    """Channels at resolution ``r``: ``min(max_channels, channel_base * channel_multiplier // r)`` (>= 1)."""
    return max(1, min(int(max_channels), int(channel_base) * int(channel_multiplier) // int(r)))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def scaled_leaky_relu(x: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's fused activation: ``leaky_relu(x, 0.2) * sqrt(2)``."""
    return F.leaky_relu(x, 0.2) * _SQRT2


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: ``y = x (W c)^T + b lr_mul``, ``c = lr_mul / sqrt(in)``;
    ``W ~ N(0, 1) / lr_mul``; optional scaled leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.lr_mul if self.bias is not None else None
        y = F.linear(x, self.weight * self.scale, b)
        return scaled_leaky_relu(y) if self.activation else y


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate (``W ~ N(0, 1)``, scaled by ``1 / sqrt(in * k * k)``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


def _blur_kernel(device=None, dtype=torch.float32) -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=dtype, device=device)
    k2 = k[:, None] * k[None, :]
    return k2 / k2.sum()


def blur(x: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """Depthwise [1,3,3,1]x[1,3,3,1]/64 FIR filter with zero padding ``(before, after)`` on H and W."""
    C = x.shape[1]
    k = _blur_kernel(x.device, x.dtype).expand(C, 1, 4, 4)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, k, groups=C)


def blur_downsample(x: torch.Tensor) -> torch.Tensor:
    """StyleGAN2 ``Downsample``: the [1,3,3,1]x[1,3,3,1]/64 blur with zero padding (1, 1), every
    second sample: (B, C, H, W) -> (B, C, H/2, W/2)."""
    return blur(x, (1, 1))[..., ::2, ::2]


class ConvLayer(nn.Module):
    """Equalised conv (+ bias + scaled leaky ReLU); ``downsample`` = blur then stride-2 conv (StyleGAN2)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, downsample: bool = False, activate: bool = True):
        super().__init__()
        self.downsample = downsample
        if downsample:
            p = (4 - 2) + (kernel - 1)
            self.blur_pad = ((p + 1) // 2, p // 2)
            self.conv = EqualConv2d(in_ch, out_ch, kernel, stride=2, padding=0, bias=True)
        else:
            self.conv = EqualConv2d(in_ch, out_ch, kernel, stride=1, padding=kernel // 2, bias=True)
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            x = blur(x, self.blur_pad)
        x = self.conv(x)
        return scaled_leaky_relu(x) if self.activate else x


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (see the module docstring), batched as a grouped conv.

    Args:
        in_ch, out_ch, kernel: conv shape.
        style_dim: length of the style vector ``w``.
        demodulate: normalise each output channel's modulated weights (False for ToRGB).
        upsample: bilinear 2x upsampling of the input before the convolution.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel = in_ch, out_ch, kernel
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel, kernel))
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.demodulate = demodulate
        self.upsample = upsample

    def modulated_weight(self, style: torch.Tensor) -> torch.Tensor:
        """(B, out, in, k, k) weights for styles (B, style_dim)."""
        s = self.modulation(style)  # (B, in)
        w = self.scale * self.weight * s[:, None, :, None, None]
        if self.demodulate:
            w = w * torch.rsqrt(w.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        return w

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """x: (B, in, H, W); style: (B, style_dim) -> (B, out, H', W')."""
        B = x.shape[0]
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        w = self.modulated_weight(style).reshape(B * self.out_ch, self.in_ch, self.kernel, self.kernel)
        H, W = x.shape[-2:]
        y = F.conv2d(x.reshape(1, B * self.in_ch, H, W), w, padding=self.kernel // 2, groups=B)
        return y.reshape(B, self.out_ch, H, W)


class StyledConv(nn.Module):
    """Modulated conv + fixed noise (learned strength, init 0) + bias + scaled leaky ReLU.

    The noise map is passed in (the official ``DualStyleUNet`` holds one set of fixed noise
    buffers that both decoders use)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel, style_dim, demodulate=True, upsample=upsample)
        self.noise_strength = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x (B, in, H, W), style (B, style_dim), noise (1, 1, H', W') -> (B, out, H', W')."""
        y = self.conv(x, style)
        y = y + self.noise_strength * noise
        return scaled_leaky_relu(y + self.bias)


def haar_forward(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2D Haar analysis: (B, C, 2H, 2W) -> (B, 4C, H, W), channels ``[LL, LH, HL, HH]`` per input
    channel (c * 4 + band)."""
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    ll = (a + b + c + d) / 2
    lh = (a - b + c - d) / 2
    hl = (a + b - c - d) / 2
    hh = (a - b - c + d) / 2
    B, C, H, W = ll.shape
    return torch.stack([ll, lh, hl, hh], dim=2).reshape(B, 4 * C, H, W)


def haar_inverse(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`haar_forward`: (B, 4C, H, W) -> (B, C, 2H, 2W)."""
    B, C4, H, W = y.shape
    y = y.reshape(B, C4 // 4, 4, H, W)
    ll, lh, hl, hh = y.unbind(2)
    a = (ll + lh + hl + hh) / 2
    b = (ll - lh + hl - hh) / 2
    c = (ll + lh - hl - hh) / 2
    d = (ll - lh - hl + hh) / 2
    # pixel_shuffle order: channel c*4 + (i*2 + j) -> pixel (2y+i, 2x+j)
    return F.pixel_shuffle(torch.stack([a, b, c, d], dim=2).reshape(B, C4, H, W), 2)


class ToRGB(nn.Module):
    """Modulated 1x1 conv (no demodulation) + bias to ``4 * out_ch`` Haar channels; adds the previous
    stage's output, upsampled in the image domain (inverse Haar -> bilinear 2x -> Haar)."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, 4 * out_ch, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 4 * out_ch, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        y = self.conv(x, style) + self.bias
        if skip is not None:
            img = haar_inverse(skip)
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            y = y + haar_forward(img)
        return y


class _Decoder(nn.Module):
    """One StyleGAN2-style decoder branch: per stage two :class:`StyledConv` and a :class:`ToRGB`."""

    def __init__(self, sizes: list[int], ch, style_dim: int, out_ch: int):
        super().__init__()
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for r in sizes:  # r: input resolution of the stage, output 2r
            self.convs.append(StyledConv(ch(r), ch(2 * r), 3, style_dim, upsample=True))
            self.convs.append(StyledConv(ch(2 * r), ch(2 * r), 3, style_dim))
            self.to_rgbs.append(ToRGB(ch(2 * r), out_ch, style_dim))


class DualStyleUNet(nn.Module):
    """Shared encoder + front/back StyleGAN2 decoders; see the module docstring.

    Args:
        inp_size: input map side (power of 2; official 512).
        inp_ch: input channels (3: a posed position map).
        out_ch: output channels per side.
        style_dim: style vector length (official 512); n_mlp: mapping layers (official 2).
        min_size: bottleneck side (official 8).
        channel_base, channel_multiplier, max_channels: the channel table (official 16384, 2, 512).
        extra_feature_size: resolution at which :meth:`forward`'s ``extra_features`` are added
            (None = ``inp_size // 2``); ``extra_feature_channels`` = ``ch(extra_feature_size)``.

    Shapes:
        forward(x (B, inp_ch, S, S), extra_features (B, 2, C_e, S_e, S_e) or None) ->
        (B, 2 * out_ch, 2S, 2S) = front channels, then back channels.
    """

    def __init__(self, inp_size: int = 512, inp_ch: int = 3, out_ch: int = 3, style_dim: int = 512, n_mlp: int = 2,
                 min_size: int = 8, channel_base: int = 16384, channel_multiplier: int = 2, max_channels: int = 512,
                 lr_mlp: float = 0.01, seed: int = 0):
        super().__init__()
        if inp_size & (inp_size - 1) or min_size & (min_size - 1) or not 4 <= 2 * min_size <= inp_size:
            raise ValueError(f"DualStyleUNet: inp_size {inp_size} and min_size {min_size} must be powers of 2 "
                             f"with 2 * min_size <= inp_size")
        self.inp_size, self.inp_ch, self.out_ch, self.style_dim, self.min_size = inp_size, inp_ch, out_ch, style_dim, min_size

        def ch(r: int) -> int:
            return channel_table(r, channel_base, channel_multiplier, max_channels)

        self.ch = ch
        # mapping network on a constant input
        self.register_buffer("const_z", torch.ones(1, style_dim) / math.sqrt(style_dim), persistent=False)
        self.mapping = nn.ModuleList([EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True)
                                      for _ in range(n_mlp)])
        # encoder
        half = inp_size // 2
        self.conv_in = ConvLayer(inp_ch, ch(half), 3, downsample=True)
        self.enc_sizes: list[int] = []
        r = half
        while r > min_size:
            self.enc_sizes.append(r)
            r //= 2
        self.from_rgbs = nn.ModuleList([ConvLayer(inp_ch, ch(r), 1) for r in self.enc_sizes])
        self.enc_blocks = nn.ModuleList([nn.Sequential(ConvLayer(ch(r), ch(r), 3), ConvLayer(ch(r), ch(r // 2), 3,
                                                                                           downsample=True))
                                         for r in self.enc_sizes])
        # decoders: stage input sizes min_size ... inp_size/2, output 2x. The comb convs are shared by
        # both decoders; at min_size the comb conv sees the bottleneck alone (nothing to concatenate).
        self.dec_sizes = [min_size * 2 ** k for k in range(int(math.log2(inp_size // min_size)))]
        self.combs = nn.ModuleList([ConvLayer(ch(r) if r == min_size else 2 * ch(r), ch(r), 3) for r in self.dec_sizes])
        self.front = _Decoder(self.dec_sizes, ch, style_dim, out_ch)
        self.back = _Decoder(self.dec_sizes, ch, style_dim, out_ch)
        # one set of fixed noise maps (two per stage, at the stage's output size), used by BOTH
        # decoders as in the official forward (randomize_noise=False -> self.noises.noise_i)
        self.noises = nn.Module()
        g = torch.Generator().manual_seed(1000 * int(seed) + 1)
        for k, r in enumerate(self.dec_sizes):
            for j in range(2):
                self.noises.register_buffer(f"noise_{2 * k + j}", torch.randn(1, 1, 2 * r, 2 * r, generator=g))
        self.extra_feature_size = half
        self.extra_feature_channels = ch(half)

    def style(self) -> torch.Tensor:
        """(1, style_dim) the shared ``w``: PixelNorm(const) -> mapping MLP."""
        z = self.const_z
        z = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.mapping:
            z = layer(z)
        return z

    def noise(self, i: int) -> torch.Tensor:
        """(1, 1, s, s) fixed noise of decoder layer ``i`` (shared by the front and back decoders)."""
        return getattr(self.noises, f"noise_{i}")

    def encode(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Encoder skip features keyed by resolution: inp_size/2 ... min_size.

        As the official ``cond_list``: the ``conv_in`` output at inp_size/2, then each
        ``ConvBlock``'s output, taken BEFORE the next stage's FromRGB is added. The FromRGB input is
        the input image blur-downsampled ([1,3,3,1] FIR, pad 1, stride 2; StyleGAN2 ``Downsample``)
        once per stage.
        """
        feats = {}
        h = self.conv_in(x)
        img = x
        for r, from_rgb, block in zip(self.enc_sizes, self.from_rgbs, self.enc_blocks):
            feats[r] = h
            img = blur_downsample(img)  # the input at resolution r
            h = block(h + from_rgb(img))
        feats[self.min_size] = h
        return feats

    def _decode(self, dec: _Decoder, feats: dict[int, torch.Tensor], w: torch.Tensor,
                extra: torch.Tensor | None) -> torch.Tensor:
        h = feats[self.min_size]
        skip = None
        for k, r in enumerate(self.dec_sizes):
            h = self.combs[k](h if r == self.min_size else torch.cat([h, feats[r]], dim=1))
            h = dec.convs[2 * k](h, w, self.noise(2 * k))
            h = dec.convs[2 * k + 1](h, w, self.noise(2 * k + 1))
            skip = dec.to_rgbs[k](h, w, skip)
            if extra is not None and 2 * r == self.extra_feature_size:
                # official (``i == 8``): added AFTER this stage's ToRGB, so only the next stage sees it
                h = h + extra
        return haar_inverse(skip)

    def forward(self, x: torch.Tensor, extra_features: torch.Tensor | None = None) -> torch.Tensor:
        B = x.shape[0]
        if x.shape[1:] != (self.inp_ch, self.inp_size, self.inp_size):
            raise ValueError(f"DualStyleUNet: input {tuple(x.shape)}, expected (B, {self.inp_ch}, {self.inp_size}, "
                             f"{self.inp_size})")
        w = self.style().expand(B, -1)
        feats = self.encode(x)
        ef = extra_features
        front = self._decode(self.front, feats, w, None if ef is None else ef[:, 0])
        back = self._decode(self.back, feats, w, None if ef is None else ef[:, 1])
        return torch.cat([front, back], dim=1)


class ViewDirEncoder(nn.Module):
    """The view-direction branch: Conv(1 -> c/2, 4, s2) -> LeakyReLU(0.2) -> Conv(c/2 -> c, 4, s2), then a
    bilinear resize to ``out_size`` (official: 1 -> 64 -> 128 channels, 512^2 in, resized to 256^2).

    Shapes: (B, 1, S, S) -> (B, out_channels, out_size, out_size).
    """

    def __init__(self, out_channels: int, out_size: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(1, out_channels // 2)
        self.conv1 = nn.Conv2d(1, hidden, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(hidden, out_channels, 4, stride=2, padding=1)
        self.out_size = out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.leaky_relu(self.conv1(x), 0.2))
        return F.interpolate(y, size=(self.out_size, self.out_size), mode="bilinear", align_corners=False)
