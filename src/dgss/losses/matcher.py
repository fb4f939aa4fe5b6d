"""Hungarian matcher of Mask2Former (docs/methods/mask2former-head.md): point-sampled class/BCE/dice costs, scipy LSA.

Per image, one set of ``num_points`` uniform points (shared by all queries and GTs)::

    C_cls[q,g]  = -softmax(cls_q)[label_g]
    C_bce[q,g]  = mean_p [ y_gp·BCE(m_qp, 1) + (1-y_gp)·BCE(m_qp, 0) ]
    C_dice[q,g] = 1 - (2 Σ_p σ(m_qp) y_gp + 1) / (Σ_p σ(m_qp) + Σ_p y_gp + 1)
    C = w_cls·C_cls + w_mask·C_bce + w_dice·C_dice  ->  linear_sum_assignment

Costs are computed in fp32 without gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from .point_sampling import point_sample

# Non-finite costs are replaced by this value, so that they are only chosen when nothing else is possible.
_BIG_COST = 1e8


def pairwise_bce_cost(mask_logits: Tensor, targets: Tensor) -> Tensor:
    """``(Q, P)`` logits and ``(G, P)`` binary targets -> ``(Q, G)`` mean BCE-with-logits over points."""
    p = mask_logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(mask_logits, torch.ones_like(mask_logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(mask_logits, torch.zeros_like(mask_logits), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / p


def pairwise_dice_cost(mask_logits: Tensor, targets: Tensor, eps: float = 1.0) -> Tensor:
    """``(Q, P)`` logits and ``(G, P)`` targets -> ``(Q, G)`` naive dice cost with smoothing ``eps``."""
    probs = mask_logits.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + eps) / (denominator + eps)


class HungarianMatcher(nn.Module):
    """One-to-one matching of queries to ground-truth masks.

    Args:
        cost_class / cost_mask / cost_dice: cost weights (2 / 5 / 5).
        num_points: uniform points per image (12544).
        generator: optional RNG for the points (default: the global torch RNG).
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_mask: float = 5.0,
        cost_dice: float = 5.0,
        num_points: int = 12544,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points
        self.generator = generator

    def sample_points(self, device: torch.device) -> Tensor:
        """Uniform points for one image: ``(1, P, 2)`` in [0, 1]. Override to fix the points."""
        return torch.rand(1, self.num_points, 2, device=device, generator=self.generator)

    @torch.no_grad()
    def cost_matrix(self, logits: Tensor, masks: Tensor, labels: Tensor, gt_masks: Tensor, points: Tensor) -> Tensor:
        """Cost for one image.

        Args:
            logits: ``(Q, K+1)`` class logits.
            masks: ``(Q, h, w)`` mask logits.
            labels: ``(G,)`` GT class ids.
            gt_masks: ``(G, H, W)`` binary GT masks.
            points: ``(1, P, 2)`` normalised points.

        Returns:
            ``(Q, G)`` fp32 cost.
        """
        logits = logits.float()
        q, g = masks.shape[0], gt_masks.shape[0]
        pts_q = points.expand(q, -1, -1).float()
        pts_g = points.expand(g, -1, -1).float()
        m = point_sample(masks[:, None].float(), pts_q)[:, 0]  # (Q, P)
        y = point_sample(gt_masks[:, None].float(), pts_g)[:, 0]  # (G, P)
        c_cls = -logits.softmax(-1)[:, labels.to(logits.device)]
        cost = (
            self.cost_class * c_cls
            + self.cost_mask * pairwise_bce_cost(m, y)
            + self.cost_dice * pairwise_dice_cost(m, y)
        )
        return torch.nan_to_num(cost, nan=_BIG_COST, posinf=_BIG_COST, neginf=-_BIG_COST)

    @torch.no_grad()
    def forward(
        self, pred_logits: Tensor, pred_masks: Tensor, targets: Sequence[Mapping[str, Tensor]]
    ) -> list[tuple[Tensor, Tensor]]:
        """
        Args:
            pred_logits: ``(B, Q, K+1)``.
            pred_masks: ``(B, Q, h, w)`` mask logits.
            targets: per image ``{"labels": (G,) long, "masks": (G, H, W)}``.

        Returns:
            per image ``(query_idx, gt_idx)``, int64 tensors of length ``min(Q, G)`` (query_idx ascending).
        """
        out = []
        for b, tgt in enumerate(targets):
            points = self.sample_points(pred_masks.device)  # drawn for every image, also when G = 0
            labels, gt_masks = tgt["labels"], tgt["masks"]
            if labels.numel() == 0:
                empty = torch.empty(0, dtype=torch.int64)
                out.append((empty, empty.clone()))
                continue
            cost = self.cost_matrix(pred_logits[b], pred_masks[b], labels, gt_masks.to(pred_masks.device), points)
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return out
