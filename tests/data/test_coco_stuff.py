"""COCO-Stuff 164k: the reader on tiny trees in the official and the detectron2 layouts, the 182 -> 171 id map,
the 171-name vocabulary and the reference (CAT-Seg) recipe's pipeline and config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dgss.data.check import check_dataset
from dgss.data.datasets import SegDataset, list_samples
from dgss.data.label_maps import COCO_STUFF_UNUSED_IDS, coco_stuff_to_trainids
from dgss.data.prepare import prepare
from dgss.data.transforms import EVAL_RESIZE, TrainPipeline, short_edge_size
from dgss.data.vocab import builtin_vocabulary, load_vocabulary
from dgss.errors import DataError

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "dgss" / "configs" / "catseg"

# raw stuffthingmaps id -> class, written by hand from the COCO category list (1-based COCO id = raw id + 1):
# ids 11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90 are the never-annotated COCO thing ids -> ignore
RAW_TO_CLASS = {
    0: 0,  # person
    10: 10,  # fire hydrant
    11: 255,
    12: 11,  # stop sign
    24: 23,  # giraffe
    25: 255,
    26: 24,  # backpack
    27: 25,  # umbrella
    28: 255,
    29: 255,
    30: 26,  # handbag
    44: 255,
    45: 40,  # wine glass
    65: 255,
    66: 60,  # dining table
    67: 255,
    68: 255,
    69: 61,  # toilet
    70: 255,
    71: 62,  # tv
    82: 255,
    83: 73,  # book
    89: 79,  # toothbrush
    90: 255,
    91: 80,  # banner (first stuff class)
    92: 81,  # blanket
    148: 137,  # road
    181: 170,  # wood
    255: 255,  # unlabeled
}
H, W = 6, len(RAW_TO_CLASS)


def _image(path: Path, h: int = H, w: int = W) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, format="JPEG")


def _label(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode="L").save(path)


def _raw_map() -> np.ndarray:
    return np.tile(np.array(list(RAW_TO_CLASS), dtype=np.uint8), (H, 1))


def _expected() -> np.ndarray:
    return np.tile(np.array(list(RAW_TO_CLASS.values()), dtype=np.int64), (H, 1))


def _official_tree(root: Path, label_dir: str = "annotations/stuffthingmaps_trainval2017") -> Path:
    coco = root / "coco-stuff"
    for split, stems in (("train2017", ["000000000009"]), ("val2017", ["000000000139", "000000000285"])):
        for stem in stems:
            _image(coco / f"images/{split}/{stem}.jpg")
            _label(coco / f"{label_dir}/{split}/{stem}.png", _raw_map())
    return coco


@pytest.mark.parametrize("label_dir", ["annotations/stuffthingmaps_trainval2017", "annotations"])
def test_official_layout_maps_182_ids_to_171_classes(tmp_path, label_dir):
    _official_tree(tmp_path, label_dir)
    ds = SegDataset.from_root("coco_stuff", tmp_path, "val")  # the data root: coco-stuff/ is found under it
    assert len(ds) == 2 and ds.domains == ["coco_stuff"]
    assert ds.info.num_classes == 171 and ds.info.ignore_index == 255
    assert [s.image.name for s in ds.samples] == ["000000000139.jpg", "000000000285.jpg"]
    item = ds[0]
    assert item["image"].shape == (3, H, W) and item["label"].dtype == torch.int64
    np.testing.assert_array_equal(item["label"].numpy(), _expected())
    assert len(SegDataset.from_root("coco_stuff", tmp_path / "coco-stuff", "train")) == 1


def test_detectron2_layout_reads_prepared_labels_as_stored(tmp_path):
    coco = tmp_path / "coco"
    prepared = np.array([[0, 80, 170, 255, 11, 62]], dtype=np.uint8).repeat(4, 0)
    _image(coco / "val2017/000000000139.jpg", 4, 6)
    _label(coco / "stuffthingmaps_detectron2/val2017/000000000139.png", prepared)
    _image(coco / "train2017/000000000009.jpg", 4, 6)
    _label(coco / "stuffthingmaps_detectron2/train2017/000000000009.png", prepared)
    # the raw maps next to them (same content in raw ids) are not read: prepared labels come first
    _label(coco / "stuffthingmaps/val2017/000000000139.png", np.full((4, 6), 200, np.uint8))
    ds = SegDataset.from_root("coco_stuff", coco, "val")
    assert ds.samples[0].label.parent == coco / "stuffthingmaps_detectron2/val2017"
    np.testing.assert_array_equal(ds[0]["label"].numpy(), prepared.astype(np.int64))
    assert len(SegDataset.from_root("coco_stuff", coco, "train")) == 1


def test_missing_folders_and_bad_values_fail_in_one_line(tmp_path):
    coco = tmp_path / "coco-stuff"
    coco.mkdir()
    with pytest.raises(DataError) as e:
        list_samples("coco_stuff", coco, "val")
    msg = str(e.value)
    assert "\n" not in msg and f"{coco}/images/val2017" in msg and f"{coco}/val2017 exists" in msg
    _image(coco / "images/val2017/000000000139.jpg")
    with pytest.raises(DataError) as e:
        list_samples("coco_stuff", coco, "val")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("coco_stuff: no label folder for val2017")
    assert "stuffthingmaps_detectron2/val2017" in msg and "annotations/stuffthingmaps_trainval2017/val2017" in msg
    bad = _raw_map()
    bad[0, :2] = (182, 254)  # not stuffthingmaps ids
    _label(coco / "annotations/val2017/000000000139.png", bad)
    with pytest.raises(DataError, match=r"outside 0\.\.181/255: \[182, 254\]"):
        SegDataset.from_root("coco_stuff", coco, "val")[0]
    with pytest.raises(DataError, match="unknown split 'test'"):
        list_samples("coco_stuff", coco, "test")


def test_check_and_prepare(tmp_path):
    coco = _official_tree(tmp_path, "annotations")
    report = check_dataset("coco_stuff", coco, expected={"train": 1, "val": 2}, workers=1)
    assert report.counts == {"train": 1, "val": 2} and report.problems == []
    assert "nothing to prepare" in prepare("coco_stuff", coco, progress=False).notes[0]


def test_id_map_against_the_coco_category_list():
    raw = np.arange(256, dtype=np.uint8)
    raw = raw[(raw < 182) | (raw == 255)]
    out = coco_stuff_to_trainids(raw[None])[0]
    # torchvision's COCO detection categories (index = 1-based COCO id; "N/A" = never annotated, ids 1..90)
    from torchvision.models._meta import _COCO_CATEGORIES

    na = [i - 1 for i, c in enumerate(_COCO_CATEGORIES) if c == "N/A"]
    assert tuple(na) + (90,) == COCO_STUFF_UNUSED_IDS  # COCO id 91 is the 11th unused thing id
    assert sorted(set(out.tolist()) - {255}) == list(range(171))
    assert [int(v) for v, o in zip(raw, out, strict=True) if o == 255] == [*COCO_STUFF_UNUSED_IDS, 255]
    assert np.all(np.diff(out[out != 255].astype(int)) == 1)  # id order kept


def test_vocabulary_171_names_in_id_order():
    vocab = builtin_vocabulary("coco_stuff")
    assert vocab.num_classes == 171 and load_vocabulary("coco_stuff") == vocab
    from torchvision.models._meta import _COCO_CATEGORIES

    things = [c for c in _COCO_CATEGORIES if c not in ("N/A", "__background__")]
    assert list(vocab.names[:80]) == things  # COCO's 80 thing names in id order
    stuff = vocab.names[80:]
    assert len(stuff) == 91  # COCO-Stuff's 91 stuff classes (ids 92..182)
    assert (stuff[0], stuff[4], stuff[57], stuff[65], stuff[90]) == (
        "banner",
        "building-other",
        "road",
        "sky-other",
        "wood",
    )
    assert all(", " not in n for n in vocab.names)  # no synonym lists: one prompt per class


def test_reference_pipeline_sizes_hand_computed():
    # detectron2 ResizeShortestEdge(384, max 1333): scale short side to 384, then cap the long side at 1333,
    # round with int(x + 0.5)
    assert short_edge_size(480, 640, 384, 1333) == (384, 512)
    assert short_edge_size(640, 427, 384, 1333) == (576, 384)  # 640 * 384 / 427 = 575.6
    assert short_edge_size(100, 1000, 384, 1333) == (133, 1333)  # 3840 > 1333: 384 * 1333 / 3840 = 133.3
    assert short_edge_size(300, 2000, 384, 1333) == (200, 1333)  # 384 * 1333 / 2560 = 199.95
    # test size of CAT-Seg (short side 640, long side <= 2560)
    assert EVAL_RESIZE["coco_stuff"].size(480, 640) == (640, 853)  # 640 * 640 / 480 = 853.3
    assert EVAL_RESIZE["coco_stuff"].size(100, 1000) == (256, 2560)


def test_packaged_recipe_configs(tmp_path):
    from dgss.config import load_config

    for size in ("l", "b"):
        cfg = load_config(CONFIGS / f"coco-stuff_catseg_clip-{size}.yaml")
        assert cfg.model.preset == f"catseg-clip-{size}" and cfg.model.vocab == "coco_stuff"
        assert cfg.model.num_classes == 171
        t = cfg.data.train
        assert (t.dataset, t.split, t.batch_size, t.crop_size, t.scales, t.max_long) == (
            "coco_stuff",
            "train",
            4,
            384,
            [384],
            1333,
        )
        assert (t.cat_max_ratio, t.flip_prob, t.photometric) == (1.0, 0.5, True)
        o = cfg.optim
        assert (o.lr, o.weight_decay, tuple(o.betas), o.eps) == (2e-4, 1e-4, (0.9, 0.999), 1e-8)
        assert (o.param_rules["clip_"].lr_mult, o.param_rules["norm"].decay_mult) == (0.01, 0.0)
        assert (cfg.schedule.type, cfg.schedule.warmup_iters, cfg.schedule.eta_min) == ("cosine", 0, 0.0)
        assert (cfg.train.max_iters, cfg.train.grad_clip, cfg.train.amp) == (80000, 0.01, "none")
        assert [(v.dataset, v.vocab) for v in cfg.data.val] == [
            ("coco_stuff", "coco_stuff"),
            ("ade150", "ade150"),
            ("ade847", "ade847"),
        ]

    # the packaged pipeline on a COCO-sized image of the tiny tree: 384 crops, classes 0..170 / 255
    _official_tree(tmp_path, "annotations")
    t = load_config(CONFIGS / "coco-stuff_catseg_clip-l.yaml").data.train
    pipe = TrainPipeline(
        crop_size=(t.crop_size, t.crop_size), scales=tuple(t.scales), max_long=t.max_long, cat_max_ratio=1.0
    )
    ds = SegDataset.from_root("coco_stuff", tmp_path, "train", transform=pipe, seed=0)
    item = ds[0]  # 6 x 29 image: short side -> 384 gives 384 x 1856, long side capped at 1333 -> 276 x 1333
    assert item["image"].shape == (3, 384, 384) and item["label"].shape == (384, 384)
    assert set(item["label"].unique().tolist()) <= set(range(171)) | {255}
    assert (item["label"][276:] == 255).all()  # padded rows
