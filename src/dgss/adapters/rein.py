"""REIN: learnable tokens that refine the patch features after every frozen block (``docs/methods/rein.md``).

Per block l (patch tokens F (B, N, C) only; prefix tokens pass through)::

    T_l = A[l] @ B[l]                                  (T, C)  low-rank tokens (or full tokens)
    S   = softmax_over_tokens(F T_lᵀ / sqrt(C))          (B, N, T)
    agg = S[..., 1:] @ mlp_token2feat(T_l[1:])           token 0 dropped ("discard" trick)
    F   = F + s * mlp_delta_f(agg + F)

The query link turns the tokens of all layers into the decoder's query embedding (T, 256):
interleaved [max, mean, last] over layers of ``transform(T)``, then ``merge``.
Parameter names equal the reference ``backbone.reins.*`` names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


@dataclass(frozen=True)
class ReinConfig:
    """REIN adapter (defaults = the released ``LoRAReins``: 2,990,081 parameters on ViT-L)."""

    num_layers: int = 24
    embed_dim: int = 1024
    patch_size: int = 16  # enters the token init bound only
    num_tokens: int = 100
    rank: int | None = 16  # None = full-rank tokens (5,016,065 parameters)
    query_dim: int = 256
    discard_first_token: bool = True
    use_softmax: bool = True
    scale: Literal["learnable", "fixed_one"] = "learnable"
    scale_init: float = 1e-3
    link_queries: bool = True


def query_link(transform: nn.Module, merge: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``docs/methods/rein.md``: tokens of all layers (L, T, C) -> queries (T, D): ``transform``, then max / mean / last
    over layers, INTERLEAVED per channel ([m0, a0, z0, m1, ...], the reference's column order of ``merge``)."""
    t = transform(tokens)  # (L, T, D)
    pooled = torch.stack([t.max(dim=0).values, t.mean(dim=0), t[-1]], dim=-1)  # (T, D, 3)
    return merge(pooled.flatten(-2))


def add_scale(module: nn.Module, cfg) -> None:
    """The outer-residual scalar ``s``: learnable (init ``cfg.scale_init``) or a constant 1 buffer."""
    if cfg.scale == "learnable":
        module.scale = nn.Parameter(torch.tensor(cfg.scale_init))
    elif cfg.scale == "fixed_one":
        module.register_buffer("scale", torch.tensor(1.0), persistent=False)
    else:
        raise ValueError(f"adapter.scale must be 'learnable' or 'fixed_one', got {cfg.scale!r}")


class TokenAttentionRecorder:
    """Mixin: ``recorder``, an optional callable(layer, weights (B, N, T)), receives the token-attention
    weights of every block (token-attention pictures); ``record`` is called by the adapter's update."""

    recorder = None

    def record(self, layer: int, weights: torch.Tensor) -> None:
        if self.recorder is not None:
            self.recorder(layer, weights.detach())


class ReinAdapter(TokenAttentionRecorder, nn.Module):
    """Shared-MLP token refinement of REIN. ``update(F, l, tokens)`` -> refined F (B, N, C)."""

    def __init__(self, cfg: ReinConfig):
        super().__init__()
        self.cfg = cfg
        L, T, C, r = cfg.num_layers, cfg.num_tokens, cfg.embed_dim, cfg.rank
        bound = self.token_init_bound()
        if r is None:
            self.learnable_tokens = nn.Parameter(torch.empty(L, T, C))
            nn.init.uniform_(self.learnable_tokens, -bound, bound)
        else:
            self.learnable_tokens_a = nn.Parameter(torch.empty(L, T, r))
            self.learnable_tokens_b = nn.Parameter(torch.empty(L, r, C))
            nn.init.uniform_(self.learnable_tokens_a, -bound, bound)
            nn.init.uniform_(self.learnable_tokens_b, -bound, bound)
        add_scale(self, cfg)
        self.mlp_token2feat = nn.Linear(C, C)
        self.mlp_delta_f = nn.Linear(C, C)
        if cfg.scale == "fixed_one":
            nn.init.zeros_(self.mlp_delta_f.weight)
            nn.init.zeros_(self.mlp_delta_f.bias)
        if cfg.link_queries:
            self.transform = nn.Linear(C, cfg.query_dim)
            self.merge = nn.Linear(3 * cfg.query_dim, cfg.query_dim)

    def token_init_bound(self) -> float:
        """U(-v, v) bound of the tokens: sqrt(6 / (3 p² + sqrt(C r))), or sqrt(6 / (3 p² + C)) for full tokens."""
        cfg = self.cfg
        p2 = cfg.patch_size * cfg.patch_size
        fan = cfg.embed_dim if cfg.rank is None else math.sqrt(cfg.embed_dim * cfg.rank)
        return math.sqrt(6.0 / (3 * p2 + fan))

    def all_tokens(self) -> torch.Tensor:
        """Tokens of every layer (L, T, C), one batched matmul."""
        if self.cfg.rank is None:
            return self.learnable_tokens
        return self.learnable_tokens_a @ self.learnable_tokens_b

    def attention_logits(self, feats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, C) x (T, C) -> (B, N, T), scaled by 1/sqrt(C) when the softmax is on."""
        logits = feats @ tokens.t()
        return logits * (self.cfg.embed_dim**-0.5) if self.cfg.use_softmax else logits

    def token_weights(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1) if self.cfg.use_softmax else logits

    def aggregate(self, weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, T) weights over tokens (T, C) -> token contribution (B, N, C)."""
        if self.cfg.discard_first_token:
            return weights[..., 1:] @ self.mlp_token2feat(tokens[1:])
        return weights @ self.mlp_token2feat(tokens)

    def refine(self, feats: torch.Tensor, agg: torch.Tensor) -> torch.Tensor:
        """Inner residual before ``mlp_delta_f``, outer residual scaled by ``scale``."""
        return feats + self.scale * self.mlp_delta_f(agg + feats)

    def update(self, feats: torch.Tensor, layer: int, tokens: torch.Tensor, **_) -> torch.Tensor:
        """Refine patch tokens (B, N, C) after frozen block ``layer``; ``tokens`` = ``all_tokens()``."""
        t = tokens[layer]
        weights = self.token_weights(self.attention_logits(feats, t))
        self.record(layer, weights)
        return self.refine(feats, self.aggregate(weights, t))

    def query_embed(self, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Query link: (T, query_dim), independent of the image."""
        if not self.cfg.link_queries:
            raise RuntimeError("this adapter was built with link_queries=False")
        return query_link(self.transform, self.merge, self.all_tokens() if tokens is None else tokens)
