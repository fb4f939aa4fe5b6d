"""Adapters that act *inside* the frozen blocks (LoRA, AdaptFormer, VPT; ``docs/methods/lora.md, docs/methods/adaptformer.md, docs/methods/vpt.md``).

The REIN family (REIN, DepthForge, Vireo, FADA) updates the patch tokens *between* blocks
(``update(F, l, tokens)``). The parameter-efficient fine-tuning baselines instead change what a frozen
block computes; the segmentor then runs ``adapter.run_block(encoder, l, x, state)`` in place of
``encoder.forward_block(l, x, state)``. The frozen weights themselves are never modified.

Prefix tokens (cls + registers: ``encoder.num_prefix_tokens``, 1 for DINOv2/EVA02/CLIP, 5 for DINOv3, 0 for
SAM) are never updated by a token adapter: the segmentor hands it ``tokens[:, P:]`` only. Block adapters
change what the block computes for every token and hand back the layout ``[P prefix, N patch tokens]``.
"""

from __future__ import annotations

import torch
from torch import nn


class BlockAdapter(nn.Module):
    """Base of the adapters that run block ``l`` themselves: tokens (B, P + N, C) -> (B, P + N, C)."""

    def run_block(self, encoder, layer: int, tokens: torch.Tensor, state) -> torch.Tensor:
        raise NotImplementedError

    def check_encoder(self, encoder) -> None:
        """Raise ``ValueError`` when this adapter cannot act on ``encoder``'s blocks (called when the segmentor
        is built; depth and width are checked by ``SegmentorConfig``)."""
