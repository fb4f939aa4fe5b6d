"""Label tables and conversions, with hand-checked values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dgss.data import label_maps as lm

# data.md §1, typed by hand on purpose (the code takes it from cityscapesscripts)
SPEC_TABLE = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}


def test_cityscapes_table_matches_spec():
    assert lm.CITYSCAPES_CLASSES == (
        "road",
        "sidewalk",
        "building",
        "wall",
        "fence",
        "pole",
        "traffic light",
        "traffic sign",
        "vegetation",
        "terrain",
        "sky",
        "person",
        "rider",
        "car",
        "truck",
        "bus",
        "train",
        "motorcycle",
        "bicycle",
    )
    lut = lm.CITYSCAPES_ID_TO_TRAINID
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    for i in range(256):
        assert lut[i] == SPEC_TABLE.get(i, 255), i


def test_gta5_ids_hand_checked():
    ids = np.array([[7, 8, 26, 33], [0, 34, 14, 16], [1, 24, 25, 255]], dtype=np.uint8)
    want = np.array([[0, 1, 13, 18], [255, 255, 255, 255], [255, 11, 12, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(lm.cityscapes_ids_to_trainids(ids), want)


def test_every_mapillary_v12_name(dh):
    assert len(dh.MAPILLARY_V12) == 66
    for name, want in dh.MAPILLARY_V12:
        assert lm.mapillary_name_to_trainid(name) == want, name
    lut = lm.mapillary_lut([{"readable": n} for n, _ in dh.MAPILLARY_V12])
    assert lut[:66].tolist() == [w for _, w in dh.MAPILLARY_V12]
    assert (lut[66:] == 255).all()


def test_mapillary_real_fixture_label(dh, fixtures):
    raw = np.array(Image.open(fixtures / "mapillary/v1.2/__CRyFzoDOXn6unQ6a3DnQ.png"))
    assert set(np.unique(raw)) == {17, 44, 45}  # Building, Street Light, Pole
    out = lm.mapillary_to_trainids(raw, [{"readable": n} for n, _ in dh.MAPILLARY_V12])
    np.testing.assert_array_equal(out[raw == 17], 2)
    np.testing.assert_array_equal(out[(raw == 44) | (raw == 45)], 5)


def test_mapillary_colour_labels_and_bad_index():
    labels = [{"readable": "Road", "color": [128, 64, 128]}, {"readable": "Sky", "color": [70, 130, 180]}]
    rgb = np.array([[[128, 64, 128], [70, 130, 180]]], dtype=np.uint8)
    np.testing.assert_array_equal(lm.mapillary_to_trainids(rgb, labels), [[0, 10]])
    with pytest.raises(lm.LabelValueError, match="beyond the 2-entry config"):
        lm.mapillary_to_trainids(np.array([[0, 5]], dtype=np.uint8), labels)


def test_deliver_conversion():
    assert len(lm.DELIVER_CLASSES) == 25
    lab = np.zeros((2, 3, 3), dtype=np.uint8)
    lab[..., 0] = [[0, 1, 25], [255, 7, 13]]
    lab[..., 1:] = 99  # other channels are ignored
    np.testing.assert_array_equal(lm.deliver_to_trainids(lab), [[255, 0, 24], [255, 6, 12]])
    with pytest.raises(lm.LabelValueError, match=r"\[26\]"):
        lm.deliver_to_trainids(np.array([[26, 1]], dtype=np.uint8))


def test_ade150_conversion():
    np.testing.assert_array_equal(lm.ade150_to_trainids(np.array([[0, 1, 150]], dtype=np.uint8)), [[255, 0, 149]])
    with pytest.raises(lm.LabelValueError):
        lm.ade150_to_trainids(np.array([[151]], dtype=np.uint8))


def test_ade847_16bit_label_survives(tmp_path):
    vals = np.array([[0, 255, 256, 300], [846, 65535, 511, 1]], dtype=np.uint16)
    p = tmp_path / "x.tif"
    Image.fromarray(vals).save(p)
    out = lm.load_ade847_label(p)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, vals)
    lm.check_ade847(out)
    with pytest.raises(lm.LabelValueError):
        lm.check_ade847(np.array([[847]], dtype=np.uint16))
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "8bit.tif")
    with pytest.raises(lm.LabelValueError, match="16-bit"):
        lm.load_ade847_label(tmp_path / "8bit.tif")


def test_ade847_id_table():
    ids = lm.ADE847_FULL_IDS
    # spot checks against MaskFormer's ADE20K_SEM_SEG_FULL_CATEGORIES (name: id -> trainId)
    for train_id, full_id in {
        0: 2978,
        1: 312,
        7: 165,
        244: 2155,
        255: 1857,
        263: 6,
        511: 2879,
        512: 444,
        600: 459,
        797: 1824,
        846: 3148,
    }.items():
        assert ids[train_id] == full_id
    lut = lm.ade847_lut()
    assert lut[1857] == 255 and lut[3148] == 846 and lut[0] == 65535
    seg = np.zeros((1, 3, 3), np.uint8)
    seg[0, 0] = ((1857 // 256) * 10, 1857 % 256, 0)  # R/10*256 + G encoding
    seg[0, 1] = ((3148 // 256) * 10 + 7, 3148 % 256, 9)  # R's last digit is the instance part
    out = lm.ade_full_class_mask_to_trainids(lm.ade_full_seg_to_class_mask(seg))
    assert out.dtype == np.uint16 and out.tolist() == [[255, 846, 65535]]


def test_read_label_keeps_16bit(tmp_path):
    p = tmp_path / "l.png"
    Image.fromarray(np.array([[300, 2]], dtype=np.uint16)).save(p)
    out = lm.read_label(p)
    assert out.dtype == np.uint16 and out.tolist() == [[300, 2]]
