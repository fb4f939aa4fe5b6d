"""Metrics on hand-computed cases: the DG mean is the plain mean of the domains' mIoUs (data.md §6),
not a pixel- or image-weighted one; IoU = TP / (TP + FP + FN) with the ignore label skipped."""

import pytest
import torch

from dgss.metrics import DomainMetrics


def test_mean_over_domains_is_unweighted():
    m = DomainMetrics(2)
    # domain "big": 8 labelled pixels, all right -> IoU (1, 1), mIoU 1
    big = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]])
    m.update("big", big, big)
    # domain "small": 2 labelled pixels (+1 ignored), GT (0, 1) predicted (1, 1):
    #   class 0: TP 0, FN 1 -> IoU 0;  class 1: TP 1, FP 1 -> IoU 1/2;  mIoU 1/4
    m.update("small", torch.tensor([1, 1, 0]), torch.tensor([0, 1, 255]))
    s = m.summary()
    assert s.domains["big"].miou == 1.0 and s.domains["big"].pixels == 8
    assert s.domains["small"].miou == pytest.approx(0.25) and s.domains["small"].pixels == 2
    assert s.mean == pytest.approx((1.0 + 0.25) / 2)  # a pixel-weighted mean would be 0.85
    assert m.summary(mean_over=["small"]).mean == pytest.approx(0.25)


def test_iou_accumulates_over_images_of_a_domain():
    """Two images of one domain: counts add up before the division (dataset-level IoU)."""
    m = DomainMetrics(2)
    m.update("d", torch.tensor([0, 0]), torch.tensor([0, 1]))  # class 0: TP 1, FP 1; class 1: FN 1
    m.update("d", torch.tensor([1, 1]), torch.tensor([1, 1]))  # class 1: TP 2
    r = m.summary().domains["d"]
    # class 0: 1 / (1 + 1) = 1/2; class 1: 2 / (2 + 1) = 2/3
    assert r.iou == pytest.approx([0.5, 2 / 3]) and r.miou == pytest.approx((0.5 + 2 / 3) / 2)
    assert r.images == 2 and r.pixels == 4
