"""Folder datasets (`dgss.data.folder`): classes.yaml schema, pairing, domains, id remapping, 16-bit labels,
class statistics, and the generated-scenes writer. Folders are built by hand here (PIL), so expected
values come from the test, not from the code under test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from dgss.data.datasets import SegDataset
from dgss.data.folder import load_classes, parse_classes
from dgss.errors import ClassesFileError, DataError


def write_folder(root: Path, classes: dict, pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """``pairs``: "split/rel/stem" -> (image (H, W, 3) uint8, label (H, W) uint8/uint16)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.yaml").write_text(yaml.safe_dump(classes, sort_keys=False))
    for key, (img, lab) in pairs.items():
        ip, lp = root / "images" / f"{key}.png", root / "labels" / f"{key}.png"
        ip.parent.mkdir(parents=True, exist_ok=True)
        lp.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(ip)
        Image.fromarray(lab).save(lp)
    return root


def rgb(h=6, w=8, v=100):
    return np.full((h, w, 3), v, np.uint8)


def test_classes_yaml_schema_and_vocabulary_entries(tmp_path):
    c = parse_classes(
        {
            "name": "mine",
            "classes": ["road", {"name": "car", "synonyms": ["automobile", "auto"]}],
            "palette": [[1, 2, 3], [4, 5, 6]],
            "ignore_index": 255,
            "id_map": {7: "road", 26: "car", 0: "ignore"},
            "domains": ["day", "night"],
        },
        tmp_path / "classes.yaml",
    )
    assert c.names == ("road", "car") and c.num_classes == 2
    assert c.vocab_entries == ("road", "car, automobile, auto")  # dgss.data.vocab's synonym syntax
    assert c.id_map == ((0, 255), (7, 0), (26, 1))
    assert c.known_raw_values() == {0, 7, 26, 255}
    assert c.info().conditions == ("day", "night") and c.info().class_names == ("road", "car")


@pytest.mark.parametrize(
    "data, match",
    [
        ({"classes": []}, "non-empty list"),
        ({"classes": ["a", "A"]}, "duplicate"),
        ({"classes": ["a"], "colours": 1}, r"unknown key\(s\) \['colours'\]"),
        ({"classes": ["a", "b"], "ignore_index": 1}, "ignore_index 1 is a class id"),
        ({"classes": ["a"], "palette": [[1, 2]]}, "palette"),
        ({"classes": ["a"], "id_map": {3: "b"}}, "'b' is not a class name"),
        ({"classes": ["a, b"]}, "commas"),
        ({"classes": ["background"]}, "reserved"),
        ({"classes": ["a"], "domains": "some"}, "domains"),
        ("just text", "expected a mapping"),
    ],
)
def test_bad_classes_yaml_names_file_and_key(tmp_path, data, match):
    p = tmp_path / "classes.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ClassesFileError, match=match) as e:
        load_classes(tmp_path)
    assert str(p) in str(e.value)


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ClassesFileError, match="classes.yaml not found"):
        load_classes(tmp_path)
    (tmp_path / "classes.yaml").write_text("classes: [a, b\n")
    with pytest.raises(ClassesFileError, match="not valid YAML"):
        load_classes(tmp_path)


def test_domains_pairing_and_id_map_with_16_bit_labels(tmp_path):
    raw = np.array([[7, 7, 26, 0], [500, 500, 26, 65535]], np.uint16)  # 16-bit raw ids, 65535 = ignore
    root = write_folder(
        tmp_path / "d",
        {
            "name": "cams",
            "classes": ["road", "car", "truck"],
            "ignore_index": 65535,
            "id_map": {7: "road", 26: "car", 500: "truck", 0: "ignore"},
            "domains": ["day", "night"],
        },
        {"val/day/a/x": (rgb(2, 4), raw), "val/night/y": (rgb(2, 4), raw), "train/day/z": (rgb(2, 4), raw)},
    )
    ds = SegDataset.from_root("folder", root, "val")
    assert [s.domain for s in ds.samples] == ["cams/day", "cams/night"]
    _, lab = ds.load(0)
    expected = np.array([[0, 0, 1, 65535], [2, 2, 1, 65535]])  # by hand from the id map
    assert np.array_equal(lab.numpy(), expected)
    assert ds.info.num_classes == 3 and ds.info.ignore_index == 65535
    only_night = SegDataset.from_root("folder", root, "val", ["night"])
    assert [s.domain for s in only_night.samples] == ["cams/night"]


def test_unknown_raw_value_and_missing_label_are_clear_errors(tmp_path):
    root = write_folder(
        tmp_path / "d",
        {"classes": ["a", "b"], "id_map": {1: "a", 2: "b"}},
        {"val/x": (rgb(2, 2), np.array([[1, 2], [3, 1]], np.uint8))},
    )
    ds = SegDataset.from_root("folder", root, "val")
    with pytest.raises(DataError, match=r"values \[3\] that id_map"):
        ds.load(0)
    Image.fromarray(rgb(2, 2)).save(root / "images" / "val" / "y.png")
    with pytest.raises(DataError, match=r"1 image\(s\) have no label.*y.png.*dgss data check folder"):
        SegDataset.from_root("folder", root, "val")
    with pytest.raises(DataError, match="no split 'test'.*found: val"):
        SegDataset.from_root("folder", root, "test")


def test_stats_against_hand_counts(tmp_path, capsys):
    a = np.array([[0, 0, 1], [1, 1, 255]], np.uint8)  # class 0: 2 px, class 1: 3 px, 1 ignored
    b = np.array([[2, 2, 2], [2, 0, 0]], np.uint8)  # class 0: 2 px, class 2: 4 px
    root = write_folder(
        tmp_path / "d",
        {"name": "s", "classes": ["x", "y", "z"]},
        {"train/a": (rgb(2, 3), a), "train/b": (rgb(2, 3), b), "val/c": (rgb(2, 3), a)},
    )
    before = tree_state(root)
    from dgss.cli import main

    chart = tmp_path / "chart.png"
    assert main(["data", "stats", "folder", str(root), "--chart", str(chart)]) == 0
    out = capsys.readouterr().out
    # train: labelled 11 px -> x 4/11, y 3/11, z 4/11; x in 2 images, y in 1, z in 1
    assert f"| x | {100 * 4 / 11:.2f} (2) | {100 * 2 / 5:.2f} (1) |" in out
    assert f"| y | {100 * 3 / 11:.2f} (1) | {100 * 3 / 5:.2f} (1) |" in out
    assert f"| z | {100 * 4 / 11:.2f} (1) | 0.00 (0) |" in out
    assert "z in val" in out  # a class absent from a split is pointed out
    assert Image.open(chart).size[0] > 100
    assert tree_state(root) == before  # nothing written into the dataset


def tree_state(root: Path) -> dict:
    import hashlib

    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_generate_scenes_renames_subsets_and_raw_ids(tmp_path):
    from dgss.data import scenes as S
    from dgss.data.generate import generate_scene_folder

    kw = dict(
        train=1,
        val=1,
        height=48,
        width=96,
        seed=3,
        classes={"road": "street", "car": "automobile"},
        synonyms={"street": ["road"]},
    )
    compact = generate_scene_folder(tmp_path / "c", **kw)
    raw = generate_scene_folder(tmp_path / "r", raw_ids=True, bits=16, **kw)
    assert compact.class_names == ("street", "automobile")
    scene = S.make_scene(3 * 1_000_003, 48, 96)  # the first training scene of seed 3
    expected = np.full(scene.label.shape, 255)
    expected[scene.label == S.ROAD] = 0
    expected[scene.label == S.CAR] = 1
    for root in (compact.root, raw.root):
        ds = SegDataset.from_root("folder", root, "train")
        image, lab = ds.load(0)
        assert np.array_equal(lab.numpy(), expected)
        assert np.array_equal(image.permute(1, 2, 0).numpy(), scene.image)
    stored = np.array(Image.open(raw.root / "labels/train/clean/scene_00000.png"))
    assert stored.dtype == np.uint16 and np.array_equal(stored, scene.label)  # raw trainIds kept
    spec = yaml.safe_load((compact.root / "classes.yaml").read_text())
    assert spec["classes"][0] == {"name": "street", "synonyms": ["road"]}
    with pytest.raises(DataError, match="already holds a classes.yaml"):
        generate_scene_folder(tmp_path / "c", **kw)
