"""Frozen encoders: DINOv2 (S/B/L/g, patch 14 or 16), EVA02-L, CLIP ViT-L, SAM ViT-H, Depth Anything V2."""

from ..errors import FrozenWeightsError, InputSizeError, UnknownModelError
from .config import EncoderConfig
from .depth_anything import DepthAnythingV2
from .vit_encoder import EncoderState, ViTEncoder, build_encoder
from .weights import load_encoder_state_dict, load_encoder_weights, mark_random
from .zoo import ENCODERS, encoder_config

__all__ = [
    "EncoderConfig",
    "EncoderState",
    "ViTEncoder",
    "build_encoder",
    "InputSizeError",
    "DepthAnythingV2",
    "FrozenWeightsError",
    "load_encoder_weights",
    "load_encoder_state_dict",
    "mark_random",
    "ENCODERS",
    "UnknownModelError",
    "encoder_config",
]
