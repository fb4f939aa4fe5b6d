"""The code-quality gates as tests: ruff lint and format over src, tests, benchmarks and tools, and mypy over
src/dgss with the settings of ``[tool.mypy]`` in pyproject.toml. Each failure shows the tool's own report.

mypy keeps its cache in ``.mypy_cache`` at the repository root: seconds once warm, about a minute and a half
on a fresh clone (it reads torch's annotations once)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("src", "tests", "benchmarks", "tools")


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize(
    "args", [("ruff", "check", *PATHS), ("ruff", "format", "--check", *PATHS)], ids=["ruff-check", "ruff-format"]
)
def test_ruff(args):
    proc = run_module(*args)
    assert proc.returncode == 0, f"`{' '.join(args)}` found problems:\n{proc.stdout}{proc.stderr}"


def test_mypy():
    proc = run_module("mypy")  # files, Python version and per-module settings: [tool.mypy] in pyproject.toml
    assert proc.returncode == 0, f"`mypy` found problems:\n{proc.stdout}{proc.stderr}"
