"""CLIP image tower with dense patch embeddings (CAT-Seg, docs/methods/catseg.md).

OpenAI CLIP ViT (pre-LN, QuickGELU, split q/k/v: :mod:`dgss.backbones.clip_blocks`); parameter names
as OpenAI's ``visual.*``. Blocks 0..L-2 are standard; the last block runs in dense mode (value path,
residual = input cls token); ``ln_post`` on all tokens, ``@ proj``, cls dropped::

    x (B,3,S,S) -> conv1 (patch p) -> [cls ‖ tokens] + pos (resized bicubically if the grid differs)
      -> ln_pre -> blocks 0..L-2 (taps: raw residual stream after the tap blocks, cls dropped)
      -> dense block L-1 -> ln_post -> @ proj -> F (B, E, S/p, S/p)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .clip_blocks import ClipBlock, ClipTransformer


@dataclass(frozen=True)
class ClipVisionConfig:
    """An OpenAI CLIP ViT image tower. ``image_size``: the input side CAT-Seg feeds it; ``pos_grid``: the
    side of the position-embedding grid stored in the weights (resized to the token grid at every forward
    when they differ, as for ViT-B/16: 14 -> 24)."""

    image_size: int = 336
    patch_size: int = 14
    width: int = 1024
    layers: int = 24
    heads: int = 16
    embed_dim: int = 768
    pos_grid: int = 24

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


class DenseClipVisual(nn.Module):
    """``forward(x) -> (F, taps)``: dense final embeddings (B, E, g, g) and tap maps (B, C, g, g)."""

    def __init__(self, cfg: ClipVisionConfig, dense_residual: str = "cls"):
        super().__init__()
        if dense_residual not in ("cls", "token"):
            raise ValueError(f"dense_residual must be 'cls' or 'token', got {dense_residual!r}")
        self.cfg, self.dense_residual = cfg, dense_residual
        w = cfg.width
        scale = w**-0.5
        self.conv1 = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.pos_grid**2 + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = ClipTransformer(w, cfg.layers, cfg.heads)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(scale * torch.randn(w, cfg.embed_dim))

    def position(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position embeddings (1 + h*w, C) for a token grid; bicubic resize (align_corners=False)."""
        pos = self.positional_embedding
        g = self.cfg.pos_grid
        if grid == (g, g):
            return pos
        m = pos[1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        m = F.interpolate(m, size=grid, mode="bicubic", align_corners=False)
        return torch.cat([pos[:1], m[0].flatten(1).T])

    def forward(self, x: torch.Tensor, taps: tuple[int, ...] = ()) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Normalised images (B, 3, H, W) (H, W multiples of the patch) -> F (B, E, h, w), tap maps."""
        t = self.conv1(x)
        B, C, h, w = t.shape
        t = t.flatten(2).transpose(1, 2)
        t = torch.cat([self.class_embedding.to(t.dtype).expand(B, 1, C), t], dim=1)
        t = self.ln_pre(t + self.position((h, w)).to(t.dtype))
        blocks = self.transformer.resblocks
        maps = []
        for i, block in enumerate(blocks[:-1]):
            t = block(t)
            if i in taps:
                maps.append(t[:, 1:].transpose(1, 2).reshape(B, C, h, w))
        t = cast(ClipBlock, blocks[-1]).forward_dense(t, self.dense_residual)
        f = self.ln_post(t) @ self.proj
        return f[:, 1:].transpose(1, 2).reshape(B, -1, h, w), maps
