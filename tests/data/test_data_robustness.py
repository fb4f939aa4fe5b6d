"""Robustness suite: fixed, seeded severities on a real image; evaluation per condition x severity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dgss.data.datasets import SegDataset
from dgss.data.robustness import CONDITIONS, SEVERITIES, SEVERITY_PARAMS, Corruption, corrupt
from dgss.engine.robustness_eval import evaluate_robustness


@pytest.fixture(scope="module")
def street_full(fixtures) -> np.ndarray:
    """The real 1024x512 demo street scene."""
    return np.array(Image.open(fixtures / "demo/demo.png").convert("RGB"))


@pytest.fixture(scope="module")
def street(street_full) -> np.ndarray:
    """The demo scene downscaled to 256x128 to keep the suite fast."""
    return np.array(Image.fromarray(street_full).resize((256, 128), Image.BILINEAR))


def test_tables_are_complete():
    assert set(SEVERITY_PARAMS) == set(CONDITIONS) and SEVERITIES == (1, 2, 3, 4, 5)
    assert all(len(v) == 5 for v in SEVERITY_PARAMS.values())
    with pytest.raises(KeyError, match="unknown condition 'hail'"):
        corrupt(np.zeros((8, 8, 3), np.uint8), "hail", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(np.zeros((8, 8, 3), np.uint8), "fog", 6)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_condition_seeded_and_graded(condition, street, street_full):
    if condition in ("blur", "sun_flare"):  # pixel sizes scale with H/1024: too subtle at 128 px
        street = street_full
    diffs = []
    for sev in SEVERITIES:
        out = corrupt(street, condition, sev, seed=11)
        assert out.dtype == np.uint8 and out.shape == street.shape
        np.testing.assert_array_equal(out, corrupt(street, condition, sev, seed=11))  # same seed, same image
        diffs.append(float(np.abs(out.astype(np.int16) - street).mean()))
    assert diffs[0] > 0.1  # severity 1 changes the image
    assert diffs == sorted(diffs) or condition == "rain"  # graded (rain: widths round alike at 128 px)
    assert diffs[-1] > 2 * diffs[0]


def test_corruption_transform_uses_generator(street):
    img = torch.from_numpy(street).permute(2, 0, 1).contiguous()
    lab = torch.zeros(128, 256, dtype=torch.long)
    t = Corruption("rain", 3)
    a, la = t(img, lab, torch.Generator().manual_seed(1))
    b, _ = t(img, lab, torch.Generator().manual_seed(1))
    c, _ = t(img, lab, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and la is lab


def test_evaluate_robustness(dh, tmp_path, fixtures):
    dh.build_cityscapes(tmp_path, fixtures, n_val=1, n_train=0)
    ds = SegDataset.from_root("cityscapes", tmp_path, "val")

    def brightness_classifier(images):  # class by mean brightness: changes under corruptions
        b, _, h, w = images.shape
        out = torch.zeros(b, 19, h // 8, w // 8)
        level = F_avg(images)
        out[:, 0] = level
        out[:, 2] = -level
        return out

    rep = evaluate_robustness(brightness_classifier, ds, conditions=("night", "noise"), severities=(1, 5))
    assert set(rep.miou) == {("night", 1), ("night", 5), ("noise", 1), ("noise", 5)}
    assert rep.clean is not None and all(0 <= v <= 1 for v in rep.miou.values())
    again = evaluate_robustness(brightness_classifier, ds, conditions=("noise",), severities=(5,), clean=False)
    assert again.miou[("noise", 5)] == rep.miou[("noise", 5)]  # seeded: same number every run
    md = rep.to_markdown().splitlines()
    assert md[2] == "| condition | S1 | S5 | mean |" and md[4].startswith("| night |")
    assert rep.to_dict()["miou"].keys() == {"night/1", "night/5", "noise/1", "noise/5"}


def F_avg(images: torch.Tensor) -> torch.Tensor:
    """Per-pixel brightness (normalised space) pooled 8x8."""
    return torch.nn.functional.avg_pool2d(images.mean(1, keepdim=True), 8)[:, 0]
