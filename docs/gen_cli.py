"""mkdocs hook: writes the CLI reference page (``cli.md``) from ``dgss.cli.build_parser()`` at build time.

The page is generated from the argparse parsers themselves, so it lists every verb and sub-verb with
exactly the options the installed ``dgss`` accepts and cannot drift from the code.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PAGE = "cli.md"
WIDTH = "100"  # argparse wraps help text to $COLUMNS


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """(name, parser, one-line help) of the direct sub-commands of ``parser``, in declaration order."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, child in action.choices.items():
                out.append((name, child, helps.get(name, "")))
    return out


def _section(parser: argparse.ArgumentParser, path: list[str], summary: str, level: int) -> list[str]:
    title = " ".join(["dgss", *path])
    lines = [f"{'#' * level} `{title}`", ""]
    if summary:
        lines += [summary[0].upper() + summary[1:] + ".", ""]
    lines += ["```text", parser.format_help().rstrip(), "```", ""]
    for name, child, helptext in _subparsers(parser):
        lines += _section(child, [*path, name], helptext, min(level + 1, 4))
    return lines


def cli_reference() -> str:
    """The whole page as Markdown."""
    src = Path(__file__).resolve().parents[1] / "src"
    if src.is_dir() and str(src) not in sys.path:
        sys.path.insert(0, str(src))
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        from dgss.cli import build_parser

        parser = build_parser()
        lines = [
            "# Command-line reference",
            "",
            "Generated from `dgss.cli.build_parser()` when the site is built, so it always matches the "
            "installed `dgss`. Every verb accepts `--debug` (traceback of errors; also `DGSS_DEBUG=1`). "
            "Errors a user can fix print one line, `dgss <verb>: error: <what, where, what to do>`, "
            "and exit with status 2. Worked examples: [the command-line guide](guide.md).",
            "",
            "```text",
            parser.format_help().rstrip(),
            "```",
            "",
        ]
        for name, child, helptext in _subparsers(parser):
            lines += _section(child, [name], helptext, 2)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(lines)


def on_files(files, config):
    """Add the generated page to the site's files (mkdocs >= 1.6)."""
    from mkdocs.structure.files import File

    existing = files.get_file_from_path(PAGE)
    if existing is not None:
        files.remove(existing)
    files.append(File.generated(config, PAGE, content=cli_reference()))
    return files
