"""LoRA on the frozen attention input projections, applied at the weight level (``docs/methods/lora.md``).

For every adapted Linear y = W x + b of block l (W (out, in) frozen)::

    W' = W + s · B A          A (r, in) ~ U(±1/sqrt(in)),  B (out, r) = 0 at init,  s = alpha / r

Block l runs with W' wherever it reads ``<target>.weight``, including attention code that calls
``F.linear(x, q_proj.weight, ...)`` itself (REIN's EVA02), which a module-forward wrapper would bypass.
The frozen Parameter is never touched: for the duration of the block call the attribute resolves to W',
afterwards to W again, so the encoder's state dict (names and values) stays that of the plain encoder
and public weights load into it unchanged. At init (B = 0) W' equals W bit for bit.

Targets (derived from the published counts): the fused ``attn.qkv`` (C -> 3C) for DINOv2 / CLIP / SAM,
the separate ``attn.{q,k,v}_proj`` (C -> C) for EVA02. Rank 8, alpha 8 (s = 1, our choice), no dropout:
786,432 parameters on DINOv2-L, 1,179,648 on EVA02-L. Trainable names mirror the targets:
``adapter.blocks.{l}.attn.qkv.lora_A`` (r, in) / ``.lora_B`` (out, r).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from .base import BlockAdapter

# target -> (in, out) as multiples of the width C
TARGET_SHAPES = {
    "attn.qkv": (1, 3),
    "attn.q_proj": (1, 1),
    "attn.k_proj": (1, 1),
    "attn.v_proj": (1, 1),
    "attn.proj": (1, 1),
}


def default_targets(family: str) -> tuple[str, ...]:
    """The attention input projections as the backbone implements them."""
    return ("attn.q_proj", "attn.k_proj", "attn.v_proj") if family == "eva02" else ("attn.qkv",)


@dataclass(frozen=True)
class LoRAConfig:
    """LoRA of every block's attention input projection(s) (defaults: DINOv2-L, 786,432 parameters)."""

    num_layers: int = 24
    embed_dim: int = 1024
    rank: int = 8
    alpha: float = 8.0  # s = alpha / rank (our choice: s = 1 at rank 8)
    targets: tuple[str, ...] = ("attn.qkv",)
    # True: the update is never applied on EVA02 (REIN's functional attention bypassing a forward wrapper,
    # the suspected ineffective variant of the REIN table; anchor comparisons only)
    bypass_on_functional_attention: bool = False

    def __post_init__(self):
        unknown = [t for t in self.targets if t not in TARGET_SHAPES]
        if unknown or not self.targets:
            raise ValueError(f"LoRA targets must be among {sorted(TARGET_SHAPES)}, got {self.targets!r}")
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {self.rank}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def features(self, target: str) -> tuple[int, int]:
        """(in, out) of a target Linear."""
        i, o = TARGET_SHAPES[target]
        return i * self.embed_dim, o * self.embed_dim


class LoRAPair(nn.Module):
    """The low-rank factors of one Linear: ``delta() = B @ A`` (out, in)."""

    def __init__(self, in_features: int, out_features: int, rank: int):
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # = U(±1/sqrt(in))

    def delta(self) -> torch.Tensor:
        return self.lora_B @ self.lora_A


@contextmanager
def substituted_weights(pairs: list[tuple]):
    """Within the block, ``module.<attribute>`` resolves to the given tensor.

    ``pairs`` holds ``(module, attribute, tensor)`` triples (``(module, tensor)`` means the attribute
    ``weight``), so weights and biases (``bias``, or ``q_bias`` / ``v_bias`` of an attention that holds
    them itself) substitute alike. The tensor is set as an instance attribute, which shadows the
    ``_parameters`` entry; the Parameter, the state dict and its key order are untouched, and everything
    is restored on exit (exceptions and an early-stopped checkpoint recomputation included).
    """
    done = []
    try:
        for item in pairs:
            module, attribute, tensor = item if len(item) == 3 else (item[0], "weight", item[1])
            object.__setattr__(module, attribute, tensor)
            done.append((module, attribute))
        yield
    finally:
        for module, attribute in done:
            module.__dict__.pop(attribute, None)


class LoRAAdapter(BlockAdapter):
    """``run_block(encoder, l, x, state)``: frozen block l with W + s·BA on every target."""

    def __init__(self, cfg: LoRAConfig):
        super().__init__()
        self.cfg = cfg
        blocks = []
        for _ in range(cfg.num_layers):
            root = nn.ModuleDict()
            for target in cfg.targets:
                *path, leaf = target.split(".")
                node = root
                for part in path:
                    if part not in node:
                        node[part] = nn.ModuleDict()
                    node = cast(nn.ModuleDict, node[part])
                node[leaf] = LoRAPair(*cfg.features(target), cfg.rank)
            blocks.append(root)
        self.blocks = nn.ModuleList(blocks)

    def pair(self, layer: int, target: str) -> LoRAPair:
        return cast(LoRAPair, self.blocks[layer].get_submodule(target))

    def check_encoder(self, encoder) -> None:
        super().check_encoder(encoder)
        blk = encoder.blocks[0]
        for target in self.cfg.targets:
            try:
                lin = blk.get_submodule(target)
            except AttributeError:
                raise ValueError(
                    f"LoRA target {target!r} does not exist in the blocks of {encoder.cfg.name!r} "
                    f"(use {default_targets(encoder.cfg.family)})"
                ) from None
            i, o = self.cfg.features(target)
            if tuple(lin.weight.shape) != (o, i):
                raise ValueError(
                    f"LoRA target {target!r} of {encoder.cfg.name!r} has weight "
                    f"{tuple(lin.weight.shape)}, the adapter expects {(o, i)}"
                )
        if self.cfg.bypass_on_functional_attention and encoder.cfg.family != "eva02":
            raise ValueError(
                f"bypass_on_functional_attention reproduces REIN's EVA02 attention; {encoder.cfg.name!r} is not EVA02"
            )

    def merged_weight(self, layer: int, target: str, weight: torch.Tensor) -> torch.Tensor:
        """W' = W + s · B A for one target (W the frozen weight)."""
        return weight + (self.cfg.scaling * self.pair(layer, target).delta()).to(weight.dtype)

    def run_block(self, encoder, layer: int, tokens: torch.Tensor, state) -> torch.Tensor:
        if self.cfg.bypass_on_functional_attention:
            return encoder.forward_block(layer, tokens, state)
        blk = encoder.blocks[layer]
        pairs = []
        for target in self.cfg.targets:
            lin = blk.get_submodule(target)
            pairs.append((lin, "weight", self.merged_weight(layer, target, lin.weight)))
        with substituted_weights(pairs):
            return encoder.forward_block(layer, tokens, state)
