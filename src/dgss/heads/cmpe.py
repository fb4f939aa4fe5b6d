"""CMPE stage 2 (Vireo): coarse per-class masks from text templates and a query prior.

On the refined stride-4 map X (B, C, H, W) with the head text table E_hd (K+1, P=80, D=768)::

    G = feat_proj(X)                                  (B, D, H, W)
    R = einsum(G, normalise(E_hd[:K]))                (B, K, P, H, W)  one map per class and template
    M = coarse_embed(R[b, k])                          (B, K, H, W)     3x3 conv over the P templates
    w = softmax_over_positions(sigmoid(M))             (reference; switch: softmax(M))
    f = Σ_positions w X                               (B, K, C)
    e = query_proj(f);  a = softmax_over_classes(e query_protoᵀ);  prior = aᵀ e   (B, 100, 256)

R is computed ``class_chunk`` classes at a time (exact: the conv acts per class), so memory grows
with the chunk, not with K (ADE-847 at 128² would need ~4.4 GB for R in one piece). In training,
``recompute`` (set by the segmentor) keeps no chunk of R for the backward pass either: each chunk is
recomputed there (same gradients).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class PriorGenerator(nn.Module):
    def __init__(
        self,
        in_channels: int = 1024,
        text_dim: int = 768,
        num_templates: int = 80,
        query_dim: int = 256,
        num_queries: int = 100,
        spatial_weights: Literal["softmax_sigmoid", "softmax_logits"] = "softmax_sigmoid",
        class_chunk: int | None = 32,
    ):
        super().__init__()
        self.spatial_weights = spatial_weights
        self.class_chunk = class_chunk
        self.recompute = False
        self.feat_proj = nn.Conv2d(in_channels, text_dim, 1)
        self.coarse_embed = nn.Conv2d(num_templates, 1, 3, padding=1)
        self.query_proj = nn.Linear(in_channels, query_dim)
        self.query_proto = nn.Parameter(torch.randn(num_queries, query_dim))

    def coarse_masks(self, x: torch.Tensor, head_table: torch.Tensor) -> torch.Tensor:
        """X (B, C, H, W), E_hd (K+1, P, D) -> coarse class logits M (B, K, H, W)."""
        e = F.normalize(head_table[:-1], dim=-1)  # (K, P, D), background dropped
        g = self.feat_proj(x)  # (B, D, H, W)
        B, _, H, W = g.shape
        K, P, _ = e.shape
        chunk = self.class_chunk or K
        recompute = self.recompute and self.training and torch.is_grad_enabled()
        out = []
        for s in range(0, K, chunk):
            ek = e[s : s + chunk]
            out.append(
                checkpoint(self._chunk_masks, g, ek, use_reentrant=False) if recompute else self._chunk_masks(g, ek)
            )
        return torch.cat(out, dim=1)

    def _chunk_masks(self, g: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """G (B, D, H, W), normalised templates of c classes (c, P, D) -> their coarse logits (B, c, H, W)."""
        B, _, H, W = g.shape
        r = torch.einsum("bdhw,kpd->bkphw", g, e)  # (B, c, P, H, W)
        c, P = r.shape[1], r.shape[2]
        return self.coarse_embed(r.reshape(B * c, P, H, W)).view(B, c, H, W)

    def forward(self, x: torch.Tensor, head_table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (coarse logits M (B, K, H, W), query prior (B, num_queries, query_dim))."""
        m = self.coarse_masks(x, head_table)
        s = torch.sigmoid(m) if self.spatial_weights == "softmax_sigmoid" else m
        w = s.flatten(2).softmax(dim=-1)  # (B, K, HW)
        f = torch.einsum("bkn,bcn->bkc", w, x.flatten(2))  # (B, K, C)
        e = self.query_proj(f)  # (B, K, Q_d)
        a = (e @ self.query_proto.t()).softmax(dim=1)  # softmax over classes (B, K, 100)
        prior = torch.einsum("bkj,bkd->bjd", a, e)  # (B, 100, Q_d)
        return m, prior
