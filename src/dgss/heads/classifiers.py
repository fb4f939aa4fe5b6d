"""Classifiers for the Mask2Former queries: linear (K+1 logits) and DOV-VEH text classifier."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TextClassifier(nn.Linear):
    """DOV-VEH: ``logits = Linear_{C->D}(q) · t_hdᵀ`` against the unit-norm head text rows (K+1, D).

    No temperature (the projection's norm acts as a per-query one); the last row is "background" =
    the no-object class. The text rows are a non-persistent buffer set with :meth:`set_text`, so the
    same weights serve any vocabulary. Parameter names ``weight``/``bias`` equal the reference
    ``cls_embed.*`` (Linear 256 -> 768, xavier-uniform weight, zero bias).
    """

    def __init__(self, in_dim: int = 256, text_dim: int = 768, logit_scale: bool = False):
        super().__init__(in_dim, text_dim)
        nn.init.xavier_uniform_(self.weight)
        nn.init.zeros_(self.bias)
        self.register_buffer("text", torch.zeros(0, text_dim), persistent=False)
        if logit_scale:  # switch head.logit_scale: a learnable temperature exp(s), s = 0 at start
            self.logit_scale = nn.Parameter(torch.zeros(()))

    def project(self, q: torch.Tensor) -> torch.Tensor:
        return super().forward(q)

    def set_text(self, head_table: torch.Tensor) -> None:
        """E_hd (K+1, P, D) -> t_hd = normalise(mean_p normalise(E_hd))."""
        e = head_table.to(torch.promote_types(head_table.dtype, torch.float32))  # at least fp32
        t = F.normalize(F.normalize(e, dim=-1).mean(dim=1), dim=-1)
        self.text = t.to(self.weight.device, self.weight.dtype)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        if self.text.shape[0] == 0:
            raise RuntimeError("TextClassifier has no vocabulary: call set_text(head_table) first")
        logits = self.project(q) @ self.text.t()
        return logits * self.logit_scale.exp() if hasattr(self, "logit_scale") else logits


class MLPTextClassifier(TextClassifier):
    """Paper variant of DOV-VEH (switch ``head.cls_proj: mlp2``): Linear-ReLU-Linear before the text
    product. Its parameters (``weight``/``bias`` of the first layer, ``proj2``) have no reference names."""

    def __init__(self, in_dim: int = 256, text_dim: int = 768, logit_scale: bool = False):
        super().__init__(in_dim, text_dim, logit_scale)
        self.proj2 = nn.Linear(text_dim, text_dim)

    def project(self, q: torch.Tensor) -> torch.Tensor:
        return self.proj2(torch.relu(super().project(q)))
