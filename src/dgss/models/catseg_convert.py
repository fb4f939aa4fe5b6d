"""Released CAT-Seg checkpoints (detectron2 ``model`` state dict, whole model, fp32) <-> dgss names.

Key table (prefix -> prefix; the rest of every key is identical, q/k/v already split in the files)::

    sem_seg_head.predictor.clip_model.visual.*  -> clip_visual.*
    sem_seg_head.predictor.clip_model.*         -> clip_text.*   (token_embedding, positional_embedding,
                                                   transformer.resblocks.*, ln_final, text_projection, logit_scale)
    sem_seg_head.predictor.transformer.*        -> aggregator.*
    upsample1.*, upsample2.*                    -> upsample1.*, upsample2.*

``*.swin_block.block_2.attn_mask`` buffers and detectron2's ``pixel_mean`` / ``pixel_std`` are dropped
(recomputed). Any other key, a missing key or a wrong shape raises :class:`ReferenceFormatError` naming
the key. See docs/methods/catseg.md.
"""

from __future__ import annotations

import torch

from ..backbones.clip_blocks import fuse_split_qkv
from ..errors import ReferenceFormatError

KEY_TABLE = (
    ("sem_seg_head.predictor.clip_model.visual.", "clip_visual."),
    ("sem_seg_head.predictor.clip_model.", "clip_text."),
    ("sem_seg_head.predictor.transformer.", "aggregator."),
    ("upsample1.", "upsample1."),
    ("upsample2.", "upsample2."),
)
DROPPED_SUFFIXES = ("attn_mask", "pixel_mean", "pixel_std")


def reference_to_dgss_key(key: str) -> str | None:
    """The dgss name of a reference key; None for a dropped buffer; ReferenceFormatError if unknown."""
    if key.endswith(DROPPED_SUFFIXES):
        return None
    for ref, ours in KEY_TABLE:
        if key.startswith(ref):
            return ours + key[len(ref) :]
    raise ReferenceFormatError(f"unknown CAT-Seg checkpoint key {key!r}: not part of the released model layout")


def dgss_to_reference_key(key: str) -> str:
    for ref, ours in KEY_TABLE:
        if key.startswith(ours):
            return ref + key[len(ours) :]
    raise ReferenceFormatError(f"no reference name for {key!r}")


def from_catseg_reference(state: dict, model) -> dict[str, torch.Tensor]:
    """A released CAT-Seg state dict -> the full dgss state dict of ``model`` (a :class:`CATSeg`), fp32.

    Unknown keys, missing keys and wrong shapes raise :class:`ReferenceFormatError` naming the key."""
    if isinstance(state.get("model"), dict):
        state = state["model"]
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        ours = reference_to_dgss_key(k)
        if ours is None:
            continue
        if ours not in target:
            raise ReferenceFormatError(f"checkpoint key {k!r} (dgss {ours!r}) does not exist in {model.cfg.name}")
        if tuple(v.shape) != tuple(target[ours].shape):
            raise ReferenceFormatError(
                f"checkpoint key {k!r} has shape {tuple(v.shape)}; {model.cfg.name} needs {tuple(target[ours].shape)}"
            )
        out[ours] = v.to(target[ours].dtype)
    missing = sorted(set(target) - set(out))
    if missing:
        raise ReferenceFormatError(
            f"the checkpoint lacks {len(missing)} tensor(s) of {model.cfg.name}, first {dgss_to_reference_key(missing[0])!r}"
        )
    return out


def to_catseg_reference(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A full dgss CAT-Seg state dict -> released-checkpoint names (q/k/v stay split, as in the files)."""
    return {dgss_to_reference_key(k): v for k, v in state.items()}


def to_open_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The CLIP part of a dgss CAT-Seg state dict under open_clip / OpenAI names, q|k|v re-fused."""
    clip = {"visual." + k[len("clip_visual.") :]: v for k, v in state.items() if k.startswith("clip_visual.")}
    clip.update({k[len("clip_text.") :]: v for k, v in state.items() if k.startswith("clip_text.")})
    return fuse_split_qkv(clip)


def frozen_clip_mismatches(model, state: dict[str, torch.Tensor]) -> list[str]:
    """Names of frozen CLIP tensors whose values in ``state`` (dgss names) differ from ``model``'s
    (loaded from the OpenAI file). The image tower's last-block W_q moves by weight decay only and
    is trainable anyway, so it never appears here."""
    current = model.state_dict()
    return [
        n
        for n, p in model.clip_parameters()
        if not p.requires_grad and n in state and not torch.equal(state[n].to(current[n].dtype), current[n])
    ]


def load_catseg_reference(model, state: dict[str, torch.Tensor], *, verify_clip: bool = True) -> None:
    """Load a released checkpoint into ``model``; with ``verify_clip`` (and CLIP loaded from its file)
    every frozen CLIP tensor must equal the file's."""
    converted = from_catseg_reference(state, model)
    if verify_clip and model.clip_source is not None:
        bad = frozen_clip_mismatches(model, converted)
        if bad:
            raise ReferenceFormatError(
                f"{len(bad)} frozen CLIP tensor(s) of the checkpoint differ from the CLIP file, first {bad[0]!r}: "
                "wrong CLIP file for this checkpoint"
            )
    model.load_state_dict(converted)
