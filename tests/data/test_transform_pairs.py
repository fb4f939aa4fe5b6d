"""Image/label pairs through the training transforms, without the real fixtures, against independent
references: exact rational arithmetic for the resize sizes (mmcv rounding: int(x + 0.5)), hand-built
nearest/flip/pad expectations, and an image whose pixels encode their label."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from dgss.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TrainPipeline,
    fit_size,
    pad_pair,
    resize_pair,
    short_edge_size,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def ref_short_edge(h: int, w: int, short: int, max_long: int) -> tuple[int, int]:
    """mmcv's rescale with (max_long, short): scale = min(max_long / long, short / short_side)."""
    scale = min(Fraction(max_long, max(h, w)), Fraction(short, min(h, w)))
    return round_half_up(h * scale), round_half_up(w * scale)


CASES = [
    (1052, 1914, 512, 2048),
    (720, 1280, 307, 2048),
    (375, 1242, 460, 2048),
    (1914, 1052, 665, 2048),
    (500, 3000, 1024, 2048),
    (1024, 2048, 358, 2048),
    (1080, 1920, 972, 2048),
]


@pytest.mark.parametrize("h,w,short,max_long", CASES)
def test_short_edge_size_rounds_like_mmcv(h, w, short, max_long):
    assert short_edge_size(h, w, short, max_long) == ref_short_edge(h, w, short, max_long)


def test_rounding_cases_are_not_trivial():
    # 1914 * 512 / 1052 = 931.53 -> 932 (truncating would give 931); 1280 * 307 / 720 = 545.78 -> 546
    assert short_edge_size(1052, 1914, 512, 2048) == (512, 932)
    assert short_edge_size(720, 1280, 307, 2048) == (307, 546)
    fracs = [(Fraction(w * short, min(h, w)) % 1) for h, w, short, _ in CASES]
    assert any(f >= Fraction(1, 2) for f in fracs)


@pytest.mark.parametrize(
    "h,w,box",
    [(1052, 1914, (1280, 720)), (1080, 1920, (960, 540)), (1500, 2000, (1024, 512)), (900, 1000, (2048, 512))],
)
def test_fit_size_matches_mmcv_keep_ratio(h, w, box):
    scale = min(Fraction(max(box), max(h, w)), Fraction(min(box), min(h, w)))
    assert fit_size(h, w, box) == (round_half_up(h * scale), round_half_up(w * scale))


def test_resize_pair_label_nearest_hand_built():
    label = torch.tensor([[0, 1, 2], [3, 4, 255]])
    image = torch.full((3, 2, 3), 7, dtype=torch.uint8)
    img, lab = resize_pair(image, label, (4, 6))
    want = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 255, 255], [3, 3, 4, 4, 255, 255]])
    assert torch.equal(lab, want)
    assert img.shape == (3, 4, 6) and bool((img == 7).all())  # bilinear keeps a constant image


def test_pad_pair_image_zero_label_ignore():
    image = torch.ones(3, 2, 3)
    label = torch.tensor([[0, 1, 2], [3, 4, 5]])
    img, lab = pad_pair(image, label, (4, 5), 255)
    assert img.shape == (3, 4, 5) and lab.shape == (4, 5)
    assert torch.equal(lab[:2, :3], label) and bool((lab[2:] == 255).all()) and bool((lab[:, 3:] == 255).all())
    assert bool((img[:, :2, :3] == 1).all()) and bool((img[:, 2:] == 0).all()) and bool((img[:, :, 3:] == 0).all())


def coded_pair(h: int = 8, w: int = 12):
    """A label with distinct values per column band and an image whose every channel is 10 * label."""
    label = (torch.arange(w) // 2).repeat(h, 1) % 6
    label[0, 0] = 255
    image = torch.where(label == 255, torch.tensor(250), label * 10).to(torch.uint8).expand(3, -1, -1).contiguous()
    return image, label


def decode(x: torch.Tensor) -> torch.Tensor:
    return (x[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]).round().long()


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_flip_moves_image_and_label_together(flip_prob):
    image, label = coded_pair()
    pipe = TrainPipeline(crop_size=(8, 12), scales=(8,), cat_max_ratio=1.0, flip_prob=flip_prob, photometric=False)
    x, y = pipe(image, label, gen(0))
    want = label.flip(-1) if flip_prob else label
    assert torch.equal(y, want)
    assert torch.equal(decode(x), torch.where(want == 255, torch.tensor(250), want * 10))


def test_upscaled_pair_label_is_nearest_and_padding_is_ignore():
    image, label = coded_pair()
    pipe = TrainPipeline(crop_size=(20, 30), scales=(16,), cat_max_ratio=1.0, flip_prob=0.0, photometric=False)
    x, y = pipe(image, label, gen(0))
    assert x.shape == (3, 20, 30) and y.shape == (20, 30)
    big = label.repeat_interleave(2, 0).repeat_interleave(2, 1)  # 16 x 24, nearest x2
    assert torch.equal(y[:16, :24], big)
    assert bool((y[16:] == 255).all()) and bool((y[:, 24:] == 255).all())
    assert bool((x[:, 16:] == 0).all()) and bool((x[:, :, 24:] == 0).all())


def test_crop_ratio_rule_is_strict_at_the_boundary():
    """mmseg RandomCrop keeps a crop only if max(count) / sum(count) < cat_max_ratio (strict)."""
    from dgss.data.transforms import cat_max_ratio_ok

    exactly = torch.tensor([[0, 0, 0, 1], [255, 255, 255, 255]])  # 3 / 4 = 0.75
    assert not cat_max_ratio_ok(exactly, 0.75, 255)
    assert cat_max_ratio_ok(torch.tensor([[0, 0, 1, 1, 2, 255]]), 0.75, 255)  # 2 / 5
    assert not cat_max_ratio_ok(torch.tensor([[4, 4, 4, 4, 4, 7]]), 0.75, 255)  # 5 / 6
