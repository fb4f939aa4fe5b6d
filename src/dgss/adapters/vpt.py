"""VPT-deep: learned prompt tokens in front of the patch tokens of every frozen block (``docs/methods/vpt.md``).

Block l sees ``[prefix, P_l, patches]`` (prefix = cls/registers, P_l (M, C) the block's prompts, no
positional embedding); after the block the M prompt outputs are dropped and the next block gets P_{l+1}.
Between blocks, and therefore at the taps, the sequence holds the prefix and the patch tokens only.
The rotary embeddings of EVA02 and DINOv3 rotate the patch tokens only: the prompts, placed after the P
prefix tokens (5 on DINOv3), get identity rows in front of the table (our choice for EVA02; for DINOv3 the
same as raising the attention's prefix count to P + M, so the table of h*w rows lines up with the patches).

M = 150 prompts per block, init U(±sqrt(6 / (3 p² + C))), no projection, no dropout:
24 · 150 · 1024 = 3,686,400 parameters on ViT-L. Not applicable to SAM (windowed NHWC blocks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .base import BlockAdapter


@dataclass(frozen=True)
class VPTConfig:
    num_layers: int = 24
    embed_dim: int = 1024
    num_prompts: int = 150
    patch_size: int = 16  # enters the init bound only


class VPTAdapter(BlockAdapter):
    """``prompt_embeddings`` (L, M, C); ``run_block`` inserts, runs and drops block l's prompts."""

    def __init__(self, cfg: VPTConfig):
        super().__init__()
        self.cfg = cfg
        self.prompt_embeddings = nn.Parameter(torch.empty(cfg.num_layers, cfg.num_prompts, cfg.embed_dim))
        bound = math.sqrt(6.0 / (3 * cfg.patch_size**2 + cfg.embed_dim))
        nn.init.uniform_(self.prompt_embeddings, -bound, bound)

    def check_encoder(self, encoder) -> None:
        super().check_encoder(encoder)
        if encoder.cfg.family == "sam":
            raise ValueError(
                f"VPT needs global token-sequence blocks; {encoder.cfg.name!r} (SAM) runs windowed "
                "attention on a spatial grid, where prompt tokens have no place"
            )

    def run_block(self, encoder, layer: int, tokens: torch.Tensor, state) -> torch.Tensor:
        P, M = encoder.num_prefix_tokens, self.cfg.num_prompts
        prompts = self.prompt_embeddings[layer].to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        x = torch.cat([tokens[:, :P], prompts, tokens[:, P:]], dim=1)
        if state.rope is not None:
            state = type(state)(state.grid, identity_rope_prefix(state.rope, M))
        out = encoder.forward_block(layer, x, state)
        return torch.cat([out[:, :P], out[:, P + M :]], dim=1)


def identity_rope_prefix(rope: torch.Tensor, n: int) -> torch.Tensor:
    """timm's concatenated [sin | cos] rotary table (N, 2D) with ``n`` identity rows (sin 0, cos 1) in front:
    the n tokens right after the attention's prefix tokens stay unrotated."""
    if rope.ndim != 2 or rope.shape[-1] % 2:
        raise ValueError(f"expected a (N, 2D) [sin | cos] rotary table, got {tuple(rope.shape)}")
    d = rope.shape[-1] // 2
    ident = torch.cat([rope.new_zeros(n, d), rope.new_ones(n, d)], dim=-1)
    return torch.cat([ident, rope], dim=0)
