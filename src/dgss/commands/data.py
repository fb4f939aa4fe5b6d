"""`dgss data prepare|check|stats <dataset> <root>` and `dgss data generate-scenes OUT` subcommands.

`check folder ROOT` / `stats folder ROOT` work on a folder dataset of your own (`dgss.data.folder`);
`generate-scenes OUT` writes the generated street scenes in that layout.

`register(subparsers)` adds the `data` command to an argparse subparsers object; `run(args)`
executes it and returns the exit code (0 ok, 1 problems found, 2 bad input).
"""

from __future__ import annotations

import argparse
import sys

from ..checks import int_in
from ..data.datasets import DATASETS
from ..errors import DataError


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
    """Add `data` with its `prepare`, `check`, `stats` and `generate-scenes` subcommands; returns the parser."""
    data = subparsers.add_parser(
        "data",
        help="prepare and check benchmark datasets; your own folder datasets",
        description="Prepare (derive trainId labels) and check benchmark datasets; check "
        "and count the classes of a folder dataset of your own (`folder ROOT`); "
        "write generated scenes as a folder dataset.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="{prepare,check,stats,generate-scenes}")
    sub.required = True
    prep = sub.add_parser("prepare", help="write the trainId labels a dataset does not ship (idempotent)")
    _add_common(prep)
    prep.add_argument("--force", action="store_true", help="rewrite existing outputs (never source files)")
    chk = sub.add_parser("check", help="verify layout, pairing, decodability, label values and split sizes")
    _add_common(chk)
    chk.add_argument(
        "--split",
        action="append",
        dest="splits",
        metavar="SPLIT",
        help="check only this split (repeatable; default: all)",
    )
    chk.add_argument(
        "--expect",
        action="append",
        type=_expect,
        default=[],
        metavar="SPLIT=N",
        help="expected image count for a split key, overriding the official size (0 = skip)",
    )
    chk.add_argument("--workers", type=int_in(1, 256), default=4, help="decoding threads (default 4)")
    st = sub.add_parser("stats", help="class frequencies per split and domain of a folder dataset (table + chart)")
    st.add_argument("dataset", choices=["folder"], help="folder (your own data; see `dgss data generate-scenes`)")
    st.add_argument("root", help="the folder dataset (holding classes.yaml, images/, labels/)")
    st.add_argument("--split", action="append", dest="splits", metavar="SPLIT", help="only this split (repeatable)")
    st.add_argument(
        "--chart",
        help="bar chart PNG to write (default: <name>_class_stats.png in the current "
        "directory; never inside the dataset)",
    )
    gen = sub.add_parser("generate-scenes", help="write generated street scenes as a folder dataset (no downloads)")
    gen.add_argument("out", help="folder to write (classes.yaml, images/, labels/)")
    gen.add_argument("--train", type=int_in(0, 100000), default=16, help="training scenes (default 16)")
    gen.add_argument("--val", type=int_in(0, 100000), default=4, help="validation scenes per domain (default 4)")
    gen.add_argument(
        "--size",
        type=int_in(16, 8192),
        nargs=2,
        default=[256, 128],
        metavar=("W", "H"),
        help="image size (default 256 128)",
    )
    gen.add_argument(
        "--domains",
        default="clean",
        help="domains of the val split, comma-separated: clean, night, fog, rain, snow (default clean)",
    )
    gen.add_argument(
        "--classes",
        nargs="+",
        metavar="CLASS[=NEW]",
        help="keep only these generator classes, in this order, optionally renamed (road=street); "
        "pixels of the others become ignore. Classes: road, sidewalk, building, pole, "
        "'traffic light', 'traffic sign', vegetation, terrain, sky, person, car",
    )
    gen.add_argument(
        "--synonyms",
        nargs="+",
        default=[],
        metavar="NAME=SYN[,SYN]",
        help="open-vocabulary synonyms of a (new) class name, e.g. street=road,roadway",
    )
    gen.add_argument(
        "--raw-ids",
        action="store_true",
        help="labels hold the generator's Cityscapes trainIds; classes.yaml gets an id_map",
    )
    gen.add_argument("--bits", type=int, choices=[8, 16], default=8, help="label PNG bit depth (default 8)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--name", help="dataset name in classes.yaml (default: the folder name)")
    gen.add_argument("--force", action="store_true", help="write into a folder that already holds classes.yaml")
    data.set_defaults(handler=run)
    return data


def run(args: argparse.Namespace) -> int:
    """Execute a parsed `data` command; prints a report and returns the exit code."""
    progress = not getattr(args, "no_progress", False) and sys.stderr.isatty()
    # errors (DataError, ...) are printed by dgss.cli.main as `dgss data <verb>: error: ...`, exit 2
    if args.data_command == "generate-scenes":
        return _generate(args)
    if args.data_command == "stats":
        return _stats(args)
    if args.dataset not in DATASETS:
        raise DataError(f"unknown dataset {args.dataset!r}; known: {', '.join(DATASETS)}")
    if args.data_command == "prepare" and args.dataset == "folder":
        raise DataError(
            "a folder dataset needs no preparation: its labels are read as they are, "
            f"through classes.yaml; check it with `dgss data check folder {args.root}`"
        )
    if args.data_command == "check" and args.dataset == "folder":
        from ..data.check import check_folder

        rep = check_folder(args.root, splits=args.splits, workers=args.workers, progress=progress)
        print("\n".join(rep.lines()))
        return 0 if rep.ok else 1
    if args.data_command == "prepare":
        from ..data.prepare import prepare

        report = prepare(args.dataset, args.root, force=args.force, progress=progress)
        print("\n".join(report.lines()))
        return 0
    if args.data_command == "check":
        from ..data.check import check_dataset

        rep = check_dataset(
            args.dataset,
            args.root,
            splits=args.splits,
            expected=dict(args.expect),
            workers=args.workers,
            progress=progress,
        )
        print("\n".join(rep.lines()))
        return 0 if rep.ok else 1
    raise DataError(f"unknown data command {args.data_command!r}")


def _generate(args: argparse.Namespace) -> int:
    from ..data.generate import generate_scene_folder, parse_class_spec

    synonyms = {}
    for item in args.synonyms:
        name, sep, words = item.partition("=")
        if not sep or not words.strip():
            raise DataError(f"--synonyms expects NAME=SYN[,SYN], got {item!r}")
        synonyms[name.strip()] = [w.strip() for w in words.split(",") if w.strip()]
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    out = generate_scene_folder(
        args.out,
        train=args.train,
        val=args.val,
        width=args.size[0],
        height=args.size[1],
        seed=args.seed,
        domains=domains,
        classes=parse_class_spec(args.classes) if args.classes else None,
        synonyms=synonyms,
        raw_ids=args.raw_ids,
        bits=args.bits,
        name=args.name,
        force=args.force,
    )
    counts = ", ".join(f"{k} {v}" for k, v in out.counts.items())
    print(f"wrote {out.root}: {len(out.class_names)} classes ({', '.join(out.class_names)}); images {counts}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from ..data.stats import folder_stats, stats_chart

    st = folder_stats(args.root, args.splits)
    print(
        f"class frequencies of folder dataset {st.classes.name!r} ({args.root}): share of labelled pixels "
        "in %, (number of images containing the class)\n"
    )
    print(st.table())
    absent = st.absent()
    if absent:
        print(
            "\nclasses without any pixel: "
            + "; ".join(f"{n} in {k}" for k, n in absent[:20])
            + (" ..." if len(absent) > 20 else "")
        )
    chart = stats_chart(st, args.chart or f"{st.classes.name}_class_stats.png")
    print(f"\nwrote chart {chart}")
    return 0
