"""mIoU against two independent references (cityscapesscripts, torchmetrics) on the real Cityscapes
fixture labels with perturbed predictions, plus the DomainMetrics accumulator."""

from __future__ import annotations

import json
import math
import os
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from dgss.metrics import DomainMetrics, confusion_matrix, iou_per_class, mean_iou

STEM = "frankfurt_000000_000294"


def perturb(gt: np.ndarray, seed: int, band: tuple[int, int]) -> np.ndarray:
    """GT with 20 % random relabels and a horizontal band predicted as car (13)."""
    rng = np.random.default_rng(seed)
    pred = gt.astype(np.int64).copy()
    pred[pred == 255] = 0
    m = rng.random(pred.shape) < 0.2
    pred[m] = rng.integers(0, 19, int(m.sum()))
    pred[band[0] : band[1]] = 13
    return pred


@pytest.fixture
def cases(fixtures_dir, tmp_path):
    """Two (labelIds path, GT trainIds, prediction) cases from the real fixture (2nd: mirrored)."""
    from dgss.data.label_maps import CITYSCAPES_ID_TO_TRAINID

    src = fixtures_dir / f"cityscapes/gtFine/val/frankfurt/{STEM}_gtFine_labelIds.png"
    ids = np.array(Image.open(src))
    mirrored = tmp_path / "frankfurt_000001_000001_gtFine_labelIds.png"
    Image.fromarray(ids[:, ::-1].copy()).save(mirrored)
    out = []
    for k, (path, lab_ids) in enumerate(((src, ids), (mirrored, ids[:, ::-1]))):
        gt = CITYSCAPES_ID_TO_TRAINID[lab_ids]
        out.append((path, gt, perturb(gt, seed=k, band=(60 + 10 * k, 75 + 10 * k))))
    return out


def ours(cases) -> tuple[float, np.ndarray]:
    m = DomainMetrics(19)
    for _, gt, pred in cases:
        m.update("cityscapes", torch.from_numpy(pred), torch.from_numpy(gt.astype(np.int64)))
    r = m.summary().domains["cityscapes"]
    return r.miou, np.array(r.iou)


def test_agrees_with_torchmetrics(cases):
    from torchmetrics.classification import MulticlassJaccardIndex

    miou, iou = ours(cases)
    macro = MulticlassJaccardIndex(num_classes=19, ignore_index=255, average="macro")
    per = MulticlassJaccardIndex(num_classes=19, ignore_index=255, average="none")
    for _, gt, pred in cases:
        p, t = torch.from_numpy(pred)[None], torch.from_numpy(gt.astype(np.int64))[None]
        macro.update(p, t)
        per.update(p, t)
    assert abs(miou - float(macro.compute())) < 1e-6
    ref = per.compute().double().numpy()
    valid = ~np.isnan(iou)
    np.testing.assert_allclose(iou[valid], ref[valid], atol=1e-6)
    assert 0.1 < miou < 0.5


def test_agrees_with_cityscapesscripts(cases, tmp_path):
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as ev
    from cityscapesscripts.helpers.labels import trainId2label

    to_id = np.array([trainId2label[t].id for t in range(19)], dtype=np.uint8)
    preds, gts = [], []
    for k, (gt_path, _, pred) in enumerate(cases):
        p = tmp_path / f"pred{k}.png"
        Image.fromarray(to_id[pred]).save(p)  # predictions must be in labelId space
        preds.append(str(p))
        gts.append(str(gt_path))
    args = ev.args
    args.quiet, args.JSONOutput, args.evalPixelAccuracy = True, False, False
    args.evalInstLevelScore = False  # its instance path calls np.in1d (removed in numpy 2.4)
    res = ev.evaluateImgLists(preds, gts, args)
    miou, iou = ours(cases)
    assert abs(miou - res["averageScoreClasses"]) < 1e-6
    from dgss.data.label_maps import CITYSCAPES_CLASSES

    for c, name in enumerate(CITYSCAPES_CLASSES):
        ref = res["classScores"][name]
        if math.isnan(ref):
            assert math.isnan(iou[c])
        else:
            assert abs(ref - iou[c]) < 1e-6, name


def test_dataset_level_not_per_image(cases):
    miou, _ = ours(cases)
    per_image = []
    for _, gt, pred in cases:
        per_image.append(mean_iou(confusion_matrix(torch.from_numpy(pred), torch.from_numpy(gt.astype(np.int64)), 19)))
    assert abs(miou - np.mean(per_image)) > 1e-4


def test_perfect_prediction_and_absent_classes(cases):
    _, gt, _ = cases[0]
    g = torch.from_numpy(gt.astype(np.int64))
    pred = torch.where(g == 255, torch.zeros_like(g), g)
    cm = confusion_matrix(pred, g, 19)
    iou = iou_per_class(cm)
    assert mean_iou(cm) == 1.0
    assert int(torch.isnan(iou).sum()) == 19 - len(set(gt.flatten().tolist()) - {255})


def test_confusion_matrix_details():
    label = torch.tensor([[0, 1, 255], [2, 2, 1]])
    pred = torch.tensor([[0, 2, 1], [2, 0, 1]])
    cm = confusion_matrix(pred, label, 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 1]]  # rows = GT; ignore pixel dropped
    iou = iou_per_class(cm)
    np.testing.assert_allclose(iou.numpy(), [1 / 2, 1 / 2, 1 / 3])
    with pytest.raises(ValueError, match=r"label values \[7\]"):
        confusion_matrix(pred, torch.tensor([[0, 7, 255], [2, 2, 1]]), 3)
    with pytest.raises(ValueError, match="prediction values"):
        confusion_matrix(torch.full((2, 3), 3), label, 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(pred[:1], label, 3)
    # 16-bit ignore (ADE-847)
    cm = confusion_matrix(torch.tensor([5, 300]), torch.tensor([65535, 300]), 847, ignore_index=65535)
    assert int(cm.sum()) == 1 and int(cm[300, 300]) == 1


def test_domain_metrics_summary_and_tables():
    m = DomainMetrics(3, class_names=["a", "b", "c"])
    lab = torch.tensor([[0, 1], [2, 255]])
    m.update("acdc/night", lab.clamp(max=2), lab)  # perfect
    m.update("acdc/fog", torch.zeros(2, 2, dtype=torch.long), lab)  # only class a right
    m.update("bdd100k", torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long))
    s = m.summary(mean_over=["acdc/night", "acdc/fog"])
    assert s.domains["acdc/night"].miou == 1.0
    assert abs(s.domains["acdc/fog"].miou - (1 / 3) / 3) < 1e-12
    assert abs(s.mean - (1 + 1 / 9) / 2) < 1e-12
    assert s.domains["acdc/fog"].images == 1 and s.domains["acdc/fog"].pixels == 3
    assert abs(m.summary().mean - (1 + 1 / 9 + 1) / 3) < 1e-12
    with pytest.raises(KeyError, match="acdc/snow"):
        m.summary(mean_over=["acdc/snow"])
    d = s.to_dict()
    json.dumps(d)
    assert d["mean"] == 55.56 and d["domains"]["acdc/fog"]["IoU"]["b"] == 0.0
    assert d["domains"]["bdd100k"]["IoU"]["b"] is None
    md = s.to_markdown(per_class=True)
    assert md.splitlines()[0] == "|  | acdc/night | acdc/fog | bdd100k | mean (2) |"
    assert "| mIoU | 100.00 | 11.11 | 100.00 | 55.56 |" in md
    csv_text = s.to_csv()
    assert csv_text.splitlines()[0] == "domain,mIoU,a,b,c"
    other = DomainMetrics(3)
    other.merge(m)
    assert torch.equal(other.matrices["acdc/fog"], m.matrices["acdc/fog"])
    m.all_reduce()  # no process group: no-op
    assert m.summary().domains["acdc/fog"].pixels == 3


def _worker(rank: int, port: int, world: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    m = DomainMetrics(2)
    lab = torch.tensor([0, 1, 1])
    m.update(f"d{rank}", torch.tensor([0, 1, 0]), lab)
    m.update("shared", torch.tensor([rank, 1, 1]), lab)
    m.all_reduce()
    torch.save(dict(m.matrices) | {"images": m.images}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_all_reduce_two_ranks(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # fork: the suite runs with --import-mode=importlib, so spawned children could not import this module
    torch.multiprocessing.start_processes(_worker, args=(port, 2, str(tmp_path / "r")), nprocs=2, start_method="fork")
    r0, r1 = (torch.load(tmp_path / f"r.{i}") for i in range(2))
    for r in (r0, r1):
        assert sorted(k for k in r if k != "images") == ["d0", "d1", "shared"]
        assert r["shared"].tolist() == [[1, 1], [0, 4]]  # [[1,0],[0,2]] + [[0,1],[0,2]]
        assert r["d0"].tolist() == [[1, 0], [1, 1]] and r["images"] == {"d0": 1, "d1": 1, "shared": 2}
