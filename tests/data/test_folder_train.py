"""Train, evaluate and predict on a folder dataset with REIN, DepthForge and Vireo (tiny models, random
frozen encoders), through the command line and the shipped templates (`configs/templates/`).

The references are independent of dgss: class lists and pixel counts come from the label files (numpy),
the per-class IoU of `dgss eval` is recomputed from `dgss predict`'s label PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgss.cli import main

TEMPLATES = Path(__file__).resolve().parents[2] / "src" / "dgss" / "configs" / "templates"
TINY = [
    "model.preset=null",
    "model.tiny=true",
    "weights.random=true",
    "weights.encoder=null",
    "data.train.crop_size=64",
    "data.train.batch_size=2",
    "data.train.num_workers=0",
    "train.device=cpu",
    "train.val_interval=0",
    "train.val_at_end=false",
    "logging.interval=1",
    "logging.tensorboard=false",
]
CLASSES = ["road", "building", "sky", "car", "person"]  # 5 of the generator's 11 classes: any K works


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny training runs: one torch thread


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from dgss.data.generate import generate_scene_folder

    root = tmp_path_factory.mktemp("data") / "street5"
    generate_scene_folder(
        root,
        train=4,
        val=2,
        height=64,
        width=128,
        domains=("clean", "night"),
        classes={c: c for c in CLASSES},
        raw_ids=True,
    )  # raw trainIds + id_map
    return root


def iou_from_files(pred_dir: Path, label_dir: Path, k: int, ignore: int = 255) -> np.ndarray:
    """Per-class IoU (%) over all images: an independent confusion count from PNG files."""
    inter, union = np.zeros(k), np.zeros(k)
    import yaml

    spec = yaml.safe_load((label_dir.parents[2] / "classes.yaml").read_text())
    names = [c if isinstance(c, str) else c["name"] for c in spec["classes"]]
    lut = np.full(65536, ignore)
    for raw, target in (spec.get("id_map") or {}).items():
        lut[int(raw)] = ignore if target == "ignore" else names.index(target)
    if not spec.get("id_map"):
        lut[:k] = np.arange(k)
    for lab_file in sorted(label_dir.glob("*.png")):
        gt = lut[np.array(Image.open(lab_file)).astype(np.int64)]
        pred = np.array(Image.open(pred_dir / f"{lab_file.stem}_label.png")).astype(np.int64)
        valid = gt != ignore
        for c in range(k):
            p, g = (pred == c) & valid, (gt == c) & valid
            inter[c] += (p & g).sum()
            union[c] += (p | g).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100 * inter / union


@pytest.mark.parametrize(
    "method, extra",
    [
        ("rein", []),
        ("freeze", []),
        ("depthforge", ["weights.depth_encoder=null"]),
        ("vireo", ["weights.depth_encoder=null", "weights.text_encoder=null", "data.val=[]"]),
    ],
)
def test_train_eval_predict_on_a_folder(folder, tmp_path, capsys, method, extra):
    work = tmp_path / "run"
    cfg = TEMPLATES / f"folder_{method}_dinov2-l.yaml"
    assert (
        main(
            [
                "train",
                str(cfg),
                f"data.root={folder}",
                *TINY,
                *extra,
                "train.max_iters=2",
                "train.ckpt_interval=2",
                "--work-dir",
                str(work),
                "--no-progress",
            ]
        )
        == 0
    )
    ckpt = work / "iter_000002.safetensors"
    from dgss.models.checkpoint import read_checkpoint

    _, meta = read_checkpoint(ckpt)
    assert [v.split(", ")[0] for v in meta["vocab"]] == CLASSES  # the class list of classes.yaml
    out = tmp_path / "eval"
    assert (
        main(["eval", str(ckpt), "--data", f"folder={folder}", "--random-weights", "--out", str(out), "--no-progress"])
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    assert list(res["domains"]) == ["street5/clean", "street5/night"]  # domain folders -> domain tags
    assert list(res["domains"]["street5/clean"]["IoU"]) == CLASSES
    labelled = sum(
        int((np.isin(np.array(Image.open(p)), [0, 2, 10, 11, 13])).sum())  # raw ids of the 5 classes
        for p in (folder / "labels/val/clean").glob("*.png")
    )
    assert res["domains"]["street5/clean"]["pixels"] == labelled
    preds = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                str(folder / "images/val/clean"),
                "--model",
                str(ckpt),
                "--random-weights",
                "--precision",
                "fp32",
                "--out",
                str(preds),
            ]
        )
        == 0
    )
    ours = iou_from_files(preds, folder / "labels/val/clean", len(CLASSES))
    theirs = np.array([np.nan if v is None else v for v in res["domains"]["street5/clean"]["IoU"].values()])
    assert np.allclose(np.nan_to_num(ours, nan=-1), np.nan_to_num(theirs, nan=-1), atol=0.01)
    # overlays are drawn in the palette of classes.yaml (not the default colours of a 5-class vocabulary)
    import yaml

    pal = np.array(yaml.safe_load((folder / "classes.yaml").read_text())["palette"], dtype=np.float32)
    assert meta["config"]["palette"] == pal.astype(int).tolist()
    for lab_file in sorted(preds.glob("*_label.png")):
        stem = lab_file.name[: -len("_label.png")]
        label = np.array(Image.open(lab_file)).astype(np.int64)
        rgb = np.array(Image.open(next((folder / "images/val/clean").glob(f"{stem}.*"))).convert("RGB"))
        drawn = np.array(Image.open(preds / f"{stem}_overlay.png").convert("RGB"))[:, : label.shape[1]]
        want = np.clip(0.45 * rgb.astype(np.float32) + 0.55 * pal[label], 0, 255)
        assert np.abs(drawn.astype(np.float32) - want).max() <= 1.0
    capsys.readouterr()


def test_closed_vocabulary_model_refuses_another_class_list(folder, tmp_path, capsys):
    from dgss.data.generate import generate_scene_folder

    other = generate_scene_folder(
        tmp_path / "three", train=0, val=1, height=64, width=128, classes={"road": "road", "sky": "sky", "car": "car"}
    ).root
    code = main(
        [
            "train",
            str(TEMPLATES / "folder_rein_dinov2-l.yaml"),
            f"data.root={folder}",
            *TINY,
            "train.max_iters=1",
            f"data.val=[{{dataset: folder, root: {other}}}]",
            "--work-dir",
            str(tmp_path / "w"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "has 3 classes, the model 5" in err and "data.val.0.dataset" in err
