"""`dgss eval`: the DG evaluation protocol over every target domain, with tables, files and charts."""

from __future__ import annotations

import argparse
from typing import cast

import torch

from ..checks import check_output_dir, positive_int
from ..data.datasets import DATASETS, SegDataset
from ..engine.evaluator import evaluate
from ..engine.report import class_table, domain_table, write_report
from ..errors import OptionError
from ..hub.resolve import load_for_inference
from ..metrics import DomainMetrics
from .predict import parse_weights

# the vocabulary an open-vocabulary model uses on each dataset's label space
DATASET_VOCAB = {
    "cityscapes": "cityscapes",
    "gta5": "cityscapes",
    "bdd100k": "cityscapes",
    "mapillary": "cityscapes",
    "acdc": "cityscapes",
    "deliver": "deliver",
    "ade150": "ade150",
    "ade847": "ade847",
}


def parse_data(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise OptionError(f"--data expects DATASET=ROOT (e.g. cityscapes=data/cityscapes), got {item!r}")
        name, root = item.split("=", 1)
        if name not in DATASETS:
            raise OptionError(f"--data {item}: unknown dataset {name!r}; known: {', '.join(DATASETS)}")
        if not root:
            raise OptionError(f"--data {item}: no ROOT folder given after '='")
        out.append((name, root))
    return out


def evaluate_model(
    model,
    data: list[tuple[str, str]],
    *,
    split: str = "val",
    conditions=None,
    device="cpu",
    progress: bool = True,
    clip_weights: str | None = None,
    resize: tuple[int, int] | None = None,
    precision: str = "fp32",
    context=None,
    protocol: str = "dg",
):
    """Evaluate on each dataset (all its domains); returns {dataset: DomainMetrics}. ``context``: the
    per-image context of :func:`dgss.engine.backends.configure_inference` (overrides ``precision``).
    ``protocol``: a name of :data:`dgss.config.schema.EVAL_PROTOCOLS` (``soma``: Cityscapes and Mapillary
    fit 2048x1024); ``resize`` wins over it."""
    from ..config.schema import EVAL_PROTOCOLS

    results = {}
    own_text = hasattr(model, "encode_text")  # CAT-Seg: its own (fine-tuned) text tower, any vocabulary
    open_vocab = own_text or (model.cfg.text is not None and model.cfg.text.classifier == "text")
    text_encoder = None
    if open_vocab and clip_weights and not own_text:  # loaded once, used for every dataset's vocabulary
        from ..backbones.clip_text import build_text_encoder

        text_encoder = build_text_encoder(model.cfg.text.clip, clip_weights)
    for name, root in data:
        ds = SegDataset.from_root(name, root, split, conditions if name in ("acdc", "deliver") else None)
        if own_text:
            model.set_vocabulary(DATASET_VOCAB.get(name) or list(ds.info.vocab))
        elif open_vocab:
            from ..models.vireo import use_vocabulary

            # folder datasets: their classes.yaml names + synonyms
            use_vocabulary(model, DATASET_VOCAB.get(name) or list(ds.info.vocab), text_encoder=text_encoder)
        if model.num_classes != ds.info.num_classes:
            raise OptionError(
                f"{model.cfg.name} predicts {model.num_classes} classes but {name} has "
                f"{ds.info.num_classes}: evaluate it on a dataset with its label space"
            )
        metrics = DomainMetrics(ds.info.num_classes, ds.info.ignore_index, list(ds.info.class_names) or None)
        from ..data.transforms import EvalResize
        from ..engine.predict import inference_context

        def predict_logits(x):
            with context() if context is not None else inference_context(torch.device(device), precision):
                return model.slide_inference(x).float()

        key = ds.domains[0].split("/")[0] if name == "folder" else name  # folder datasets: their classes.yaml name
        box = resize or EVAL_PROTOCOLS[protocol].get(name)
        results[key] = evaluate(
            predict_logits,
            ds,
            metrics=metrics,
            device=device,
            progress=progress,
            resize=EvalResize(cast("tuple[int, int]", tuple(box))) if box else None,
        )
    return results


def run(args: argparse.Namespace) -> int:
    from ..engine.host import tune_allocator

    tune_allocator()  # this process is ours: keep large freed blocks (engine/host.py)
    weights = parse_weights(args.weights)
    data = parse_data(args.data)
    out = check_output_dir(args.out, "--out")  # before the evaluation: never compute, then fail to save
    for name, root in data:  # every dataset readable before the first is evaluated
        SegDataset.from_root(name, root, args.split, args.conditions if name in ("acdc", "deliver") else None)
    from ..engine.backends import configure_inference

    model = (
        load_for_inference(args.model, weights, args.random_weights, allow_hash_mismatch=args.allow_hash_mismatch)
        .eval()
        .to(args.device)
    )
    if args.backend == "onnxruntime" and model.cfg.text is not None:
        raise OptionError(
            "--backend onnxruntime bakes one vocabulary into the exported graph; dgss eval switches "
            "vocabularies per dataset: evaluate open-vocabulary models with --backend torch"
        )
    ctx = configure_inference(
        model, backend=args.backend, precision=args.precision, compile=args.compile, device=torch.device(args.device)
    )
    results = evaluate_model(
        model,
        data,
        split=args.split,
        conditions=args.conditions,
        device=args.device,
        progress=not args.no_progress,
        clip_weights=weights.get("clip"),
        resize=args.resize,
        precision=args.precision,
        context=ctx,
        protocol=args.protocol,
    )
    for name, metrics in results.items():
        summary = metrics.summary()
        target = out / name if len(results) > 1 else out
        write_report(summary, target, extra={"model": args.model, "dataset": name, "split": args.split})
        print(f"\n## {name} ({args.split})\n\n{domain_table(summary)}\n\n{class_table(summary)}")
    print(f"\nwrote results to {out}/")
    return 0


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on target domains (per-domain / per-class mIoU)")
    p.add_argument(
        "model",
        help="dgss checkpoint (.safetensors), exported model folder, hf-hub:org/name[@revision], or preset name",
    )
    p.add_argument(
        "--data", nargs="+", required=True, metavar="DATASET=ROOT", help=f"datasets to evaluate ({', '.join(DATASETS)})"
    )
    p.add_argument("--split", default="val")
    p.add_argument(
        "--protocol",
        choices=("dg", "soma"),
        default="dg",
        help="test boxes: dg (each dataset's own, as REIN) or soma (Cityscapes and Mapillary at 2048x1024)",
    )
    p.add_argument("--conditions", nargs="*", help="ACDC / DELIVER conditions (default: all)")
    p.add_argument(
        "--resize",
        type=positive_int,
        nargs=2,
        metavar=("W", "H"),
        help="test box instead of the protocol's per-dataset resize (as a run config's val resize)",
    )
    p.add_argument("--weights", nargs="*", metavar="NAME=FILE", help="frozen weights: encoder=, depth_encoder=, clip=")
    p.add_argument("--random-weights", action="store_true", help="frozen encoders with random weights (tests)")
    p.add_argument(
        "--allow-hash-mismatch",
        action="store_true",
        help="use --weights files whose SHA-256 differs from the one the checkpoint records",
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "auto", "int8"],
        default="fp32",
        help="fp32 (default: the protocol's numbers), bf16 autocast, auto, or int8 (dynamic int8 "
        "frozen Linear layers, CPU)",
    )
    p.add_argument(
        "--backend",
        choices=["torch", "onnxruntime"],
        default="torch",
        help="onnxruntime: the window forward exported by `dgss export` (cached), closed-vocabulary models",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the window forward")
    p.add_argument("--out", default="eval_out")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=run)
