"""CAT-Seg's per-pixel, per-class binary cross-entropy (docs/methods/catseg.md).

Logits (B, T, h, w) are resized bilinearly (align_corners=False) to the label size (H, W); targets are
one-hot over the T classes. ``ignore="negative"`` (the reference): ignore pixels keep an all-zero target
row (every class a negative) and the mean runs over all B*T*H*W elements; ``ignore="skip"``: ignore
pixels are left out of the mean.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ..errors import LabelValueError

IgnoreMode = Literal["negative", "skip"]


def catseg_bce_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = 255,
    ignore: IgnoreMode = "negative",
    check_labels: bool = True,
) -> torch.Tensor:
    """logits (B, T, h, w), labels (B, H, W) class ids in [0, T) or ``ignore_index`` -> scalar loss.
    ``check_labels``: refuse ids outside the vocabulary (a data-dependent test; off for shape-only runs)."""
    if ignore not in ("negative", "skip"):
        raise ValueError(f"ignore must be 'negative' or 'skip', got {ignore!r}")
    B, T = logits.shape[:2]
    H, W = labels.shape[-2:]
    if logits.shape[-2:] != (H, W):
        logits = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False)
    valid = labels != ignore_index
    bad = labels[valid & ((labels < 0) | (labels >= T))] if check_labels else labels[:0]
    if bad.numel():
        vals = sorted(set(bad.unique().tolist()))
        raise LabelValueError(
            f"labels hold class ids {vals[:8]} outside the {T}-class vocabulary (ignore value {ignore_index})", vals
        )
    target = torch.zeros_like(logits)
    idx = torch.where(valid, labels, 0).long()
    target.scatter_(1, idx[:, None], valid[:, None].to(logits.dtype))
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if ignore == "negative":
        return loss.mean()
    w = valid[:, None].to(loss.dtype)
    return (loss * w).sum() / (w.sum() * T).clamp_min(1)


class CatSegLoss:
    """``loss(logits, labels) -> {"loss_bce": scalar}`` (the trainer sums the values)."""

    def __init__(self, ignore_index: int = 255, ignore: IgnoreMode = "negative"):
        self.ignore_index, self.ignore = ignore_index, ignore

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss_bce": catseg_bce_loss(logits, labels, self.ignore_index, self.ignore)}
