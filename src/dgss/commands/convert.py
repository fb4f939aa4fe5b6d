"""`dgss convert`: reference checkpoints (mmengine layout) <-> dgss checkpoints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

from ..backbones.weights import load_encoder_weights
from ..errors import ReferenceFormatError
from ..files import atomic_write
from ..models.build import build_model
from ..models.checkpoint import load_trained_state, read_checkpoint, save_checkpoint
from ..models.presets import PRESETS, preset_config
from ..models.reference import detect_method, from_reference, to_reference, unwrap
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


def read_reference(path: Path) -> dict[str, torch.Tensor]:
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
    return unwrap(obj)


def import_reference(src: Path, dst: Path, spec: str, encoder_weights: str | None = None) -> Path:
    sd = read_reference(src)
    try:
        method = detect_method(sd)
    except ReferenceFormatError as e:
        hint = " (it is a dgss checkpoint: export it with --to reference)" if src.suffix == ".safetensors" else ""
        raise ReferenceFormatError(f"input {src}: {e}{hint}") from None
    num_classes = sd["decode_head.cls_embed.weight"].shape[0] - 1 if "decode_head.cls_embed.weight" in sd else 19
    cfg = model_config(spec, num_classes=num_classes) if spec in PRESETS else model_config(spec)
    if cfg.method != method and not (method == "freeze" and cfg.method in ("freeze", "full")):
        raise ReferenceFormatError(f"{src} holds a {method!r} checkpoint, but model {cfg.name!r} is {cfg.method!r}")
    model = build_model(cfg)
    load_trained_state(model, from_reference(sd, cfg.method if method == "freeze" else method), origin=str(src))
    if encoder_weights:
        load_encoder_weights(model.encoder, encoder_weights)
    return save_checkpoint(model, dst, extra={"converted_from": str(src)})


def export_reference(src: Path, dst: Path) -> Path:
    tensors, meta = read_checkpoint(src)
    ref = {
        "meta": {"dgss_version": __version__, "dgss_config": json.dumps(meta["config"])},
        "state_dict": to_reference(tensors, meta["method"]),
    }
    atomic_write(dst, lambda tmp: torch.save(ref, tmp))
    return dst


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
    if args.to == "reference":
        export_reference(src, dst)
    else:
        import_reference(src, dst, args.model, args.encoder_weights)
    print(f"wrote {dst}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("convert", help="import a reference (REIN/DepthForge/Vireo) checkpoint, or export to it")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--model", default="rein-dinov2-l", help="preset name or config file (import only)")
    p.add_argument("--encoder-weights", help="frozen encoder weights to record in the dgss checkpoint")
    p.add_argument("--to", choices=["dgss", "reference"], default="dgss")
    p.set_defaults(func=run)
