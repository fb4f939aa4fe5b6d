"""Vireo assembly: configs, the paper's ablation rows, and vocabulary switching with text tables."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..adapters.depthforge import DepthForgeConfig
from ..adapters.vireo import GeoTextConfig
from ..backbones.clip_text import ClipTextEncoder
from ..backbones.config import EncoderConfig
from ..data.vocab import Vocabulary, builtin_vocabulary, encoder_templates, head_templates, resolve_vocabulary
from .method_configs import depthforge_config, segmentor_config
from .segmentor import Segmentor, SegmentorConfig, TextSettings
from .text_tables import text_table

# Vireo paper Table 5 rows (docs/methods/vireo.md): each adds ONE component to REIN.
VIREO_ABLATIONS: dict[str, dict] = {
    "rein": dict(adapter="rein", depth=False, refine="none", cmpe=False, classifier="linear"),
    "promptda": dict(adapter="depthforge-noao", depth="promptda-l", refine="none", cmpe=False, classifier="linear"),
    "dav2": dict(adapter="depthforge-noao", depth=True, refine="none", cmpe=False, classifier="linear"),
    "da-ao": dict(adapter="depthforge", depth=True, refine="none", cmpe=False, classifier="linear"),
    "dov-veh": dict(adapter="rein", depth=False, refine="none", cmpe=False, classifier="text"),
    "cmpe": dict(adapter="rein", depth=False, refine="aag", cmpe=True, classifier="linear"),
    "geotext": dict(adapter="geotext", depth=True, refine="none", cmpe=False, classifier="linear"),
    "full": dict(adapter="geotext", depth=True, refine="aag", cmpe=True, classifier="text"),
}


def vireo_config(
    encoder: EncoderConfig,
    depth: EncoderConfig | None,
    *,
    vocab: Vocabulary | None = None,
    ablation: str = "full",
    name: str | None = None,
    **text_kw,
) -> SegmentorConfig:
    """Vireo (or one of its Table 5 rows) on one visual encoder with one depth encoder."""
    if ablation not in VIREO_ABLATIONS:
        raise ValueError(f"unknown Vireo ablation {ablation!r}; known: {', '.join(VIREO_ABLATIONS)}")
    row = VIREO_ABLATIONS[ablation]
    vocab = vocab or builtin_vocabulary("cityscapes")
    K = vocab.num_classes
    if isinstance(row["depth"], str):
        from ..backbones.zoo import encoder_config

        depth = encoder_config(row["depth"])
    if not row["depth"]:
        depth = None
    name = name or f"vireo-{encoder.name}" + ("" if ablation == "full" else f"-{ablation}")
    text_used = row["adapter"] == "geotext" or row["cmpe"] or row["classifier"] == "text"
    if not text_used:  # rows without any text part are plain REIN / DepthForge models
        if row["adapter"] == "rein":
            return dataclasses.replace(
                segmentor_config("rein", encoder, num_classes=K, name=name), class_names=vocab.names
            )
        cfg = depthforge_config(
            encoder,
            depth,
            num_classes=K,
            name=name,
            head_refine="none",
            attention_opt=row["adapter"] != "depthforge-noao",
        )
        return dataclasses.replace(cfg, class_names=vocab.names)
    base = segmentor_config("rein", encoder, num_classes=K)
    adapter = base.adapter
    depth_dim = depth.embed_dim if depth is not None and depth.embed_dim != encoder.embed_dim else None
    if row["adapter"] == "geotext":
        adapter = GeoTextConfig(
            **adapter.__dict__,
            depth_dim=depth_dim,
            text_dim=text_kw.get("text_dim", 768),
            depth_fusion="learned_mix" if depth is not None else "none",
        )
    elif row["adapter"] == "depthforge":
        adapter = DepthForgeConfig(**adapter.__dict__, depth_dim=depth_dim)
    text = TextSettings(vocab=vocab.names, classifier=row["classifier"], cmpe=row["cmpe"], **text_kw)
    # Vireo's full-resolution loss (docs/methods/vireo.md) comes with its head (CMPE prior / DOV-VEH); the rows
    # without them (and the REIN / DepthForge rows above) train with the stock loss
    loss_mode: Literal["stock", "full_res_query_mean"] = (
        "full_res_query_mean" if row["cmpe"] or row["classifier"] == "text" else "stock"
    )
    return SegmentorConfig(
        name=name,
        method="vireo",
        encoder=encoder,
        head=base.head,
        adapter=adapter,
        depth_encoder=depth if row["depth"] else None,
        head_refine=row["refine"],
        taps=base.taps,
        class_names=vocab.names,
        text=text,
        loss_mode=loss_mode,
    )


def use_vocabulary(
    model: Segmentor, vocab, *, text_encoder: ClipTextEncoder | None = None, clip_id: str | None = None
) -> Segmentor:
    """Point an open-vocabulary model at ``vocab`` (built-in name, JSON file, list or Vocabulary).

    Text tables come from the on-disk cache, or are computed with ``text_encoder`` (and cached).
    With ``text.text_vocab == "train"`` the encoder keeps the training vocabulary's table.
    """
    vocab = resolve_vocabulary(vocab)
    if clip_id is None and text_encoder is None:
        clip_id = (getattr(model, "text_source", None) or {}).get("clip_id")
    assert model.cfg.text is not None  # open-vocabulary models only
    keep_train = model.cfg.text.text_vocab == "train" and model.encoder_table.numel() > 0
    e_bb = (
        model.encoder_table
        if keep_train
        else text_table(vocab, encoder_templates(), encoder=text_encoder, clip_id=clip_id)
    )
    e_hd = text_table(vocab, head_templates(), encoder=text_encoder, clip_id=clip_id)
    model.set_vocabulary(vocab.names, e_bb, e_hd)
    if text_encoder is not None:
        model.text_source = {**(text_encoder.frozen_source or {"random": True}), "clip_id": text_encoder.fingerprint()}
    elif clip_id is not None:
        model.text_source = {**(getattr(model, "text_source", None) or {}), "clip_id": clip_id}
    return model
