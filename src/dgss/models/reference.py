"""Reference-code checkpoints (mmengine layout) <-> dgss names (``docs/encoders.md``).

Reference ``state_dict`` keys: ``backbone.<adapter>.*`` (``reins`` for REIN and for FADA, whose
released code keeps REIN's module name) and ``decode_head.*`` (MMDetection names, mapped by
:mod:`dgss.heads.reference_keys`). Frozen encoders are never in them. A ``backbone.reins.*`` checkpoint
is FADA's when it holds FADA's high-frequency tokens or Haar kernels (``docs/methods/fada.md``).
"""

from __future__ import annotations

import torch

from ..errors import ReferenceFormatError
from ..heads.reference_keys import head_from_reference, head_to_reference

ADAPTER_PREFIX = {
    "rein": "backbone.reins.",
    "depthforge": "backbone.depthforge.",
    "vireo": "backbone.vireo.",
    "fada": "backbone.reins.",
}
FADA_MARKERS = ("learnable_tokens_a2", "learnable_tokens_b2", "learnable_tokens2", "wavepool.")
# DepthForge's depth refinement decoder and Vireo's CMPE prior generator
HEAD_EXTRA_PREFIXES = {"refine.": "DQCM.", "prior.": "prior."}
IGNORED_PREFIXES = ("decode_head.vpt_transforms.", "decode_head.feat_conv.", "decode_head.out_conv.")


def detect_method(sd: dict[str, torch.Tensor]) -> str:
    fada = tuple(ADAPTER_PREFIX["fada"] + m for m in FADA_MARKERS)
    if any(k.startswith(fada) for k in sd):
        return "fada"
    for method, prefix in ADAPTER_PREFIX.items():
        if any(k.startswith(prefix) for k in sd):
            return method
    if any(k.startswith("decode_head.") for k in sd):
        return "freeze"
    raise ReferenceFormatError("no 'backbone.<adapter>.*' or 'decode_head.*' keys: not a reference checkpoint")


def unwrap(obj) -> dict[str, torch.Tensor]:
    """mmengine checkpoint dict -> its ``state_dict``."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ReferenceFormatError("expected an mmengine checkpoint ({'meta', 'state_dict', ...}) or a state dict")
    return obj


def from_reference(sd: dict[str, torch.Tensor], method: str | None = None) -> dict[str, torch.Tensor]:
    """Reference names -> dgss ``trainable_state_dict`` names (``adapter.*``, ``head.*``)."""
    method = method or detect_method(sd)
    a_prefix = ADAPTER_PREFIX.get(method)
    out, head, unknown = {}, {}, []
    for k, v in sd.items():
        if k.startswith(IGNORED_PREFIXES):
            continue
        if a_prefix and k.startswith(a_prefix):
            out["adapter." + k[len(a_prefix) :]] = v
        elif k.startswith("decode_head."):
            head[k[len("decode_head.") :]] = v
        else:
            unknown.append(k)
    if unknown:
        raise ReferenceFormatError(f"keys dgss cannot place for method {method!r}: {sorted(unknown)[:10]}")
    try:
        out.update({"head." + k: v for k, v in head_from_reference(head, HEAD_EXTRA_PREFIXES).items()})
    except ValueError as e:
        raise ReferenceFormatError(str(e)) from None
    return out


def to_reference(sd: dict[str, torch.Tensor], method: str) -> dict[str, torch.Tensor]:
    """dgss ``trainable_state_dict`` names -> reference names (inverse of :func:`from_reference`)."""
    a_prefix = ADAPTER_PREFIX.get(method)
    out, head, unknown = {}, {}, []
    for k, v in sd.items():
        if k.startswith("adapter.") and a_prefix:
            out[a_prefix + k[len("adapter.") :]] = v
        elif k.startswith("head."):
            head[k[len("head.") :]] = v
        else:
            unknown.append(k)
    if unknown:
        raise ReferenceFormatError(f"keys without a reference name: {sorted(unknown)[:10]}")
    out.update({"decode_head." + k: v for k, v in head_to_reference(head, HEAD_EXTRA_PREFIXES).items()})
    return out
