"""Sliding-window inference: hand-listed window grids, averaging and placement with stub window
predictions, and bottom/right padding of small windows (data.md §6)."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from dgss.models.segmentor import Segmentor, window_boxes
from dgss.testing import tiny_segmentor


@pytest.mark.parametrize(
    "H,W,window,stride,want",
    [
        # 6x9, window 4, stride 3: the last row/column start at 3 / 6 and are shifted back flush to 2 / 5
        (6, 9, 4, 3, [(0, 4, 0, 4), (0, 4, 3, 7), (0, 4, 5, 9), (2, 6, 0, 4), (2, 6, 3, 7), (2, 6, 5, 9)]),
        # image lower than the window: one row covering it all; columns as usual
        (3, 10, 4, 3, [(0, 3, 0, 4), (0, 3, 3, 7), (0, 3, 6, 10)]),
        # (h, w) window and stride
        (3, 6, (2, 4), (1, 3), [(0, 2, 0, 4), (0, 2, 2, 6), (1, 3, 0, 4), (1, 3, 2, 6)]),
        # exact fit: one window
        (4, 4, 4, 3, [(0, 4, 0, 4)]),
    ],
)
def test_window_boxes_hand_listed(H, W, window, stride, want):
    assert window_boxes(H, W, window, stride) == want


def stub(num_classes: int, predict):
    """The attributes slide_inference reads, with a stub window predictor."""
    return SimpleNamespace(
        cfg=SimpleNamespace(crop_size=4, slide_stride=3, window_batch=2),
        num_classes=num_classes,
        predict_windows=predict,
    )


def test_overlapping_windows_are_averaged():
    """Every window predicts 1 everywhere: the average is 1 at every pixel, however many windows overlap."""
    m = stub(3, lambda inp, pad_to=None: torch.ones(inp.shape[0], 3, *inp.shape[-2:]))
    out = Segmentor.slide_inference(m, torch.randn(2, 3, 6, 9), window=4, stride=3)
    assert out.shape == (2, 3, 6, 9)
    torch.testing.assert_close(out, torch.ones(2, 3, 6, 9), rtol=0, atol=0)


def test_window_scores_land_where_their_window_was_cut():
    """Each window 'predicts' its own pixels (channel c = input channel c): the result is the image."""
    m = stub(3, lambda inp, pad_to=None: inp.clone())
    x = torch.randn(2, 3, 7, 10)
    torch.testing.assert_close(Segmentor.slide_inference(m, x, window=4, stride=3), x, rtol=0, atol=1e-6)


def test_per_window_offsets_are_averaged_with_the_right_counts():
    """Window k predicts the constant k: pixel value = mean of the ids of the windows covering it."""
    boxes = window_boxes(6, 9, 4, 3)
    seen = []

    def predict(inp, pad_to=None):
        out = []
        for _ in range(inp.shape[0]):
            out.append(torch.full((1, *inp.shape[-2:]), float(len(seen))))
            seen.append(1)
        return torch.stack(out)

    out = Segmentor.slide_inference(stub(1, predict), torch.zeros(1, 3, 6, 9), window=4, stride=3, batch=1)
    want = torch.zeros(6, 9)
    cnt = torch.zeros(6, 9)
    for k, (y1, y2, x1, x2) in enumerate(boxes):  # windows of one size run in box order
        want[y1:y2, x1:x2] += k
        cnt[y1:y2, x1:x2] += 1
    torch.testing.assert_close(out[0, 0], want / cnt)
    assert float(cnt.min()) >= 1 and float(cnt.max()) == 4


def test_small_image_padded_bottom_right_then_cropped():
    """A 40x56 image with a 64 window: the model sees the image padded with 0 at the bottom/right."""
    torch.manual_seed(0)
    model = tiny_segmentor("rein").eval()
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        full = model(F.pad(x, (0, 8, 0, 24)))
        ref = model.head.semantic_inference(full["pred_logits"], full["pred_masks"], (64, 64))[..., :40, :56]
        out = model.slide_inference(x, window=64, stride=42)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
