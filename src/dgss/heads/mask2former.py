"""Mask2Former head shared by REIN, DepthForge and Vireo (docs/methods/mask2former-head.md).

Hooks (method-specific):
- ``query_source``: ``"link"`` (REIN family: ``query_pos = query_embed`` from the adapter, content =
  ``querys2feat(query_embed)``) or ``"learned"`` (stock ``query_embed``/``query_feat`` embeddings);
- ``classifier``: any module mapping ``(B, Q, C)`` to ``(B, Q, K+1)`` (default ``Linear(C, K+1)``);
- ``refine``: optional module applied to the feature list before the pixel decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .pixel_decoder import MSDeformAttnPixelDecoder
from .position_encoding import sine_position_encoding
from .transformer_decoder import Mask2FormerTransformerDecoder


@dataclass
class Mask2FormerHeadConfig:
    """Settings of :class:`Mask2FormerHead` (defaults = the REIN/DepthForge/Vireo reference configs)."""

    num_classes: int = 19
    in_channels: list[int] = field(default_factory=lambda: [1024, 1024, 1024, 1024])  # [s4, s8, s16, s32]
    feat_channels: int = 256  # pixel-decoder and transformer width
    out_channels: int = 256  # mask-feature channels
    num_queries: int = 100
    num_encoder_layers: int = 6
    num_decoder_layers: int = 9
    num_heads: int = 8  # encoder MSDeformAttn and decoder MHA
    num_points: int = 4
    num_encoder_levels: int = 3
    encoder_ffn_dims: int = 1024
    decoder_ffn_dims: int = 2048
    num_groups: int = 32  # GroupNorm groups in the pixel-decoder convs
    query_source: Literal["link", "learned"] = "link"

    def __post_init__(self) -> None:
        if self.query_source not in ("link", "learned"):
            raise ValueError(f"query_source must be 'link' or 'learned', got {self.query_source!r}")
        if len(self.in_channels) <= self.num_encoder_levels:
            raise ValueError("in_channels needs more levels than num_encoder_levels (FPN step to stride 4)")


class Mask2FormerHead(nn.Module):
    """Pixel decoder + masked transformer decoder + prediction heads.

    Args:
        cfg: head settings.
        classifier: optional module ``(B, Q, feat) -> (B, Q, K+1)`` stored as ``cls_embed``
            (default ``Linear(feat, K+1)``, PyTorch default init).
        refine: optional module ``list[Tensor] -> list[Tensor]`` applied to the input pyramid first.

    Parameters (names used by ``reference_keys``): ``pixel_decoder``, ``transformer_decoder``,
    ``level_embed`` (Embedding(3, C)), ``cls_embed``, ``mask_embed`` (Linear-ReLU-Linear-ReLU-Linear),
    ``querys2feat`` (link) or ``query_embed`` + ``query_feat`` (learned), ``refine`` (optional).
    """

    def __init__(
        self, cfg: Mask2FormerHeadConfig, classifier: nn.Module | None = None, refine: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.feat_channels
        self.num_classes = cfg.num_classes
        self.num_queries = cfg.num_queries
        self.num_levels = cfg.num_encoder_levels
        self.refine = refine
        self.pixel_decoder = MSDeformAttnPixelDecoder(
            in_channels=cfg.in_channels,
            feat_channels=c,
            out_channels=cfg.out_channels,
            num_encoder_layers=cfg.num_encoder_layers,
            num_heads=cfg.num_heads,
            num_points=cfg.num_points,
            ffn_dims=cfg.encoder_ffn_dims,
            num_encoder_levels=cfg.num_encoder_levels,
            num_groups=cfg.num_groups,
        )
        self.transformer_decoder = Mask2FormerTransformerDecoder(
            num_layers=cfg.num_decoder_layers, dims=c, num_heads=cfg.num_heads, ffn_dims=cfg.decoder_ffn_dims
        )
        self.level_embed = nn.Embedding(cfg.num_encoder_levels, c)
        if cfg.query_source == "link":
            self.querys2feat = nn.Linear(c, c)
        else:
            self.query_embed = nn.Embedding(cfg.num_queries, c)
            self.query_feat = nn.Embedding(cfg.num_queries, c)
        self.cls_embed = classifier if classifier is not None else nn.Linear(c, cfg.num_classes + 1)
        self.mask_embed = nn.Sequential(
            nn.Linear(c, c),
            nn.ReLU(inplace=True),
            nn.Linear(c, c),
            nn.ReLU(inplace=True),
            nn.Linear(c, cfg.out_channels),
        )
        # pixel_decoder / transformer_decoder initialise themselves (§3.4, §4.3); level_embed and the
        # query embeddings keep the nn.Embedding default N(0, 1); cls_embed, mask_embed, querys2feat keep
        # the nn.Linear default. (The decoder input projection is the identity: no parameters.)

    # ------------------------------------------------------------------------------------------------
    def _queries(self, query_embed: Tensor | None, batch: int) -> tuple[Tensor, Tensor]:
        """Returns ``(content, query_pos)``, each ``(B, Q, C)``."""
        c = self.cfg.feat_channels
        if self.cfg.query_source == "learned":
            if query_embed is not None:
                raise ValueError("query_source='learned' takes no query_embed")
            pos = self.query_embed.weight.unsqueeze(0).expand(batch, -1, -1)
            feat = self.query_feat.weight.unsqueeze(0).expand(batch, -1, -1)
            return feat, pos
        if query_embed is None:
            raise ValueError("query_source='link' needs query_embed of shape (Q, C) or (B, Q, C)")
        if query_embed.dim() == 2:
            query_embed = query_embed.unsqueeze(0).expand(batch, -1, -1)
        if query_embed.dim() != 3 or query_embed.shape[0] != batch or query_embed.shape[1:] != (self.num_queries, c):
            raise ValueError(
                f"query_embed must be ({self.num_queries}, {c}) or (B, {self.num_queries}, {c}), "
                f"got {tuple(query_embed.shape)}"
            )
        return self.querys2feat(query_embed), query_embed

    def predict(self, query_normed: Tensor, mask_features: Tensor) -> tuple[Tensor, Tensor]:
        """Prediction head on post-normed queries ``(B, Q, C)``: class logits ``(B, Q, K+1)`` and mask
        logits ``(B, Q, H, W)`` (``einsum`` of ``mask_embed`` with the mask features ``(B, C_out, H, W)``)."""
        cls = self.cls_embed(query_normed)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(query_normed), mask_features)
        return cls, masks

    def forward(self, features: Sequence[Tensor], query_embed: Tensor | None = None) -> dict:
        """
        Args:
            features: ``[s4, s8, s16, s32]``, each ``(B, C_in_l, h_l, w_l)``.
            query_embed: link mode: ``(Q, C)`` or ``(B, Q, C)`` positional queries; learned mode: None.

        Returns:
            ``{"pred_logits": (B, Q, K+1), "pred_masks": (B, Q, H/4, W/4), "aux_outputs": [9 dicts]}``;
            the last output is top level, ``aux_outputs`` holds the initial prediction and layers 0..7.
        """
        features = list(features)
        if self.refine is not None:
            features = list(self.refine(features))
        return self.decode(features, query_embed)

    def decode(self, features: Sequence[Tensor], query_embed: Tensor | None = None) -> dict:
        """Pixel decoder + masked decoder + predictions on an (already refined) pyramid."""
        mask_features, memories = self.pixel_decoder(list(features))  # memories: [o32, o16, o8]
        b = mask_features.shape[0]
        mem, mem_pos, sizes = [], [], []
        for e, m in enumerate(memories):
            h, w = m.shape[-2:]
            mem.append(m.flatten(2).transpose(1, 2) + self.level_embed.weight[e])  # (B, h·w, C)
            pos = sine_position_encoding(h, w, self.cfg.feat_channels // 2, device=m.device, dtype=m.dtype)
            mem_pos.append(pos.flatten(1).transpose(0, 1).unsqueeze(0).expand(b, -1, -1))
            sizes.append((h, w))
        content, query_pos = self._queries(query_embed, b)

        def predict(q: Tensor) -> tuple[tuple[Tensor, Tensor], Tensor]:
            cls, masks = self.predict(q, mask_features)
            return (cls, masks), masks

        preds = self.transformer_decoder(content, query_pos, mem, mem_pos, sizes, predict)
        outputs = [{"pred_logits": cls, "pred_masks": masks} for cls, masks in preds]
        return {**outputs[-1], "aux_outputs": outputs[:-1]}

    @staticmethod
    def semantic_inference(pred_logits: Tensor, pred_masks: Tensor, size: tuple[int, ...]) -> Tensor:
        """Per-class scores ``seg[b, c] = Σ_q softmax(cls_q)[c] · sigmoid(mask_q)`` for c < K (§7).

        Args:
            pred_logits: ``(B, Q, K+1)`` (last output).
            pred_masks: ``(B, Q, h, w)`` mask logits, upsampled bilinearly (align_corners False) to ``size``.
            size: output ``(H, W)``.

        Returns:
            ``(B, K, H, W)``.
        """
        masks = F.interpolate(pred_masks, size=tuple(size), mode="bilinear", align_corners=False)
        probs = pred_logits.softmax(dim=-1)[..., :-1]
        return torch.einsum("bqc,bqhw->bchw", probs, masks.sigmoid())


__all__ = ["Mask2FormerHead", "Mask2FormerHeadConfig"]
