"""`dgss eval`: the DG evaluation protocol over every target domain, with tables, files and charts."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..data.datasets import DATASETS, SegDataset
from ..metrics import DomainMetrics
from .evaluator import evaluate
from .predict_cli import load_for_inference, parse_weights
from .report import class_table, domain_table, write_report

# the vocabulary an open-vocabulary model uses on each dataset's label space
DATASET_VOCAB = {"cityscapes": "cityscapes", "gta5": "cityscapes", "bdd100k": "cityscapes", "mapillary": "cityscapes",
                 "acdc": "cityscapes", "deliver": "deliver", "ade150": "ade150", "ade847": "ade847"}


def parse_data(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise ValueError(f"--data expects DATASET=ROOT, got {item!r}")
        name, root = item.split("=", 1)
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
        out.append((name, root))
    return out


def evaluate_model(model, data: list[tuple[str, str]], *, split: str = "val", conditions=None, device="cpu",
                   progress: bool = True, clip_weights: str | None = None, resize: tuple[int, int] | None = None,
                   precision: str = "fp32"):
    """Evaluate on each dataset (all its domains); returns {dataset: DomainMetrics}."""
    results = {}
    open_vocab = model.cfg.text is not None and model.cfg.text.classifier == "text"
    text_encoder = None
    if open_vocab and clip_weights:   # loaded once, used for every dataset's vocabulary
        from ..backbones.clip_text import build_text_encoder
        text_encoder = build_text_encoder(model.cfg.text.clip, clip_weights)
    for name, root in data:
        ds = SegDataset.from_root(name, root, split, conditions if name in ("acdc", "deliver") else None)
        if open_vocab:
            from ..models.vireo import use_vocabulary
            use_vocabulary(model, DATASET_VOCAB[name], text_encoder=text_encoder)
        if model.num_classes != ds.info.num_classes:
            raise ValueError(f"{model.cfg.name} predicts {model.num_classes} classes but {name} has "
                             f"{ds.info.num_classes}")
        metrics = DomainMetrics(ds.info.num_classes, ds.info.ignore_index, list(ds.info.class_names) or None)
        from ..data.transforms import EvalResize
        from .predict import inference_context

        def predict_logits(x):
            with inference_context(torch.device(device), precision):
                return model.slide_inference(x).float()
        results[name] = evaluate(predict_logits, ds, metrics=metrics, device=device, progress=progress,
                                 resize=EvalResize(tuple(resize)) if resize else None)
    return results


def run(args: argparse.Namespace) -> int:
    weights = parse_weights(args.weights)
    from .predict import maybe_compile
    model = maybe_compile(load_for_inference(args.model, weights, args.random_weights).eval().to(args.device),
                          args.compile)
    results = evaluate_model(model, parse_data(args.data), split=args.split, conditions=args.conditions,
                             device=args.device, progress=not args.no_progress, clip_weights=weights.get("clip"),
                             resize=args.resize, precision=args.precision)
    out = Path(args.out)
    for name, metrics in results.items():
        summary = metrics.summary()
        target = out / name if len(results) > 1 else out
        write_report(summary, target, extra={"model": args.model, "dataset": name, "split": args.split})
        print(f"\n## {name} ({args.split})\n\n{domain_table(summary)}\n\n{class_table(summary)}")
    print(f"\nwrote results to {out}/")
    return 0


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on target domains (per-domain / per-class mIoU)")
    p.add_argument("model", help="dgss checkpoint (.safetensors) or preset name")
    p.add_argument("--data", nargs="+", required=True, metavar="DATASET=ROOT",
                   help=f"datasets to evaluate ({', '.join(DATASETS)})")
    p.add_argument("--split", default="val")
    p.add_argument("--conditions", nargs="*", help="ACDC / DELIVER conditions (default: all)")
    p.add_argument("--resize", type=int, nargs=2, metavar=("W", "H"),
                   help="test box instead of the protocol's per-dataset resize (as a run config's val resize)")
    p.add_argument("--weights", nargs="*", metavar="NAME=FILE", help="frozen weights: encoder=, depth_encoder=, clip=")
    p.add_argument("--random-weights", action="store_true", help="frozen encoders with random weights (tests)")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="fp32 (default: the protocol's numbers), bf16 autocast, or auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the window forward")
    p.add_argument("--out", default="eval_out")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=run)
