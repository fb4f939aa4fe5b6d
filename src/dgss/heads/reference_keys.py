"""Static key mapping between ``Mask2FormerHead`` state dicts and the MMDetection 3.x head layout
of the reference checkpoints (docs/encoders.md, without the ``decode_head.`` prefix).

Most dgss names equal the mmdet names; the differences are the FFNs (``ffn.fc1``/``ffn.fc2`` vs
``ffn.layers.0.0``/``ffn.layers.1``), the layer norms (``norm1``/``norm2`` and
``cross_attn_norm``/``self_attn_norm``/``ffn_norm`` vs ``norms.{k}``) and the decoder attentions
(``nn.MultiheadAttention`` directly vs mmcv's wrapper ``.attn``). The MSDeformAttn level order
(index 0 = s32, then s16, s8) is the same on both sides, so tensors are copied unchanged.

Placeholders: ``{i}`` = an index, ``{wb}`` = weight|bias, ``{msda}`` = an MSDeformAttn projection,
``{mha}`` = an ``nn.MultiheadAttention`` parameter, ``{j}`` = a ``mask_embed`` Linear index (0, 2, 4).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

# (dgss name, reference name)
HEAD_KEY_TABLE: tuple[tuple[str, str], ...] = (
    # pixel decoder
    ("pixel_decoder.input_convs.{i}.conv.{wb}", "pixel_decoder.input_convs.{i}.conv.{wb}"),
    ("pixel_decoder.input_convs.{i}.gn.{wb}", "pixel_decoder.input_convs.{i}.gn.{wb}"),
    (
        "pixel_decoder.encoder.layers.{i}.self_attn.{msda}.{wb}",
        "pixel_decoder.encoder.layers.{i}.self_attn.{msda}.{wb}",
    ),
    ("pixel_decoder.encoder.layers.{i}.ffn.fc1.{wb}", "pixel_decoder.encoder.layers.{i}.ffn.layers.0.0.{wb}"),
    ("pixel_decoder.encoder.layers.{i}.ffn.fc2.{wb}", "pixel_decoder.encoder.layers.{i}.ffn.layers.1.{wb}"),
    ("pixel_decoder.encoder.layers.{i}.norm1.{wb}", "pixel_decoder.encoder.layers.{i}.norms.0.{wb}"),
    ("pixel_decoder.encoder.layers.{i}.norm2.{wb}", "pixel_decoder.encoder.layers.{i}.norms.1.{wb}"),
    ("pixel_decoder.level_encoding.weight", "pixel_decoder.level_encoding.weight"),
    ("pixel_decoder.lateral_convs.{i}.conv.weight", "pixel_decoder.lateral_convs.{i}.conv.weight"),
    ("pixel_decoder.lateral_convs.{i}.gn.{wb}", "pixel_decoder.lateral_convs.{i}.gn.{wb}"),
    ("pixel_decoder.output_convs.{i}.conv.weight", "pixel_decoder.output_convs.{i}.conv.weight"),
    ("pixel_decoder.output_convs.{i}.gn.{wb}", "pixel_decoder.output_convs.{i}.gn.{wb}"),
    ("pixel_decoder.mask_feature.{wb}", "pixel_decoder.mask_feature.{wb}"),
    # transformer decoder
    ("transformer_decoder.layers.{i}.cross_attn.{mha}", "transformer_decoder.layers.{i}.cross_attn.attn.{mha}"),
    ("transformer_decoder.layers.{i}.self_attn.{mha}", "transformer_decoder.layers.{i}.self_attn.attn.{mha}"),
    ("transformer_decoder.layers.{i}.ffn.fc1.{wb}", "transformer_decoder.layers.{i}.ffn.layers.0.0.{wb}"),
    ("transformer_decoder.layers.{i}.ffn.fc2.{wb}", "transformer_decoder.layers.{i}.ffn.layers.1.{wb}"),
    ("transformer_decoder.layers.{i}.cross_attn_norm.{wb}", "transformer_decoder.layers.{i}.norms.0.{wb}"),
    ("transformer_decoder.layers.{i}.self_attn_norm.{wb}", "transformer_decoder.layers.{i}.norms.1.{wb}"),
    ("transformer_decoder.layers.{i}.ffn_norm.{wb}", "transformer_decoder.layers.{i}.norms.2.{wb}"),
    ("transformer_decoder.post_norm.{wb}", "transformer_decoder.post_norm.{wb}"),
    # head-level
    ("level_embed.weight", "level_embed.weight"),
    ("cls_embed.{wb}", "cls_embed.{wb}"),
    ("mask_embed.{j}.{wb}", "mask_embed.{j}.{wb}"),
    ("querys2feat.{wb}", "querys2feat.{wb}"),
    ("query_embed.weight", "query_embed.weight"),
    ("query_feat.weight", "query_feat.weight"),
)

_PLACEHOLDERS = {
    "i": r"\d+",
    "wb": r"weight|bias",
    "msda": r"sampling_offsets|attention_weights|value_proj|output_proj",
    "mha": r"in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias",
    "j": r"0|2|4",
    "rest": r".+",
}


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    out = []
    for k, part in enumerate(parts):
        out.append(f"(?P<{part}>{_PLACEHOLDERS[part]})" if k % 2 else re.escape(part))
    return re.compile("".join(out))


def _rules(extra_prefixes: Mapping[str, str] | None, reverse: bool) -> list[tuple[re.Pattern[str], str]]:
    pairs = list(HEAD_KEY_TABLE)
    for ours, ref in (extra_prefixes or {}).items():
        pairs.append((ours + "{rest}", ref + "{rest}"))
    return [(_compile(b), a) if reverse else (_compile(a), b) for a, b in pairs]


def _convert(state_dict: Mapping[str, Tensor], rules: list[tuple[re.Pattern[str], str]]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        for pattern, target in rules:
            m = pattern.fullmatch(key)
            if m is not None:
                new = target.format(**m.groupdict())
                if new in out:
                    raise ValueError(f"two keys map to {new!r}")
                out[new] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unmapped head keys: {unknown}")
    return out


def head_to_reference(
    state_dict: Mapping[str, Tensor], extra_prefixes: Mapping[str, str] | None = None
) -> dict[str, Tensor]:
    """dgss head keys -> reference (mmdet) keys, tensors unchanged.

    ``extra_prefixes`` maps further dgss prefixes to reference prefixes passed through verbatim
    (e.g. ``{"refine.": "DQCM."}`` for a refinement module whose inner names already match).
    Raises ``ValueError`` listing every key no rule matches.
    """
    return _convert(state_dict, _rules(extra_prefixes, reverse=False))


def head_from_reference(
    state_dict: Mapping[str, Tensor], extra_prefixes: Mapping[str, str] | None = None
) -> dict[str, Tensor]:
    """Reference (mmdet) head keys -> dgss keys; exact inverse of :func:`head_to_reference`."""
    return _convert(state_dict, _rules(extra_prefixes, reverse=True))
