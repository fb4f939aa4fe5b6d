"""Vireo's CMPE prior loss against hand-computed values at order-one scale (vireo.md §5).

BCE-with-logits is written out as softplus: BCE(x, 1) = log(1 + e^-x), BCE(x, 0) = log(1 + e^x).
"""

import math

import pytest
import torch

from dgss.losses import prior_loss


def bce(x: float, y: int) -> float:
    return math.log1p(math.exp(-x)) if y else math.log1p(math.exp(x))


def test_background_and_out_of_vocabulary_labels_have_all_zero_targets():
    """K = 2 coarse channels; label 2 (= K, the background / no-object id) and label 7 (beyond the
    vocabulary) are negatives for every class, label 0 is a positive for class 0 only."""
    coarse = torch.tensor(
        [
            [
                [[0.5, -1.0, 0.25]],  # class 0 logits at pixels (label 2, 0, 7)
                [[1.5, 2.0, -0.75]],
            ]
        ]
    )  # class 1
    labels = torch.tensor([[[2, 0, 7]]])
    want = (
        bce(0.5, 0)
        + bce(1.5, 0)  # label 2 = K: no class
        + bce(-1.0, 1)
        + bce(2.0, 0)  # label 0
        + bce(0.25, 0)
        + bce(-0.75, 0)
    ) / 6  # label 7: no class
    assert prior_loss(coarse, labels).item() == pytest.approx(want, rel=1e-6)


def test_last_vocabulary_class_is_a_positive():
    """Label K-1 is a real class (only labels >= K are negatives everywhere)."""
    coarse = torch.tensor([[[[0.3]], [[-0.6]], [[1.2]]]])  # K = 3, one pixel
    labels = torch.tensor([[[2]]])
    want = (bce(0.3, 0) + bce(-0.6, 0) + bce(1.2, 1)) / 3
    assert prior_loss(coarse, labels).item() == pytest.approx(want, rel=1e-6)


def test_labels_nearest_downsampled_and_ignore_dropped():
    """4x4 labels onto a 2x2 coarse map: nearest takes rows/cols 0 and 2; the 255 pixel is dropped."""
    labels = torch.tensor([[[0, 9, 1, 9], [9, 9, 9, 9], [255, 9, 1, 9], [9, 9, 9, 9]]])
    coarse = torch.tensor(
        [
            [
                [[1.0, -0.5], [3.0, 0.8]],  # class 0
                [[-2.0, 0.7], [3.0, -1.1]],
            ]
        ]
    )  # class 1
    # kept pixels: (0,0) label 0, (0,1) label 1, (1,1) label 1; (1,0) is ignore
    want = (bce(1.0, 1) + bce(-2.0, 0) + bce(-0.5, 0) + bce(0.7, 1) + bce(0.8, 0) + bce(-1.1, 1)) / 6
    assert prior_loss(coarse, labels).item() == pytest.approx(want, rel=1e-6)
