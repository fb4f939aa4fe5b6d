"""CAT-Seg's upsampling decoder, run per class (docs/methods/catseg.md).

One stage: ConvT(C_in -> C_in - C_g, 2x2, stride 2), concat the decoder guidance (C_g), DoubleConv
(C_in -> C_out: [Conv3x3 no bias, GroupNorm(C_out/16), ReLU] x 2). Two stages take the aggregated cost
(B*T, 128, h, w) to (B*T, 32, 4h, 4w); a Conv3x3 (32 -> 1) head gives the logits.
"""

from __future__ import annotations

import torch
from torch import nn


class DoubleConv(nn.Module):
    """``double_conv``: [Conv3x3 (no bias), GroupNorm(C_out // 16 groups), ReLU] x 2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        groups = max(out_channels // 16, 1)
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.GroupNorm(groups, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.GroupNorm(groups, out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class GuidedUpsample(nn.Module):
    """``up`` (ConvT x2) then concat guidance then ``conv`` (DoubleConv): (N, C_in, h, w) -> (N, C_out, 2h, 2w)."""

    def __init__(self, in_channels: int, out_channels: int, guidance_channels: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels - guidance_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """x (N, C_in, h, w), guidance (N, C_g, 2h, 2w) (already repeated over classes)."""
        return self.conv(torch.cat([self.up(x), guidance], dim=1))
