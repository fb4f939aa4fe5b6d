"""`dgss export-model CKPT DIR` and `dgss push DIR org/name` (see `model_folder.py`, `push.py`)."""

from __future__ import annotations

import argparse


def run_export(args: argparse.Namespace) -> int:
    from ..hub.model_folder import export_model
    from .predict import parse_weights

    out = export_model(
        args.checkpoint,
        args.out,
        eval_json=args.eval_json or [],
        weights=parse_weights(args.weights),
        random_weights=args.random_weights,
        example=not args.no_example,
        repo_id=args.repo_id,
        force=args.force,
    )
    files = ", ".join(sorted(p.name for p in out.iterdir()))
    print(
        f"wrote model folder {out}/ ({files})\nload it with `dgss predict IMAGES --model {out}` or "
        f"`dgss.load_model({str(out)!r})`; upload it with `dgss push {out} {args.repo_id}`"
    )
    return 0


def run_push(args: argparse.Namespace) -> int:
    from ..hub.push import push_model_folder

    url = push_model_folder(args.folder, args.repo_id, private=args.private, revision=args.revision)
    print(f"uploaded {args.folder} to https://huggingface.co/{args.repo_id} ({url})")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "export-model",
        help="write a checkpoint as a Hugging Face Hub model folder (weights, "
        "config.json, model card, example picture)",
    )
    p.add_argument("checkpoint", help="dgss checkpoint (.safetensors), e.g. work_dirs/<run>/iter_000600.safetensors")
    p.add_argument("out", help="the model folder to write (new or empty)")
    p.add_argument(
        "--eval-json",
        nargs="+",
        metavar="RESULTS_JSON",
        help="`dgss eval` results.json file(s) whose tables go into the model card",
    )
    p.add_argument(
        "--weights",
        nargs="*",
        metavar="NAME=FILE",
        help="frozen weights for the example prediction: encoder=, depth_encoder=, clip=",
    )
    p.add_argument("--random-weights", action="store_true", help="example prediction with random frozen weights")
    p.add_argument("--no-example", action="store_true", help="no example prediction picture")
    p.add_argument("--repo-id", default="org/name", help="the Hub name used in the card's usage lines")
    p.add_argument("--force", action="store_true", help="replace an earlier dgss model folder at OUT")
    p.set_defaults(func=run_export)
    q = sub.add_parser("push", help="upload a model folder to the Hugging Face Hub (huggingface_hub.upload_folder)")
    q.add_argument("folder", help="a folder written by `dgss export-model`")
    q.add_argument("repo_id", help="org/name of the model repository (created if missing)")
    q.add_argument("--private", action="store_true", help="create the repository as private")
    q.add_argument("--revision", help="branch to push to (default main)")
    q.set_defaults(func=run_push)
