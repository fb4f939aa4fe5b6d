"""FADA: REIN-style token refinement split into Haar low/high-frequency branches (``docs/methods/fada.md``).

Follows the released code (JingjunYi/FADA). After frozen block l, patch tokens x (B, N, C), c = C/4::

    X   = token-major rows of x: X[n·B + b] = x[b, n]                    (R = N·B, C)
    the flat buffer of X, cut into B·C images of N = w² values (w×w, row-major); image P is filtered
    with the 2×2 stride-2 depthwise Haar kernels of channel P mod C -> LL, LH, HL, HH, each read back
    as (R, c) rows (for square grids with 2w | C row r depends on row r of X only)
    low :  T₁ = A₁[l] B₁[l] (T, c);   S = softmax_T(X_LL T₁ᵀ / sqrt(C))
           Δc = mlp_delta_f(S[:, 1:] · mlp_token2feat(T₁[1:]) + X_LL)                           (R, c)
    high:  Fs = [X_LH | X_HL | X_HH] (R, 3c);   T₂ = A₂[l] B₂[l] (T, 3c)
           Z = instance_norm_T(Fs T₂ᵀ);   S = softmax_T(Z / sqrt(C))
           Δs = mlp_delta_f2(S[:, 1:] · mlp_token2feat2(T₂[1:]) + Fs)                           (R, 3c)
    X  <- X + s · [Δc | Δs]              no inverse Haar: channels 0..c-1 get the low branch

1/sqrt(C) uses the full width in both branches; the instance norm runs over the T token logits of
each row (biased variance, eps 1e-5). The Haar kernels are trained by default (as the reference's
keyword freezing does); ``haar="fixed"`` keeps them as non-persistent constants. With trained kernels
the kernel of a token depends on the batch size (reference defect, reproduced).

Query link: REIN's, on the low-frequency tokens only (``transform``: c -> 256). Parameter names equal
the reference ``backbone.reins.*`` names; 2,061,825 parameters on ViT-L, 3,107,841 on SAM-H.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FADAWindowError
from .rein import ReinConfig, TokenAttentionRecorder, add_scale, query_link

# 2x2 Haar kernels [[K00, K01], [K10, K11]] (row offset, column offset), outer products of
# L = (1, 1)/√2 and H = (-1, 1)/√2: every entry is ±1/2
HAAR = {
    "LL": ((0.5, 0.5), (0.5, 0.5)),
    "LH": ((-0.5, 0.5), (-0.5, 0.5)),
    "HL": ((-0.5, -0.5), (0.5, 0.5)),
    "HH": ((0.5, -0.5), (-0.5, 0.5)),
}
BANDS = ("LL", "LH", "HL", "HH")


@dataclass(frozen=True)
class FADAConfig(ReinConfig):
    """REIN's switches (``rank``, ``num_tokens``, ``scale``, ``discard_first_token``, ``use_softmax``,
    ``link_queries``) plus the frequency split."""

    haar: Literal["trainable", "fixed"] = "trainable"
    high_branch_norm: Literal["logits_instance_norm", "none"] = "logits_instance_norm"

    def __post_init__(self):
        if self.haar not in ("trainable", "fixed"):
            raise ValueError(f"fada haar must be 'trainable' or 'fixed', got {self.haar!r}")
        if self.high_branch_norm not in ("logits_instance_norm", "none"):
            raise ValueError(
                f"fada high_branch_norm must be 'logits_instance_norm' or 'none', got {self.high_branch_norm!r}"
            )
        if self.embed_dim % 4:
            raise ValueError(f"FADA needs a width divisible by 4, got {self.embed_dim}")


def window_problem(grid: tuple[int, int], embed_dim: int) -> str | None:
    """Why FADA cannot run on a patch grid (None if it can): square, even side w, 2w | C."""
    h, w = grid
    if h != w:
        return f"the patch grid {h}x{w} is not square"
    if w % 2:
        return f"the patch grid side {w} is odd"
    if embed_dim % (2 * w):
        return f"2w = {2 * w} does not divide the width C = {embed_dim}"
    return None


def check_window(grid: tuple[int, int], embed_dim: int, patch_size: int) -> None:
    problem = window_problem(grid, embed_dim)
    if problem is not None:
        h, w = grid
        raise FADAWindowError(
            f"FADA cannot run on a {h * patch_size}x{w * patch_size} window: {problem}. Its Haar layout "
            f"(released code) needs a square patch grid of even side w with 2w dividing C; use square windows "
            f"such as 512x512 (w = 32) for width {embed_dim}"
        )


class WavePool(nn.Module):
    """Depthwise 2×2 stride-2 Haar analysis with one kernel per channel: (B, C, h, w) -> 4 × (B, C, h/2, w/2).

    ``LL.weight`` … ``HH.weight`` (C, 1, 2, 2): parameters (trainable) or non-persistent constant buffers.
    """

    def __init__(self, channels: int, trainable: bool = True):
        super().__init__()
        for name in BANDS:
            holder = nn.Module()
            w = torch.tensor(HAAR[name]).expand(channels, 1, 2, 2).clone()
            if trainable:
                holder.weight = nn.Parameter(w)
            else:
                holder.register_buffer("weight", w, persistent=False)
            self.add_module(name, holder)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(F.conv2d(x, getattr(self, n).weight.to(x.dtype), stride=2, groups=x.shape[1]) for n in BANDS)


class FADAAdapter(TokenAttentionRecorder, nn.Module):  # records the low-branch weights
    """``update(F, l, tokens, grid=(h, w))`` -> refined patch tokens (B, N, C); ``tokens = all_tokens()``."""

    scale: torch.Tensor  # set by add_scale: a Parameter or a constant buffer

    def __init__(self, cfg: FADAConfig):
        super().__init__()
        self.cfg = cfg
        L, T, C, r = cfg.num_layers, cfg.num_tokens, cfg.embed_dim, cfg.rank
        c = C // 4
        p2 = cfg.patch_size**2
        if r is None:
            self.learnable_tokens = nn.Parameter(torch.empty(L, T, c))
            self.learnable_tokens2 = nn.Parameter(torch.empty(L, T, 3 * c))
            _uniform(self.learnable_tokens, math.sqrt(6.0 / (3 * p2 + c)))
            _uniform(self.learnable_tokens2, math.sqrt(6.0 / (3 * p2 + 3 * c)))
        else:
            v1 = math.sqrt(6.0 / (3 * p2 + math.sqrt(C * r)))  # full C, as the reference
            v2 = math.sqrt(6.0 / (3 * p2 + math.sqrt(3 * c * r)))
            self.learnable_tokens_a = _uniform(nn.Parameter(torch.empty(L, T, r)), v1)
            self.learnable_tokens_b = _uniform(nn.Parameter(torch.empty(L, r, c)), v1)
            self.learnable_tokens_a2 = _uniform(nn.Parameter(torch.empty(L, T, r)), v2)
            self.learnable_tokens_b2 = _uniform(nn.Parameter(torch.empty(L, r, 3 * c)), v2)
        add_scale(self, cfg)
        self.mlp_token2feat = nn.Linear(c, c)
        self.mlp_delta_f = nn.Linear(c, c)
        self.mlp_token2feat2 = nn.Linear(3 * c, 3 * c)
        self.mlp_delta_f2 = nn.Linear(3 * c, 3 * c)
        if cfg.scale == "fixed_one":
            for lin in (self.mlp_delta_f, self.mlp_delta_f2):
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        self.wavepool = WavePool(C, trainable=cfg.haar == "trainable")  # built at C channels (reference: 1024)
        if cfg.link_queries:
            self.transform = nn.Linear(c, cfg.query_dim)
            self.merge = nn.Linear(3 * cfg.query_dim, cfg.query_dim)

    def all_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Low- and high-frequency tokens of every layer: (L, T, c), (L, T, 3c)."""
        if self.cfg.rank is None:
            return self.learnable_tokens, self.learnable_tokens2
        return (self.learnable_tokens_a @ self.learnable_tokens_b, self.learnable_tokens_a2 @ self.learnable_tokens_b2)

    def check_window(self, grid: tuple[int, int]) -> None:
        check_window(grid, self.cfg.embed_dim, self.cfg.patch_size)

    def subbands(self, X: torch.Tensor, batch: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token-major rows X (R, C) -> X_LL (R, c) and Fs = [X_LH | X_HL | X_HH] (R, 3c)."""
        R, C = X.shape
        bands = self.wavepool(X.reshape(batch, C, w, w))  # the flat buffer as B·C images of w×w
        ll, lh, hl, hh = (b.reshape(R, C // 4) for b in bands)
        return ll, torch.cat([lh, hl, hh], dim=-1)

    def branch(
        self, x: torch.Tensor, t: torch.Tensor, token2feat: nn.Linear, delta_f: nn.Linear, instance_norm: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One REIN-style branch on rows x (R, d) with tokens t (T, d) -> (Δ (R, d), weights (R, T))."""
        logits = x @ t.t()
        if instance_norm:
            mean = logits.mean(dim=-1, keepdim=True)
            var = logits.var(dim=-1, unbiased=False, keepdim=True)
            logits = (logits - mean) / torch.sqrt(var + 1e-5)
        if self.cfg.use_softmax:
            weights = (logits * self.cfg.embed_dim**-0.5).softmax(dim=-1)
        else:
            weights = logits
        if self.cfg.discard_first_token:
            agg = weights[:, 1:] @ token2feat(t[1:])
        else:
            agg = weights @ token2feat(t)
        return delta_f(agg + x), weights

    def update(
        self,
        feats: torch.Tensor,
        layer: int,
        tokens: tuple[torch.Tensor, torch.Tensor],
        grid: tuple[int, int] | None = None,
        **_,
    ) -> torch.Tensor:
        """Refine patch tokens (B, N, C) after frozen block ``layer``; ``grid`` = the (h, w) patch grid."""
        B, N, C = feats.shape
        if grid is None:
            w = math.isqrt(N)
            if w * w != N:
                raise FADAWindowError(f"FADA needs a square patch grid; {N} patch tokens are not one")
            grid = (w, w)
        self.check_window(grid)
        X = feats.transpose(0, 1).reshape(N * B, C)  # row n·B + b = token n of image b
        x_ll, fs = self.subbands(X, B, grid[1])
        d_low, weights = self.branch(x_ll, tokens[0][layer], self.mlp_token2feat, self.mlp_delta_f, False)
        d_high, _high_weights = self.branch(
            fs,
            tokens[1][layer],
            self.mlp_token2feat2,
            self.mlp_delta_f2,
            self.cfg.high_branch_norm == "logits_instance_norm",
        )
        self.record(layer, weights.reshape(N, B, -1).transpose(0, 1))
        Y = X + self.scale * torch.cat([d_low, d_high], dim=-1)
        return Y.reshape(N, B, C).transpose(0, 1)

    def query_embed(self, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Query link on the low-frequency tokens (T, query_dim), REIN's interleaved max/mean/last."""
        if not self.cfg.link_queries:
            raise RuntimeError("this adapter was built with link_queries=False")
        return query_link(self.transform, self.merge, self.all_tokens()[0] if tokens is None else tokens)


def _uniform(p: nn.Parameter, bound: float) -> nn.Parameter:
    nn.init.uniform_(p, -bound, bound)
    return p
