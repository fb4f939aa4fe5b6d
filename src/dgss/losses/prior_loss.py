"""CMPE prior loss (Vireo): BCE between coarse class logits and the one-hot label at stride 4."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def prior_loss(coarse: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """coarse (B, K, h, w) logits, labels (B, H, W) -> mean BCE over valid pixels x K.

    Labels are nearest-downsampled to (h, w); pixels with ``ignore_index`` are dropped; the
    background / no-object entry is not a channel of ``coarse``.
    """
    B, K, h, w = coarse.shape
    lab = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
    valid = lab != ignore_index
    if not valid.any():
        return coarse.sum() * 0.0
    logits = coarse.permute(0, 2, 3, 1)[valid]  # (n, K)
    target = F.one_hot(lab[valid].clamp(max=K - 1), K).to(logits.dtype)
    target[lab[valid] >= K] = 0  # labels outside the vocabulary
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())
