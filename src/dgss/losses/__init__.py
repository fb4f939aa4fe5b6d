"""Losses: Mask2Former set criterion, Hungarian matcher and point sampling."""

from .mask2former_loss import Mask2FormerCriterion, Mask2FormerCriterionConfig, semantic_to_targets
from .matcher import HungarianMatcher, pairwise_bce_cost, pairwise_dice_cost
from .point_sampling import point_sample, uncertain_point_coords_with_randomness, uncertainty
from .prior_loss import prior_loss
from .segmentation_loss import SegmentationLoss, build_loss

__all__ = [
    "SegmentationLoss",
    "build_loss",
    "prior_loss",
    "HungarianMatcher",
    "Mask2FormerCriterion",
    "Mask2FormerCriterionConfig",
    "pairwise_bce_cost",
    "pairwise_dice_cost",
    "point_sample",
    "semantic_to_targets",
    "uncertain_point_coords_with_randomness",
    "uncertainty",
]
