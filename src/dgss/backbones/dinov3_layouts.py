"""DINOv3 checkpoint layouts -> timm's ``vit_*_patch16_dinov3[_qkvb]`` names (docs/encoders.md).

Three layouts load into the same timm model:

* timm's (``reg_token``, ``blocks.i.gamma_1``, ``attn.q_bias``/``v_bias``): names as they are;
* Meta's original ``dinov3_vit*16_pretrain_*.pth`` (detected by ``storage_tokens``): the fused
  ``attn.qkv.bias`` (3C, k third masked to 0) is split into ``q_bias`` / ``v_bias`` here, the rest is
  renamed by timm's own ``checkpoint_filter_fn`` (``storage_tokens`` -> ``reg_token``, ``ls1/ls2.gamma`` ->
  ``gamma_1/2``, SwiGLU ``w1/w2/w3`` -> ``fc1_g/fc1_x/fc2``). Dropped: ``mask_token``,
  ``rope_embed.periods`` (checked against the model's), ``*.bias_mask`` (checked), ``local_cls_norm.*``,
  ``projectors.*``; any other key reaches the strict check;
* transformers ``DINOv3ViTModel`` (``embeddings.*``, ``layer.i.*`` on the Hub, ``model.layer.i.*`` after
  transformers 5 loads it): separate q/k/v projections stacked into ``attn.qkv.weight`` (rows q | k | v),
  ``o_proj`` -> ``attn.proj``, ``layer_scale{1,2}.lambda1`` -> ``gamma_{1,2}``, GELU ``up/down_proj`` ->
  ``fc1/fc2``, gated ``gate/up/down_proj`` -> ``fc1_g/fc1_x/fc2``; ``embeddings.mask_token`` dropped.

Biases: a file without any q/v bias (timm's plain variant) fills the ``_qkvb`` model's with zeros (exact);
q/v biases only go into a plain (``-nobias``) model when they are all zero; a k bias must be zero.
"""

from __future__ import annotations

import re

import torch

from ..errors import FrozenWeightsError
from .vit_encoder import dinov3_rope_periods

_HF_LAYER = re.compile(r"^(?:model\.)?layer\.(\d+)\.(.+)$")
_HF_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.register_tokens": "reg_token",
    "embeddings.patch_embeddings.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.bias": "patch_embed.proj.bias",
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
}
_HF_DROPPED = ("embeddings.mask_token",)
_HF_BLOCK = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "attention.o_proj.weight": "attn.proj.weight",
    "attention.o_proj.bias": "attn.proj.bias",
    "attention.q_proj.bias": "attn.q_bias",
    "attention.v_proj.bias": "attn.v_bias",
    "layer_scale1.lambda1": "gamma_1",
    "layer_scale2.lambda1": "gamma_2",
}
_HF_MLP_GELU = {"mlp.up_proj": "mlp.fc1", "mlp.down_proj": "mlp.fc2"}
_HF_MLP_GATED = {"mlp.gate_proj": "mlp.fc1_g", "mlp.up_proj": "mlp.fc1_x", "mlp.down_proj": "mlp.fc2"}
_QKV_ROWS = {"attention.q_proj.weight": 0, "attention.k_proj.weight": 1, "attention.v_proj.weight": 2}


def dinov3_layout(sd: dict) -> str:
    """``"meta"``, ``"hf"`` or ``"timm"``: which DINOv3 layout a state dict is in."""
    if "storage_tokens" in sd:
        return "meta"
    if any(k.startswith("embeddings.") or _HF_LAYER.match(k) for k in sd):
        return "hf"
    return "timm"


def checkpoint_family(sd: dict) -> str | None:
    """``"dinov2"`` (absolute position table), ``"dinov3"`` (cls/registers and no position table) or None,
    for the tensors of a DINOv2-family or DINOv3 file (any of their layouts)."""
    if "pos_embed" in sd or "embeddings.position_embeddings" in sd:
        return "dinov2"
    prefix_keys = ("storage_tokens", "reg_token", "cls_token", "embeddings.register_tokens", "embeddings.cls_token")
    if any(k in sd for k in prefix_keys):
        return "dinov3"
    return None


def meta_to_timm(sd: dict, enc, origin: str) -> tuple[dict, list[str]]:
    """Meta's original layout -> timm names, with the guards of the module docstring."""
    target = enc.vit.state_dict()
    notes = []
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k == "rope_embed.periods":
            notes.append(_check_periods(v, enc, origin))
            continue
        if k == "mask_token" or k.endswith(".bias_mask") or k.startswith(("local_cls_norm.", "projectors.")):
            continue
        if "rope" in k:  # timm's filter would drop it silently
            raise FrozenWeightsError(
                f"{origin}: unexpected RoPE tensor {k!r} (Meta files hold rope_embed.periods only)"
            )
        if k.endswith("attn.qkv.bias"):
            q, kb, vb = _split_qkv_bias(k, v, sd.get(k.replace("qkv.bias", "qkv.bias_mask")), origin)
            stem = k[: -len("qkv.bias")]
            out[stem + "q_bias"], out[stem + "v_bias"] = q, vb
            continue
        out[k] = v
    w = "patch_embed.proj.weight"
    if w in out and w in target and out[w].shape != target[w].shape:  # timm's filter would resample it
        raise FrozenWeightsError(
            f"{origin}: {w} {tuple(out[w].shape)} does not fit {enc.cfg.name!r} {tuple(target[w].shape)}; "
            "DINOv3 is native at patch 16 and is never resampled"
        )
    from timm.models.eva import checkpoint_filter_fn

    return checkpoint_filter_fn(out, enc.vit), notes + ["layout meta->timm"]


def _split_qkv_bias(key: str, bias: torch.Tensor, mask: torch.Tensor | None, origin: str):
    """Meta's fused (3C,) bias -> (q, k, v) thirds; the k third (and its mask third) must be 0."""
    q, kb, vb = bias.chunk(3, dim=-1)
    if kb.any():
        raise FrozenWeightsError(f"{origin}: {key} has a non-zero k third; DINOv3 masks the key bias to 0")
    if mask is not None:
        mq, mk, mv = mask.chunk(3, dim=-1)
        if mk.any() or not (bool((mq == 1).all()) and bool((mv == 1).all())):
            raise FrozenWeightsError(
                f"{origin}: {key}_mask is not [1 (q), 0 (k), 1 (v)]; this is not a DINOv3 masked-k-bias file"
            )
    return q, kb, vb


def _check_periods(periods: torch.Tensor, enc, origin: str) -> str:
    rope = enc.vit.rope
    fp32 = dinov3_rope_periods(rope.dim, rope.temperature, "fp32")
    bf16 = dinov3_rope_periods(rope.dim, rope.temperature, "bf16")
    p = periods.detach().float().cpu()
    if p.shape != fp32.shape or not torch.allclose(p, fp32, rtol=1e-2, atol=0):
        raise FrozenWeightsError(
            f"{origin}: rope_embed.periods {p.tolist()[:4]}... do not match {enc.cfg.name!r} "
            f"(head dim {enc.vit.rope.dim}, base {enc.vit.rope.temperature:g}: {fp32.tolist()[:4]}...)"
        )
    return "file rope periods = bf16-rounded" if torch.equal(p, bf16) else "file rope periods = fp32"


def hf_to_timm(sd: dict, enc, origin: str) -> tuple[dict, list[str]]:
    """transformers ``DINOv3ViTModel`` layout (``layer.i`` or ``model.layer.i``) -> timm names."""
    gated = any(".mlp.gate_proj." in k for k in sd)
    mlp = _HF_MLP_GATED if gated else _HF_MLP_GELU
    out: dict[str, torch.Tensor] = {}
    qkv: dict[int, list] = {}
    for k, v in sd.items():
        if k in _HF_DROPPED:
            continue
        if k in _HF_TOP:
            out[_HF_TOP[k]] = v
            continue
        m = _HF_LAYER.match(k)
        if not m:
            out[k] = v  # left for the strict check to report
            continue
        i, rest = int(m.group(1)), m.group(2)
        blk = f"blocks.{i}."
        if rest in _QKV_ROWS:
            qkv.setdefault(i, [None, None, None])[_QKV_ROWS[rest]] = v
        elif rest == "attention.k_proj.bias":
            if v.any():
                raise FrozenWeightsError(f"{origin}: {k} is not zero; DINOv3 has no key bias")
        elif rest in _HF_BLOCK:
            out[blk + _HF_BLOCK[rest]] = v
        else:
            stem, _, kind = rest.rpartition(".")
            out[blk + mlp[stem] + "." + kind if stem in mlp else k] = v
    for i, parts in qkv.items():
        if any(p is None for p in parts):
            raise FrozenWeightsError(f"{origin}: layer {i} lacks one of attention.q_proj/k_proj/v_proj.weight")
        out[f"blocks.{i}.attn.qkv.weight"] = torch.cat(parts, dim=0)
    return out, ["layout transformers->timm"]


def fit_qv_biases(sd: dict, enc, origin: str) -> tuple[dict, list[str]]:
    """Match the file's q/v biases to the model variant: zeros for a ``_qkvb`` model when the file has none
    (timm's plain files); into a plain model only when they are all zero (then dropped)."""
    target = enc.vit.state_dict()
    wanted = [k for k in target if k.endswith(("attn.q_bias", "attn.v_bias"))]
    given = [k for k in sd if k.endswith(("attn.q_bias", "attn.v_bias"))]
    if wanted and not given:
        sd = dict(sd)
        for k in wanted:
            sd[k] = torch.zeros_like(target[k], device="cpu")
        return sd, ["no q/v biases in the file: zero"]
    if not wanted and given:
        nonzero = [k for k in given if sd[k].any()]
        if nonzero:
            raise FrozenWeightsError(
                f"{origin}: {nonzero[0]} is not zero, but {enc.cfg.name!r} is the variant without q/v biases; "
                f"use {enc.cfg.name.removesuffix('-nobias')!r}"
            )
        return {k: v for k, v in sd.items() if k not in given}, ["zero q/v biases dropped"]
    return sd, []


def dinov3_to_timm(sd: dict, enc, origin: str) -> tuple[dict, list[str]]:
    """Any DINOv3 layout -> the encoder's timm names (biases fitted to the variant)."""
    layout = dinov3_layout(sd)
    notes: list[str] = []
    if layout == "meta":
        sd, notes = meta_to_timm(sd, enc, origin)
    elif layout == "hf":
        sd, notes = hf_to_timm(sd, enc, origin)
    sd, more = fit_qv_biases(sd, enc, origin)
    return sd, notes + more
