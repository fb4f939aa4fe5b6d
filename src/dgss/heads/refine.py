"""Adaptive Attention Gate and the 4-level fusion in front of the pixel decoder.

DepthForge's depth refinement decoder ("DQCM" in the reference code) and the first stage of Vireo's
CMPE (``docs/methods/depthforge.md``)::

    u_i = resize(s_i, size of s4)           i = 0..3, bilinear (s4 unchanged)
    g_i = AAG(u_i)                          one gate shared by the four levels
    AAG(u) = u' * sigmoid(conv3x3(u')),     u' = u * sigmoid(conv1x1(relu(conv1x1(u))))
    f_M = linear_fuse(concat(g_0..g_3))     1x1 conv 4C -> C
    s4 <- s4 + f_M

Parameter names equal the reference (``attention_gate.channel_attention.{0,2}``,
``attention_gate.spatial_attention``, ``linear_fuse``).
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class AdaptiveAttentionGate(nn.Module):
    """Per-pixel channel gate then spatial gate: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.channel_attention = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )
        self.spatial_attention = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel_attention(x)
        return x * torch.sigmoid(self.spatial_attention(x))


class GatedLevelFusion(nn.Module):
    """Shared AAG over the resampled pyramid levels + 1x1 fusion, added onto the finest level.

    Args:
        channels: C of every level.
        num_levels: pyramid levels fused (4).
        split_fusion: compute ``linear_fuse`` as a sum of per-level 1x1 convs over weight slices
            instead of on the (B, 4C, H, W) concatenation: identical result, without materialising
            the 4C-channel tensor.
        recompute: in training (with split fusion), keep no activation of a level's resize + AAG + 1x1
            product: recompute it level by level in the backward pass (same gradients, ~8 GiB less at
            ViT-L/512, batch 8).
    """

    def __init__(
        self,
        channels: int,
        num_levels: int = 4,
        reduction: int = 16,
        split_fusion: bool = True,
        recompute: bool = False,
    ):
        super().__init__()
        self.num_levels = num_levels
        self.split_fusion = split_fusion
        self.recompute = recompute
        self.attention_gate = AdaptiveAttentionGate(channels, reduction)
        self.linear_fuse = nn.Conv2d(num_levels * channels, channels, 1)

    def fuse(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Pyramid [s4, s8, s16, s32] -> fused map f_M (B, C, H4, W4)."""
        size = feats[0].shape[-2:]
        C = feats[0].shape[1]
        w, b = self.linear_fuse.weight, cast(torch.Tensor, self.linear_fuse.bias)  # built with a bias
        out: Any = None if self.split_fusion else []  # running sum (split fusion) or the gated levels
        recompute = self.recompute and self.split_fusion and self.training and torch.is_grad_enabled()
        for i, f in enumerate(feats[: self.num_levels]):
            if self.split_fusion:
                wi = w[:, i * C : (i + 1) * C]
                y = (
                    checkpoint(self._level_product, f, wi, size, use_reentrant=False)
                    if recompute
                    else self._level_product(f, wi, size)
                )
                out = y if out is None else out + y
            else:
                out.append(self._gated(f, size))
        if self.split_fusion:
            return out + b.view(1, -1, 1, 1)
        return self.linear_fuse(torch.cat(out, dim=1))

    def _gated(self, f: torch.Tensor, size) -> torch.Tensor:
        """One level (B, C, h, w) -> AAG(resize(f)) (B, C, H4, W4)."""
        u = f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        return self.attention_gate(u)

    def _level_product(self, f: torch.Tensor, w: torch.Tensor, size) -> torch.Tensor:
        """One level (B, C, h, w) -> its share of the fusion conv1x1(AAG(resize(f)); w) (B, C, H4, W4)."""
        return F.conv2d(self._gated(f, size), w)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """[s4, s8, s16, s32] -> [s4 + f_M, s8, s16, s32]."""
        return [feats[0] + self.fuse(feats)] + list(feats[1:])
