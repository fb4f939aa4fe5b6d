"""Typed configuration of a frozen ViT encoder (the whole description of its architecture)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

Family = Literal["dinov2", "dinov3", "eva02", "clip", "sam"]
RopePeriods = Literal["bf16", "fp32"]


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of one frozen encoder of the zoo.

    The encoder runs at ``patch_size`` on a ``img_size`` x ``img_size`` reference crop (the grid its
    position embedding is stored for). Public weights are published at ``source_patch_size`` /
    ``source_img_size`` and converted on load when those differ (``docs/encoders.md``). DINOv3 has no
    position table (2-D RoPE on q/k, recomputed per input grid) and is native at patch 16: nothing is
    converted.
    """

    name: str
    family: Family
    timm_name: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 16
    img_size: int = 512
    source_patch_size: int = 14
    source_img_size: int = 518
    num_register_tokens: int = 0
    # SAM only: indices of the global-attention blocks and the grid their relative-position tables
    # are stored for (pretrained at 1024/16 = 64 -> 127 entries, resampled at run time).
    global_attn_indexes: tuple[int, ...] = ()
    rel_pos_grid: int | None = None
    window_size: int = 0
    # Keep the public checkpoint's (unused) DINOv2 mask token as a frozen parameter so that public
    # files load strictly and counts equal the published totals.
    keep_mask_token: bool = False
    # DINOv3 only: RoPE periods as Meta's files hold them (bf16-rounded, the features DINOv3 was evaluated
    # with) or timm's fp32 recomputation
    rope_periods: RopePeriods = "bf16"
    licence: str = ""
    default_weights: str = ""
    extra_timm_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rope_periods not in ("bf16", "fp32"):
            raise ValueError(f"encoder rope_periods must be 'bf16' or 'fp32', got {self.rope_periods!r}")

    @property
    def grid(self) -> int:
        """Side of the patch grid at ``img_size``."""
        return self.img_size // self.patch_size

    def replace(self, **changes) -> EncoderConfig:
        """A copy with some fields changed (e.g. a tiny test config or another crop size)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EncoderConfig:
        d = dict(d)
        for key in ("global_attn_indexes",):
            if key in d and d[key] is not None:
                d[key] = tuple(d[key])
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown encoder config keys: {sorted(unknown)}")
        return cls(**d)
