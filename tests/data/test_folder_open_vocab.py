"""Vireo trained on one folder's class list evaluates on another folder whose classes are renamed and partly
disjoint, through open vocabulary and without retraining (tiny model, random frozen encoders and a tiny
random CLIP text tower, passed to eval/predict as a file like a real CLIP; the synonyms of classes.yaml carry
the shared meaning into the text prompts).

Training set A: road, sidewalk, building, vegetation, sky, car.
Target set B:   street (syn. road), house (syn. building), automobile (syn. car), person, pole.
References: a uniformly random labelling's expected IoU per class (from B's label counts, by hand), and the
per-class IoU recomputed from `dgss predict --vocab B/classes.yaml` label PNGs (numpy)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgss.cli import main
from learning import learning_seed, record_margin

TEMPLATE = Path(__file__).resolve().parents[2] / "src" / "dgss" / "configs" / "templates" / "folder_vireo_dinov2-l.yaml"
B_NAMES = ["street", "house", "automobile", "person", "pole"]
SHARED = ["street", "house", "automobile"]


pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.e2e]  # a folder dataset trained end to end


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    from dgss.data.generate import generate_scene_folder

    tmp = tmp_path_factory.mktemp("ov")
    a = generate_scene_folder(
        tmp / "A",
        train=16,
        val=1,
        height=64,
        width=128,
        classes={c: c for c in ("road", "sidewalk", "building", "vegetation", "sky", "car")},
    ).root
    b = generate_scene_folder(
        tmp / "B",
        train=0,
        val=4,
        height=64,
        width=128,
        seed=1,
        domains=("clean", "night"),
        classes={"road": "street", "building": "house", "car": "automobile", "person": "person", "pole": "pole"},
        synonyms={"street": ["road"], "house": ["building"], "automobile": ["car"]},
    ).root
    work = tmp / "run"
    code = main(
        [
            "train",
            str(TEMPLATE),
            f"data.root={a}",
            "data.val=[]",
            "model.preset=null",
            "model.tiny=true",
            "weights.random=true",
            "weights.encoder=null",
            "weights.depth_encoder=null",
            "weights.text_encoder=null",
            "data.train.crop_size=64",
            "data.train.num_workers=0",
            "train.device=cpu",
            "optim.lr=2e-3",
            f"seed={learning_seed()}",
            "train.max_iters=150",
            "train.ckpt_interval=150",
            "train.val_at_end=false",
            "logging.interval=50",
            "logging.tensorboard=false",
            "--work-dir",
            str(work),
            "--no-progress",
        ]
    )
    assert code == 0
    # the run's random text tower (seed 0) as a file: what `--weights clip=` passes for a real CLIP
    from safetensors.torch import save_file

    from dgss.testing import tiny_text_encoder

    clip = tmp / "tiny_clip_text.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_text_encoder(0).text.state_dict().items()}, str(clip))
    return a, b, work / "iter_000150.safetensors", clip


def test_training_vocabulary_comes_from_classes_yaml(trained):
    _, _, ckpt, _ = trained
    from dgss.models.checkpoint import read_checkpoint

    _, meta = read_checkpoint(ckpt)
    assert meta["vocab"] == ["road", "sidewalk", "building", "vegetation", "sky", "car"]


@pytest.mark.learning
@pytest.mark.e2e
def test_evaluates_on_renamed_partly_disjoint_classes_better_than_chance(trained, tmp_path, capsys):
    """Margins seen (AVX2 EPYC, seed 0): default, avx2, 1 and 2 threads: shared-class mean IoU 21.3 points
    above chance, best shared class 19.2 points above 3x chance. Under ``ATEN_CPU_CAPABILITY=default`` this
    test FAILS (-11.3 / -8.1): the model learns training set A (road 77, building 67, sky 72 IoU) but
    predicts B's unseen "pole" nearly everywhere; 300 iterations instead of 150 did not fix it (+11.1 /
    -8.1). The transfer through a tiny random text tower is fragile: an open problem of the margin sweep."""
    _, b, ckpt, clip = trained
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                str(ckpt),
                "--data",
                f"folder={b}",
                "--random-weights",
                "--weights",
                f"clip={clip}",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    assert list(res["domains"]) == ["B/clean", "B/night"]
    iou = res["domains"]["B/clean"]["IoU"]
    assert list(iou) == B_NAMES  # the metric is computed on B's classes
    # chance: a uniformly random labelling over B's K classes has expected IoU (n/K) / (n + N/K - n/K)
    gt = np.concatenate([np.array(Image.open(p)).ravel() for p in sorted((b / "labels/val/clean").glob("*.png"))])
    valid = gt[gt != 255]
    K, N = len(B_NAMES), valid.size
    chance = {
        c: 100 * (np.sum(valid == k) / K) / (np.sum(valid == k) + N / K - np.sum(valid == k) / K)
        for k, c in enumerate(B_NAMES)
    }
    shared = [iou[c] or 0.0 for c in SHARED]
    record_margin("open-vocab/shared-mean", np.mean(shared) - np.mean([chance[c] for c in SHARED]), unit="IoU points")
    record_margin("open-vocab/best-shared", max((iou[c] or 0.0) - 3 * chance[c] for c in SHARED), unit="IoU points")
    assert np.mean(shared) > np.mean([chance[c] for c in SHARED]), (iou, chance)
    assert max((iou[c] or 0.0) - 3 * chance[c] for c in SHARED) > 0, (iou, chance)  # one shared class clearly
    # the same numbers from `dgss predict` in B's vocabulary, counted independently
    preds = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                str(b / "images/val/clean"),
                "--model",
                str(ckpt),
                "--random-weights",
                "--weights",
                f"clip={clip}",
                "--vocab",
                str(b / "classes.yaml"),
                "--precision",
                "fp32",
                "--out",
                str(preds),
            ]
        )
        == 0
    )
    inter, union = np.zeros(K), np.zeros(K)
    for lab_file in sorted((b / "labels/val/clean").glob("*.png")):
        g = np.array(Image.open(lab_file)).astype(int)
        p = np.array(Image.open(preds / f"{lab_file.stem}_label.png")).astype(int)
        m = g != 255
        for k in range(K):
            inter[k] += ((p == k) & (g == k) & m).sum()
            union[k] += (((p == k) | (g == k)) & m).sum()
    for k, c in enumerate(B_NAMES):
        if union[k]:
            assert abs(100 * inter[k] / union[k] - iou[c]) < 0.01, c
    capsys.readouterr()
