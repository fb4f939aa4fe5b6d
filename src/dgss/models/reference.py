"""Reference-code checkpoints (mmengine layout) <-> dgss names (``docs/encoders.md``).

Reference ``state_dict`` keys: ``backbone.<adapter>.*`` (``reins`` for REIN and for FADA, whose
released code keeps REIN's module name) and ``decode_head.*`` (MMDetection names, mapped by
:mod:`dgss.heads.reference_keys`). Frozen encoders are never in them. A ``backbone.reins.*`` checkpoint
is FADA's when it holds FADA's high-frequency tokens or Haar kernels (``docs/methods/fada.md``).

SoMA's released files (``docs/methods/soma.md``) keep the adapted backbone under ``backbone.model.``
with separate q, k, v Linears: :func:`soma_from_reference` / :func:`soma_to_reference` map them onto the
stacked row blocks of dgss's fused qkv; the frozen tensors the release also carries (biases, mask token)
are returned for the caller to check against the loaded encoder (:func:`frozen_mismatches`).
"""

from __future__ import annotations

import re

import torch

from ..adapters.soma import ATTENTION_BIASES, SPLIT_ROWS, SoMAConfig
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


SOMA_PREFIX = "backbone.model."
_SOMA_KEY = re.compile(r"^blocks\.(\d+)\.(.+)\.(lora_A\.weight|lora_B\.weight|bias)$")


def detect_method(sd: dict[str, torch.Tensor]) -> str:
    if any(k.startswith(SOMA_PREFIX) and ".lora_A." in k for k in sd):
        return "soma"
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


# ---------------------------------------------------------------------------------------------- SoMA
def _soma_reference_targets(cfg: SoMAConfig) -> dict[str, tuple[str, int]]:
    """Reference Linear name -> (dgss target, row block): a fused ``attn.qkv`` is the reference's q, k, v."""
    out = {}
    for target in cfg.targets:
        if target in SPLIT_ROWS:
            stem = target.rsplit(".", 1)[0]
            for j, part in enumerate("qkv"):
                out[f"{stem}.{part}"] = (target, j)
        else:
            out[target] = (target, 0)
    return out


def soma_from_reference(
    sd: dict[str, torch.Tensor], cfg: SoMAConfig, expected: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A released SoMA ``state_dict`` -> (dgss ``trainable_state_dict`` tensors, frozen tensors by encoder-side
    reference name). ``expected``: the model's trainable state (names and shapes). ``init_A``/``init_B`` = 0
    (W' = W + s·BA, as the release evaluates). Raises :class:`ReferenceFormatError` for unplaceable keys."""
    ref_targets = _soma_reference_targets(cfg)
    pieces: dict[tuple[int, str, str], dict[int, torch.Tensor]] = {}
    frozen, head, unknown = {}, {}, []
    for k, v in sd.items():
        if k.startswith(IGNORED_PREFIXES):
            continue
        if k.startswith("decode_head."):
            head[k[len("decode_head.") :]] = v
            continue
        if not k.startswith(SOMA_PREFIX):
            unknown.append(k)
            continue
        name = k[len(SOMA_PREFIX) :]
        m = _SOMA_KEY.match(name)
        if m and int(m.group(1)) >= cfg.start_block and m.group(2) in ref_targets:
            target, j = ref_targets[m.group(2)]
            kind = m.group(3).split(".")[0]
            pieces.setdefault((int(m.group(1)), target, kind), {})[j] = v
        elif name.endswith("bias") or name == "mask_token":
            frozen[name] = v
        else:
            unknown.append(k)
    if unknown:
        raise ReferenceFormatError(f"keys dgss cannot place for method 'soma': {sorted(unknown)[:10]}")
    out = {}
    for (layer, target, kind), parts in pieces.items():
        base = f"adapter.blocks.{layer}.{target}."
        n = SPLIT_ROWS.get(target, 1)
        if kind in ("lora_A", "lora_B"):
            if sorted(parts) != list(range(n)):
                raise ReferenceFormatError(
                    f"{SOMA_PREFIX}blocks.{layer}: {target} {kind} lacks some of its q/k/v parts"
                )
            out[base + kind] = torch.stack([parts[j] for j in range(n)])
        elif base + "bias" in expected:
            out[base + "bias"] = torch.cat([parts[j] for j in range(n) if j in parts])
        else:  # attention holding its own biases: q_bias / v_bias
            for j, v in parts.items():
                out[base + ATTENTION_BIASES[j]] = v
    for k, v in expected.items():
        if k.startswith("adapter.") and k.endswith(("init_A", "init_B")):
            out[k] = torch.zeros_like(v, device="cpu")
    try:
        out.update({"head." + k: v for k, v in head_from_reference(head, HEAD_EXTRA_PREFIXES).items()})
    except ValueError as e:
        raise ReferenceFormatError(str(e)) from None
    return out, frozen


def soma_to_reference(sd: dict[str, torch.Tensor], cfg: SoMAConfig) -> dict[str, torch.Tensor]:
    """dgss SoMA tensors -> the released layout (inverse of :func:`soma_from_reference`). Only factors that
    mean W' = W + s·BA (init_A = init_B = 0: ``init: import`` or ``reference``) have a reference form."""
    nonzero = sorted(k for k, v in sd.items() if k.endswith(("init_A", "init_B")) and bool(v.abs().max() > 0))
    if nonzero:
        raise ReferenceFormatError(
            f"this SoMA model keeps an init snapshot ({nonzero[0]}, ...): the reference layout has no place for "
            "it (W' = W + BA there); write a plain encoder with `dgss export --merged` instead"
        )
    out, head = {}, {}
    for k, v in sd.items():
        if k.startswith("head."):
            head[k[len("head.") :]] = v
            continue
        m = re.match(r"^adapter\.blocks\.(\d+)\.(.+)\.(lora_A|lora_B|init_A|init_B|bias|q_bias|k_bias|v_bias)$", k)
        if not m:
            raise ReferenceFormatError(f"keys without a reference name: {[k]}")
        layer, target, kind = m.groups()
        if kind in ("init_A", "init_B"):
            continue
        stem = f"{SOMA_PREFIX}blocks.{layer}."
        n = SPLIT_ROWS.get(target, 1)
        refs = [f"{target.rsplit('.', 1)[0]}.{p}" for p in "qkv"] if n > 1 else [target]
        if kind in ("lora_A", "lora_B"):
            for j, ref in enumerate(refs):
                out[f"{stem}{ref}.{kind}.weight"] = v[j]
        elif kind == "bias":
            for j, part in enumerate(v.chunk(n)):
                out[f"{stem}{refs[j]}.bias"] = part
        else:
            out[f"{stem}{refs[ATTENTION_BIASES.index(kind)]}.bias"] = v
    out.update({"decode_head." + k: v for k, v in head_to_reference(head, HEAD_EXTRA_PREFIXES).items()})
    return out


def frozen_mismatches(encoder, frozen: dict[str, torch.Tensor]) -> list[str]:
    """Reference names of the released frozen tensors that differ from the loaded encoder's (or that it
    lacks). ``blocks.<l>.attn.{q,k,v}.bias`` are the row blocks of the fused qkv bias (or q_bias / v_bias)."""
    vit = encoder.vit.state_dict()
    bad = []
    for name, v in frozen.items():
        m = re.match(r"^blocks\.(\d+)\.attn\.([qkv])\.bias$", name)
        if m:
            stem = f"blocks.{m.group(1)}.attn."
            j = "qkv".index(m.group(2))
            if stem + "qkv.bias" in vit:
                mine = vit[stem + "qkv.bias"].chunk(3)[j]
            else:
                mine = vit.get(stem + f"{m.group(2)}_bias")
        else:
            mine = vit.get(name)
        if mine is None or mine.shape != v.shape or not torch.equal(mine, v.to(mine.dtype)):
            bad.append(name)
    return sorted(bad)
