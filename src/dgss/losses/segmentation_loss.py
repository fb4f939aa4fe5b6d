"""The training loss of a segmentor: Mask2Former set criterion (+ Vireo's prior loss)."""
from __future__ import annotations

import torch
from torch import nn

from .mask2former_loss import Mask2FormerCriterion, Mask2FormerCriterionConfig, semantic_to_targets
from .prior_loss import prior_loss


class SegmentationLoss(nn.Module):
    """``loss(outputs, labels (B, H, W)) -> dict`` of weighted terms; the total is their sum."""

    def __init__(self, num_classes: int, *, mode: str = "stock", prior_weight: float = 0.0, **criterion_kw):
        super().__init__()
        self.num_classes = num_classes
        self.prior_weight = prior_weight
        self.criterion = Mask2FormerCriterion(Mask2FormerCriterionConfig(num_classes=num_classes, mode=mode,
                                                                         **criterion_kw))

    def forward(self, outputs: dict, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = self.criterion(outputs, semantic_to_targets(labels, self.num_classes))
        if self.prior_weight and "coarse_masks" in outputs:
            losses["loss_prior"] = self.prior_weight * prior_loss(outputs["coarse_masks"], labels)
        return losses


def build_loss(model, **criterion_kw) -> SegmentationLoss:
    """The loss a model's method trains with (stock for REIN/DepthForge; Vireo's deviations)."""
    text = model.cfg.text
    if text is None:
        return SegmentationLoss(model.num_classes, **criterion_kw)
    return SegmentationLoss(model.num_classes, mode=text.loss_mode,
                            prior_weight=text.cmpe_loss_weight if text.cmpe else 0.0, **criterion_kw)
