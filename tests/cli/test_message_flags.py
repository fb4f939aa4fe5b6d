"""Every flag an error message names is a real flag (issue 16: messages named `--clip-weights` and a
Python argument that had no flag). The error matrix checks the flags of the messages it provokes
against that verb's parser; this test reads every ``raise ...(...)`` message in the source (AST) and
checks each ``--flag`` it names against the flags of all verbs."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

from dgss.cli import build_parser

SRC = Path(__file__).resolve().parents[2] / "src" / "dgss"
FLAG_RE = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")


def all_flags() -> set[str]:
    flags: set[str] = set()

    def walk(parser):
        for a in parser._actions:
            flags.update(a.option_strings)
            if isinstance(a, argparse._SubParsersAction):
                for child in a.choices.values():
                    walk(child)

    walk(build_parser())
    return flags


def raised_messages() -> list[tuple[str, int, str]]:
    """(file, line, text) of the string parts of every ``raise X(...)`` call in src/dgss."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                parts = [
                    c.value
                    for arg in node.exc.args
                    for c in ast.walk(arg)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                ]
                out.append((str(path.relative_to(SRC)), node.lineno, "\n".join(parts)))
    return out


def test_every_flag_named_by_an_error_message_exists():
    flags = all_flags()
    assert {"--random-weights", "--weights", "--resume", "--allow-hash-mismatch"} <= flags
    messages = raised_messages()
    assert len(messages) > 100  # the scan sees the source
    bad = [(f, line, flag) for f, line, text in messages for flag in FLAG_RE.findall(text) if flag not in flags]
    assert not bad, f"messages name flags no verb has: {bad}"


def test_the_scan_finds_a_wrong_flag():
    """The pattern of the test above catches the issue's example."""
    assert FLAG_RE.findall("pass the CLIP weights (--clip-weights)") == ["--clip-weights"]
    assert "--clip-weights" not in all_flags()
