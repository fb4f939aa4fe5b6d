"""The evaluation loop (dgss.engine.evaluator) with dummy `predict_logits` callables."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dgss.data.datasets import SegDataset
from dgss.data.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalResize
from dgss.engine.evaluator import evaluate, upsample_argmax
from dgss.metrics import DomainMetrics, confusion_matrix, mean_iou


def test_upsample_argmax_matches_dense():
    logits = torch.randn(30, 13, 17)
    dense = F.interpolate(logits[None], size=(40, 50), mode="bilinear", align_corners=False)[0].argmax(0)
    assert torch.equal(upsample_argmax(logits, (40, 50), chunk=7), dense)
    assert torch.equal(upsample_argmax(logits, (13, 17)), logits.argmax(0))


def encoded_tree(dh, tmp_path, fixtures):
    """Cityscapes tree whose images encode their labels (R = 10 * trainId, 250 = ignore)."""
    cs = dh.build_cityscapes(tmp_path, fixtures, n_val=2, n_train=0)
    for lab_path in cs.rglob("*_labelTrainIds.png"):
        lab = np.array(Image.open(lab_path)).astype(np.int64)
        code = np.where(lab == 255, 250, lab * 10).astype(np.uint8)
        img_path = cs / "leftImg8bit/val/frankfurt" / lab_path.name.replace("_gtFine_labelTrainIds", "_leftImg8bit")
        dh.save(np.dstack([code, code, code]), img_path)
    return cs


class Oracle:
    """Decodes the class from the image (R channel) -> one-hot logits; records input shapes."""

    def __init__(self):
        self.shapes = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(images.shape))
        raw = images[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
        cls = (raw / 10).round().long().clamp(0, 18)
        return F.one_hot(cls, 19).permute(0, 3, 1, 2).float()


def test_evaluate_oracle_and_shapes(dh, tmp_path, fixtures):
    encoded_tree(dh, tmp_path, fixtures)
    ds = SegDataset.from_root("cityscapes", tmp_path, "val")
    oracle = Oracle()
    m = evaluate(oracle, ds, batch_size=2)
    assert oracle.shapes == [(2, 3, 512, 1024)]  # 256x128 fixture fitted into (1024, 512); one batch
    s = m.summary()
    assert list(s.domains) == ["cityscapes"] and s.domains["cityscapes"].images == 2
    assert s.mean > 0.5  # bilinear up/down-sampling blurs borders and thin classes
    exact = evaluate(Oracle(), ds, resize=EvalResize((256, 128)), batch_size=2)  # no test resize: exact
    assert exact.summary().mean == 1.0 and int(exact.matrices["cityscapes"].sum()) == s.domains["cityscapes"].pixels


def test_evaluate_equals_manual_computation(dh, tmp_path, fixtures):
    dh.build_cityscapes(tmp_path, fixtures, n_val=2, n_train=0)
    ds = SegDataset.from_root("cityscapes", tmp_path, "val")

    def always_road(images):
        b, _, h, w = images.shape
        out = torch.zeros(b, 19, h // 4, w // 4)
        out[:, 0] = 1
        return out

    m = evaluate(always_road, ds)
    manual = DomainMetrics(19)
    for i in range(len(ds)):
        lab = ds[i]["label"]
        manual.update("cityscapes", torch.zeros_like(lab), lab)
    assert torch.equal(m.matrices["cityscapes"], manual.matrices["cityscapes"])
    lab = torch.from_numpy(dh.cs_trainids(fixtures).astype(np.int64))
    present = len(set(lab.unique().tolist()) - {255})
    iou_road = float((lab == 0).sum()) / float((lab != 255).sum())
    assert abs(m.summary().mean - iou_road / present) < 1e-9
    assert abs(mean_iou(confusion_matrix(torch.zeros_like(lab), lab, 19)) - iou_road / present) < 1e-9


def test_evaluate_per_domain_and_errors(dh, tmp_path, fixtures):
    img, lab = dh.cs_image(fixtures), dh.cs_trainids(fixtures)
    for cond in ("fog", "night"):
        dh.save(img, tmp_path / f"acdc/rgb_anon/{cond}/val/S/a_rgb_anon.png")
        dh.save(lab, tmp_path / f"acdc/gt/{cond}/val/S/a_gt_labelTrainIds.png")
    ds = SegDataset.from_root("acdc", tmp_path, "val", conditions=["fog", "night"])
    seen = []

    def const(images):
        seen.append(tuple(images.shape[-2:]))
        return torch.zeros(images.shape[0], 19, 8, 8)

    m = evaluate(const, ds, batch_size=2)
    assert seen == [(480, 960)]  # fit (960, 540): scale min(960/256, 540/128) = 3.75
    s = m.summary(mean_over=["acdc/fog", "acdc/night"])
    assert list(s.domains) == ["acdc/fog", "acdc/night"] and s.mean == s.domains["acdc/fog"].miou
    with pytest.raises(ValueError, match=r"returned shape \(2, 5, 8, 8\); expected \(2, 19, h, w\)"):
        evaluate(lambda x: torch.zeros(x.shape[0], 5, 8, 8), ds, batch_size=2)
