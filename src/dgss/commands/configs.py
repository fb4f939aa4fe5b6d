"""`dgss configs list [PATTERN]` and `dgss configs show NAME`: the run configs that ship with dgss."""

from __future__ import annotations

import argparse

from ..config import find_configs, packaged_config


def run_list(args: argparse.Namespace) -> int:
    found = find_configs(args.pattern)
    if not found:
        print(f"no packaged config matches {args.pattern!r}")
        return 1
    width = max(len(n) for n in found)
    for name, path in found.items():
        first = next((line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")), "")
        print(f"{name:<{width}}  {first}".rstrip())
    print(f"\n{len(found)} config(s); `dgss configs show NAME` prints one, `dgss train NAME` trains it")
    return 0


def run_show(args: argparse.Namespace) -> int:
    path = packaged_config(args.name)
    print(path.read_text(), end="")
    return 0


def register(sub) -> None:
    p = sub.add_parser("configs", help="list and print the run configs that ship with dgss")
    verbs = p.add_subparsers(dest="configs_command", required=True)
    ls = verbs.add_parser("list", help="the packaged configs, with their first comment line")
    ls.add_argument("pattern", nargs="?", help="shell pattern or substring of <group>/<name>, e.g. 'rein/*' or acdc")
    ls.set_defaults(func=run_list)
    show = verbs.add_parser("show", help="print one packaged config (YAML)")
    show.add_argument("name", help="<group>/<name> or a unique <name>, e.g. gta2citys_rein_dinov2-l")
    show.set_defaults(func=run_show)
