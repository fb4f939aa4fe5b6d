"""CAT-Seg test helpers: a tiny open_clip CLIP in the real layout, and order-one changes to a model's trained
tensors (so that a path ignoring them gives other outputs)."""

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


def tiny_open_clip(seed: int = 0):
    """open_clip's ``CLIP`` at a tiny size (width 32, 4 image / 2 text layers, 32² images, 16-d embedding),
    initialised after ``torch.manual_seed(seed)``: a CLIP file in the released key layout."""
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    return CLIP(
        embed_dim=16,
        vision_cfg=dict(image_size=32, layers=4, width=32, head_width=16, patch_size=4),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2),
        quick_gelu=True,
    )
