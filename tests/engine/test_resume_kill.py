"""A run killed with SIGKILL mid-training and resumed gives the same losses, step for step, as an
uninterrupted run with the same seed.

Tolerance: exact equality (==) of every logged loss, learning rate and validation number, and of the
final weights. On CPU with the same thread count (one intra-op thread in all processes), every kernel is
deterministic; a checkpoint restores the trained weights bit-exactly (safetensors, fp32), the AdamW state,
the iteration (the schedule is a closed-form function of it), the global/numpy/python RNG states, the
criterion's point generator (random importance sampling stays on) and the data position (sample-stream
offset; per-sample augmentation seeds depend on (seed, index, epoch) only).
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

from dgss.engine.logging import read_jsonl

from ._runs import env, run, train_cmd

pytestmark = pytest.mark.e2e  # a training run killed and resumed

OVERRIDES = (
    "train.max_iters=40",
    "train.ckpt_interval=5",
    "train.keep_last=3",
    "train.val_interval=10",
    "logging.interval=1",
    "logging.tensorboard=false",
    "data.val=[{dataset: synthetic, synthetic: {num_images: 3, seed: 7, domain: val}}]",
)


def test_sigkill_and_resume_reproduces_the_uninterrupted_run(tmp_path):
    ref, killed = tmp_path / "reference", tmp_path / "killed"
    run(train_cmd(ref, *OVERRIDES))

    proc = subprocess.Popen(
        train_cmd(killed, *OVERRIDES), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    marker = killed / "iter_000015.train_state.pt"
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None, f"training exited early: {proc.stderr.read()}"
        assert time.time() < deadline, "no checkpoint at iteration 15"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "iter_000040.train_state.pt").exists(), "killed after the end: nothing was tested"
    logged_before = read_jsonl(killed / "log.jsonl")

    run(train_cmd(killed, *OVERRIDES, resume=True))
    resumed = read_jsonl(killed / "log.jsonl", "resume")
    (start,) = resumed
    assert 15 <= start < 40 and max(logged_before) >= start

    a, b = read_jsonl(ref / "log.jsonl"), read_jsonl(killed / "log.jsonl")  # last entry per iteration wins
    assert sorted(a) == sorted(b) == list(range(1, 41))
    for it in range(1, 41):
        assert a[it]["loss"] == b[it]["loss"], (it, a[it]["loss"], b[it]["loss"])
        assert a[it]["lr"] == b[it]["lr"] and a[it]["loss_mask"] == b[it]["loss_mask"]
    # the killed run's own entries before the kill agree too (same run up to there)
    for it, rec in logged_before.items():
        assert rec["loss"] == a[it]["loss"]
    va, vb = read_jsonl(ref / "log.jsonl", "val"), read_jsonl(killed / "log.jsonl", "val")
    assert sorted(va) == sorted(vb) == [10, 20, 30, 40]
    assert all(va[i]["val/mIoU"] == vb[i]["val/mIoU"] for i in va)
    wa, wb = load_file(ref / "iter_000040.safetensors"), load_file(killed / "iter_000040.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa = torch.load(ref / "iter_000040.train_state.pt", weights_only=True)
    sb = torch.load(killed / "iter_000040.train_state.pt", weights_only=True)
    assert sa["samples_consumed"] == sb["samples_consumed"] == 40 * 4
    # keep-last-3 held in the resumed run as well
    assert sorted(p.name for p in killed.glob("iter_*.train_state.pt")) == [
        "iter_000030.train_state.pt",
        "iter_000035.train_state.pt",
        "iter_000040.train_state.pt",
    ]
