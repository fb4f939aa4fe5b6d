"""CLIP text tower with split q/k/v, run with gradient (CAT-Seg fine-tunes its W_q and W_v).

Parameter names as OpenAI's top-level text keys (``token_embedding``, ``positional_embedding``,
``transformer.resblocks.{i}.*``, ``ln_final``, ``text_projection``) plus ``logit_scale`` (unused by
CAT-Seg, kept so files load strictly). Tokens (n, 77) -> embeddings at the EOT token (n, E), not
normalised. See docs/methods/catseg.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import TooLongPromptError
from .clip_blocks import ClipTransformer


@dataclass(frozen=True)
class ClipTextTowerConfig:
    width: int = 768
    layers: int = 12
    heads: int = 12
    embed_dim: int = 768
    context_length: int = 77
    vocab_size: int = 49408


class TrainableClipText(nn.Module):
    """``forward(tokens) -> (n, embed_dim)``: causal CLIP text transformer, EOT token, ln_final, projection."""

    def __init__(self, cfg: ClipTextTowerConfig):
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(cfg.context_length, cfg.width))
        self.transformer = ClipTransformer(cfg.width, cfg.layers, cfg.heads)
        self.ln_final = nn.LayerNorm(cfg.width)
        self.text_projection = nn.Parameter(cfg.width**-0.5 * torch.randn(cfg.width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.full((), math.log(1 / 0.07)))
        n = cfg.context_length
        self.register_buffer("causal_mask", torch.full((n, n), float("-inf")).triu(1), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (n, ctx) (EOT = the largest id of each row) -> (n, embed_dim)."""
        x = self.token_embedding(tokens) + self.positional_embedding
        mask = self.causal_mask.to(x.dtype)
        for block in self.transformer.resblocks:
            x = block(x, mask)
        x = self.ln_final(x)
        eot = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        return eot @ self.text_projection


def tokenize(texts: list[str], context_length: int = 77) -> torch.Tensor:
    """CLIP BPE token ids (n, context_length) (open_clip's tokenizer); too long -> TooLongPromptError."""
    from open_clip.tokenizer import _tokenizer as bpe

    sot, eot = bpe.sot_token_id, bpe.eot_token_id
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, t in enumerate(texts):
        ids = [sot] + bpe.encode(t) + [eot]
        if len(ids) > context_length:
            raise TooLongPromptError(
                f"prompt {t[:60]!r}... has {len(ids)} tokens; CLIP's context is {context_length}: shorten the class name"
            )
        out[i, : len(ids)] = torch.tensor(ids)
    return out
