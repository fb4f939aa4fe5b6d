"""Every reader on a miniature tree in its exact official layout, built from the real fixtures."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from dgss.data import label_maps as lm
from dgss.data.datasets import SegDataset, list_samples, resolve_root
from dgss.data.prepare import prepare
from dgss.errors import DataError


def test_cityscapes(dh, tmp_path, fixtures):
    dh.build_cityscapes(tmp_path, fixtures, n_val=2, n_train=1)
    ds = SegDataset.from_root("cityscapes", tmp_path / "cityscapes", "val")
    assert len(ds) == 2 and ds.domains == ["cityscapes"]
    item = ds[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 128, 256)
    assert item["label"].dtype == torch.int64 and item["label"].shape == (128, 256)
    np.testing.assert_array_equal(item["image"].permute(1, 2, 0).numpy(), dh.cs_image(fixtures))
    np.testing.assert_array_equal(item["label"].numpy(), dh.cs_trainids(fixtures))
    assert item["domain"] == "cityscapes" and item["path"].endswith("_leftImg8bit.png")
    assert len(SegDataset.from_root("cityscapes", tmp_path, "train")) == 1  # data root works too


def test_gta5_ids_prepared_and_resized(dh, tmp_path, fixtures):
    gta = tmp_path / "gta"
    img, ids = dh.cs_image(fixtures), dh.cs_label_ids(fixtures)
    dh.save(img, gta / "images/00001.png")
    dh.save(ids, gta / "labels/00001.png")
    dh.save(img, gta / "images/00002.png")
    dh.save(np.asarray(Image.fromarray(ids).resize((128, 64), Image.NEAREST)), gta / "labels/00002.png")
    with pytest.raises(DataError, match="dgss data prepare gta5"):
        list_samples("gta5", gta, "all")
    rep = prepare("gta5", gta, progress=False)
    assert rep.written == 2 and any("00002.png 128x64 -> 256x128" in n for n in rep.notes)
    ds = SegDataset.from_root("gta5", tmp_path, "all")
    assert [s.image.name for s in ds.samples] == ["00001.png", "00002.png"]
    lab = ds[0]["label"].numpy()
    # hand-checked pixels: the fixture's label ids at these positions and their trainIds
    for (y, x), (i, t) in {
        (93, 167): (7, 0),
        (85, 244): (8, 1),
        (32, 83): (11, 2),
        (54, 201): (26, 13),
        (52, 152): (24, 11),
        (7, 139): (23, 10),
        (64, 0): (3, 255),
        (119, 186): (1, 255),
    }.items():
        assert ids[y, x] == i and lab[y, x] == t
    np.testing.assert_array_equal(lab, lm.CITYSCAPES_ID_TO_TRAINID[ids])
    assert ds[1]["label"].shape == (128, 256)


def test_bdd100k(tmp_path, fixtures):
    shutil.copytree(fixtures / "bdd100k", tmp_path / "bdd100k")
    ds = SegDataset.from_root("bdd100k", tmp_path / "bdd100k", "val")
    assert [s.image.stem for s in ds.samples] == ["7d06fefd-f7be05a6", "7d128593-0ccfea4c", "7d15b18b-1e0d6e3f"]
    item = ds[1]
    assert item["image"].shape == (3, 8, 8) and item["domain"] == "bdd100k"  # grayscale -> RGB
    assert set(item["label"].unique().tolist()) <= {2, 8}


def _mapillary_tree(dh, tmp_path, fixtures):
    mp = tmp_path / "mapillary"
    cfg = {
        "labels": [{"readable": n, "name": n.lower(), "color": [i, i, i]} for i, (n, _) in enumerate(dh.MAPILLARY_V12)]
    }
    mp.mkdir()
    (mp / "config_v1.2.json").write_text(json.dumps(cfg))
    name = "__CRyFzoDOXn6unQ6a3DnQ"
    for split in ("training", "validation"):
        (mp / split / "images").mkdir(parents=True)
        shutil.copy(fixtures / f"mapillary/images/{name}.jpg", mp / split / "images")
        (mp / split / "v1.2/labels").mkdir(parents=True)
        shutil.copy(fixtures / f"mapillary/v1.2/{name}.png", mp / split / "v1.2/labels")
    return mp, name


def test_mapillary_prepared_half_resolution_val(dh, tmp_path, fixtures):
    mp, name = _mapillary_tree(dh, tmp_path, fixtures)
    with pytest.raises(DataError, match="prepare mapillary"):
        list_samples("mapillary", mp, "val")
    rep = prepare("mapillary", mp, progress=False)
    assert rep.written == 4  # 2 trainId labels + half val image + half val label
    raw = np.array(Image.open(fixtures / f"mapillary/v1.2/{name}.png"))
    full = lm.mapillary_to_trainids(raw, [{"readable": n} for n, _ in dh.MAPILLARY_V12])
    train = SegDataset.from_root("mapillary", mp, "train")
    np.testing.assert_array_equal(train[0]["label"].numpy(), full)
    val = SegDataset.from_root("mapillary", mp, "val")
    item = val[0]
    assert item["image"].shape == (3, 50, 50) and item["label"].shape == (50, 50)
    half = np.asarray(Image.fromarray(full).resize((50, 50), Image.NEAREST))
    np.testing.assert_array_equal(item["label"].numpy(), half)
    assert set(np.unique(half)) <= {2, 5}


def test_acdc_conditions_and_domains(dh, tmp_path, fixtures):
    acdc = tmp_path / "acdc"
    img, lab = dh.cs_image(fixtures), dh.cs_trainids(fixtures)
    for cond in ("fog", "night", "rain", "snow"):
        for split in ("train", "val"):
            stem = f"GOPR0475_frame_00004{len(cond)}"
            dh.save(img, acdc / f"rgb_anon/{cond}/{split}/GOPR0475/{stem}_rgb_anon.png")
            dh.save(lab, acdc / f"gt/{cond}/{split}/GOPR0475/{stem}_gt_labelTrainIds.png")
        dh.save(img, acdc / f"rgb_anon/{cond}/train_ref/GOPR0475/ref_rgb_anon.png")  # reference images: not samples
    ds = SegDataset.from_root("acdc", acdc, "val")
    assert ds.domains == ["acdc/fog", "acdc/night", "acdc/rain", "acdc/snow"] and len(ds) == 4
    np.testing.assert_array_equal(ds[1]["label"].numpy(), lab)
    night = SegDataset.from_root("acdc", acdc, "val", conditions=["night"])
    assert [s.domain for s in night.samples] == ["acdc/night"]
    with pytest.raises(DataError, match="unknown condition"):
        list_samples("acdc", acdc, "val", conditions=["haze"])


def _deliver_label(lab_trainids: np.ndarray) -> np.ndarray:
    raw = np.where(lab_trainids == 255, 0, lab_trainids.astype(np.int32) % 25 + 1).astype(np.uint8)
    return np.dstack([raw, np.full_like(raw, 7), np.full_like(raw, 200)])  # channels 1, 2: other data


def test_deliver_on_the_fly_and_prepared(dh, tmp_path, fixtures):
    dl = tmp_path / "DELIVER"
    img, lab = dh.cs_image(fixtures), dh.cs_trainids(fixtures)
    raw = _deliver_label(lab)
    for cond in ("sun", "night"):
        dh.save(img, dl / f"img/{cond}/test/MAP_10_point102/045050_rgb_front.png")
        dh.save(raw, dl / f"semantic/{cond}/test/MAP_10_point102/045050_semantic_front.png")
    with pytest.raises(DataError, match="img/cloud/test does not exist"):  # all 5 conditions by default
        SegDataset.from_root("deliver", dl, "test")
    ds = SegDataset.from_root("deliver", dl, "test", conditions=["sun", "night"])
    assert ds.domains == ["deliver/sun", "deliver/night"]
    assert ds.info.num_classes == 25
    want = np.where(lab == 255, 255, lab.astype(np.int32) % 25)
    got = ds[0]["label"].numpy()
    np.testing.assert_array_equal(got, want)
    assert prepare("deliver", dl, progress=False).written == 2
    ds2 = SegDataset.from_root("deliver", dl, "test", conditions=["sun", "night"])
    assert all(s.label.name.endswith("_semantic_front_labelTrainIds.png") for s in ds2.samples)
    np.testing.assert_array_equal(ds2[0]["label"].numpy(), got)


def test_ade150(dh, tmp_path, fixtures):
    ade = tmp_path / "ADEChallengeData2016"
    dh.save(dh.cs_image(fixtures), ade / "images/validation/ADE_val_00000001.jpg")
    lab = np.zeros((128, 256), np.uint8)
    lab[:, 100:] = 1
    lab[:, 200:] = 150
    dh.save(lab, ade / "annotations/validation/ADE_val_00000001.png")
    ds = SegDataset.from_root("ade150", tmp_path, "val")
    assert ds.info.num_classes == 150 and ds.info.ignore_index == 255
    out = ds[0]["label"]
    assert out[0, 0] == 255 and out[0, 150] == 0 and out[0, 250] == 149


def test_ade847_label_above_255_survives(dh, tmp_path, fixtures):
    ade = tmp_path / "ADE20K_2021_17_01"
    dh.save(dh.cs_image(fixtures), ade / "images_detectron2/validation/ADE_val_00000001.jpg")
    lab = np.full((128, 256), 65535, np.uint16)
    lab[:, :80] = 300
    lab[:, 80:160] = 846
    lab[:, 160:200] = 256
    dh.save(lab, ade / "annotations_detectron2/validation/ADE_val_00000001.tif")
    ds = SegDataset.from_root("ade847", tmp_path, "val")
    assert ds.info.ignore_index == 65535 and ds.info.num_classes == 847
    out = ds[0]["label"]
    assert out.dtype == torch.int64
    assert out[0, 0] == 300 and out[0, 100] == 846 and out[0, 170] == 256 and out[0, 250] == 65535


def test_ade847_prepare_from_full_release(dh, tmp_path, fixtures):
    ade = tmp_path / "ADE20K_2021_17_01"
    folder = "ADE20K_2021_17_01/images/ADE/validation/urban/street"
    img = np.asarray(Image.fromarray(dh.cs_image(fixtures)).resize((1200, 600)))  # short side 600 > 512: resized
    seg = np.zeros((600, 1200, 3), np.uint8)
    for x0, full_id in ((0, 1857), (400, 3148), (800, 2978)):  # pier (255), adding machine (846), wall (0)
        seg[:, x0 : x0 + 400, 0] = (full_id // 256) * 10
        seg[:, x0 : x0 + 400, 1] = full_id % 256
    seg[:300, 1100:, :2] = 0  # id 0: unlabelled
    dh.save(img, tmp_path / folder / "ADE_val_00000001.jpg")
    dh.save(seg, tmp_path / folder / "ADE_val_00000001_seg.png")
    ade.mkdir(exist_ok=True)
    with open(ade / "index_ade20k.pkl", "wb") as f:
        pickle.dump({"folder": [folder], "filename": ["ADE_val_00000001.jpg"]}, f)
    rep = prepare("ade847", ade, progress=False)
    assert rep.written == 2
    ds = SegDataset.from_root("ade847", ade, "val")
    item = ds[0]
    assert item["image"].shape == (3, 512, 1024) and item["label"].shape == (512, 1024)
    out = item["label"]
    assert out[10, 100] == 255 and out[10, 500] == 846 and out[400, 900] == 0 and out[10, 1020] == 65535
    assert prepare("ade847", ade, progress=False).written == 0  # idempotent


def test_reader_errors(dh, tmp_path, fixtures):
    with pytest.raises(DataError, match="does not exist"):
        list_samples("cityscapes", tmp_path / "nope", "val")
    with pytest.raises(DataError, match="unknown dataset 'kitti'; known: cityscapes, gta5"):
        list_samples("kitti", tmp_path, "val")
    dh.build_cityscapes(tmp_path, fixtures, n_val=1, n_train=0)
    with pytest.raises(DataError, match="unknown split 'test'"):
        list_samples("cityscapes", tmp_path, "test")
    with pytest.raises(DataError, match="image directory .*leftImg8bit/train does not exist"):
        list_samples("cityscapes", tmp_path, "train")
    assert resolve_root("cityscapes", tmp_path) == tmp_path / "cityscapes"
    # wrong label ids and corrupt images give errors naming the file
    lab = next((tmp_path / "cityscapes/gtFine/val").rglob("*_labelTrainIds.png"))
    bad = dh.cs_trainids(fixtures).copy()
    bad[0, 0] = 77
    dh.save(bad, lab)
    ds = SegDataset.from_root("cityscapes", tmp_path, "val")
    with pytest.raises(DataError, match=r"values \[77\] outside the 19 classes"):
        ds[0]
    img = ds.samples[0].image
    img.write_bytes(img.read_bytes()[:200])
    with pytest.raises(DataError, match="cannot decode image"):
        ds[0]
