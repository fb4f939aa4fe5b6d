"""DOV-VEH with CMPE: the Mask2Former head of Vireo (``docs/methods/vireo.md``).

    1. s4 <- s4 + f_M                         gated level fusion (the DepthForge DRD module)
    2. M, prior = CMPE(s4, E_hd)              coarse class masks + query prior (B, 100, 256)
    3. query_pos = Q_geo + prior; content = querys2feat(query_pos)
    4. pixel decoder + masked decoder; classes = cls_embed(q) · t_hdᵀ (text classifier)

Outputs are the stock head's plus ``coarse_masks`` (B, K, H/4, W/4) for the prior loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch.nn.functional as F
from torch import Tensor, nn

from .classifiers import MLPTextClassifier, TextClassifier
from .cmpe import PriorGenerator
from .mask2former import Mask2FormerHead, Mask2FormerHeadConfig
from .refine import GatedLevelFusion


class VireoHead(Mask2FormerHead):
    def __init__(self, cfg: Mask2FormerHeadConfig, text, *, embed_dim: int, refine: nn.Module | None = None):
        classifier = None
        if text.classifier == "text":
            cls = MLPTextClassifier if text.cls_proj == "mlp2" else TextClassifier
            classifier = cls(cfg.feat_channels, text.text_dim, logit_scale=text.logit_scale == "learnable")
        super().__init__(cfg, classifier=classifier, refine=refine)
        self.text_cfg = text
        self.prior = (
            PriorGenerator(
                embed_dim,
                text.text_dim,
                text.head_templates,
                cfg.feat_channels,
                cfg.num_queries,
                text.cmpe_spatial_weights,
                text.cmpe_class_chunk,
            )
            if text.cmpe
            else None
        )

    def set_text(self, head_table: Tensor) -> None:
        if isinstance(self.cls_embed, TextClassifier):
            self.cls_embed.set_text(head_table)

    # the text table is a required third input: this head is not called like the plain head (hence the ignore)
    def forward(self, features: Sequence[Tensor], query_embed: Tensor | None, head_table: Tensor) -> dict:  # type: ignore[override]
        feats = list(features)
        if self.refine is not None:
            if self.text_cfg.cmpe_residual_level == 0:
                feats = list(self.refine(feats))
            else:  # paper variant: f_M + the deepest level resampled to stride 4
                base = F.interpolate(
                    feats[self.text_cfg.cmpe_residual_level],
                    size=feats[0].shape[-2:],
                    mode="bilinear",
                    align_corners=False,
                )
                feats[0] = base + cast(GatedLevelFusion, self.refine).fuse(feats)
        coarse = None
        if self.prior is not None:
            coarse, prior = self.prior(feats[0], head_table)
            query_embed = (
                prior
                if query_embed is None
                else query_embed.unsqueeze(0) + prior
                if query_embed.dim() == 2
                else query_embed + prior
            )
        out = self.decode(feats, query_embed)
        if coarse is not None:
            out["coarse_masks"] = coarse
        return out
