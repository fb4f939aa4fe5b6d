"""Loading public encoder weights: files or Hub ids, key conversion, 14->16 resampling, strict guards.

Accepted layouts for DINOv2-family encoders (DINOv2 and the Depth Anything V2 encoder):

* Meta's ``dinov2_vit*14_pretrain.pth`` and timm safetensors (``blocks.N.attn.qkv`` names);
* transformers ``Dinov2Model`` safetensors (``embeddings.*``, ``encoder.layer.N.*``, v4 or v5 names);
* Depth Anything V2 ``depth_anything_v2_vit*.pth`` (``pretrained.*`` + ``depth_head.*``) and its
  transformers port (``backbone.*``, ``neck.*``, ``head.*``);
* the reference code's combined ``dinov2_converted_depth.pth`` (DINOv2 keys at top level, the DAv2
  keys under ``depth_anything.``), and REIN's ``dinov2_converted.pth`` (no depth keys);
* Prompt Depth Anything ``promptda_vitl.ckpt`` (``state_dict`` with ``pipeline.pretrained.*``).

DINOv3 loads timm's, Meta's original and the transformers ``DINOv3ViTModel`` layout
(:mod:`dgss.backbones.dinov3_layouts`); a DINOv3 file given to a DINOv2 encoder, or the other way round, is
refused. EVA02, CLIP and SAM image towers load timm's layout or the original one (converted with timm's own
checkpoint filters). Every frozen tensor must be filled from the file: anything missing, unexpected
or of an unresamplable shape raises :class:`FrozenWeightsError` naming the keys.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..errors import FrozenWeightsError
from .dinov3_layouts import checkpoint_family, dinov3_to_timm
from .vit_encoder import ViTEncoder

Role = Literal["visual", "depth"]
CONVERSION = "bicubic-14to16/v1"


# ---------------------------------------------------------------------------------------------- files
def resolve_source(source: str | os.PathLike) -> Path:
    """A local path, or ``hf-hub:org/repo[/file]`` found in the Hugging Face cache or downloaded.

    Offline (``HF_HUB_OFFLINE=1``, or the Hub unreachable within a few seconds) a file that is not in
    the cache fails at once with one line, instead of the Hub client's retries."""
    s = str(source)
    if s.startswith("hf-hub:"):
        spec = s[len("hf-hub:") :]
        parts = spec.split("/")
        if len(parts) < 2 or not all(parts[:2]):
            raise FrozenWeightsError(f"{s!r}: expected hf-hub:ORG/REPO or hf-hub:ORG/REPO/FILE")
        repo_id = "/".join(parts[:2])
        filenames = ["/".join(parts[2:])] if len(parts) > 2 else ["model.safetensors", "pytorch_model.bin"]
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        for fn in filenames:
            cached = try_to_load_from_cache(repo_id, fn)
            if isinstance(cached, str) and Path(cached).is_file():
                return Path(cached)
        offline = hub_offline_reason()
        if offline:
            raise FrozenWeightsError(
                f"weights {s!r} are not in the local cache and the Hugging Face Hub cannot be used ({offline}); "
                "download the file on a machine with internet and pass its local path instead"
            )
        errors = []
        for fn in filenames:
            try:
                return Path(hf_hub_download(repo_id, fn))
            except Exception as e:  # missing file, no access
                errors.append(f"{fn}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        raise FrozenWeightsError(
            f"could not get weights {s!r} from the Hugging Face Hub ({'; '.join(errors)}). "
            "On a machine without internet, download the file elsewhere and pass its local path."
        )
    p = Path(s).expanduser()
    if p.is_dir():
        raise FrozenWeightsError(f"weights file {p} is a folder; give the weights file in it")
    if not p.is_file():
        raise FrozenWeightsError(f"weights file not found: {p}")
    return p


def hub_offline_reason(timeout: float = 3.0) -> str | None:
    """Why the Hub cannot be used now (``HF_HUB_OFFLINE`` set, or no connection within ``timeout``
    seconds), or None."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return "HF_HUB_OFFLINE is set"
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"{host} cannot be reached: {e.strerror or type(e).__name__}"
    return None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file: safetensors preferred, pickles only with ``weights_only=True``;
    unwraps ``state_dict`` / ``model`` / ``module`` containers."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise FrozenWeightsError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except RuntimeError as e:
        if "TorchScript" in str(e):  # OpenAI CLIP .pt archives
            obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            raise FrozenWeightsError(f"{path}: cannot be read as a weights-only checkpoint ({e})") from None
    except Exception as e:
        raise FrozenWeightsError(f"{path}: cannot be read as a weights-only checkpoint ({e})") from None
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FrozenWeightsError(f"{path}: does not hold a flat dict of tensors")
    return dict(obj)


# ---------------------------------------------------------------------------------------------- layouts
def _strip(sd: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def select_encoder_state(sd: dict[str, torch.Tensor], role: Role, *, origin: str = "checkpoint") -> dict:
    """The encoder's tensors for ``role`` from any supported file layout (names still unnormalised).

    ``visual``: plain DINOv2/timm/HF files, or the top level of a combined file.
    ``depth``: ``depth_anything.pretrained.*`` (combined), ``pretrained.*`` (DAv2), ``backbone.*`` (HF DAv2).
    """
    if sd and all(k.startswith("pipeline.") for k in sd):  # Prompt Depth Anything checkpoints
        sd = _strip(sd, "pipeline.")
    has = lambda p: any(k.startswith(p) for k in sd)
    if role == "depth":
        for prefix in ("depth_anything.pretrained.", "pretrained.", "backbone."):
            if has(prefix):
                return _strip(sd, prefix)
        raise FrozenWeightsError(
            f"{origin} holds no depth-encoder weights (expected keys 'depth_anything.pretrained.*', "
            "'pretrained.*' or 'backbone.*'). A DINOv2-only file such as dinov2_converted.pth cannot "
            "feed the depth branch: pass depth_anything_v2_vit*.pth or dinov2_converted_depth.pth."
        )
    if has("depth_anything."):
        return {k: v for k, v in sd.items() if not k.startswith("depth_anything.")}
    if has("pretrained.") and has("depth_head."):
        raise FrozenWeightsError(
            f"{origin} is a Depth Anything V2 checkpoint; it cannot be loaded as the visual encoder "
            "(pass the DINOv2 weights, or use it as the depth encoder)"
        )
    return dict(sd)


_HF_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_HF_RENAME = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "attention.output.dense.weight": "attn.proj.weight",
    "attention.output.dense.bias": "attn.proj.bias",
    "attention.o_proj.weight": "attn.proj.weight",
    "attention.o_proj.bias": "attn.proj.bias",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1.weight": "mlp.fc1.weight",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight",
    "mlp.fc2.bias": "mlp.fc2.bias",
    "mlp.weights_in.weight": "mlp.fc1.weight",
    "mlp.weights_in.bias": "mlp.fc1.bias",
    "mlp.weights_out.weight": "mlp.fc2.weight",
    "mlp.weights_out.bias": "mlp.fc2.bias",
}
_QKV = {
    "attention.attention.query": 0,
    "attention.attention.key": 1,
    "attention.attention.value": 2,
    "attention.q_proj": 0,
    "attention.k_proj": 1,
    "attention.v_proj": 2,
}


def normalize_dinov2_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta/timm names for any DINOv2 layout (transformers v4/v5 names, SwiGLU ``w12``/``w3``)."""
    if not any(k.startswith(("embeddings.", "encoder.layer.")) for k in sd):
        out: dict[str, torch.Tensor] = {}
        for k, v in sd.items():  # Meta giant SwiGLU names -> timm's packed SwiGLU
            k = k.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")
            out[k] = v
        return out
    out = {}
    qkv: dict[tuple[int, str], list] = {}
    top = {
        "embeddings.cls_token": "cls_token",
        "embeddings.mask_token": "mask_token",
        "embeddings.position_embeddings": "pos_embed",
        "embeddings.register_tokens": "reg_token",
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "layernorm.weight": "norm.weight",
        "layernorm.bias": "norm.bias",
    }
    for k, v in sd.items():
        if k in top:
            out[top[k]] = v
            continue
        m = _HF_LAYER.match(k)
        if not m:
            out[k] = v  # left for the strict check to report
            continue
        i, rest = int(m.group(1)), m.group(2)
        stem, _, kind = rest.rpartition(".")
        if stem in _QKV:
            qkv.setdefault((i, kind), [None, None, None])[_QKV[stem]] = v
        elif rest in _HF_RENAME:
            out[f"blocks.{i}.{_HF_RENAME[rest]}"] = v
        else:
            out[k] = v
    for (i, kind), parts in qkv.items():
        if any(p is None for p in parts):
            raise FrozenWeightsError(f"layer {i}: incomplete query/key/value {kind} tensors")
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)
    return out


# ---------------------------------------------------------------------------------------------- resampling
def resample_patch_kernel(w: torch.Tensor, size: int) -> torch.Tensor:
    """Patch-embedding kernel (C, 3, p, p) -> (C, 3, size, size): plain bicubic in fp32, no antialias,
    no magnitude rescaling (the reference converters' behaviour)."""
    return F.interpolate(w.float(), size=(size, size), mode="bicubic", align_corners=False).to(w.dtype)


def resample_pos_embed(pos: torch.Tensor, grid: tuple[int, int], num_prefix: int = 1) -> torch.Tensor:
    """Position embedding (1, P + g*g, C) -> (1, P + h*w, C), bicubic, align_corners False, no antialias."""
    prefix, patch = pos[:, :num_prefix], pos[:, num_prefix:]
    g = int(round(patch.shape[1] ** 0.5))
    if g * g != patch.shape[1]:
        raise FrozenWeightsError(f"position embedding with {patch.shape[1]} patch entries is not a square grid")
    C = patch.shape[-1]
    patch = patch.reshape(1, g, g, C).permute(0, 3, 1, 2).float()
    patch = F.interpolate(patch, size=grid, mode="bicubic", align_corners=False)
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], C).to(pos.dtype)
    return torch.cat([prefix, patch], dim=1)


def _convert_shapes(sd: dict, enc: ViTEncoder) -> tuple[dict, list[str]]:
    """Resample the patch kernel and position table of ``sd`` to the encoder's shapes."""
    target = enc.vit.state_dict()
    notes: list[str] = []
    sd = dict(sd)
    cfg = enc.cfg
    if cfg.family == "dinov3":  # native patch 16, no position table: nothing is ever resampled
        return sd, notes
    k = "patch_embed.proj.weight"
    if k in sd and k in target and sd[k].shape != target[k].shape:
        src, dst = sd[k].shape, target[k].shape
        if src[:2] != dst[:2]:
            raise FrozenWeightsError(f"{k}: checkpoint shape {tuple(src)} cannot become {tuple(dst)} (width differs)")
        if cfg.family == "dinov2" and src[-1] != cfg.source_patch_size:
            raise FrozenWeightsError(
                f"{k}: patch kernel {src[-1]}x{src[-1]} is neither the public {cfg.source_patch_size}x"
                f"{cfg.source_patch_size} nor this model's {dst[-1]}x{dst[-1]}"
            )
        sd[k] = resample_patch_kernel(sd[k], dst[-1])
        notes.append(f"patch kernel {src[-1]}->{dst[-1]} bicubic")
    k = "pos_embed"
    if k in sd and k in target and sd[k].shape != target[k].shape:
        src, dst = sd[k].shape, target[k].shape
        if enc.cfg.family == "sam":  # (1, H, W, C)
            if src[-1] != dst[-1]:
                raise FrozenWeightsError(f"{k}: checkpoint shape {tuple(src)} cannot become {tuple(dst)}")
            p = F.interpolate(sd[k].permute(0, 3, 1, 2).float(), size=dst[1:3], mode="bicubic", align_corners=False)
            sd[k] = p.permute(0, 2, 3, 1).to(sd[k].dtype)
        else:
            nprefix = 1 if enc.cfg.family in ("dinov2", "clip", "eva02") else 0
            if src[-1] != dst[-1] or src[1] <= nprefix:
                raise FrozenWeightsError(f"{k}: checkpoint shape {tuple(src)} cannot become {tuple(dst)}")
            g_src = cfg.source_img_size // cfg.source_patch_size
            if cfg.family == "dinov2" and src[1] != 1 + g_src * g_src:
                # docs/encoders.md: the public grid (37x37) or an already converted one (handled above); a file
                # converted for another crop (e.g. 64x64 for 1024) is not the reference's weights
                raise FrozenWeightsError(
                    f"{k}: position grid of {src[1] - 1} entries is neither the public {g_src}x{g_src} nor this "
                    f"model's {cfg.grid}x{cfg.grid}; build the model for that grid (img_size) instead"
                )
            g = int(round((dst[1] - nprefix) ** 0.5))
            sd[k] = resample_pos_embed(sd[k], (g, g), nprefix)
        notes.append(f"pos grid {tuple(src)}->{tuple(dst)} bicubic")
    return sd, notes


# ---------------------------------------------------------------------------------------------- loading
_IGNORED = {
    "dinov2": ("depth_head.",),
    "clip": ("head.", "proj"),
    "sam": ("neck.",),
    "eva02": ("head.", "lm_head.", "fc_norm."),
}


def _to_timm_layout(sd: dict, enc: ViTEncoder) -> dict:
    """Original EVA02 / OpenAI CLIP / SAM layouts -> timm's, using timm's own checkpoint filters."""
    fam = enc.cfg.family
    target = set(enc.vit.state_dict())
    if fam in ("dinov2", "dinov3") or set(sd) & target:
        return sd
    checkpoint_filter_fn: Callable[..., Any]  # one timm filter per family, each with its own signature
    if fam == "eva02":
        from timm.models.eva import checkpoint_filter_fn
    elif fam == "sam":
        from timm.models.vision_transformer_sam import checkpoint_filter_fn
    else:
        from timm.models.vision_transformer import checkpoint_filter_fn
    try:
        return checkpoint_filter_fn(sd, enc.vit)
    except Exception as e:  # pragma: no cover - depends on foreign layouts
        raise FrozenWeightsError(f"cannot convert this {fam} checkpoint to timm's layout: {e}") from None


def load_encoder_state_dict(
    enc: ViTEncoder, sd: dict[str, torch.Tensor], *, role: Role = "visual", origin: str = "state dict"
) -> dict:
    """Fill every frozen tensor of ``enc`` from ``sd`` (any supported layout). Returns a report
    ``{"conversion": ..., "grid": ...}``; raises :class:`FrozenWeightsError` naming missing,
    unexpected or mis-shaped keys."""
    sd = select_encoder_state(sd, role, origin=origin)
    check_family(sd, enc, origin)
    layout_notes: list[str] = []
    if enc.cfg.family == "dinov2":
        sd = normalize_dinov2_keys(sd)
    elif enc.cfg.family == "dinov3":
        sd, layout_notes = dinov3_to_timm(sd, enc, origin)
    sd = _to_timm_layout(sd, enc)
    ignored = _IGNORED.get(enc.cfg.family, ())
    sd = {k: v for k, v in sd.items() if not k.startswith(ignored)}
    sd, notes = _convert_shapes(sd, enc)
    target = enc.vit.state_dict()
    optional = {"mask_token"}  # unused by every method; timm files drop it
    missing = sorted(k for k in target if k not in sd and k not in optional)
    unexpected = sorted(k for k in sd if k not in target)
    wrong = sorted(
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
        for k in sd
        if k in target and sd[k].shape != target[k].shape
    )
    if missing or unexpected or wrong:
        lines = [f"{origin} does not match encoder {enc.cfg.name!r} ({role}):"]
        if missing:
            lines.append(f"  missing {len(missing)} keys: {_preview(missing)}")
        if unexpected:
            lines.append(f"  unexpected {len(unexpected)} keys: {_preview(unexpected)}")
        if wrong:
            lines.append(f"  {len(wrong)} shapes that cannot be resampled: {_preview(wrong)}")
        raise FrozenWeightsError("\n".join(lines))
    with torch.no_grad():
        for k, t in target.items():
            if k in sd:
                t.copy_(sd[k].to(t.dtype))
            else:
                t.zero_()
    kernel = [n for n in notes if n.startswith("patch kernel")]
    if kernel and kernel[0].startswith("patch kernel 14->16"):
        conversion = CONVERSION
    elif kernel:
        conversion = "bicubic-" + kernel[0].split()[2].replace("->", "to") + "/v1"
    else:
        conversion = "resampled" if notes else "none"
    return {"conversion": conversion, "notes": layout_notes + notes, "grid": [enc.cfg.grid, enc.cfg.grid]}


def check_family(sd: dict, enc: ViTEncoder, origin: str) -> None:
    """Refuse a DINOv3 file for a DINOv2-family encoder and a DINOv2 file for a DINOv3 one (one line)."""
    fam = enc.cfg.family
    if fam not in ("dinov2", "dinov3"):
        return
    found = checkpoint_family(sd)
    if found is None or found == fam:
        return
    if found == "dinov3":
        raise FrozenWeightsError(
            f"{origin} holds DINOv3 weights (registers, RoPE, no position table) but {enc.cfg.name!r} is a "
            "DINOv2-architecture encoder: use a dinov3-* encoder or preset (e.g. rein-dinov3-l) for this file, "
            "or pass DINOv2 weights"
        )
    raise FrozenWeightsError(
        f"{origin} holds DINOv2 weights (absolute position table) but {enc.cfg.name!r} is a DINOv3 encoder: "
        f"pass a DINOv3 file (e.g. {enc.cfg.default_weights}) or use a dinov2-* encoder or preset"
    )


_LICENCE_NOTICE_SHOWN: set[str] = set()


def licence_notice(enc: ViTEncoder) -> None:
    """One line per process and licence when weights under a custom licence (DINOv3) are first loaded."""
    if enc.cfg.family != "dinov3" or enc.cfg.licence in _LICENCE_NOTICE_SHOWN:
        return
    _LICENCE_NOTICE_SHOWN.add(enc.cfg.licence)
    print(
        f"note: {enc.cfg.name} weights are under the {enc.cfg.licence} (custom, not OSI; models trained on them "
        "are derivative works to share with a copy of it): "
        "https://ai.meta.com/resources/models-and-libraries/dinov3-license/",
        file=sys.stderr,
    )


def load_encoder_weights(enc: ViTEncoder, source: str | os.PathLike, *, role: Role = "visual") -> ViTEncoder:
    """Load a public checkpoint (path or ``hf-hub:`` id) into ``enc`` and record its provenance in
    ``enc.frozen_source`` (file, sha256, conversion, grid, licence)."""
    path = resolve_source(source)
    sd = read_state_dict(path)
    report = load_encoder_state_dict(enc, sd, role=role, origin=str(path))
    enc.frozen_source = {
        "file": str(source),
        "sha256": sha256_file(path),
        "role": role,
        "licence": enc.cfg.licence,
        **report,
    }
    licence_notice(enc)
    return enc


def mark_random(enc: ViTEncoder, seed: int = 0) -> ViTEncoder:
    """Give ``enc`` reproducible random weights on purpose (tests, demos): the module's own init under
    ``seed``, so a checkpoint trained on them can be evaluated again with the same frozen weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(enc)(enc.cfg)
    with torch.no_grad():
        for (_k, t), (_, v) in zip(enc.state_dict().items(), fresh.state_dict().items(), strict=False):
            t.copy_(v)
    enc.frozen_source = {"random": True, "seed": seed}
    return enc


def _preview(items: list[str], n: int = 8) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... (+{len(items) - n} more)" if len(items) > n else "")
