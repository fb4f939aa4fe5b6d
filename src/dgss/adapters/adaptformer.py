"""AdaptFormer: a bottleneck MLP parallel to every frozen block's MLP (``docs/methods/adaptformer.md``).

Block l, with the frozen pieces unchanged::

    x_mid = x + LS1(Attn(LN1(x)))
    a     = s · (W_up · Dropout(ReLU(W_down · x_mid + b_down)) + b_up)      (…, C); s = 0.1 constant
    x_out = x_mid + LS2(MLP(LN2(x_mid))) + a                                 adapter reads x_mid, not LN2(x_mid)

W_down (d, C) ~ U(±1/sqrt(C)), b_down = 0; W_up (C, d) = 0, b_up = 0 (the block is exactly the frozen
one at init). d = 64, dropout 0.1 (training only), no adapter LayerNorm: 24 · 132,160 = 3,171,840
parameters on ViT-L. The adapter is added outside LayerScale (our choice; AdaptFormer's ViT has none).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import BlockAdapter


@dataclass(frozen=True)
class AdaptFormerConfig:
    num_layers: int = 24
    embed_dim: int = 1024
    bottleneck: int = 64
    scalar: float = 0.1  # fixed, not learnable (AdaptFormer ``ffn_adapter_scalar``)
    dropout: float = 0.1


class AdaptMLP(nn.Module):
    """(…, C) -> s · up(dropout(relu(down(x)))) (…, C)."""

    def __init__(self, dim: int, bottleneck: int, scalar: float, dropout: float):
        super().__init__()
        self.scalar = scalar
        self.down_proj = nn.Linear(dim, bottleneck)  # default weight init = kaiming_uniform(a=√5)
        self.up_proj = nn.Linear(bottleneck, dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.down_proj.bias)
        nn.init.zeros_(self.up_proj.weight)
        nn.init.zeros_(self.up_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scalar * self.up_proj(self.dropout(torch.relu(self.down_proj(x))))


class AdaptFormerAdapter(BlockAdapter):
    """``run_block``: the frozen block, with ``AdaptMLP(x_mid)`` added to its MLP branch.

    x_mid is the input of the block's ``norm2``; the adapter output joins the residual sum at the block's
    ``drop_path2`` (the last module of the MLP branch in every timm block of the zoo). Both hooks live
    only for the duration of the call.
    """

    def __init__(self, cfg: AdaptFormerConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(
            AdaptMLP(cfg.embed_dim, cfg.bottleneck, cfg.scalar, cfg.dropout) for _ in range(cfg.num_layers)
        )

    def check_encoder(self, encoder) -> None:
        super().check_encoder(encoder)
        missing = [n for n in ("norm2", "drop_path2") if not hasattr(encoder.blocks[0], n)]
        if missing:
            raise ValueError(
                f"AdaptFormer needs blocks with norm2 and drop_path2; {encoder.cfg.name!r} lacks {missing}"
            )

    def run_block(self, encoder, layer: int, tokens: torch.Tensor, state) -> torch.Tensor:
        blk, mlp = encoder.blocks[layer], self.blocks[layer]
        seen: dict[str, torch.Tensor] = {}
        h1 = blk.norm2.register_forward_pre_hook(lambda _m, args: seen.__setitem__("x_mid", args[0]))
        h2 = blk.drop_path2.register_forward_hook(lambda _m, _args, out: out + mlp(seen.pop("x_mid")))
        try:
            return encoder.forward_block(layer, tokens, state)
        finally:
            h1.remove()
            h2.remove()
