"""Order-one changes to a CAT-Seg model's trained tensors, so that a path ignoring them gives other outputs."""

from __future__ import annotations

import torch


def perturbed(model, seed: int = 0):
    """Add N(0, 0.2²) to every trained tensor (text and image q/v, aggregator, upsample); returns the model in
    eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()
