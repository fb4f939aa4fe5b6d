"""Vireo trained on one folder's class list evaluates on another folder whose classes are renamed and partly
disjoint, through open vocabulary and without retraining (tiny model, random frozen encoders and a tiny
random CLIP text tower, passed to eval/predict as a file like a real CLIP; the synonyms of classes.yaml carry
the shared meaning into the text prompts).

Training set A: road (syn. street), sidewalk, building (syn. house), vegetation, sky, car (syn. automobile).
Target set B:   street (syn. road), house (syn. building), automobile (syn. car), person, terrain.
Each dataset's `classes.yaml` names the other's word as a synonym, the way two users' datasets are bridged:
a shared class has the same text row in both vocabularies, under another name and another class id.
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
B_NAMES = ["street", "house", "automobile", "person", "terrain"]
SHARED = ["street", "house", "automobile"]  # B's first three classes
CYCLED = "house, building; automobile, car; street, road; person; terrain"


def predicted_iou(b: Path, ckpt: Path, clip: Path, vocab: str, out: Path) -> np.ndarray:
    """Per-class IoU (%) over B's clean val labels of `dgss predict --vocab vocab` (label k = vocab entry k),
    counted with numpy; NaN where a class is neither predicted nor present."""
    argv = ["predict", str(b / "images/val/clean"), "--model", str(ckpt), "--random-weights"]
    argv += ["--weights", f"clip={clip}", "--vocab", vocab, "--precision", "fp32", "--out", str(out)]
    assert main(argv) == 0
    K = len(B_NAMES)
    inter, union = np.zeros(K), np.zeros(K)
    for lab_file in sorted((b / "labels/val/clean").glob("*.png")):
        g = np.array(Image.open(lab_file)).astype(int)
        p = np.array(Image.open(out / f"{lab_file.stem}_label.png")).astype(int)
        m = g != 255
        for k in range(K):
            inter[k] += ((p == k) & (g == k) & m).sum()
            union[k] += (((p == k) | (g == k)) & m).sum()
    with np.errstate(invalid="ignore"):
        return 100 * inter / union


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
        synonyms={"road": ["street"], "building": ["house"], "car": ["automobile"]},
    ).root
    b = generate_scene_folder(
        tmp / "B",
        train=0,
        val=4,
        height=64,
        width=128,
        seed=1,
        domains=("clean", "night"),
        classes={"road": "street", "building": "house", "car": "automobile", "person": "person", "terrain": "terrain"},
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
            "train.max_iters=300",
            "train.ckpt_interval=300",
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
    return a, b, work / "iter_000300.safetensors", clip


def test_training_vocabulary_comes_from_classes_yaml(trained):
    _, _, ckpt, _ = trained
    from dgss.models.checkpoint import read_checkpoint

    _, meta = read_checkpoint(ckpt)
    assert meta["vocab"] == ["road, street", "sidewalk", "building, house", "vegetation", "sky", "car, automobile"]


def test_unseen_classes_are_not_text_neighbours_of_the_shared_ones():
    """The task's premise, in the random text tower itself. A random tower has no semantics: an unseen name can
    land near the centroid of the shared classes, and then takes their pixels (this happened with "pole":
    centred cosines 0.69 / 0.34 / 0.37 to road, building, car, and B was labelled pole almost everywhere).
    Real CLIP keeps "person" or "terrain" away from "road"; here the unseen names are ones the tower also keeps
    away: centred cosine (head templates, rows minus A's mean row) at most 0.25 to every shared class."""
    import torch

    from dgss.data.vocab import head_templates
    from dgss.models.text_tables import compute_text_table
    from dgss.testing import tiny_text_encoder

    a_rows = ("road, street", "sidewalk", "building, house", "vegetation", "sky", "car, automobile")
    with torch.no_grad():
        rows = compute_text_table(tiny_text_encoder(0), (*a_rows, *B_NAMES[len(SHARED) :]), head_templates()).mean(1)
    rows = torch.nn.functional.normalize(rows, dim=-1)
    centred = torch.nn.functional.normalize(rows - rows[: len(a_rows)].mean(0), dim=-1)
    shared_rows = centred[[0, 2, 5]]  # road, building, car: the rows of street, house, automobile
    cos = centred[len(a_rows) :] @ shared_rows.T
    assert cos.max() <= 0.25, dict(zip(B_NAMES[len(SHARED) :], cos.tolist(), strict=True))


@pytest.mark.learning
@pytest.mark.e2e
def test_evaluates_on_renamed_partly_disjoint_classes_better_than_chance(trained, tmp_path, capsys):
    """Worst margins in IoU points (the margin sweep in docs/testing.md: 5 seeds x 5 settings, AVX2 EPYC): shared-class mean above chance
    47.0 (threads-1, seed 2; 25/25 runs cleared), best shared class above 3x chance 37.7 (aten-default, seed 3; 25/25 runs cleared),
    named minus cycled above 10 44.2 (threads-1, seed 2; 25/25 runs cleared).
    At 150 iterations (default seeds 0-4, aten-default seeds 0-3) every bar was cleared except at seed 3
    (default and aten-default: the cycled control missed by 13 / 15 points, house IoU 0), hence 300. The
    earlier task (A without synonyms, "pole" unseen in B) labelled B "pole" almost everywhere in 2 of 10 runs
    (see the premise test above)."""
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
    record_margin(
        "open-vocab/shared-mean", np.mean(shared) - np.mean([chance[c] for c in SHARED]), unit="IoU points", iou=iou
    )
    record_margin("open-vocab/best-shared", max((iou[c] or 0.0) - 3 * chance[c] for c in SHARED), unit="IoU points")
    assert np.mean(shared) > np.mean([chance[c] for c in SHARED]), (iou, chance)
    assert max((iou[c] or 0.0) - 3 * chance[c] for c in SHARED) > 0, (iou, chance)  # one shared class clearly
    # the same numbers from `dgss predict` in B's vocabulary, counted independently
    named = predicted_iou(b, ckpt, clip, str(b / "classes.yaml"), tmp_path / "pred")
    for k, c in enumerate(B_NAMES):
        if not np.isnan(named[k]):
            assert abs(named[k] - iou[c]) < 0.01, c
    # control: the same checkpoint with the shared entries' texts cycled among their ids (street's id gets
    # "house, building", ...): the shared classes' IoU must fall, so the text, not the class id, carries them
    cycled = predicted_iou(b, ckpt, clip, CYCLED, tmp_path / "cycled")
    drop = np.mean([named[k] for k in range(len(SHARED))]) - np.mean(np.nan_to_num(cycled[: len(SHARED)]))
    record_margin("open-vocab/named-vs-cycled", drop - 10.0, unit="IoU points above 10")
    assert drop > 10.0, (named, cycled)
    capsys.readouterr()
