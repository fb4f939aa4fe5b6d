"""Multi-scale deformable attention (Deformable DETR), pure PyTorch (docs/methods/mask2former-head.md).

For a query token i with feature ``x_i``, positional term ``p_i`` and reference point ``r_i`` in
[0,1]² (x, y order)::

    z     = x_i + p_i
    off   = sampling_offsets(z).view(heads, levels, points, 2)
    att   = softmax over (level, point) of attention_weights(z).view(heads, levels·points)
    V_e   = value_proj(X_e) split into heads             # the value carries no position
    loc   = r_i + off[h, e, k] / (w_e, h_e)
    out_h = Σ_e Σ_k att[h, e, k] · bilinear(V_e,h, loc)  # grid_sample, align_corners=False, zero padding
    y_i   = output_proj(concat_h out_h)

The level order is the order of ``spatial_shapes`` (the pixel decoder uses s32, s16, s8).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def ms_deform_attn_core(
    value: Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Weighted bilinear sampling of per-head value maps (one ``grid_sample`` per level).

    The points are laid out as rows of the sampling grid and the queries along its width, so the
    weighting runs over long contiguous query rows and each level is summed in place: about 4x faster
    on CPUs than :func:`ms_deform_attn_core_reference` (the level-stacked formulation of mmcv's PyTorch
    path), with the same result up to the order of the float additions. Runs in the dtype of
    ``value``; sampling locations and weights are cast to it.

    Args:
        value: ``(B, S, heads, d)`` with ``S = Σ_e h_e·w_e``, levels concatenated in ``spatial_shapes`` order.
        spatial_shapes: ``[(h_e, w_e)]`` per level.
        sampling_locations: ``(B, Nq, heads, L, P, 2)`` normalised (x, y) in [0, 1].
        attention_weights: ``(B, Nq, heads, L, P)``.

    Returns:
        ``(B, Nq, heads·d)``.
    """
    b, _, n_heads, d = value.shape
    _, nq, _, _, n_points, _ = sampling_locations.shape
    values = value.split([h * w for h, w in spatial_shapes], dim=1)
    # (B, Nq, heads, L, P, ·) -> (B, heads, L, P, Nq, ·)
    grids = (2.0 * sampling_locations - 1.0).to(value.dtype).permute(0, 2, 3, 4, 1, 5)
    weights = attention_weights.to(value.dtype).permute(0, 2, 3, 4, 1)
    out: Tensor | None = None
    for e, (h, w) in enumerate(spatial_shapes):
        v = values[e].permute(0, 2, 3, 1).reshape(b * n_heads, d, h, w)  # (B·heads, d, h, w)
        g = grids[:, :, e].reshape(b * n_heads, n_points, nq, 2)  # (B·heads, P, Nq, 2)
        s = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B·heads, d, P, Nq)
        y = (s * weights[:, :, e].reshape(b * n_heads, 1, n_points, nq)).sum(2)  # (B·heads, d, Nq)
        out = y if out is None else out + y
    assert out is not None  # at least one level
    return out.view(b, n_heads * d, nq).transpose(1, 2).contiguous()


def ms_deform_attn_core_reference(
    value: Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """:func:`ms_deform_attn_core` as the reference's PyTorch path computes it (all levels' samples
    stacked into ``(B·heads, d, Nq, L·P)``, then weighted and summed over the last axis). Same inputs
    and output; kept as the second implementation for tests and as the naive baseline of
    ``benchmarks/inference_throughput.py``."""
    b, _, n_heads, d = value.shape
    _, nq, _, n_levels, n_points, _ = sampling_locations.shape
    values = value.split([h * w for h, w in spatial_shapes], dim=1)
    grids = 2.0 * sampling_locations - 1.0
    sampled = []
    for e, (h, w) in enumerate(spatial_shapes):
        v = values[e].permute(0, 2, 3, 1).reshape(b * n_heads, d, h, w)
        g = grids[:, :, :, e].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    stacked = torch.stack(sampled, dim=-2).flatten(-2)
    att = attention_weights.transpose(1, 2).reshape(b * n_heads, 1, nq, n_levels * n_points)
    out = (stacked * att).sum(-1).view(b, n_heads * d, nq)
    return out.transpose(1, 2).contiguous()


class MultiScaleDeformableAttention(nn.Module):
    """MSDeformAttn with the mmcv parameter names ``sampling_offsets``, ``attention_weights``,
    ``value_proj``, ``output_proj``.

    Args:
        embed_dims: channel width C (256).
        num_heads: attention heads (8); C must be divisible by it.
        num_levels: feature levels L (3).
        num_points: sampling points per head and level P (4).
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 8, num_levels: int = 3, num_points: int = 4) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f"embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})")
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.reference_core = False  # True: the reference's level-stacked sampling (slower, same result)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Deformable-DETR init (§3.4): offsets weight 0, bias = per-head direction grid scaled by k+1;
        attention weights 0; value/output projections xavier_uniform with zero bias."""
        nn.init.zeros_(self.sampling_offsets.weight)
        device = self.sampling_offsets.bias.device
        thetas = torch.arange(self.num_heads, dtype=torch.float32, device=device) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], dim=-1)  # (heads, 2)
        grid = grid / grid.abs().max(dim=-1, keepdim=True)[0]
        grid = grid.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        scale = torch.arange(1, self.num_points + 1, dtype=torch.float32, device=device).view(1, 1, -1, 1)
        self.sampling_offsets.bias.copy_((grid * scale).reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: Tensor,
        value: Tensor,
        reference_points: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        query_pos: Tensor | None = None,
    ) -> Tensor:
        """
        Args:
            query: ``(B, Nq, C)`` content of the queries.
            value: ``(B, S, C)`` flattened multi-level maps (no position), ``S = Σ h_e·w_e``.
            reference_points: ``(B, Nq, L, 2)`` or ``(B, Nq, 2)``, normalised (x, y) in [0, 1].
            spatial_shapes: ``[(h_e, w_e)]`` for the L levels, in the order of ``value``.
            query_pos: optional ``(B, Nq, C)`` added to ``query`` before the offset/weight projections.

        Returns:
            ``(B, Nq, C)`` (output projection applied, no residual).
        """
        b, nq, _ = query.shape
        if len(spatial_shapes) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} levels, got {len(spatial_shapes)}")
        if value.shape[1] != sum(h * w for h, w in spatial_shapes):
            raise ValueError("value length does not match spatial_shapes")
        z = query if query_pos is None else query + query_pos
        v = self.value_proj(value).view(b, value.shape[1], self.num_heads, self.embed_dims // self.num_heads)
        off = self.sampling_offsets(z).view(b, nq, self.num_heads, self.num_levels, self.num_points, 2)
        att = self.attention_weights(z).view(b, nq, self.num_heads, self.num_levels * self.num_points)
        att = att.softmax(-1).view(b, nq, self.num_heads, self.num_levels, self.num_points)
        if reference_points.dim() == 3:
            reference_points = reference_points[:, :, None, :].expand(b, nq, self.num_levels, 2)
        normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=off.dtype, device=off.device)
        loc = reference_points[:, :, None, :, None, :] + off / normalizer[None, None, None, :, None, :]
        core = ms_deform_attn_core_reference if self.reference_core else ms_deform_attn_core
        out = core(v, spatial_shapes, loc, att)
        return self.output_proj(out)

    def extra_repr(self) -> str:
        return (
            f"embed_dims={self.embed_dims}, num_heads={self.num_heads}, "
            f"num_levels={self.num_levels}, num_points={self.num_points}"
        )
