"""One uniform interface over the timm ViTs of the zoo: embed, run block by block, read taps.

Tokens always travel as a sequence ``(B, P + N, C)``: ``P`` prefix tokens (cls, registers; 0 for SAM)
followed by the ``N = h * w`` patch tokens in row-major order. Adapters run between blocks on this
sequence; SAM's NHWC blocks are wrapped so they see the same layout.

DINOv3 (docs/encoders.md): P = 5 (cls + 4 registers), no position embedding; every block rotates q/k
of the patch tokens with one 2-D RoPE table (h*w, 2 * head_dim) built for the input grid (coordinates
normalised per axis to (-1, 1)), so any window whose sides divide by 16 runs without resampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import timm
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputSizeError
from .config import EncoderConfig


@dataclass
class EncoderState:
    """Per-forward context that blocks need besides the tokens."""

    grid: tuple[int, int]  # (h, w) patch grid of this input
    rope: torch.Tensor | None = None  # EVA02 / DINOv3 rotary table (h*w, 2 * head_dim) for this grid


def _timm_kwargs(cfg: EncoderConfig) -> dict[str, Any]:
    kw: dict[str, Any] = dict(
        pretrained=False,
        num_classes=0,
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
    )
    if cfg.family in ("dinov2", "dinov3", "clip", "eva02"):
        kw["dynamic_img_size"] = True  # patch embed returns NHWC, no strict size check
    if cfg.family == "dinov2" and cfg.num_register_tokens:
        kw["reg_tokens"] = cfg.num_register_tokens
    if cfg.family == "sam":
        kw.update(global_attn_indexes=cfg.global_attn_indexes, window_size=cfg.window_size)
    kw.update(cfg.extra_timm_kwargs)
    return kw


def dinov3_rope_periods(
    head_dim: int, temperature: float, rounding: str = "bf16", device: torch.device | str = "cpu"
) -> torch.Tensor:
    """DINOv3 RoPE periods (head_dim / 4,): p_k = T^(2k / (head_dim / 2)) in fp32 (T = 100: 1, 1.334, ...),
    rounded through bf16 for ``rounding="bf16"`` (the values Meta's files hold)."""
    k = torch.arange(head_dim // 4, device=device, dtype=torch.float32)
    periods = temperature ** (2.0 * k / (head_dim // 2))
    return periods.to(torch.bfloat16).to(torch.float32) if rounding == "bf16" else periods


class ViTEncoder(nn.Module):
    """A frozen ViT of the zoo, built from its :class:`EncoderConfig` (random weights until loaded).

    Attributes:
        vit: the timm model (its ``blocks`` are the frozen blocks).
        num_prefix_tokens: cls + register tokens in front of the patch tokens (0 for SAM).
        frozen_source: provenance of the loaded weights (file, sha256, conversion, grid), or
            ``{"random": True}`` when random weights were asked for explicitly, or ``None`` when no
            weights were loaded yet (a model meant for real use refuses to run like that).
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        # Any: the attributes used below differ per timm family (rope, reg_token, neck, ...)
        self.vit: Any = cast(Any, timm.create_model(cfg.timm_name, **_timm_kwargs(cfg)))
        if cfg.family == "sam":
            self.vit.neck = nn.Identity()  # image tower only, as the papers count it
            self._resize_global_rel_pos()
        if cfg.family == "eva02":
            self.vit.fc_norm = nn.Identity()  # pooled-classifier norm: not part of the token features
        if cfg.keep_mask_token:
            self.vit.mask_token = nn.Parameter(torch.zeros(1, cfg.embed_dim))
        self.num_prefix_tokens = 0 if cfg.family == "sam" else int(self.vit.num_prefix_tokens)
        self.frozen_source: dict | None = None
        self._rope_cache: dict[tuple, torch.Tensor] = {}
        if cfg.family == "dinov3":
            self.init_dinov3_buffers()

    # ------------------------------------------------------------------ DINOv3 RoPE
    def rope_periods(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """This encoder's DINOv3 RoPE periods (``cfg.rope_periods`` rounding), see :func:`dinov3_rope_periods`."""
        rope = self.vit.rope
        return dinov3_rope_periods(rope.dim, rope.temperature, self.cfg.rope_periods, device)

    def init_dinov3_buffers(self) -> None:
        """(Re)fill timm's non-persistent DINOv3 buffers: the RoPE periods (``cfg.rope_periods``) and the
        zero k bias of the ``_qkvb`` attention. Called after building and after every ``_apply`` (device
        moves, meta -> real materialisation), which would otherwise leave them recomputed or empty."""
        with torch.no_grad():
            periods = self.vit.rope.periods
            periods.copy_(self.rope_periods(periods.device))
            for blk in self.vit.blocks:
                if getattr(blk.attn, "k_bias", None) is not None:
                    blk.attn.k_bias.zero_()
        self._rope_cache.clear()

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        if self.cfg.family == "dinov3":
            self.init_dinov3_buffers()
        return out

    def rope_table(self, grid: tuple[int, int]) -> torch.Tensor:
        """DINOv3 RoPE table [sin | cos] (h*w, 2 * head_dim) of a grid, cached per (h, w, device, dtype)
        (timm rebuilds the coordinates on the CPU at every call)."""
        rope = self.vit.rope
        if rope.training and rope.aug_active:  # coordinate augmentation (not configured by dgss): no cache
            return rope.get_embed(shape=grid)
        key = (grid, rope.periods.device, rope.periods.dtype)
        table = self._rope_cache.get(key)
        if table is None:  # a plain tensor even when first asked for under inference_mode (reused in training)
            with torch.inference_mode(False), torch.no_grad():
                table = self._rope_cache[key] = rope.get_embed(shape=grid)
        return table

    # ------------------------------------------------------------------ properties
    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    @property
    def depth(self) -> int:
        return self.cfg.depth

    @property
    def patch_size(self) -> int:
        return self.cfg.patch_size

    @property
    def blocks(self) -> nn.ModuleList | nn.Sequential:
        return self.vit.blocks

    def _resize_global_rel_pos(self) -> None:
        """Give SAM's global blocks relative-position tables of the pretrained grid (127 entries for
        1024/16); timm's attention resamples them to the run-time grid (linear, as SAM does)."""
        if not self.cfg.rel_pos_grid:
            return
        n = 2 * self.cfg.rel_pos_grid - 1
        for i in self.cfg.global_attn_indexes:
            attn = self.vit.blocks[i].attn
            for key in ("rel_pos_h", "rel_pos_w"):
                old = getattr(attn, key)
                setattr(attn, key, nn.Parameter(torch.zeros(n, old.shape[1], device=old.device, dtype=old.dtype)))

    # ------------------------------------------------------------------ forward pieces
    def check_input(self, x: torch.Tensor) -> tuple[int, int]:
        """Validate an image batch (B, 3, H, W) and return its patch grid (H/p, W/p)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputSizeError(f"expected an image batch of shape (B, 3, H, W), got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        p = self.cfg.patch_size
        if H % p or W % p:
            raise InputSizeError(
                f"{self.cfg.name}: input size {H}x{W} is not divisible by the patch size {p}; "
                f"pad or resize to a multiple of {p} (e.g. {math.ceil(H / p) * p}x{math.ceil(W / p) * p})"
            )
        return H // p, W // p

    def _dinov2_pos_embed(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position embedding (1, 1 + h*w, C) for a grid; DINOv2-style bicubic resize (0.1 offset)
        only when the grid differs from the stored one."""
        pos = self.vit.pos_embed
        g = self.cfg.grid
        if grid == (g, g):
            return pos
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        C = patch_pos.shape[-1]
        patch_pos = patch_pos.reshape(1, g, g, C).permute(0, 3, 1, 2)
        h, w = grid
        patch_pos = F.interpolate(
            patch_pos.float(), scale_factor=((h + 0.1) / g, (w + 0.1) / g), mode="bicubic", align_corners=False
        )
        if patch_pos.shape[-2:] != (h, w):  # guard against float rounding of the scale factor
            raise RuntimeError(f"position-embedding resize produced {tuple(patch_pos.shape[-2:])}, wanted {grid}")
        patch_pos = patch_pos.to(pos.dtype).permute(0, 2, 3, 1).reshape(1, h * w, C)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, EncoderState]:
        """Image (B, 3, H, W), normalised -> tokens (B, P + N, C) and the per-forward state."""
        grid = self.check_input(x)
        v = self.vit
        if self.cfg.family == "dinov2":
            t = v.patch_embed(x).flatten(1, 2)  # (B, N, C)
            prefix = [v.cls_token.expand(t.shape[0], -1, -1)]
            if v.reg_token is not None:
                prefix.append(v.reg_token.expand(t.shape[0], -1, -1))
            pos = self._dinov2_pos_embed(grid)
            t = torch.cat([prefix[0], t], dim=1) + pos  # registers carry no position
            if len(prefix) > 1:
                t = torch.cat([t[:, :1], prefix[1], t[:, 1:]], dim=1)
            t = v.norm_pre(v.patch_drop(v.pos_drop(t)))
            return t, EncoderState(grid)
        if self.cfg.family == "clip":
            t = v.norm_pre(v.patch_drop(v._pos_embed(v.patch_embed(x))))
            return t, EncoderState(grid)
        if self.cfg.family == "eva02":
            t, rope = v._pos_embed(v.patch_embed(x))
            return v.norm_pre(t), EncoderState(grid, rope)
        if self.cfg.family == "dinov3":  # [cls, 4 registers, patches]; position enters through RoPE only
            t = v.patch_embed(x).flatten(1, 2)  # (B, N, C)
            B = t.shape[0]
            t = torch.cat([v.cls_token.expand(B, -1, -1), v.reg_token.expand(B, -1, -1), t], dim=1)
            return v.norm_pre(v.pos_drop(t)), EncoderState(grid, self.rope_table(grid))
        # sam: NHWC tokens flattened to a sequence
        from timm.layers import resample_abs_pos_embed_nhwc

        t = v.patch_embed(x)
        t = t + resample_abs_pos_embed_nhwc(v.pos_embed, t.shape[1:3])
        t = v.norm_pre(v.patch_drop(v.pos_drop(t)))
        return t.flatten(1, 2), EncoderState(grid)

    def forward_block(self, i: int, tokens: torch.Tensor, state: EncoderState) -> torch.Tensor:
        """Run frozen block ``i`` on tokens (B, P + N, C) -> (B, P + N, C)."""
        blk = self.vit.blocks[i]
        if self.cfg.family in ("eva02", "dinov3"):
            return blk(tokens, rope=state.rope)
        if self.cfg.family == "sam":
            B, N, C = tokens.shape
            h, w = state.grid
            return blk(tokens.reshape(B, h, w, C)).reshape(B, N, C)
        return blk(tokens)

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        """The encoder's final norm (not used by the segmentation taps)."""
        return self.vit.norm(tokens) if hasattr(self.vit, "norm") else tokens

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Block-by-block forward plus the final norm: equals timm's own ``forward_features``
        (for SAM, before the neck)."""
        t, state = self.embed(x)
        for i in range(self.depth):
            t = self.forward_block(i, t, state)
        return self.final_norm(t)

    def forward(self, x: torch.Tensor, out_indices: list[int] | None = None) -> list[torch.Tensor]:
        """Raw outputs of the blocks in ``out_indices`` (default: all), each (B, P + N, C)."""
        wanted = set(range(self.depth) if out_indices is None else out_indices)
        t, state = self.embed(x)
        outs = []
        for i in range(self.depth):
            t = self.forward_block(i, t, state)
            if i in wanted:
                outs.append(t)
        return outs

    # ------------------------------------------------------------------ token helpers
    def patch_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, P + N, C) -> patch tokens (B, N, C)."""
        return tokens[:, self.num_prefix_tokens :]

    def tokens_to_map(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, P + N, C) -> patch feature map (B, C, h, w)."""
        p = self.patch_tokens(tokens)
        B, N, C = p.shape
        h, w = grid
        return p.transpose(1, 2).reshape(B, C, h, w)

    # ------------------------------------------------------------------ freezing
    def freeze(self) -> ViTEncoder:
        """No trainable parameters; stays in eval mode whatever ``train()`` is called with."""
        for p in self.parameters():
            p.requires_grad_(False)
        self._frozen = True
        return self.train(False)

    def train(self, mode: bool = True) -> ViTEncoder:
        if getattr(self, "_frozen", False):
            mode = False
        return super().train(mode)


def build_encoder(cfg: EncoderConfig | str, *, frozen: bool = True) -> ViTEncoder:
    """Build an encoder from a config or zoo name, random weights (load them with
    :func:`dgss.backbones.weights.load_encoder_weights`)."""
    if isinstance(cfg, str):
        from .zoo import encoder_config

        cfg = encoder_config(cfg)
    enc = ViTEncoder(cfg)
    return enc.freeze() if frozen else enc
