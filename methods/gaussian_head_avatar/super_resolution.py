"""GHA's x4 super-resolution network (a UNet-decoder-style upsampler without skip inputs).

    inc : DoubleConv(in -> 4C)
    up1 : bilinear x2 (align_corners=True) -> DoubleConv(4C -> 2C)
    up2 : bilinear x2 (align_corners=True) -> DoubleConv(2C -> C)
    outc: 1x1 conv -> out, sigmoid
    DoubleConv = [3x3 conv (no bias) -> InstanceNorm -> ReLU] x 2

With the configs' ``capacity`` C = 32 the channels are 32 -> 128 -> 64 -> 32 -> 3. The official
``Up`` block is ``nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True)``: output pixel
``i`` of a side ``n -> 2n`` samples input position ``i (n - 1) / (2n - 1)`` (corners coincide).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2H, 2W), bilinear with ``align_corners=True`` (GHA's ``Up``)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class DoubleConv(nn.Sequential):
    """[Conv3x3 (no bias) -> InstanceNorm2d -> ReLU] x 2: (B, c_in, H, W) -> (B, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, c_mid: int | None = None):
        c_mid = c_mid or c_out
        super().__init__(
            nn.Conv2d(c_in, c_mid, 3, padding=1, bias=False), nn.InstanceNorm2d(c_mid), nn.ReLU(inplace=True),
            nn.Conv2d(c_mid, c_out, 3, padding=1, bias=False), nn.InstanceNorm2d(c_out), nn.ReLU(inplace=True),
        )


class SuperResolution(nn.Module):
    """(B, in_channels, H, W) feature map -> (B, out_channels, 4H, 4W) image in (0, 1)."""

    factor = 4

    def __init__(self, in_channels: int = 32, capacity: int = 32, out_channels: int = 3):
        super().__init__()
        c = int(capacity)
        self.inc = DoubleConv(in_channels, 4 * c)
        self.up1 = DoubleConv(4 * c, 2 * c)
        self.up2 = DoubleConv(2 * c, c)
        self.outc = nn.Conv2d(c, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inc(x)
        y = self.up1(upsample2x(y))
        y = self.up2(upsample2x(y))
        return torch.sigmoid(self.outc(y))
