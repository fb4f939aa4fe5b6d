"""DDP on CPU (gloo, 2 processes via torchrun) matches one process with the same global batch.

Setting and why:
* ``torchrun --nproc-per-node 2 -m dgss train ... data.train.batch_size=2`` vs ``dgss train ...`` with batch 4:
  the sample stream gives rank r the r-th half of every global batch, so both runs see the same images.
* ``loss.mode=full_res_query_mean`` + ``loss.points=fixed``: no random point sampling (the matcher uses
  one fixed point set for every image; the mask losses use all pixels), and every term is a mean over
  images or over matched masks with the mask count all-reduced, so averaging the two ranks' gradients
  equals the full-batch gradient. (The stock loss normalises its class term per rank, as the reference
  DDP training does, so it is not split-invariant by design.)
* ``train.precision=fp64``: a batch of 4 and two batches of 2 round differently (~1e-7 in fp32), and at
  initialisation the 10 queries of the tiny model are nearly identical, so the Hungarian matching has
  near-ties that fp32 noise flips (measured: O(1e-3) weight differences after 2 steps). In fp64 the noise
  is ~1e-16 and the weights agree to ~1e-12 after K steps; we assert atol 1e-9.
Validation at the end runs sharded (3 images over 2 ranks) with all-reduced confusion matrices and must
report the same mIoU as the single process.
"""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import load_file

from dgss.engine.logging import read_jsonl

from ._runs import TINY, free_port, run

pytestmark = pytest.mark.e2e  # two-process DDP training

K = 4
OVERRIDES = (
    f"train.max_iters={K}",
    "train.ckpt_interval=0",
    "train.precision=fp64",
    "logging.interval=1",
    "loss.mode=full_res_query_mean",
    "loss.points=fixed",
    "logging.tensorboard=false",
    "data.val=[{dataset: synthetic, synthetic: {num_images: 3, seed: 7, domain: val}}]",
)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_process_ddp_equals_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run([sys.executable, "-m", "dgss", "train", str(TINY), *OVERRIDES, "--work-dir", str(one), "--no-progress"])
    res = run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(free_port()),
            "-m",
            "dgss",
            "train",
            str(TINY),
            *OVERRIDES,
            "data.train.batch_size=2",
            "--work-dir",
            str(two),
            "--no-progress",
        ]
    )
    assert res.stdout.count("done:") == 1, "only rank 0 reports"

    start = read_jsonl(two / "log.jsonl", "start")[0]
    assert start["world_size"] == 2 and start["global_batch"] == 4
    wa, wb = load_file(one / f"iter_{K:06d}.safetensors"), load_file(two / f"iter_{K:06d}.safetensors")
    assert wa.keys() == wb.keys()
    w0 = _initial_weights()
    for k in wa:
        assert wa[k].dtype == torch.float64
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=1e-9, msg=k)
    moved = max((wa[k] - w0[k]).abs().max().item() for k in wa)
    assert moved > 1e-4, "the weights must have changed for the comparison to mean anything"

    la, lb = read_jsonl(one / "log.jsonl"), read_jsonl(two / "log.jsonl")
    assert sorted(la) == sorted(lb) == list(range(1, K + 1))
    for it in la:
        assert lb[it]["loss"] == pytest.approx(la[it]["loss"], rel=1e-9)
    va, vb = read_jsonl(one / "log.jsonl", "val")[K], read_jsonl(two / "log.jsonl", "val")[K]
    assert vb["val/mIoU"] == pytest.approx(va["val/mIoU"], abs=1e-9)
    state = torch.load(two / f"iter_{K:06d}.train_state.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["samples_consumed"] == K * 4


def _initial_weights():
    from dgss.config import load_config
    from dgss.engine.trainer import build_model, seed_everything

    cfg = load_config(TINY)
    seed_everything(cfg.seed)
    return {k: v.double() for k, v in build_model(cfg).trainable_state_dict().items()}
