"""Pyramid, sliding-window inference against an independent per-window loop, baselines."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from dgss.models.segmentor import window_boxes
from dgss.testing import tiny_segmentor


def test_pyramid_strides():
    model = tiny_segmentor("rein")
    feats = model.extract_features(torch.randn(1, 3, 64, 128))
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 32), (8, 16), (4, 8), (2, 4)]


def test_window_grid_of_cityscapes():
    boxes = window_boxes(1024, 2048, 512, 341)
    assert len(boxes) == 3 * 6
    assert boxes[-1] == (512, 1024, 1536, 2048)
    assert all(b[1] - b[0] == 512 and b[3] - b[2] == 512 for b in boxes)


def naive_slide(model, x, window, stride):
    """Independent reference: one window at a time, mmseg's slide formula."""
    B, _, H, W = x.shape
    K = model.num_classes
    acc = torch.zeros(B, K, H, W)
    cnt = torch.zeros(1, 1, H, W)
    h_grids = max(H - window + stride - 1, 0) // stride + 1
    w_grids = max(W - window + stride - 1, 0) // stride + 1
    for hi in range(h_grids):
        for wi in range(w_grids):
            y1, x1 = hi * stride, wi * stride
            y2, x2 = min(y1 + window, H), min(x1 + window, W)
            y1, x1 = max(y2 - window, 0), max(x2 - window, 0)
            crop = x[:, :, y1:y2, x1:x2]
            with torch.no_grad():
                out = model(crop)
                seg = torch.einsum(
                    "bqc,bqhw->bchw",
                    out["pred_logits"].softmax(-1)[..., :-1],
                    F.interpolate(
                        out["pred_masks"], size=crop.shape[-2:], mode="bilinear", align_corners=False
                    ).sigmoid(),
                )
            acc[:, :, y1:y2, x1:x2] += seg
            cnt[..., y1:y2, x1:x2] += 1
    return acc / cnt


def test_slide_equals_naive_loop_on_uneven_sizes():
    torch.manual_seed(0)
    model = tiny_segmentor("rein").eval()
    for H, W in [(96, 160), (112, 80)]:
        x = torch.randn(2, 3, H, W)
        ours = model.slide_inference(x, window=64, stride=42, batch=3)
        ref = naive_slide(model, x, 64, 42)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_slide_on_1024x2048_equals_single_pass_when_window_covers_image():
    torch.manual_seed(0)
    model = tiny_segmentor("rein").eval()
    x = torch.randn(1, 3, 1024, 2048)
    ours = model.slide_inference(x, window=(1024, 2048), stride=(683, 1365))
    with torch.no_grad():
        single = model.predict_windows(x)
    torch.testing.assert_close(ours, single, rtol=0, atol=0)
    # a square window larger than the image side: the image is padded up to the window (data.md §6)
    small = x[..., :48, :80]
    with torch.no_grad():
        padded = torch.nn.functional.pad(small, (0, 0, 0, 80 - 48))
        ref = model.predict_windows(padded)[..., :48, :]
    torch.testing.assert_close(model.slide_inference(small, window=80, stride=53), ref, rtol=0, atol=0)


def test_windows_not_divisible_by_patch_are_padded():
    model = tiny_segmentor("rein").eval()
    with torch.no_grad():
        out = model.slide_inference(torch.randn(1, 3, 50, 70), window=64, stride=42)
    assert out.shape == (1, 19, 50, 70)


def test_baselines_freeze_and_full():
    frz = tiny_segmentor("freeze")
    assert frz.adapter is None and not any(p.requires_grad for p in frz.encoder.parameters())
    assert hasattr(frz.head, "query_embed") and hasattr(frz.head, "query_feat")
    full = tiny_segmentor("full")
    assert all(p.requires_grad for p in full.encoder.parameters())
    full.train()
    assert full.encoder.training
    assert any(k.startswith("encoder.") for k in full.trainable_state_dict())
    assert not any(k.startswith("encoder.") for k in frz.trainable_state_dict())


def test_palette_needs_one_colour_per_class_and_survives_a_checkpoint_dict():
    from dgss.models.segmentor import SegmentorConfig
    from dgss.testing import tiny_segmentor_config

    cfg = tiny_segmentor_config("rein", num_classes=2)
    cfg = dataclasses.replace(cfg, class_names=("road", "car"), palette=((128, 64, 128), (0, 0, 142)))
    back = SegmentorConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))  # lists in, tuples back
    assert back.palette == ((128, 64, 128), (0, 0, 142))
    with pytest.raises(ValueError, match="one \\[r, g, b\\] .* per class name"):
        dataclasses.replace(cfg, palette=((1, 2, 3),))
    with pytest.raises(ValueError, match="one \\[r, g, b\\]"):
        dataclasses.replace(cfg, palette=((1, 2, 300), (0, 0, 0)))
