"""Vireo's GeoText Query: REIN tokens fused with CLIP text and blended visual/depth awareness.

Per forward (text context, identical for all layers)::

    t̄ = normalise(mean_p E_bb)            (K+1, 768)   E_bb: encoder text table, 32 templates
    t  = text_embed(t̄)                    (K+1, C)

After frozen block l (``docs/methods/vireo.md``)::

    P  = A[l] @ B[l];  P' = P + softmax_over_classes(P tᵀ) t          (text fusion, unscaled)
    α  = sigmoid(w_l)
    S  = softmax_over_tokens((α F P'ᵀ + (1 - α) Z_l P'ᵀ) / sqrt(C))
    F  = F + s * mlp_delta_f(S[..., 1:] @ mlp_token2feat(P'[1:]) + F)

The query link uses the raw tokens A@B (not P'). Names equal the reference ``backbone.vireo.*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .rein import ReinAdapter, ReinConfig


@dataclass(frozen=True)
class GeoTextConfig(ReinConfig):
    text_dim: int = 768
    text_fusion: bool = True
    depth_fusion: Literal["learned_mix", "logit_sum", "none"] = "learned_mix"
    fusion_init: float = 0.5
    depth_dim: int | None = None

    def __post_init__(self):
        if self.depth_fusion not in ("learned_mix", "logit_sum", "none"):
            raise ValueError(f"GeoText depth_fusion must be learned_mix, logit_sum or none, got {self.depth_fusion!r}")


class GeoTextAdapter(ReinAdapter):
    """``update(F, l, tokens, depth=Z_l, text=t)``; ``text_context(E_bb)`` gives ``t`` once per forward."""

    cfg: GeoTextConfig

    def __init__(self, cfg: GeoTextConfig):
        super().__init__(cfg)
        C = cfg.embed_dim
        self.text_embed = nn.Linear(cfg.text_dim, C)
        if cfg.depth_fusion == "learned_mix":
            self.fusion_weights = nn.ParameterList(
                [nn.Parameter(torch.tensor(cfg.fusion_init)) for _ in range(cfg.num_layers)]
            )
        if cfg.depth_dim is not None and cfg.depth_dim != C:
            self.depth_proj = nn.Linear(cfg.depth_dim, C)
            nn.init.zeros_(self.depth_proj.weight)
            nn.init.zeros_(self.depth_proj.bias)

    def text_context(self, encoder_table: torch.Tensor) -> torch.Tensor:
        """E_bb (K+1, P, D_t) -> projected text rows t (K+1, C)."""
        t = F.normalize(F.normalize(encoder_table, dim=-1).mean(dim=1), dim=-1)
        return self.text_embed(t)

    def fused_tokens(self, tokens: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        """P (T, C) -> P' = P + softmax(P tᵀ) t."""
        if not self.cfg.text_fusion or text is None:
            return tokens
        return tokens + (tokens @ text.t()).softmax(dim=-1) @ text

    def update(
        self,
        feats: torch.Tensor,
        layer: int,
        tokens: torch.Tensor,
        depth: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        **_,
    ) -> torch.Tensor:
        p = self.fused_tokens(tokens[layer], text)
        logits = self.attention_logits(feats, p)
        if depth is not None and self.cfg.depth_fusion != "none":
            if hasattr(self, "depth_proj"):
                depth = self.depth_proj(depth)
            dl = self.attention_logits(depth, p)
            if self.cfg.depth_fusion == "learned_mix":
                a = torch.sigmoid(self.fusion_weights[layer])
                logits = a * logits + (1 - a) * dl
            else:
                logits = logits + dl
        weights = self.token_weights(logits)
        self.record(layer, weights)
        return self.refine(feats, self.aggregate(weights, p))
