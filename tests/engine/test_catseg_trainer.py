"""dgss's Trainer and Validator drive a tiny CAT-Seg model (its own BCE loss, the CLIP lr x 0.01 rule, the
0.01 gradient clip, sliding-window validation, checkpoints with the trainable tensors only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dgss.config import load_config
from dgss.config.schema import ParamRule
from dgss.engine.distributed import DistContext
from dgss.engine.train_data import SyntheticSegDataset
from dgss.engine.trainer import Trainer, Validator
from dgss.models.catseg import build_catseg
from dgss.models.checkpoint import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = Path(__file__).resolve().parents[2] / "src" / "dgss" / "configs" / "tiny" / "rein_synthetic.yaml"
NAMES = tuple(f"class {i}" for i in range(19))


def test_trainer_runs_catseg_with_its_loss_groups_and_validation(tmp_path):
    cfg = load_config(
        TINY,
        [
            "logging.interval=1",
            "logging.progress=false",
            f"train.work_dir={tmp_path / 'run'}",
            "train.max_iters=2",
            "train.val_interval=2",
            "train.ckpt_interval=2",
            "train.grad_clip=0.01",
            "optim.lr=2e-4",
            "optim.weight_decay=1e-4",
            "data.train.batch_size=2",
        ],
    )
    cfg.optim.param_rules["clip_"] = ParamRule(lr_mult=0.01, decay_mult=1.0)
    torch.manual_seed(0)
    model = build_catseg("catseg-tiny", class_names=NAMES, inference="dgss")
    frozen = {n: p.detach().clone() for n, p in model.clip_parameters() if not p.requires_grad}
    ctx = DistContext(device=torch.device("cpu"))
    trainer = Trainer(cfg, model, SyntheticSegDataset(8, 32, 32, num_classes=19), validate=Validator(cfg, model, ctx))
    out = trainer.fit()
    assert out["iteration"] == 2 and "mean_mIoU" in out["val"]
    groups = {id(p): g for g in trainer.optimizer.param_groups for p in g["params"]}
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert groups[id(p)]["lr_mult"] == (0.01 if n.startswith("clip_") else 1.0), n
            norm = "norm" in n or "double_conv.1" in n or "double_conv.4" in n
            assert groups[id(p)]["weight_decay"] == (0.0 if norm else 1e-4), n
    for n, p in model.clip_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    tensors, meta = read_checkpoint(tmp_path / "run" / "iter_000002.safetensors")
    assert set(tensors) == set(model.trainable_state_dict()) and meta["method"] == "catseg"
    assert "clip_text.transformer.resblocks.0.attn.v_proj_weight" in tensors
    assert "clip_text.transformer.resblocks.0.attn.k_proj_weight" not in tensors


def test_run_config_trains_catseg_end_to_end(tmp_path):
    from dgss.engine.trainer import run_training

    cfg = load_config(
        TINY,
        [
            "model.method=catseg",
            "logging.progress=false",
            f"train.work_dir={tmp_path / 'run'}",
            "train.max_iters=2",
            "train.val_interval=2",
            "train.ckpt_interval=2",
            "data.train.batch_size=2",
            "data.train.crop_size=32",
            "schedule.type=cosine",
        ],
    )
    out = run_training(cfg, progress=False)
    assert out["iteration"] == 2 and "mean_mIoU" in out["val"]
    path = tmp_path / "run" / "iter_000002.safetensors"
    tensors, meta = read_checkpoint(path)
    assert meta["method"] == "catseg" and "aggregator.conv1.weight" in tensors
    from dgss.models.checkpoint import load_checkpoint

    model = load_checkpoint(path, random_frozen=True)  # the recorded random CLIP towers + trained tensors
    assert model.vocab[0] == "road" and model.num_classes == 19
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tensors.items())
    again = load_checkpoint(path, random_frozen=True)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


def test_cosine_schedule_runs_to_zero_without_warmup():
    from dgss.engine.schedulers import LRSchedule

    s = LRSchedule("cosine", 2e-4, 80000)
    assert s.lr_at(0) == 2e-4 and s.lr_at(80000) == 0.0 and s.lr_at(90000) == 0.0
    assert s.lr_at(20000) == pytest.approx(2e-4 * (1 + 2**-0.5) / 2) and s.lr_at(40000) == pytest.approx(1e-4)
