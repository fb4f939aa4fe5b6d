"""`dgss convert`: reference checkpoints (mmengine layout) <-> dgss checkpoints.

SoMA releases (``{'state_dict': EMA weights, 'ema_state_dict': raw weights}``) import their ``state_dict``
(``--raw``: the raw weights) as ``init: import`` (W' = W + s·BA); the frozen tensors they carry must equal
the loaded encoder's (``--encoder-weights``, default: the zoo's public file), else the file is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import cast

import torch
import yaml

from ..adapters.soma import SoMAConfig
from ..backbones.weights import load_encoder_weights
from ..errors import FrozenWeightsError, ReferenceFormatError
from ..files import atomic_write
from ..models.build import build_model
from ..models.checkpoint import load_trained_state, read_checkpoint, save_checkpoint
from ..models.presets import PRESETS, preset_config
from ..models.reference import (
    detect_method,
    from_reference,
    frozen_mismatches,
    soma_from_reference,
    soma_to_reference,
    to_reference,
    unwrap,
)
from ..models.segmentor import SegmentorConfig
from ..version import __version__


def model_config(spec: str, **overrides) -> SegmentorConfig:
    """A preset name, or a YAML/JSON file holding a full ``SegmentorConfig`` dict."""
    if spec in PRESETS:
        return preset_config(spec, **overrides)
    p = Path(spec)
    if p.is_file():
        try:
            return SegmentorConfig.from_dict(yaml.safe_load(p.read_text()))
        except (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError) as e:
            from ..errors import OptionError

            raise OptionError(
                f"--model {p}: not a valid model config ({str(e).splitlines()[0] if str(e) else e!r}); "
                "give a preset name or a YAML file of a SegmentorConfig"
            ) from None
    return preset_config(spec)  # raises the error listing known presets


def read_reference(path: Path, *, raw: bool = False) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a reference file; ``raw``: the ``ema_state_dict`` of an EMA release (the raw
    weights, keys ``module.*``) instead."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ReferenceFormatError(f"file not found: {path}") from None
    except Exception as e:
        raise ReferenceFormatError(
            f"{path} cannot be loaded with weights_only=True ({str(e).splitlines()[0]}). Full mmengine training "
            "checkpoints pickle mmengine objects; keep only their 'state_dict' (e.g. in the reference environment: "
            "torch.save({'state_dict': torch.load(p)['state_dict']}, out))"
        ) from None
    if raw:
        ema = obj.get("ema_state_dict") if isinstance(obj, dict) else None
        if not isinstance(ema, dict):
            raise ReferenceFormatError(f"{path} has no 'ema_state_dict' (raw weights of an EMA run); drop --raw")
        return {k.removeprefix("module."): v for k, v in ema.items() if isinstance(v, torch.Tensor) and k != "steps"}
    return unwrap(obj)


def import_reference(src: Path, dst: Path, spec: str, encoder_weights: str | None = None, *, raw: bool = False) -> Path:
    sd = read_reference(src, raw=raw)
    try:
        method = detect_method(sd)
    except ReferenceFormatError as e:
        hint = " (it is a dgss checkpoint: export it with --to reference)" if src.suffix == ".safetensors" else ""
        raise ReferenceFormatError(f"input {src}: {e}{hint}") from None
    num_classes = sd["decode_head.cls_embed.weight"].shape[0] - 1 if "decode_head.cls_embed.weight" in sd else 19
    cfg = model_config(spec, num_classes=num_classes) if spec in PRESETS else model_config(spec)
    if cfg.method != method and not (method == "freeze" and cfg.method in ("freeze", "full")):
        raise ReferenceFormatError(f"{src} holds a {method!r} checkpoint, but model {cfg.name!r} is {cfg.method!r}")
    if method == "soma":
        return _import_soma(src, dst, sd, cfg, encoder_weights)
    model = build_model(cfg)
    load_trained_state(model, from_reference(sd, cfg.method if method == "freeze" else method), origin=str(src))
    if encoder_weights:
        load_encoder_weights(model.encoder, encoder_weights)
    return save_checkpoint(model, dst, extra={"converted_from": str(src)})


def _import_soma(src: Path, dst: Path, sd: dict, cfg: SegmentorConfig, encoder_weights: str | None) -> Path:
    """A released SoMA file -> a dgss checkpoint (``init: import``), its frozen tensors checked."""
    soma = cast(SoMAConfig, cfg.adapter)  # SoMA configs are routed here
    cfg = dataclasses.replace(cfg, adapter=dataclasses.replace(soma, init="import"))
    model = build_model(cfg)
    expected = model.trainable_state_dict()
    tensors, frozen = soma_from_reference(sd, cast(SoMAConfig, cfg.adapter), expected)
    wrong = sorted(k for k in set(tensors) & set(expected) if tensors[k].shape != expected[k].shape)
    missing = sorted(set(expected) - set(tensors))
    if wrong or missing:
        k = (wrong or missing)[0]
        what = f"{k} {tuple(tensors[k].shape)} vs {tuple(expected[k].shape)}" if wrong else f"no {k}"
        raise ReferenceFormatError(
            f"{src} is a SoMA file for another encoder than {cfg.encoder.name!r} ({what}): pass "
            "--model soma-<encoder it was trained on> (the release table: soma-dinov2-l)"
        )
    load_trained_state(model, tensors, origin=str(src))
    source = encoder_weights or cfg.encoder.default_weights
    if frozen:
        load_encoder_weights(model.encoder, source)
        bad = frozen_mismatches(model.encoder, frozen)
        if bad:
            raise FrozenWeightsError(
                f"{src} was trained on other frozen weights than {source}: {', '.join(bad[:4])}"
                f"{f' (+{len(bad) - 4} more)' if len(bad) > 4 else ''} differ; pass the encoder it was trained on "
                f"with --encoder-weights ({cfg.encoder.name}, converted as dgss loads it)"
            )
    elif encoder_weights:
        load_encoder_weights(model.encoder, encoder_weights)
    return save_checkpoint(model, dst, extra={"converted_from": str(src)})


def export_reference(src: Path, dst: Path) -> Path:
    tensors, meta = read_checkpoint(src)
    if meta["method"] == "soma":
        adapter = cast(SoMAConfig, SegmentorConfig.from_dict(meta["config"]).adapter)
        state = soma_to_reference(tensors, adapter)
    else:
        state = to_reference(tensors, meta["method"])
    ref = {
        "meta": {"dgss_version": __version__, "dgss_config": json.dumps(meta["config"])},
        "state_dict": state,
    }
    atomic_write(dst, lambda tmp: torch.save(ref, tmp))
    return dst


def import_catseg_reference(src: Path, dst: Path, name: str, clip_weights: str | None = None) -> Path:
    """A released CAT-Seg checkpoint (detectron2 ``model`` dict) -> a dgss checkpoint of preset ``name``; with
    ``clip_weights`` (the OpenAI file) every frozen CLIP tensor of the checkpoint is checked against it."""
    from ..models.catseg import build_catseg
    from ..models.catseg_convert import load_catseg_reference

    try:
        obj = torch.load(str(src), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ReferenceFormatError(f"{src}: not loadable with weights_only=True ({str(e).splitlines()[0]})") from None
    sd = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        raise ReferenceFormatError(f"{src}: expected a detectron2 checkpoint ({{'model': state dict, ...}})")
    model = build_catseg(name)
    if clip_weights:
        model.load_clip(clip_weights)
    load_catseg_reference(model, {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)})
    return save_checkpoint(model, dst, extra={"converted_from": str(src)})


def run(args: argparse.Namespace) -> int:
    from ..checks import check_output_file

    src, dst = Path(args.input), Path(args.output)
    if src.is_dir():
        raise ReferenceFormatError(f"input {src}: is a folder; give the checkpoint file")
    if not src.is_file():
        raise ReferenceFormatError(f"input {src}: file not found")
    check_output_file(dst, "output")
    if dst.resolve() == src.resolve():
        raise ReferenceFormatError(
            f"output {dst}: is the input file; choose another output (the input is never overwritten)"
        )
    from ..models.catseg import CATSEG_PRESETS

    if args.to == "reference":
        export_reference(src, dst)
    elif args.model in CATSEG_PRESETS:
        import_catseg_reference(src, dst, args.model, args.encoder_weights)
    else:
        import_reference(src, dst, args.model, args.encoder_weights, raw=args.raw)
    print(f"wrote {dst}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("convert", help="import a reference (REIN/DepthForge/Vireo) checkpoint, or export to it")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--model", default="rein-dinov2-l", help="preset name or config file (import only)")
    p.add_argument("--encoder-weights", help="frozen encoder weights to record in the dgss checkpoint")
    p.add_argument("--to", choices=["dgss", "reference"], default="dgss")
    p.add_argument(
        "--raw", action="store_true", help="EMA releases (SoMA): import the raw weights (ema_state_dict), not the EMA"
    )
    p.set_defaults(func=run)
