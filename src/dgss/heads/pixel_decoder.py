"""MSDeformAttn pixel decoder of Mask2Former (docs/methods/mask2former-head.md).

Inputs ``[s4, s8, s16, s32]``. The three coarsest maps are projected (``input_convs``, index 0 = s32),
refined by a stack of deformable-attention encoder layers, then one FPN step per remaining fine level
(s4 for the standard pyramid) produces the stride-4 map, and ``mask_feature`` gives the mask features.

Module names follow MMDetection where natural (``input_convs.{e}.conv/gn``, ``level_encoding``,
``encoder.layers.{i}.self_attn``, ``lateral_convs``, ``output_convs``, ``mask_feature``); the encoder
FFN and norms use dgss names (``ffn.fc1/fc2``, ``norm1/norm2``), see ``reference_keys.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .ms_deform_attn import MultiScaleDeformableAttention
from .position_encoding import sine_position_encoding


def caffe2_xavier_init_(conv: nn.Conv2d) -> None:
    """ "Caffe2 xavier": kaiming_uniform with a = 1 (fan_in, leaky_relu gain 1), bias 0."""
    nn.init.kaiming_uniform_(conv.weight, a=1, mode="fan_in", nonlinearity="leaky_relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class ConvGN(nn.Module):
    """Conv2d + GroupNorm (+ optional ReLU); mmcv ``ConvModule`` layout (``conv``, ``gn``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool,
        num_groups: int = 32,
        relu: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.gn = nn.GroupNorm(num_groups, out_channels)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.gn(self.conv(x))
        return F.relu(x) if self.relu else x


class FFN(nn.Module):
    """Linear -> ReLU -> Linear (dropout 0). Reference names: ``layers.0.0`` = fc1, ``layers.1`` = fc2."""

    def __init__(self, dims: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden)
        self.fc2 = nn.Linear(hidden, dims)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class DeformableEncoderLayer(nn.Module):
    """Post-norm encoder layer: ``x = LN(x + MSDA(x))``, ``x = LN(x + FFN(x))``."""

    def __init__(
        self, dims: int = 256, num_heads: int = 8, num_levels: int = 3, num_points: int = 4, ffn_dims: int = 1024
    ) -> None:
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(dims, num_heads, num_levels, num_points)
        self.norm1 = nn.LayerNorm(dims)
        self.ffn = FFN(dims, ffn_dims)
        self.norm2 = nn.LayerNorm(dims)

    def forward(
        self, x: Tensor, pos: Tensor, reference_points: Tensor, spatial_shapes: Sequence[tuple[int, int]]
    ) -> Tensor:
        """``x``, ``pos``: ``(B, S, C)``; ``reference_points``: ``(B, S, L, 2)``. Returns ``(B, S, C)``."""
        x = self.norm1(x + self.self_attn(x, x, reference_points, spatial_shapes, query_pos=pos))
        return self.norm2(x + self.ffn(x))


class DeformableEncoder(nn.Module):
    """Stack of :class:`DeformableEncoderLayer` (attribute ``layers``)."""

    def __init__(self, num_layers: int, **layer_kwargs) -> None:
        super().__init__()
        self.layers = nn.ModuleList([DeformableEncoderLayer(**layer_kwargs) for _ in range(num_layers)])

    def forward(
        self, x: Tensor, pos: Tensor, reference_points: Tensor, spatial_shapes: Sequence[tuple[int, int]]
    ) -> Tensor:
        for layer in self.layers:
            x = layer(x, pos, reference_points, spatial_shapes)
        return x


def reference_points_for(
    spatial_shapes: Sequence[tuple[int, int]], device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Cell centres ``((j+0.5)/w, (i+0.5)/h)`` of every level, concatenated: ``(S, 2)`` in (x, y) order."""
    refs = []
    for h, w in spatial_shapes:
        ys = (torch.arange(h, dtype=dtype, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=dtype, device=device) + 0.5) / w
        ref_y, ref_x = torch.meshgrid(ys, xs, indexing="ij")
        refs.append(torch.stack([ref_x.reshape(-1), ref_y.reshape(-1)], dim=-1))
    return torch.cat(refs, dim=0)


class MSDeformAttnPixelDecoder(nn.Module):
    """Pixel decoder: deformable encoder on the coarsest ``num_encoder_levels`` maps + FPN to the finest.

    Args:
        in_channels: channels of the inputs, finest first (``[1024]*4`` for ``[s4, s8, s16, s32]``).
        feat_channels: transformer width (256).
        out_channels: mask-feature channels (256).
        num_encoder_layers / num_heads / num_points / ffn_dims: encoder settings (6 / 8 / 4 / 1024).
        num_encoder_levels: levels seen by the encoder (3).
        num_groups: GroupNorm groups (32).

    ``forward(features)`` with ``features`` = ``[s4, s8, s16, s32]``, each ``(B, C_in_l, h_l, w_l)``, returns
    ``(mask_features (B, out_channels, h_4, w_4), [o32, o16, o8])`` with each memory ``(B, feat_channels, h, w)``
    ordered from low to high resolution.

    ``recompute`` (set by the segmentor, training only): keep no activation inside an encoder layer or an
    FPN step; recompute them one at a time in the backward pass (same gradients, ~5 GiB less at
    ViT-L/512, batch 8).
    """

    recompute: bool = False

    def __init__(
        self,
        in_channels: Sequence[int] = (1024, 1024, 1024, 1024),
        feat_channels: int = 256,
        out_channels: int = 256,
        num_encoder_layers: int = 6,
        num_heads: int = 8,
        num_points: int = 4,
        ffn_dims: int = 1024,
        num_encoder_levels: int = 3,
        num_groups: int = 32,
    ) -> None:
        super().__init__()
        in_channels = list(in_channels)
        if len(in_channels) <= num_encoder_levels:
            raise ValueError("need at least one FPN level below the encoder levels")
        if feat_channels % 2 != 0:
            raise ValueError("feat_channels must be even (sine encoding splits it into y and x halves)")
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.num_encoder_levels = num_encoder_levels
        self.num_fpn_levels = len(in_channels) - num_encoder_levels
        # input_convs[e] projects level -1-e: index 0 = coarsest (s32), then s16, s8.
        self.input_convs = nn.ModuleList(
            ConvGN(in_channels[-1 - e], feat_channels, 1, bias=True, num_groups=num_groups)
            for e in range(num_encoder_levels)
        )
        self.encoder = DeformableEncoder(
            num_encoder_layers,
            dims=feat_channels,
            num_heads=num_heads,
            num_levels=num_encoder_levels,
            num_points=num_points,
            ffn_dims=ffn_dims,
        )
        self.level_encoding = nn.Embedding(num_encoder_levels, feat_channels)
        # FPN: lateral_convs[j] / output_convs[j] for fine level (num_fpn_levels - 1 - j), coarse to fine.
        self.lateral_convs = nn.ModuleList(
            ConvGN(in_channels[self.num_fpn_levels - 1 - j], feat_channels, 1, bias=False, num_groups=num_groups)
            for j in range(self.num_fpn_levels)
        )
        self.output_convs = nn.ModuleList(
            ConvGN(feat_channels, feat_channels, 3, bias=False, num_groups=num_groups, relu=True)
            for _ in range(self.num_fpn_levels)
        )
        self.mask_feature = nn.Conv2d(feat_channels, out_channels, kernel_size=1)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """§3.4: input convs xavier_uniform/bias 0; FPN and mask convs caffe2-xavier; level encoding N(0,1);
        encoder matrices xavier_normal then MSDeformAttn re-init; LN/GN weight 1, bias 0."""
        for m in self.input_convs:
            assert isinstance(m, ConvGN) and m.conv.bias is not None  # input projections carry a bias
            nn.init.xavier_uniform_(m.conv.weight, gain=1.0)
            nn.init.zeros_(m.conv.bias)
        for m in list(self.lateral_convs) + list(self.output_convs):
            caffe2_xavier_init_(cast(ConvGN, m).conv)
        caffe2_xavier_init_(self.mask_feature)
        nn.init.normal_(self.level_encoding.weight, mean=0.0, std=1.0)
        for p in self.encoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
        for m in self.encoder.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()
        for m in self.modules():
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        if len(features) != len(self.in_channels):
            raise ValueError(f"expected {len(self.in_channels)} feature maps, got {len(features)}")
        b = features[0].shape[0]
        tokens, pos, shapes = [], [], []
        for e in range(self.num_encoder_levels):
            x = features[-1 - e]
            h, w = x.shape[-2:]
            y = self.input_convs[e](x)  # (B, C, h, w)
            p = sine_position_encoding(h, w, self.feat_channels // 2, device=y.device, dtype=y.dtype)
            p = p.flatten(1).transpose(0, 1) + self.level_encoding.weight[e]  # (h·w, C)
            tokens.append(y.flatten(2).transpose(1, 2))
            pos.append(p)
            shapes.append((h, w))
        x = torch.cat(tokens, dim=1)  # (B, S, C)
        pos_all = torch.cat(pos, dim=0).unsqueeze(0).expand(b, -1, -1)
        ref = reference_points_for(shapes, device=x.device, dtype=x.dtype)  # (S, 2)
        ref = ref[None, :, None, :].expand(b, -1, self.num_encoder_levels, 2)
        recompute = self.recompute and self.training and torch.is_grad_enabled()
        if recompute:
            for layer in self.encoder.layers:
                x = checkpoint(layer, x, pos_all, ref, shapes, use_reentrant=False)
        else:
            x = self.encoder(x, pos_all, ref, shapes)
        outs = [
            t.transpose(1, 2).reshape(b, self.feat_channels, h, w)
            for t, (h, w) in zip(x.split([h * w for h, w in shapes], dim=1), shapes, strict=False)
        ]
        # outs = [o32, o16, o8]; FPN steps from coarse to fine.
        y = outs[-1]
        for j in range(self.num_fpn_levels):
            f = features[self.num_fpn_levels - 1 - j]
            y = checkpoint(self._fpn_step, j, f, y, use_reentrant=False) if recompute else self._fpn_step(j, f, y)
        return self.mask_feature(y), outs

    def _fpn_step(self, j: int, fine: Tensor, coarse: Tensor) -> Tensor:
        """FPN step ``j``: lateral conv of the fine map + upsampled coarse map, then the 3x3 output conv."""
        lat = self.lateral_convs[j](fine)
        y = lat + F.interpolate(coarse, size=lat.shape[-2:], mode="bilinear", align_corners=False)
        return self.output_convs[j](y)
