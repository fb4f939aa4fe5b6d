"""dgss's imports run one way: every import in ``src/dgss`` (module level and inside functions) is walked
with ``ast`` and checked against the layer order written in ``docs/architecture.md``.

A module may import modules of its own layer or of a lower one, never of a higher one; there is no
import cycle, also inside a layer; library code never imports ``dgss.testing`` (test helpers) and never a
command module (``dgss.commands.*``): only ``dgss.cli`` assembles the verbs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "dgss"

# Lowest first; the same list is written (and explained) in docs/architecture.md.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "version"),
    ("files", "checks", "viz"),
    ("metrics", "backbones", "adapters", "heads", "losses"),
    ("data",),
    ("models",),
    ("config",),
    ("engine",),
    ("demo",),
    ("hub",),
    ("app",),
    ("commands",),
    ("cli", "__main__", "__init__"),
    ("testing",),
]
RANK = {top: i for i, group in enumerate(LAYERS) for top in group}


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level(module: str) -> str:
    """``dgss.engine.trainer`` -> ``engine``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """module -> the dgss modules it imports (every ``import`` / ``from`` statement, at any depth)."""
    files = {module_name(p, src): p for p in src.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        targets: set[str] = set()
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in files else stem for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name.startswith("dgss") and name != mod:
                    targets.add(name)
        graph[mod] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, targets in sorted(graph.items()):
        src_top = top_level(mod)
        for t in sorted(targets):
            dst_top = top_level(t)
            if dst_top == "testing" and src_top != "testing":
                out.append(f"{mod} imports the test helpers {t}")
            elif dst_top == "commands" and src_top not in ("commands", "cli"):
                out.append(f"{mod} imports the command module {t} (only dgss.cli assembles the verbs)")
            elif RANK[dst_top] > RANK[src_top]:
                out.append(f"{mod} (layer {src_top}) imports {t} (higher layer {dst_top})")
    return out


def test_every_top_level_module_has_a_layer():
    tops = {top_level(module_name(p)) for p in SRC.rglob("*.py")}
    assert tops <= set(RANK), f"give these a layer in LAYERS and docs/architecture.md: {sorted(tops - set(RANK))}"


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_imports_follow_the_layer_order():
    assert violations(import_graph()) == []


def test_the_layer_order_is_the_one_documented():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- layers -->\n(.*?)<!-- /layers -->", doc, re.S)
    assert block, "docs/architecture.md lost its <!-- layers --> block"
    rows = [
        tuple(re.findall(r"`([\w_]+)`", line.split(":")[0]))
        for line in block.group(1).splitlines()
        if line.lstrip().startswith(("1", "2", "3", "4", "5", "6", "7", "8", "9"))
    ]
    assert rows == LAYERS


@pytest.mark.parametrize("bad", ["cycle", "upward", "testing", "command"])
def test_the_checks_catch_each_kind_of_bad_import(bad, tmp_path):
    """The walker sees imports inside functions; each planted mistake is reported."""
    pkg = tmp_path / "dgss"
    for sub in ("data", "models", "commands"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "testing.py").write_text("")
    (pkg / "commands" / "train.py").write_text("")
    (pkg / "models" / "a.py").write_text("from ..data import b\n")
    body = {
        "cycle": "def f():\n    from ..models import a\n",
        "upward": "def f():\n    from ..models import a\n",
        "testing": "def f():\n    from .. import testing\n",
        "command": "from ..commands import train\n",
    }[bad]
    (pkg / "data" / "b.py").write_text(body)
    graph = import_graph(pkg)
    assert "dgss.models.a" in graph["dgss.data.b"] or bad in ("testing", "command")
    if bad == "cycle":
        assert cycles(graph) == [["dgss.data.b", "dgss.models.a"]]
    problems = violations(graph)
    assert len(problems) == 1, problems
    assert {
        "cycle": "higher layer models",
        "upward": "higher layer models",
        "testing": "test helpers",
        "command": "command module",
    }[bad] in problems[0]
