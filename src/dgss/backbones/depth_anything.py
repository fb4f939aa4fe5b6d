"""Depth Anything V2: the frozen DINOv2-style encoder (per-block features for DepthForge / Vireo)
plus its DPT depth head, so users can also see the relative depth map the methods lean on.

The DPT head is transformers' Depth Anything neck + head (the same network as the original
``depth_head``); :func:`dpt_head_from_original` maps the original ``depth_head.*`` names onto it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import FrozenWeightsError
from .vit_encoder import ViTEncoder, build_encoder
from .weights import load_encoder_state_dict, read_state_dict, resolve_source, sha256_file
from .zoo import encoder_config


@dataclass(frozen=True)
class DPTConfig:
    """DPT head of one DAv2 size (the original ``intermediate_layer_idx``, ``features``, ``out_channels``)."""

    layer_idx: tuple[int, ...]
    features: int
    out_channels: tuple[int, ...]


DPT_CONFIGS = {
    "s": DPTConfig((2, 5, 8, 11), 64, (48, 96, 192, 384)),
    "b": DPTConfig((2, 5, 8, 11), 128, (96, 192, 384, 768)),
    "l": DPTConfig((4, 11, 17, 23), 256, (256, 512, 1024, 1024)),
}


class DPTHead(nn.Module):
    """Depth head: 4 normed encoder outputs (B, 1 + N, C) -> relative depth (B, H, W)."""

    def __init__(self, embed_dim: int, patch_size: int, cfg: DPTConfig):
        super().__init__()
        from transformers import DepthAnythingConfig
        from transformers.models.depth_anything.modeling_depth_anything import (
            DepthAnythingDepthEstimationHead,
            DepthAnythingNeck,
        )

        hf = DepthAnythingConfig(
            reassemble_hidden_size=embed_dim,
            patch_size=patch_size,
            fusion_hidden_size=cfg.features,
            neck_hidden_sizes=list(cfg.out_channels),
            depth_estimation_type="relative",
        )
        self.cfg = cfg
        self.neck = DepthAnythingNeck(hf)
        self.head = DepthAnythingDepthEstimationHead(hf)

    def forward(self, feats: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        h, w = grid
        return self.head(self.neck(feats, h, w), h, w)


_ORIG_TO_HF = [
    (r"^projects\.(\d)\.", r"neck.reassemble_stage.layers.\1.projection."),
    (r"^resize_layers\.(\d)\.", r"neck.reassemble_stage.layers.\1.resize."),
    (r"^scratch\.layer(\d)_rn\.", None),  # index shift handled below
    (r"^scratch\.refinenet(\d)\.out_conv\.", None),
    (r"^scratch\.refinenet(\d)\.resConfUnit(\d)\.conv(\d)\.", None),
    (r"^scratch\.output_conv1\.", "head.conv1."),
    (r"^scratch\.output_conv2\.0\.", "head.conv2."),
    (r"^scratch\.output_conv2\.2\.", "head.conv3."),
]


def dpt_head_from_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original DAv2 ``depth_head.*`` names (prefix already stripped) -> :class:`DPTHead` names."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"^scratch\.layer(\d)_rn\.(.+)$", k)
        if m:
            out[f"neck.convs.{int(m.group(1)) - 1}.{m.group(2)}"] = v
            continue
        m = re.match(r"^scratch\.refinenet(\d)\.out_conv\.(.+)$", k)
        if m:  # refinenet4 handles the deepest map first = fusion layer 0
            out[f"neck.fusion_stage.layers.{4 - int(m.group(1))}.projection.{m.group(2)}"] = v
            continue
        m = re.match(r"^scratch\.refinenet(\d)\.resConfUnit(\d)\.conv(\d)\.(.+)$", k)
        if m:
            out[
                f"neck.fusion_stage.layers.{4 - int(m.group(1))}.residual_layer{m.group(2)}"
                f".convolution{m.group(3)}.{m.group(4)}"
            ] = v
            continue
        for pat, rep in _ORIG_TO_HF:
            if rep is not None and re.match(pat, k):
                out[re.sub(pat, rep, k)] = v
                break
        else:
            out[k] = v  # reported by the strict load
    return out


class DepthAnythingV2(nn.Module):
    """Frozen DAv2 encoder + DPT head. ``forward(x)`` -> relative depth (B, H, W) (larger = nearer)."""

    def __init__(self, size: str = "l", *, patch14: bool = False, encoder: ViTEncoder | None = None):
        super().__init__()
        if size not in DPT_CONFIGS:
            raise ValueError(f"unknown Depth Anything V2 size {size!r}; known: {sorted(DPT_CONFIGS)}")
        self.encoder = encoder or build_encoder(encoder_config(f"dav2-{size}" + ("-p14" if patch14 else "")))
        self.dpt_cfg = DPT_CONFIGS[size]
        self.depth_head = DPTHead(self.encoder.embed_dim, self.encoder.patch_size, self.dpt_cfg)
        for p in self.depth_head.parameters():
            p.requires_grad_(False)
        self.depth_head.eval()

    def train(self, mode: bool = True) -> DepthAnythingV2:
        return super().train(False)  # always frozen

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, state = self.encoder.embed(x)
        feats = []
        for i in range(self.encoder.depth):
            t = self.encoder.forward_block(i, t, state)
            if i in self.dpt_cfg.layer_idx:
                feats.append(self.encoder.final_norm(t))
        return self.depth_head(feats, state.grid)

    def load(self, source: str | os.PathLike) -> DepthAnythingV2:
        """Load encoder and DPT head from one DAv2 checkpoint (original, HF port, or combined file)."""
        path = resolve_source(source)
        sd = read_state_dict(path)
        report = load_encoder_state_dict(self.encoder, sd, role="depth", origin=str(path))
        head = None
        for prefix in ("depth_anything.depth_head.", "depth_head."):
            if any(k.startswith(prefix) for k in sd):
                head = dpt_head_from_original({k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)})
                break
        else:
            if any(k.startswith("neck.") for k in sd):
                head = {k: v for k, v in sd.items() if k.startswith(("neck.", "head."))}
        if head is None:
            raise FrozenWeightsError(f"{path} holds no DPT depth head (keys 'depth_head.*' or 'neck.*'/'head.*')")
        missing, unexpected = self.depth_head.load_state_dict(head, strict=False)
        target = self.depth_head.state_dict()
        wrong = [k for k in head if k in target and head[k].shape != target[k].shape]
        if missing or unexpected or wrong:
            raise FrozenWeightsError(
                f"{path}: DPT head mismatch: missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}, "
                f"wrong shapes {wrong[:8]}"
            )
        self.encoder.frozen_source = {
            "file": str(source),
            "sha256": sha256_file(path),
            "role": "depth",
            "licence": self.encoder.cfg.licence,
            **report,
        }
        return self
