"""The segmentor config a run config's ``model`` section describes."""

from __future__ import annotations

import dataclasses
from typing import cast

from .keys import key_error, unknown_key
from .schema import LossConfig, ModelConfig


def _merge_overrides(base: dict, overrides: dict, path: str) -> dict:
    out = dict(base)
    for k, v in overrides.items():
        key = f"{path}.{k}"
        if k not in base:
            raise unknown_key(k, path, list(base))
        if isinstance(v, dict) and isinstance(base[k], dict):
            out[k] = _merge_overrides(base[k], v, key)
        elif isinstance(v, dict) and base[k] is None:
            raise key_error(key, "cannot override fields of a component this model does not have")
        else:
            out[k] = v
    return out


def _catseg_config(model: ModelConfig):
    """CAT-Seg: its preset (``tiny: true``: catseg-tiny), ``overrides`` of CatSegConfig fields (nested dicts
    for vision / text / aggregator) and the training vocabulary ``vocab`` (default cityscapes)."""
    from ..data.vocab import load_vocabulary
    from ..models.catseg import CatSegConfig, catseg_config

    d = catseg_config("catseg-tiny" if model.tiny else cast(str, model.preset)).to_dict()
    if model.overrides:
        d = _merge_overrides(d, model.overrides, "model.overrides")
    d["class_names"] = list(load_vocabulary(model.vocab or "cityscapes").names)
    try:
        return CatSegConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise key_error("model.overrides", str(e)) from None


def segmentor_config_from(model: ModelConfig, loss: LossConfig | None = None):
    """The :class:`~dgss.models.segmentor.SegmentorConfig` a model section describes; an explicit
    ``loss.mode`` / ``loss.prior_weight`` is written into it (the model config is the one place the
    training loss is read from)."""
    from ..backbones.zoo import ENCODERS
    from ..models.presets import DEPTHFORGE_ABLATIONS, PRESETS, depthforge_config, preset_config
    from ..models.segmentor import SegmentorConfig

    if model.method == "catseg":
        return _catseg_config(model)
    preset = cast(str, model.preset)  # validated: every model that is not tiny names a preset
    if model.tiny:
        from ..models.tiny import tiny_segmentor_config

        kw = dict(model.tiny_options)
        if model.ablation is not None:
            kw["ablation"] = model.ablation
        try:
            cfg = tiny_segmentor_config(model.method, num_classes=model.num_classes, **kw)
        except TypeError as e:
            raise key_error("model.tiny_options", str(e)) from None
        if cfg.text is not None and cfg.text.classifier == "text" and model.vocab is not None:
            from ..data.vocab import load_vocabulary  # the training vocabulary, recorded in checkpoints

            names = load_vocabulary(model.vocab).names
            cfg = dataclasses.replace(cfg, class_names=names, text=dataclasses.replace(cfg.text, vocab=names))
    elif model.method == "vireo":
        from ..data.vocab import load_vocabulary
        from ..models.vireo import vireo_config

        p = PRESETS[preset]
        cfg = vireo_config(
            ENCODERS[p["encoder"]],
            ENCODERS[p["depth"]],
            vocab=load_vocabulary(model.vocab or "cityscapes"),
            ablation=model.ablation or "full",
            name=preset + (f"-{model.ablation}" if model.ablation else ""),
        )
    elif model.method == "depthforge" and model.ablation is not None:
        p = PRESETS[preset]
        cfg = depthforge_config(
            ENCODERS[p["encoder"]],
            ENCODERS[p["depth"]],
            num_classes=model.num_classes,
            name=f"{preset}-{model.ablation}",
            **DEPTHFORGE_ABLATIONS[model.ablation],
        )
    else:
        cfg = preset_config(preset, num_classes=model.num_classes)
    if model.overrides:
        merged = _merge_overrides(cfg.to_dict(), model.overrides, "model.overrides")
        try:
            cfg = SegmentorConfig.from_dict(merged)
        except (TypeError, ValueError) as e:
            raise key_error("model.overrides", str(e)) from None
    if loss is not None and loss.mode is not None:
        cfg = dataclasses.replace(cfg, loss_mode=loss.mode)
    if loss is not None and loss.prior_weight is not None and cfg.text is not None:
        cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, cmpe_loss_weight=loss.prior_weight))
    return cfg
