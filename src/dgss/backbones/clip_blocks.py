"""CLIP transformer blocks with the attention's q/k/v projections as three separate Parameters.

OpenAI CLIP fuses the projections into one ``in_proj_weight`` (3C, C). CAT-Seg fine-tunes W_q and W_v
only, so the fused weight is split (chunk along dim 0, order q, k, v) into ``q_proj_weight``,
``k_proj_weight``, ``v_proj_weight`` (each (C, C)); ``in_proj_bias`` (3C) stays fused. With separate
Parameters AdamW never touches (or decays) the frozen k rows. See docs/methods/catseg.md.

Block (pre-LN, QuickGELU MLP)::

    x = x + out_proj(MHA(W_q y, W_k y, W_v y)),  y = ln_1(x)
    x = x + c_proj(QuickGELU(c_fc(ln_2(x))))
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the activation OpenAI CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SplitQKVAttention(nn.Module):
    """Multi-head attention with ``q_proj_weight`` / ``k_proj_weight`` / ``v_proj_weight`` (C, C),
    a fused ``in_proj_bias`` (3C) and ``out_proj`` (C -> C)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.width, self.heads = width, heads
        self.q_proj_weight = nn.Parameter(torch.empty(width, width))
        self.k_proj_weight = nn.Parameter(torch.empty(width, width))
        self.v_proj_weight = nn.Parameter(torch.empty(width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        bound = math.sqrt(6.0 / (4 * width))  # xavier-uniform of the fused (3C, C) matrix
        for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
            nn.init.uniform_(w, -bound, bound)
        nn.init.zeros_(self.out_proj.bias)

    def biases(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return cast("tuple[torch.Tensor, torch.Tensor, torch.Tensor]", self.in_proj_bias.chunk(3))

    def forward(self, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, C) -> (B, L, C); ``mask`` (L, L) additive."""
        B, L, C = y.shape
        bq, bk, bv = self.biases()
        h = self.heads

        def split(t):
            return t.reshape(B, L, h, C // h).transpose(1, 2)

        q = split(F.linear(y, self.q_proj_weight, bq))
        k = split(F.linear(y, self.k_proj_weight, bk))
        v = split(F.linear(y, self.v_proj_weight, bv))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(B, L, C))

    def value_path(self, y: torch.Tensor) -> torch.Tensor:
        """Every token attending only to itself: out_proj(W_v y + b_v), (B, L, C) -> (B, L, C).

        W_q is applied and its output discarded through an empty slice, so that W_q receives an exactly
        zero gradient (not none): it stays in the optimizer, as in the reference, and only weight decay
        moves it.
        """
        bq, _, bv = self.biases()
        out = self.out_proj(F.linear(y, self.v_proj_weight, bv))
        if self.q_proj_weight.requires_grad and torch.is_grad_enabled():
            out = out + F.linear(y[:, :1], self.q_proj_weight, bq)[..., :0].sum()
        return out


class ClipBlock(nn.Module):
    """One pre-LN CLIP residual block with split q/k/v (names as OpenAI's ``resblocks.{i}``)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = SplitQKVAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(width, hidden)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(hidden, width))]
            )
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, C) -> (B, L, C)."""
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))

    def forward_dense(self, x: torch.Tensor, residual: str = "cls") -> torch.Tensor:
        """CAT-Seg's last image block: value path only, residual = the input cls token (``"cls"``, the
        reference) or each token itself (``"token"``); then the MLP on that sum. (B, L, C) -> (B, L, C)."""
        v = self.attn.value_path(self.ln_1(x))
        v = v + (x[:, :1] if residual == "cls" else x)
        return v + self.mlp(self.ln_2(v))


class ClipTransformer(nn.Module):
    """``resblocks``: a stack of :class:`ClipBlock`."""

    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList(ClipBlock(width, heads) for _ in range(layers))


def split_fused_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI / open_clip names -> split names: every ``*.attn.in_proj_weight`` (3C, C) becomes
    ``*.attn.{q,k,v}_proj_weight`` (C, C); other entries pass unchanged."""
    out = {}
    for k, v in state.items():
        if k.endswith(".attn.in_proj_weight"):
            base = k[: -len("in_proj_weight")]
            q, kk, vv = v.chunk(3, dim=0)
            out[base + "q_proj_weight"], out[base + "k_proj_weight"], out[base + "v_proj_weight"] = q, kk, vv
        else:
            out[k] = v
    return out


def fuse_split_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`split_fused_qkv` (for exporting to open_clip names)."""
    out = {}
    for k, v in state.items():
        if k.endswith(".attn.q_proj_weight"):
            base = k[: -len("q_proj_weight")]
            out[base + "in_proj_weight"] = torch.cat(
                [v, state[base + "k_proj_weight"], state[base + "v_proj_weight"]], dim=0
            )
        elif not k.endswith((".attn.k_proj_weight", ".attn.v_proj_weight")):
            out[k] = v
    return out
