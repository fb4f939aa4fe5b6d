"""`dgss train` end to end on a tiny config over a Cityscapes-layout folder (real readers and pipeline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dgss.cli import main
from dgss.engine.logging import read_jsonl
from dgss.engine.train_data import SyntheticSegDataset
from dgss.models.checkpoint import load_checkpoint

CONFIG = Path(__file__).resolve().parents[2] / "src" / "dgss" / "configs" / "tiny" / "rein_cityscapes_layout.yaml"


def make_cityscapes_layout(root: Path, n_train: int = 8, n_val: int = 2) -> Path:
    """cityscapes/{leftImg8bit,gtFine}/{train,val}/<city>/ with 128x256 synthetic scenes and trainId labels."""
    for split, n, seed in (("train", n_train, 0), ("val", n_val, 1)):
        ds = SyntheticSegDataset(n, 128, 256, num_classes=19, seed=seed)
        for i in range(n):
            item = ds[i]
            city = f"city{i % 2}"
            stem = f"{city}_{i:06d}_000019"
            img_dir = root / "cityscapes" / "leftImg8bit" / split / city
            lab_dir = root / "cityscapes" / "gtFine" / split / city
            img_dir.mkdir(parents=True, exist_ok=True)
            lab_dir.mkdir(parents=True, exist_ok=True)
            rgb = item["image"].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
            Image.fromarray(rgb).save(img_dir / f"{stem}_leftImg8bit.png")
            Image.fromarray(item["label"].numpy().astype(np.uint8)).save(lab_dir / f"{stem}_gtFine_labelTrainIds.png")
    return root


def test_dgss_train_tiny_config_lowers_loss_writes_events_and_checkpoint(tmp_path, capsys):
    data = make_cityscapes_layout(tmp_path / "data")
    work = tmp_path / "run"
    rc = main(
        ["train", str(CONFIG), f"data.root={data}", "logging.interval=1", "--work-dir", str(work), "--no-progress"]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "done: 50 iterations" in out.out
    log = read_jsonl(work / "log.jsonl")
    losses = [log[i]["loss"] for i in range(1, 51)]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.95 * first, (first, last)
    events = list((work / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(work / "tb"))
    acc.Reload()
    assert {"train/loss", "train/lr", "val/cityscapes/mIoU", "val/mean_mIoU"} <= set(acc.Tags()["scalars"])
    assert len(acc.Scalars("train/loss")) == 50
    val = read_jsonl(work / "log.jsonl", "val")[50]
    assert 0 <= val["cityscapes/mIoU"] <= 100 and val["mean_mIoU"] == val["cityscapes/mIoU"]
    assert sorted(p.name for p in work.glob("iter_*")) == [
        "iter_000025.safetensors",
        "iter_000025.train_state.pt",
        "iter_000050.safetensors",
        "iter_000050.train_state.pt",
    ]
    model = load_checkpoint(work / "iter_000050.safetensors", random_frozen=True)
    assert model.cfg.name == "tiny-rein"


def test_dgss_train_reports_config_and_data_errors(tmp_path, capsys):
    assert main(["train", str(CONFIG), "optim.lrr=1"]) == 2
    assert "optim.lrr" in capsys.readouterr().err
    assert main(["train", str(CONFIG), f"data.root={tmp_path}", "--work-dir", str(tmp_path / "w")]) == 2
    assert "cityscapes" in capsys.readouterr().err
    assert main(["train", str(CONFIG), "--print-config"]) == 0
    assert "name: tiny_rein_cityscapes_layout" in capsys.readouterr().out


def test_data_loader_workers_do_not_change_the_run(tmp_path, capsys):
    """Augmentation seeds depend on (seed, index, epoch) only: 0 or 2 loader workers give the same losses."""
    data = make_cityscapes_layout(tmp_path / "data", n_train=4, n_val=1)
    losses = {}
    for nw in (0, 2):
        work = tmp_path / f"w{nw}"
        assert (
            main(
                [
                    "train",
                    str(CONFIG),
                    f"data.root={data}",
                    "logging.interval=1",
                    "train.max_iters=4",
                    "data.val=[]",
                    f"data.train.num_workers={nw}",
                    "--work-dir",
                    str(work),
                    "--no-progress",
                ]
            )
            == 0
        )
        log = read_jsonl(work / "log.jsonl")
        losses[nw] = [log[i]["loss"] for i in range(1, 5)]
    assert losses[0] == losses[2]
