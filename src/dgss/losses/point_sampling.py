"""Point sampling for the Mask2Former matcher and losses (docs/methods/mask2former-head.md, PointRend style).

Coordinates are normalised (x, y) in [0, 1]², mapped to [-1, 1] for ``grid_sample`` with
``align_corners=False`` and zero padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def point_sample(input: Tensor, points: Tensor, align_corners: bool = False) -> Tensor:
    """Bilinear sampling of ``input`` at normalised points.

    Args:
        input: ``(N, C, H, W)``.
        points: ``(N, P, 2)`` (x, y) in [0, 1].

    Returns:
        ``(N, C, P)``.
    """
    grid = 2.0 * points.unsqueeze(2) - 1.0  # (N, P, 1, 2)
    out = F.grid_sample(input, grid.to(input.dtype), mode="bilinear", padding_mode="zeros", align_corners=align_corners)
    return out.squeeze(3)


def uncertainty(logits: Tensor) -> Tensor:
    """Uncertainty of class-agnostic mask logits: ``-|logit|`` (highest at the decision boundary)."""
    return -logits.abs()


@torch.no_grad()
def uncertain_point_coords_with_randomness(
    mask_logits: Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Importance sampling of points per mask (no gradient).

    Draw ``int(num_points·oversample_ratio)`` uniform points, keep the ``int(importance_sample_ratio·num_points)``
    most uncertain ones (``-|logit|`` at the point), and append fresh uniform points up to ``num_points``.
    Random draws, in order: ``rand(N, P·oversample, 2)``, then ``rand(N, P - P_important, 2)``.

    Args:
        mask_logits: ``(N, 1, H, W)``.

    Returns:
        ``(N, num_points, 2)`` (x, y) in [0, 1].
    """
    n = mask_logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    if num_uncertain > num_sampled:
        raise ValueError("importance_sample_ratio · num_points exceeds the oversampled point count")
    device = mask_logits.device
    coords = torch.rand(n, num_sampled, 2, device=device, generator=generator)
    point_unc = uncertainty(point_sample(mask_logits, coords))[:, 0]  # (N, num_sampled)
    idx = torch.topk(point_unc, k=num_uncertain, dim=1)[1]  # (N, num_uncertain)
    coords = torch.gather(coords, 1, idx[..., None].expand(-1, -1, 2))
    if num_random > 0:
        coords = torch.cat([coords, torch.rand(n, num_random, 2, device=device, generator=generator)], dim=1)
    return coords
