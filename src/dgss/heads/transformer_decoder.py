"""Masked-attention transformer decoder of Mask2Former (docs/methods/mask2former-head.md).

Each layer (post-norm, dropout 0)::

    q = cross_attn_norm(q + MHA(q + query_pos, mem + mem_pos, mem, attn_mask))   # masked cross-attention
    q = self_attn_norm(q + MHA(q + query_pos, q + query_pos, q))                  # self-attention
    q = ffn_norm(q + FFN(q))                                                      # 256 -> 2048 -> 256, ReLU

The decoder owns the layers, the final ``post_norm`` and the loop over memory levels (layer i uses
level i mod 3, 1/32, 1/16, 1/8, ...); the prediction heads (``cls_embed``/``mask_embed``) are supplied
by ``Mask2FormerHead`` as a callable. The attention mask of layer i comes from the previous prediction,
resized to the size of level i.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .pixel_decoder import FFN

T = TypeVar("T")


class MaskedAttentionDecoderLayer(nn.Module):
    """One decoder layer: masked cross-attention -> self-attention -> FFN, each with residual + LayerNorm.

    ``cross_attn`` / ``self_attn`` are plain ``nn.MultiheadAttention`` (batch first, bias on in/out
    projections). Reference names: ``{cross,self}_attn.attn.*``, ``ffn.layers.{0.0,1}``, ``norms.{0,1,2}``.
    """

    def __init__(self, dims: int = 256, num_heads: int = 8, ffn_dims: int = 2048) -> None:
        super().__init__()
        self.cross_attn = nn.MultiheadAttention(dims, num_heads, dropout=0.0, batch_first=True)
        self.cross_attn_norm = nn.LayerNorm(dims)
        self.self_attn = nn.MultiheadAttention(dims, num_heads, dropout=0.0, batch_first=True)
        self.self_attn_norm = nn.LayerNorm(dims)
        self.ffn = FFN(dims, ffn_dims)
        self.ffn_norm = nn.LayerNorm(dims)

    def forward(
        self, query: Tensor, query_pos: Tensor, memory: Tensor, memory_pos: Tensor, attn_mask: Tensor | None = None
    ) -> Tensor:
        """
        Args:
            query: ``(B, Q, C)`` content queries.
            query_pos: ``(B, Q, C)`` positional queries.
            memory: ``(B, S, C)`` memory tokens (level embedding already added).
            memory_pos: ``(B, S, C)`` key positions.
            attn_mask: bool ``(B·heads, Q, S)``, True = not allowed (rows must not be all True).

        Returns:
            ``(B, Q, C)``.
        """
        q = query
        out = self.cross_attn(q + query_pos, memory + memory_pos, memory, attn_mask=attn_mask, need_weights=False)[0]
        q = self.cross_attn_norm(q + out)
        qp = q + query_pos
        out = self.self_attn(qp, qp, q, need_weights=False)[0]
        q = self.self_attn_norm(q + out)
        return self.ffn_norm(q + self.ffn(q))


class Mask2FormerTransformerDecoder(nn.Module):
    """``num_layers`` :class:`MaskedAttentionDecoderLayer` plus the final ``post_norm`` LayerNorm.

    Parameter count for (256, 8 heads, FFN 2048, 9 layers): 14,209,280.
    """

    def __init__(self, num_layers: int = 9, dims: int = 256, num_heads: int = 8, ffn_dims: int = 2048) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MaskedAttentionDecoderLayer(dims, num_heads, ffn_dims) for _ in range(num_layers))
        self.post_norm = nn.LayerNorm(dims)
        self.num_heads = num_heads
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """§4.3: every weight matrix xavier_normal; biases keep the PyTorch default
        (``nn.MultiheadAttention`` zeroes its in/out projection biases, ``nn.Linear`` biases are uniform)."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)

    @staticmethod
    def attention_mask(mask_logits: Tensor, size: tuple[int, int], num_heads: int) -> Tensor:
        """Masked-attention mask from mask logits: bilinear resize to ``size`` (align_corners False),
        ``sigmoid < 0.5`` = masked, repeated per head, detached.

        ``mask_logits`` ``(B, Q, H, W)`` -> bool ``(B·heads, Q, h·w)`` (batch-major, as ``nn.MultiheadAttention``).
        """
        m = F.interpolate(mask_logits.detach(), size=size, mode="bilinear", align_corners=False)
        m = m.flatten(2).sigmoid() < 0.5  # (B, Q, h·w)
        return m.repeat_interleave(num_heads, dim=0)

    def forward(
        self,
        query: Tensor,
        query_pos: Tensor,
        memories: Sequence[Tensor],
        memory_pos: Sequence[Tensor],
        memory_sizes: Sequence[tuple[int, int]],
        predict: Callable[[Tensor], tuple[T, Tensor]],
    ) -> list[T]:
        """Run all layers with a prediction before layer 0 and after every layer.

        Args:
            query: ``(B, Q, C)`` initial content queries.
            query_pos: ``(B, Q, C)`` positional queries (used by every layer).
            memories: per level ``(B, S_e, C)``, low to high resolution; layer ``i`` uses level ``i mod L``.
            memory_pos: per level ``(B, S_e, C)``.
            memory_sizes: per level ``(h_e, w_e)``.
            predict: maps post-normed queries ``(B, Q, C)`` to ``(prediction, mask_logits (B, Q, H, W))``;
                the mask logits define the attention mask of the next layer.

        Returns:
            ``num_layers + 1`` predictions (initial first).
        """
        n_levels = len(memories)
        out, masks = predict(self.post_norm(query))
        preds = [out]
        for i, layer in enumerate(self.layers):
            e = i % n_levels
            attn_mask = self.attention_mask(masks, memory_sizes[e], self.num_heads)
            # a query whose mask covers nothing attends everywhere
            attn_mask = attn_mask & ~attn_mask.all(dim=-1, keepdim=True)
            query = layer(query, query_pos, memories[e], memory_pos[e], attn_mask)
            out, masks = predict(self.post_norm(query))
            preds.append(out)
        return preds
