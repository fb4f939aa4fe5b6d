"""`dgss demo --out DIR` only ever removes what dgss wrote (issue 16: it used to `rmtree` DIR/run).

A second demo into the same folder replaces the previous run's files and keeps the user's files next to
them; a user's file inside the run folder makes the demo refuse before any work (tests/cli/
test_error_matrix.py has the refusals of a foreign --out and an unmarked run folder).
"""

from __future__ import annotations

import pytest
import torch

from dgss.cli import main

pytestmark = pytest.mark.e2e  # the demo run twice end to end

TINY_DEMO = ["--iters", "2", "--train-scenes", "4", "--val-scenes", "1"]


def test_demo_twice_keeps_user_files_and_refuses_to_delete_them(tmp_path, capsys):
    threads = torch.get_num_threads()
    out = tmp_path / "demo"
    try:
        assert main(["demo", "--out", str(out), *TINY_DEMO]) == 0
        first = sorted(p.name for p in (out / "run").iterdir())
        assert "iter_000002.safetensors" in first and ".dgss-owned" in first
        (out / "my_notes.txt").write_text("keep me\n")  # next to the demo's files
        (out / "run" / "iter_000002.safetensors").write_bytes(b"stale")  # the demo's own file: replaced
        assert main(["demo", "--out", str(out), *TINY_DEMO]) == 0
        assert (out / "my_notes.txt").read_text() == "keep me\n"
        assert (out / "run" / "iter_000002.safetensors").stat().st_size > 1000
        assert sorted(p.name for p in (out / "run").iterdir()) == first

        (out / "run" / "thesis.tex").write_text("my thesis\n")  # a user's file inside the run folder
        before = {p.name: p.read_bytes() for p in (out / "run").iterdir() if p.is_file()}
        capsys.readouterr()
        assert main(["demo", "--out", str(out), *TINY_DEMO]) == 2
        err = capsys.readouterr().err
        assert "thesis.tex" in err and "Traceback" not in err and err.startswith("dgss demo: error: --out")
        assert {p.name: p.read_bytes() for p in (out / "run").iterdir() if p.is_file()} == before
    finally:
        torch.set_num_threads(threads)
