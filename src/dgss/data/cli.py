"""`dgss data prepare|check <dataset> <root>` subcommands.

`register(subparsers)` adds the `data` command to an argparse subparsers object; `run(args)`
executes it and returns the exit code (0 ok, 1 problems found, 2 bad input). Also runnable as
`python -m dgss.data.cli prepare|check <dataset> <root>`.
"""
from __future__ import annotations

import argparse
import sys

from .datasets import DATASETS, DataError


def _expect(text: str) -> tuple[str, int]:
    key, sep, value = text.partition("=")
    if not sep or not value.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected SPLIT=N (e.g. val=500 or night/val=106), got {text!r}")
    return key.strip(), int(value)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help=f"one of: {', '.join(DATASETS)}")
    p.add_argument("root", help="the dataset folder (e.g. data/cityscapes) or the data root containing it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers) -> argparse.ArgumentParser:
    """Add `data` with its `prepare` and `check` subcommands; returns the `data` parser."""
    data = subparsers.add_parser("data", help="prepare and check benchmark datasets",
                                 description="Prepare (derive trainId labels) and check benchmark datasets.")
    sub = data.add_subparsers(dest="data_command", metavar="{prepare,check}")
    sub.required = True
    prep = sub.add_parser("prepare", help="write the trainId labels a dataset does not ship (idempotent)")
    _add_common(prep)
    prep.add_argument("--force", action="store_true", help="rewrite existing outputs (never source files)")
    chk = sub.add_parser("check", help="verify layout, pairing, decodability, label values and split sizes")
    _add_common(chk)
    chk.add_argument("--split", action="append", dest="splits", metavar="SPLIT",
                     help="check only this split (repeatable; default: all)")
    chk.add_argument("--expect", action="append", type=_expect, default=[], metavar="SPLIT=N",
                     help="expected image count for a split key, overriding the official size (0 = skip)")
    chk.add_argument("--workers", type=int, default=4, help="decoding threads (default 4)")
    data.set_defaults(handler=run)
    return data


def run(args: argparse.Namespace) -> int:
    """Execute a parsed `data` command; prints a report and returns the exit code."""
    progress = not args.no_progress and sys.stderr.isatty()
    try:
        if args.dataset not in DATASETS:
            raise DataError(f"unknown dataset {args.dataset!r}; known: {', '.join(DATASETS)}")
        if args.data_command == "prepare":
            from .prepare import prepare
            report = prepare(args.dataset, args.root, force=args.force, progress=progress)
            print("\n".join(report.lines()))
            return 0
        if args.data_command == "check":
            from .check import check_dataset
            rep = check_dataset(args.dataset, args.root, splits=args.splits, expected=dict(args.expect),
                                workers=args.workers, progress=progress)
            print("\n".join(rep.lines()))
            return 0 if rep.ok else 1
        raise DataError(f"unknown data command {args.data_command!r}")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dgss")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
