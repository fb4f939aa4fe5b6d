"""`dgss` command line: params, convert, predict, data, demo, app (see the README for examples)."""
from __future__ import annotations

import argparse
import sys

import torch

from .backbones.zoo import ENCODERS, UnknownModelError
from .errors import DgssError


def _known_models() -> list[str]:
    from .models.presets import PRESETS
    return sorted(ENCODERS) + sorted(PRESETS)


def cmd_params(args: argparse.Namespace) -> int:
    """Build the named encoder or model on the meta device and print its parameter table."""
    from .models.param_report import format_rows, param_rows
    from .models.presets import PRESETS, build_preset
    name = args.model
    with torch.device("meta"):
        if name.startswith("dav2-"):
            from .backbones.depth_anything import DepthAnythingV2
            size = name.split("-")[1]
            model = DepthAnythingV2(size, patch14=name.endswith("-p14"))
            rows = param_rows(model, {"encoder": model.encoder, "depth_head (DPT)": model.depth_head})
        elif name in ENCODERS:
            from .backbones.vit_encoder import build_encoder
            model = build_encoder(name)
            rows = param_rows(model, {"encoder": model})
        elif name in PRESETS:
            model = build_preset(name, num_classes=args.num_classes)
            rows = param_rows(model, model.param_groups(), subtotals={"head (all)": model.head})
        else:
            raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(_known_models())}")
    enc = model if hasattr(model, "embed") else getattr(model, "encoder", None)
    size = enc.cfg.img_size if enc is not None else "?"
    print(format_rows(f"{name} (built on the meta device; {size}x{size} input)", rows))
    if name in PRESETS and model.adapter is not None:
        from .models.param_report import count, published_notes
        for line in published_notes(model.cfg, count(model.adapter).trainable):
            print(line)
    if enc is not None and enc.cfg.keep_mask_token:
        print(f"note: counts include the public checkpoint's unused DINOv2 mask token ({enc.cfg.embed_dim:,} "
              "parameters), so that public files load strictly")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dgss", description="Domain-generalized semantic segmentation on frozen VFMs.")
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("params", help="per-module total / trainable / frozen parameter counts")
    sp.add_argument("model", help="encoder (dinov2-l, eva02-l, clip-l, sam-h, dav2-l, ...) or model preset")
    sp.add_argument("--num-classes", type=int, default=19)
    sp.set_defaults(func=cmd_params)
    for register in _registrars():
        register(sub)
    return p


SUBCOMMAND_MODULES = ("dgss.engine.train_cli", "dgss.engine.eval_cli", "dgss.engine.predict_cli",
                      "dgss.models.convert_cli", "dgss.models.export", "dgss.data.cli", "dgss.demo.cli",
                      "dgss.app.cli")


def _registrars():
    """Sub-command groups that live next to their concern: each module has ``register(subparsers)``."""
    import importlib
    regs = []
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:  # a missing dependency inside the module is a real error
                raise
            continue
        regs.append(module.register)
    return regs


class CLIError(DgssError):
    """An error the CLI reports as one clear line (no traceback)."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        func = getattr(args, "func", None) or getattr(args, "handler")
        return int(func(args) or 0)
    except (UnknownModelError, CLIError, FileNotFoundError, ValueError, RuntimeError, KeyError) as e:
        if getattr(args, "debug", False):
            raise
        print(f"dgss {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
