"""Order-one weights for the perf tests (the convention of tests/models/order_one.py): matrices
N(0, 1/fan_in), norm weights 1 + N(0, 0.25), other vectors (biases, tokens) N(0, 0.25)."""

from __future__ import annotations

import math

import torch
from torch import nn


def order_one_(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = math.prod(p.shape[1:])
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) / math.sqrt(fan_in))
            elif name.endswith("weight") and ("norm" in name or ".gn" in name or "ln" in name):
                p.copy_(1 + 0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
            else:
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
