"""The training loss of a segmentor: Mask2Former set criterion (+ Vireo's prior loss).

Which loss a model trains with is part of its config (``SegmentorConfig.loss_mode`` and
``prior_loss_weight``, set by the method row): :func:`build_loss` and the trainer both read it there.
"""

from __future__ import annotations

import torch
from torch import nn

from .mask2former_loss import Mask2FormerCriterion, Mask2FormerCriterionConfig, semantic_to_targets
from .prior_loss import prior_loss


class SegmentationLoss(nn.Module):
    """``loss(outputs, labels (B, H, W)) -> dict`` of weighted terms; the total is their sum.

    ``criterion(outputs, targets) -> dict`` is the set criterion (any callable of that form).
    """

    def __init__(self, criterion: Mask2FormerCriterion, num_classes: int, prior_weight: float = 0.0):
        super().__init__()
        self.criterion = criterion
        self.num_classes = num_classes
        self.prior_weight = prior_weight

    def forward(self, outputs: dict, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = self.criterion(outputs, semantic_to_targets(labels, self.num_classes))
        if self.prior_weight and "coarse_masks" in outputs:
            losses["loss_prior"] = self.prior_weight * prior_loss(outputs["coarse_masks"], labels)
        return losses


def build_loss(model, **criterion_kw) -> SegmentationLoss:
    """The loss the model's method row trains with (``model.cfg.loss_mode``, ``prior_loss_weight``)."""
    cfg = model.cfg
    criterion = Mask2FormerCriterion(
        Mask2FormerCriterionConfig(num_classes=model.num_classes, mode=cfg.loss_mode, **criterion_kw)
    )
    return SegmentationLoss(criterion, model.num_classes, prior_weight=cfg.prior_loss_weight)
