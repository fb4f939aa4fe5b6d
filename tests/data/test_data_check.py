"""`dgss data check` on broken trees: one clear line per problem, non-zero exit, nothing modified."""

from __future__ import annotations

import numpy as np
import pytest

from dgss.cli import main
from dgss.data.check import check_dataset


def run_cli(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = main(["data", *argv])  # through dgss.cli.main: its error contract
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


@pytest.fixture
def tree(dh, tmp_path, fixtures):
    """A clean miniature Cityscapes tree (val: 3 pairs, train: 1 pair) and its digest."""
    cs = dh.build_cityscapes(tmp_path, fixtures, n_val=3, n_train=1)
    return cs


def check(capsys, dh, cs, *extra: str) -> tuple[int, list[str]]:
    before = dh.tree_digest(cs)
    code, lines, _ = run_cli(
        capsys, "check", "cityscapes", str(cs), "--expect", "val=3", "--expect", "train=1", "--no-progress", *extra
    )
    assert dh.tree_digest(cs) == before, "check modified the tree"
    return code, lines


def errors(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("ERROR")]


def test_clean_tree_ok(capsys, dh, tree):
    code, lines = check(capsys, dh, tree)
    assert code == 0 and lines[0].endswith("train 1/1, val 3/3 - OK") and errors(lines) == []


def test_missing_label(capsys, dh, tree):
    next((tree / "gtFine/val").rglob("frankfurt_000001_*_labelTrainIds.png")).unlink()
    code, lines = check(capsys, dh, tree)
    assert code == 1
    assert errors(lines) == [
        "ERROR [val] missing label: 1 image(s) without their '*_gtFine_labelTrainIds.png' label: "
        "leftImg8bit/val/frankfurt/frankfurt_000001_000019_leftImg8bit.png"
    ]
    assert any(line.startswith("hint:") and "dgss data prepare cityscapes" in line for line in lines)


def test_corrupt_png(capsys, dh, tree):
    img = tree / "leftImg8bit/val/frankfurt/frankfurt_000002_000019_leftImg8bit.png"
    data = bytearray(img.read_bytes())
    img.write_bytes(bytes(data[: len(data) // 2]))  # truncated PNG
    lab = next((tree / "gtFine/train").rglob("*_labelTrainIds.png"))
    garbled = bytearray(lab.read_bytes())
    garbled[100:140] = b"\x00" * 40  # garbled IDAT (CRC mismatch)
    lab.write_bytes(bytes(garbled))
    code, lines = check(capsys, dh, tree)
    errs = sorted(errors(lines), reverse=True)
    assert code == 1 and len(errs) == 2
    assert errs[0].startswith("ERROR [val] corrupt image: 1 file(s): cannot decode (")
    assert errs[0].endswith(": leftImg8bit/val/frankfurt/frankfurt_000002_000019_leftImg8bit.png")
    assert errs[1].startswith("ERROR [train] corrupt label: 1 file(s): cannot decode (")
    assert "aachen_000000_000019_gtFine_labelTrainIds.png" in errs[1]


def test_label_value_77(capsys, dh, tree, fixtures):
    lab = tree / "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelTrainIds.png"
    bad = dh.cs_trainids(fixtures).copy()
    bad[10:20, 10:20] = 77
    dh.save(bad, lab)
    code, lines = check(capsys, dh, tree)
    assert code == 1
    assert errors(lines) == [
        "ERROR [val] label values: values [77] are neither classes 0..18 nor ignore 255, in 1 label(s): "
        "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelTrainIds.png"
    ]


def test_truncated_split(capsys, dh, tree):
    for p in tree.rglob("frankfurt_000002_*"):
        p.unlink()
    code, lines = check(capsys, dh, tree)
    assert code == 1 and errors(lines) == ["ERROR [val] count: 2 images, expected 3"]
    # against the official size when no override is given
    code, lines, _ = run_cli(capsys, "check", "cityscapes", str(tree), "--split", "val", "--no-progress")
    assert code == 1 and errors(lines) == ["ERROR [val] count: 2 images, expected 500 (official split size)"]


def test_unpaired_label_and_size_mismatch(capsys, dh, tree, fixtures):
    (tree / "leftImg8bit/val/frankfurt/frankfurt_000001_000019_leftImg8bit.png").unlink()
    lab = tree / "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelTrainIds.png"
    dh.save(dh.cs_trainids(fixtures)[:64], lab)
    code, lines = check(capsys, dh, tree, "--expect", "val=2")
    assert code == 1
    assert errors(lines) == [
        "ERROR [val] unpaired label: 1 label(s) without an image: "
        "gtFine/val/frankfurt/frankfurt_000001_000019_gtFine_labelTrainIds.png",
        "ERROR [val] size mismatch: 1 file(s): label and image sizes differ (first: 256x64 vs 256x128): "
        "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelTrainIds.png",
    ]


def test_missing_split_dir_and_bad_input(capsys, dh, tmp_path, fixtures):
    cs = dh.build_cityscapes(tmp_path, fixtures, n_val=1, n_train=0)
    code, lines, _ = run_cli(capsys, "check", "cityscapes", str(cs), "--no-progress")
    assert code == 1
    assert f"ERROR [train] missing directory: {cs}/leftImg8bit/train does not exist" in lines
    code, lines, err = run_cli(capsys, "check", "kitti", str(cs))
    assert code == 2 and err.strip() == (
        "dgss data check: error: unknown dataset 'kitti'; known: cityscapes, gta5, "
        "bdd100k, mapillary, acdc, deliver, ade150, ade847, coco_stuff, folder"
    )
    code, _, err = run_cli(capsys, "check", "cityscapes", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "prepare", "gta5", str(tmp_path / "nope"))
    assert code == 2 and err.startswith("dgss data prepare: error: gta5: root directory")


def test_check_acdc_per_condition_counts(dh, tmp_path, fixtures):
    img, lab = dh.cs_image(fixtures), dh.cs_trainids(fixtures)
    acdc = tmp_path / "acdc"
    for cond in ("fog", "night", "rain", "snow"):
        dh.save(img, acdc / f"rgb_anon/{cond}/val/GP/a_rgb_anon.png")
        dh.save(lab, acdc / f"gt/{cond}/val/GP/a_gt_labelTrainIds.png")
    rep = check_dataset("acdc", acdc, splits=["val"], workers=1)
    assert rep.counts == {"fog/val": 1, "night/val": 1, "rain/val": 1, "snow/val": 1}
    assert [p.detail for p in rep.problems] == [
        "1 images, expected 100 (official split size)",
        "1 images, expected 106 (official split size)",
        "1 images, expected 100 (official split size)",
        "1 images, expected 100 (official split size)",
    ]
    rep = check_dataset(
        "acdc", acdc, splits=["val"], expected={f"{c}/val": 1 for c in ("fog", "night", "rain", "snow")}
    )
    assert rep.ok


def test_check_deliver_raw_values(dh, tmp_path, fixtures):
    dl = tmp_path / "DELIVER"
    raw = np.ones((16, 16, 3), np.uint8)
    raw[0, 0, 0] = 30  # not a DELIVER class
    for cond in ("sun", "night", "cloud", "rain", "fog"):
        dh.save(np.zeros((16, 16, 3), np.uint8), dl / f"img/{cond}/test/s/1_rgb_front.png")
        dh.save(raw, dl / f"semantic/{cond}/test/s/1_semantic_front.png")
    rep = check_dataset("deliver", dl, splits=["test"], expected={"test": 5})
    assert [(p.kind, p.detail) for p in rep.problems] == [
        ("label values", "values [30] are neither classes 0..24 nor ignore 255, in 5 label(s)")
    ]
