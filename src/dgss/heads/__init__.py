"""Segmentation heads: the shared Mask2Former head and its building blocks."""

from .mask2former import Mask2FormerHead, Mask2FormerHeadConfig
from .ms_deform_attn import MultiScaleDeformableAttention, ms_deform_attn_core, ms_deform_attn_core_reference
from .pixel_decoder import MSDeformAttnPixelDecoder
from .position_encoding import SinePositionalEncoding, sine_position_encoding
from .reference_keys import HEAD_KEY_TABLE, head_from_reference, head_to_reference
from .transformer_decoder import Mask2FormerTransformerDecoder, MaskedAttentionDecoderLayer

__all__ = [
    "HEAD_KEY_TABLE",
    "MSDeformAttnPixelDecoder",
    "Mask2FormerHead",
    "Mask2FormerHeadConfig",
    "Mask2FormerTransformerDecoder",
    "MaskedAttentionDecoderLayer",
    "MultiScaleDeformableAttention",
    "SinePositionalEncoding",
    "head_from_reference",
    "head_to_reference",
    "ms_deform_attn_core",
    "ms_deform_attn_core_reference",
    "sine_position_encoding",
]
