"""DepthForge: REIN tokens that attend to the visual features and to the frozen depth features.

Default (``logit_sum``, the reference code), after frozen block l with depth tokens Z_l (B, N, C)::

    S   = softmax_over_tokens((F T_lᵀ + Z_l T_lᵀ) / sqrt(C))      one softmax over the summed logits
    agg = S[..., 1:] @ mlp_token2feat(T_l[1:])
    F   = F + s * mlp_delta_f(agg + F)                              depth never enters F itself

Ablation switches (``docs/methods/depthforge.md``; rows marked "dgss definition" are our reading of prose):
``depth_fusion`` in ``logit_sum | none | prob_mean | learned_mix | feature_concat | depth_token`` and
``attention_opt`` (False: raw tokens as values, no discard, no inner residual).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import torch
from torch import nn

from .rein import ReinAdapter, ReinConfig

DepthFusion = Literal["logit_sum", "none", "prob_mean", "learned_mix", "feature_concat", "depth_token"]
FUSIONS = ("logit_sum", "none", "prob_mean", "learned_mix", "feature_concat", "depth_token")


@dataclass(frozen=True)
class DepthForgeConfig(ReinConfig):
    """REIN settings + how depth enters the token attention."""

    depth_fusion: DepthFusion = "logit_sum"
    attention_opt: bool = True
    depth_dim: int | None = None  # width of the depth tokens when it differs from embed_dim (projected)

    def __post_init__(self):
        if self.depth_fusion not in FUSIONS:
            raise ValueError(f"depth_fusion must be one of {FUSIONS}, got {self.depth_fusion!r}")


class DepthForgeAdapter(ReinAdapter):
    """``update(F, l, tokens, depth=Z_l)``; with ``depth`` all zeros (or None) it equals REIN."""

    cfg: DepthForgeConfig

    def __init__(self, cfg: DepthForgeConfig):
        super().__init__(cfg)
        C, L = cfg.embed_dim, cfg.num_layers
        if cfg.depth_dim is not None and cfg.depth_dim != C:
            # declared projection for a narrower/wider depth encoder (dgss extension; zero-init: starts as REIN)
            self.depth_proj = nn.Linear(cfg.depth_dim, C)
            nn.init.zeros_(self.depth_proj.weight)
            nn.init.zeros_(self.depth_proj.bias)
        if cfg.depth_fusion == "learned_mix":
            self.fusion_weights = nn.Parameter(torch.full((L,), 0.5))
        elif cfg.depth_fusion == "feature_concat":
            self.concat_proj = nn.Linear(2 * C, C)
            with torch.no_grad():
                self.concat_proj.weight.zero_()
                self.concat_proj.weight[:, :C].copy_(torch.eye(C))
                self.concat_proj.bias.zero_()
        elif cfg.depth_fusion == "depth_token":
            # a second token set that attends only to depth (shapes and init as the visual tokens)
            b = self.token_init_bound()
            if cfg.rank is None:
                self.depth_tokens = nn.Parameter(torch.empty(L, cfg.num_tokens, C))
                nn.init.uniform_(self.depth_tokens, -b, b)
            else:
                self.depth_tokens_a = nn.Parameter(torch.empty(L, cfg.num_tokens, cfg.rank))
                self.depth_tokens_b = nn.Parameter(torch.empty(L, cfg.rank, C))
                nn.init.uniform_(self.depth_tokens_a, -b, b)
                nn.init.uniform_(self.depth_tokens_b, -b, b)

    def update(
        self, feats: torch.Tensor, layer: int, tokens: torch.Tensor, depth: torch.Tensor | None = None, **_
    ) -> torch.Tensor:
        cfg = self.cfg
        t = tokens[layer]
        mode = cfg.depth_fusion if depth is not None else "none"
        if depth is not None and hasattr(self, "depth_proj"):
            depth = self.depth_proj(depth)
        z = cast(torch.Tensor, depth)  # read only when mode != "none", i.e. depth was given
        if mode == "feature_concat":
            feats = self.concat_proj(torch.cat([feats, z], dim=-1))
        logits = self.attention_logits(feats, t)
        if mode == "logit_sum":
            weights = self.token_weights(logits + self.attention_logits(z, t))
        elif mode == "prob_mean":
            weights = 0.5 * self.token_weights(logits) + 0.5 * self.token_weights(self.attention_logits(z, t))
        elif mode == "learned_mix":
            a = torch.sigmoid(self.fusion_weights[layer])
            weights = self.token_weights(a * logits + (1 - a) * self.attention_logits(z, t))
        else:  # none, feature_concat, depth_token
            weights = self.token_weights(logits)
        self.record(layer, weights)
        if not cfg.attention_opt:
            return feats + self.scale * self.mlp_delta_f(weights @ t)
        agg = self.aggregate(weights, t)
        if mode == "depth_token":
            td = (
                self.depth_tokens[layer]
                if cfg.rank is None
                else self.depth_tokens_a[layer] @ self.depth_tokens_b[layer]
            )
            agg = agg + self.aggregate(self.token_weights(self.attention_logits(z, td)), td)
        return self.refine(feats, agg)
