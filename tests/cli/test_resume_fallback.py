"""`dgss train --resume` when the newest checkpoint is damaged (zeroed or truncated train state).

Plain ``--resume`` refuses with one line that names the file, says why it is unreadable and lists the
readable older checkpoints; ``--resume latest-valid`` continues from the newest readable pair, says so in
one line, and then logs exactly (==) the losses of an uninterrupted run from that iteration on (same
process, same thread count: every CPU kernel is deterministic, see tests/engine/test_resume_kill.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dgss.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "src" / "dgss" / "configs" / "tiny" / "rein_synthetic.yaml"
OVERRIDES = [
    "train.max_iters=12",
    "train.ckpt_interval=4",
    "train.keep_last=3",
    "train.val_interval=0",
    "train.val_at_end=false",
    "data.val=[]",
    "logging.interval=1",
    "logging.tensorboard=false",
]


def train(work_dir: Path, *extra: str) -> int:
    return main(["train", str(TINY), *OVERRIDES, "--work-dir", str(work_dir), "--no-progress", *extra])


def losses_after_last_resume(log: Path) -> dict[int, float]:
    """Train losses logged after the last ``resume`` record of ``log.jsonl`` (all of them if none)."""
    recs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    starts = [i for i, r in enumerate(recs) if r["type"] == "resume"]
    tail = recs[starts[-1] + 1 :] if starts else recs
    return {r["iter"]: r["loss"] for r in tail if r["type"] == "train"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted 12-iteration run: checkpoints at 4, 8, 12 and the loss of every iteration."""
    work = tmp_path_factory.mktemp("ref") / "run"
    assert train(work) == 0
    losses = losses_after_last_resume(work / "log.jsonl")
    assert sorted(losses) == list(range(1, 13))
    assert sorted(p.name for p in work.glob("iter_*.train_state.pt")) == [
        "iter_000004.train_state.pt",
        "iter_000008.train_state.pt",
        "iter_000012.train_state.pt",
    ]
    return work, losses


def zero(path: Path) -> None:
    path.write_bytes(b"")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage,why", [(zero, "empty (0 bytes)"), (truncate, "truncated or corrupt")])
def test_resume_refuses_a_damaged_newest_checkpoint_then_latest_valid_continues_exactly(
    tmp_path, capsys, reference, damage, why
):
    ref_dir, ref_losses = reference
    work = tmp_path / "run"
    shutil.copytree(ref_dir, work)
    newest = work / "iter_000012.train_state.pt"
    damage(newest)
    before = {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()}
    capsys.readouterr()

    # plain --resume: one line naming the file and why, the readable older pairs, the flag to use
    assert train(work, "--resume") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1  # before the model is even built
    assert err.startswith("dgss train: error: ") and str(newest) in err and why in err
    assert str(work / "iter_000008.safetensors") in err and str(work / "iter_000004.safetensors") in err
    assert "--resume latest-valid" in err
    assert {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()} == before, "a refused resume wrote files"

    # --resume latest-valid: continues from iteration 8, says so in one line
    assert train(work, "--resume", "latest-valid") == 0
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if "latest" in ln or "skipping" in ln]
    assert "iter_000012.train_state.pt" in line and "iter_000008.safetensors" in line and "iteration 8" in line
    resumed = losses_after_last_resume(work / "log.jsonl")
    assert sorted(resumed) == [9, 10, 11, 12]
    for it in resumed:  # exact: the same losses as the uninterrupted run from iteration 8 on
        assert resumed[it] == ref_losses[it], (it, resumed[it], ref_losses[it])
    # the damaged pair was set aside (kept for inspection), and the run wrote a readable iteration 12 again
    assert (work / "iter_000012.train_state.pt.unreadable").read_bytes() == before["iter_000012.train_state.pt"]
    from dgss.engine.checkpointing import checkpoint_problem, latest_checkpoint

    last = latest_checkpoint(work)
    assert last.iteration == 12 and checkpoint_problem(last) is None


def test_mismatched_pair_is_named(tmp_path, capsys, reference):
    """The weights of iteration 8 under the name of iteration 12: a pair that does not belong together."""
    ref_dir, _ = reference
    work = tmp_path / "run"
    shutil.copytree(ref_dir, work)
    shutil.copyfile(work / "iter_000008.safetensors", work / "iter_000012.safetensors")
    capsys.readouterr()
    assert train(work, "--resume") == 2
    err = capsys.readouterr().err
    assert "mismatched pair" in err and "iter_000012.safetensors" in err and "Traceback" not in err


def test_nothing_readable_says_so(tmp_path, capsys, reference):
    ref_dir, _ = reference
    work = tmp_path / "run"
    shutil.copytree(ref_dir, work)
    for p in work.glob("iter_*.train_state.pt"):
        zero(p)
    capsys.readouterr()
    assert train(work, "--resume", "latest-valid") == 2
    err = capsys.readouterr().err
    assert "no readable checkpoint" in err and "--work-dir" in err and "Traceback" not in err
