"""Normalised sine positional encoding of a 2-D feature map (docs/methods/mask2former-head.md).

For a map of size h×w without padding, position (i, j) gets
``y = (i+1)/(h+eps)·scale`` and ``x = (j+1)/(w+eps)·scale`` (scale 2π, eps 1e-6). With
``d_k = temperature^(2·floor(k/2)/num_feats)`` for k = 0..num_feats-1, channel k of ``pos_y`` is
``sin(y/d_k)`` for even k and ``cos(y/d_k)`` for odd k; ``pos_x`` likewise. The output is
``concat(pos_y, pos_x)`` (y first), i.e. ``2·num_feats`` channels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sine_position_encoding(
    height: int,
    width: int,
    num_feats: int = 128,
    temperature: float = 10000.0,
    scale: float = 2 * math.pi,
    eps: float = 1e-6,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Sine encoding of an unpadded ``height × width`` grid.

    Returns:
        ``(2·num_feats, height, width)``, channels ``[pos_y | pos_x]``. Computed in fp32 (fp64 if ``dtype`` is
        fp64), then cast to ``dtype``.
    """
    ct = torch.float64 if dtype == torch.float64 else torch.float32
    y = torch.arange(1, height + 1, dtype=ct, device=device) / (height + eps) * scale  # (h,)
    x = torch.arange(1, width + 1, dtype=ct, device=device) / (width + eps) * scale  # (w,)
    k = torch.arange(num_feats, dtype=ct, device=device)
    dim_t = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / num_feats)  # (F,)
    even = torch.arange(num_feats, device=device) % 2 == 0  # (F,)

    def encode(v: Tensor) -> Tensor:  # (n,) -> (F, n)
        arg = v[None, :] / dim_t[:, None]
        return torch.where(even[:, None], arg.sin(), arg.cos())

    pos_y = encode(y)[:, :, None].expand(num_feats, height, width)
    pos_x = encode(x)[:, None, :].expand(num_feats, height, width)
    return torch.cat([pos_y, pos_x], dim=0).to(dtype)


class SinePositionalEncoding(nn.Module):
    """Module wrapper of :func:`sine_position_encoding` (no parameters).

    ``forward(x)`` with ``x`` of shape ``(B, C, h, w)`` returns ``(B, 2·num_feats, h, w)`` (an expanded view).
    """

    def __init__(
        self, num_feats: int = 128, temperature: float = 10000.0, scale: float = 2 * math.pi, eps: float = 1e-6
    ) -> None:
        super().__init__()
        self.num_feats = num_feats
        self.temperature = temperature
        self.scale = scale
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        pos = sine_position_encoding(
            h, w, self.num_feats, self.temperature, self.scale, self.eps, device=x.device, dtype=x.dtype
        )
        return pos.unsqueeze(0).expand(b, -1, -1, -1)

    def extra_repr(self) -> str:
        return f"num_feats={self.num_feats}, temperature={self.temperature}, normalize=True"
