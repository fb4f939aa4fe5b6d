"""Mask2Former set criterion with deep supervision (docs/methods/mask2former-head.md; Vireo mode: docs/methods/vireo.md).

Per decoder output (the last one and the 9 auxiliary ones), after Hungarian matching:

``stock`` (REIN, DepthForge)
    - ``loss_cls``  = Σ_{b,q} w_y·CE / Σ_{b,q} w_y, class weights ``[1]*K + [no_object_weight]``;
    - ``loss_mask`` = Σ_masks Σ_points BCE-with-logits / (n̄·P) on importance-sampled points
      (P = 12544, oversample 3, importance 0.75; GT sampled at the same points);
    - ``loss_dice`` = Σ_masks [1 - (2 Σ σ(p)·t + 1) / (Σ σ(p) + Σ t + 1)] / n̄ on the same points.
``full_res_query_mean`` (Vireo)
    - ``loss_cls``  = Σ_{b,q} w_y·CE / (B·Q);
    - mask logits upsampled bilinearly to the label size; BCE over all pixels / (n̄·H·W); dice / n̄.

n̄ = max(n averaged over data-parallel ranks, 1), n = matched pairs in the local batch. With n = 0 locally,
the mask and dice terms are ``0 · Σ pred_masks`` (finite, graph kept, zero gradient).

The returned dict holds the **weighted** terms (``class_weight·loss_cls`` etc.) named ``loss_cls``,
``loss_mask``, ``loss_dice`` for the last output and ``d{i}.loss_*`` (i = 0..8) for ``aux_outputs[i]``;
the training loss is ``sum(losses.values())``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .matcher import HungarianMatcher
from .point_sampling import point_sample, uncertain_point_coords_with_randomness

Target = Mapping[str, Tensor]


@dataclass
class Mask2FormerCriterionConfig:
    """Loss settings (defaults = the reference configs)."""

    num_classes: int = 19
    mode: Literal["stock", "full_res_query_mean"] = "stock"
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    cost_class: float = 2.0
    cost_mask: float = 5.0
    cost_dice: float = 5.0
    dice_eps: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in ("stock", "full_res_query_mean"):
            raise ValueError(f"mode must be 'stock' or 'full_res_query_mean', got {self.mode!r}")


def semantic_to_targets(label_map: Tensor, num_classes: int, ignore_index: int = 255) -> list[dict[str, Tensor]]:
    """Semantic label maps -> per-image instance targets, one binary mask per class present.

    Args:
        label_map: ``(B, H, W)`` long, values in ``[0, num_classes)`` or ``ignore_index``.

    Returns:
        per image ``{"labels": (G,) long ascending, "masks": (G, H, W) bool}``; ignored pixels are in no mask.
    """
    if label_map.dim() != 3:
        raise ValueError(f"label_map must be (B, H, W), got {tuple(label_map.shape)}")
    out = []
    for lm in label_map:
        ids = torch.unique(lm)
        ids = ids[ids != ignore_index]
        bad = ids[(ids < 0) | (ids >= num_classes)]
        if bad.numel():
            raise ValueError(f"label values {bad.tolist()} outside [0, {num_classes}) and != {ignore_index}")
        out.append({"labels": ids.long(), "masks": lm[None] == ids[:, None, None]})
    return out


def _at_least_fp32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _batch_index(indices: Sequence[tuple[Tensor, Tensor]], which: int, device: torch.device) -> tuple[Tensor, Tensor]:
    b = torch.cat([torch.full_like(ix[which], i) for i, ix in enumerate(indices)])
    j = torch.cat([ix[which] for ix in indices])
    return b.to(device), j.to(device)


class Mask2FormerCriterion(nn.Module):
    """Hungarian-matched CE + BCE + dice on all decoder outputs (see module docstring).

    Args:
        cfg: loss settings.
        generator: optional RNG for all point draws (matcher and importance sampling); default the global one.

    Random draws per output, in order: the matcher's points per image, then (stock mode) the importance
    sampling of all matched masks of the batch. Outputs are processed last first, then ``aux_outputs`` 0..8.
    """

    def __init__(self, cfg: Mask2FormerCriterionConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.generator = generator
        self.matcher = HungarianMatcher(cfg.cost_class, cfg.cost_mask, cfg.cost_dice, cfg.num_points, generator)

    # ------------------------------------------------------------------------------------------------
    def sample_points(self, mask_logits: Tensor) -> Tensor:
        """Importance-sampled points for matched masks ``(N, 1, h, w)`` -> ``(N, P, 2)``. Override to fix them."""
        return uncertain_point_coords_with_randomness(
            mask_logits,
            self.cfg.num_points,
            self.cfg.oversample_ratio,
            self.cfg.importance_sample_ratio,
            self.generator,
        )

    @staticmethod
    def average_num_masks(n: int, device: torch.device) -> Tensor:
        """n̄ = max(mean of n over data-parallel ranks, 1) as an fp32 scalar tensor."""
        t = torch.as_tensor(float(n), dtype=torch.float32, device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(t)
            t = t / dist.get_world_size()
        return t.clamp(min=1.0)

    def loss_labels(
        self, pred_logits: Tensor, targets: Sequence[Target], indices: Sequence[tuple[Tensor, Tensor]]
    ) -> Tensor:
        """Unweighted class loss of one output; ``pred_logits`` ``(B, Q, K+1)``."""
        b, q, _ = pred_logits.shape
        device = pred_logits.device
        target = torch.full((b, q), self.num_classes, dtype=torch.int64, device=device)
        bi, qi = _batch_index(indices, 0, device)
        labels = torch.cat([t["labels"].to(device)[ix[1].to(device)] for t, ix in zip(targets, indices, strict=False)])
        target[bi, qi] = labels.long()
        logits = _at_least_fp32(pred_logits).transpose(1, 2)  # (B, K+1, Q)
        weights = torch.ones(self.num_classes + 1, dtype=logits.dtype, device=device)  # [1]*K + [no-object]
        weights[-1] = self.cfg.no_object_weight
        if self.cfg.mode == "stock":
            return F.cross_entropy(logits, target, weight=weights)  # Σ w_y CE / Σ w_y
        return F.cross_entropy(logits, target, weight=weights, reduction="none").mean()  # Σ w_y CE / (B·Q)

    def loss_masks(
        self, pred_masks: Tensor, targets: Sequence[Target], indices: Sequence[tuple[Tensor, Tensor]], num_masks: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Unweighted ``(loss_mask, loss_dice)`` of one output; ``pred_masks`` ``(B, Q, h, w)`` logits."""
        device = pred_masks.device
        bi, qi = _batch_index(indices, 0, device)
        if bi.numel() == 0:
            zero = pred_masks.sum() * 0.0
            return zero, zero.clone()
        src = _at_least_fp32(pred_masks[bi, qi])[:, None]  # (N, 1, h, w)
        tgt = torch.cat([t["masks"].to(device)[ix[1].to(device)] for t, ix in zip(targets, indices, strict=False)])
        tgt = tgt.to(src.dtype)[:, None]  # (N, 1, H, W)
        if self.cfg.mode == "stock":
            with torch.no_grad():
                points = self.sample_points(src)
                labels = point_sample(tgt, points)[:, 0]  # (N, P)
            logits = point_sample(src, points)[:, 0]  # (N, P)
        else:
            logits = F.interpolate(src, size=tgt.shape[-2:], mode="bilinear", align_corners=False).flatten(1)
            labels = tgt.flatten(1)
        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1).sum() / num_masks
        probs = logits.sigmoid()
        eps = self.cfg.dice_eps
        dice = 1 - (2 * (probs * labels).sum(1) + eps) / (probs.sum(1) + labels.sum(1) + eps)
        return bce, dice.sum() / num_masks

    def loss_single(
        self, pred_logits: Tensor, pred_masks: Tensor, targets: Sequence[Target], num_masks: Tensor
    ) -> dict[str, Tensor]:
        """Match one output and return its weighted ``loss_cls``, ``loss_mask``, ``loss_dice``."""
        indices = self.matcher(pred_logits, pred_masks, targets)
        loss_mask, loss_dice = self.loss_masks(pred_masks, targets, indices, num_masks)
        loss_cls = self.loss_labels(pred_logits, targets, indices)
        return {
            "loss_cls": self.cfg.class_weight * loss_cls,
            "loss_mask": self.cfg.mask_weight * loss_mask,
            "loss_dice": self.cfg.dice_weight * loss_dice,
        }

    def forward(self, outputs: Mapping, targets: Sequence[Target]) -> dict[str, Tensor]:
        """
        Args:
            outputs: head output ``{"pred_logits" (B,Q,K+1), "pred_masks" (B,Q,h,w), "aux_outputs": [...]}``.
            targets: per image ``{"labels": (G,) long, "masks": (G, H, W) bool/float}`` (same H, W for all).

        Returns:
            weighted loss terms (see module docstring); total = ``sum(values)``.
        """
        pred_logits = outputs["pred_logits"]
        if len(targets) != pred_logits.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {pred_logits.shape[0]}")
        q = pred_logits.shape[1]
        n = sum(min(q, int(t["labels"].numel())) for t in targets)
        num_masks = self.average_num_masks(n, pred_logits.device)
        losses = {}
        last = self.loss_single(pred_logits, outputs["pred_masks"], targets, num_masks)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            for k, v in self.loss_single(aux["pred_logits"], aux["pred_masks"], targets, num_masks).items():
                losses[f"d{i}.{k}"] = v
        losses.update(last)
        return losses
