"""`dgss data check folder ROOT`: one line per problem kind naming files, non-zero exit, nothing modified."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from dgss.cli import main


def build(root: Path, classes=None) -> Path:
    """A valid two-split folder: 2 classes, domains day/night, 8x6 images."""
    (root).mkdir(parents=True)
    (root / "classes.yaml").write_text(
        yaml.safe_dump(classes or {"name": "t", "classes": ["a", "b"], "domains": ["day", "night"]})
    )
    lab = np.zeros((6, 8), np.uint8)
    lab[:, 4:] = 1
    lab[0, 0] = 255
    for key in ("train/day/s1", "train/night/s2", "val/day/s3", "val/night/s4"):
        for kind, arr in (("images", np.full((6, 8, 3), 90, np.uint8)), ("labels", lab)):
            p = root / kind / f"{key}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(p)
    return root


def state(root: Path) -> dict:
    """Every file and folder with its mtime (and content hash for files)."""
    return {
        str(p.relative_to(root)): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None,
        )
        for p in sorted(root.rglob("*"))
    }


def test_valid_folder_passes(tmp_path, capsys):
    root = build(tmp_path / "ok")
    assert main(["data", "check", "folder", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train/day 1, train/night 1, val/day 1, val/night 1 - OK" in out


def test_every_problem_kind_is_one_line_naming_files(tmp_path, capsys):
    root = build(tmp_path / "bad")
    (root / "labels/val/day/s3.png").unlink()  # missing label
    Image.fromarray(np.zeros((5, 8), np.uint8)).save(root / "labels/val/night/s4.png")  # size mismatch
    (root / "images/train/day/s1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")  # unreadable image
    bad = np.zeros((6, 8), np.uint8)
    bad[2, 2] = 7  # unknown label value
    Image.fromarray(bad).save(root / "labels/train/night/s2.png")
    Image.fromarray(bad).save(root / "labels/train/day/orphan.png")  # label without image
    (root / "images/val/dusk").mkdir()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "images/val/dusk/s5.png")  # undeclared domain
    before = state(root)
    assert main(["data", "check", "folder", str(root), "--workers", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    errors = [line for line in out if line.startswith("ERROR")]
    expect = {
        "[val/day] missing label": "images/val/day/s3.png",
        "[val/night] size mismatch": "labels/val/night/s4.png",
        "[train/day] corrupt image": "images/train/day/s1.png",
        "[train/night] label values": "labels/train/night/s2.png",
        "[train] unpaired label": "labels/train/day/orphan.png",
        "[val] unknown domain": "images/val/dusk/s5.png",
    }
    for head, file in expect.items():
        lines = [line for line in errors if line.startswith(f"ERROR {head}")]
        assert len(lines) == 1 and file in lines[0], (head, errors)
    assert "values [7] are neither classes 0..1 of classes.yaml nor ignore 255" in "\n".join(errors)
    assert "8x5 vs 8x6" in "\n".join(errors)
    assert len(errors) == len(expect)
    assert state(root) == before  # nothing modified, nothing created


def test_id_map_values_are_checked_against_classes_yaml(tmp_path, capsys):
    root = build(tmp_path / "m", {"classes": ["a", "b"], "id_map": {0: "a", 1: "b"}, "ignore_index": 255})
    for p in (root / "images").rglob("*.png"):  # move files out of the domain folders: no domains declared
        p.rename(p.parent.parent / p.name)
    for p in (root / "labels").rglob("*.png"):
        p.rename(p.parent.parent / p.name)
    raw = np.full((6, 8), 1, np.uint8)
    raw[0, :2] = 9
    Image.fromarray(raw).save(root / "labels/val/s3.png")
    assert main(["data", "check", "folder", str(root)]) == 1
    out = capsys.readouterr().out
    assert "ERROR [val] label values: values [9] are neither keys of id_map in classes.yaml nor ignore 255" in out


@pytest.mark.parametrize(
    "yaml_text, match",
    [
        ("classes: [a, a]\n", "duplicate class name"),
        ("classes: [a]\nignore: 3\n", "unknown key"),
        (None, "classes.yaml not found"),
    ],
)
def test_bad_classes_yaml_exits_2_with_one_line(tmp_path, capsys, yaml_text, match):
    root = build(tmp_path / "y")
    if yaml_text is None:
        (root / "classes.yaml").unlink()
    else:
        (root / "classes.yaml").write_text(yaml_text)
    before = state(root)
    assert main(["data", "check", "folder", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dgss data check: error:") and match in err[0]
    assert str(root / "classes.yaml") in err[0]
    assert state(root) == before


def test_missing_root_and_prepare_are_clear(tmp_path, capsys):
    assert main(["data", "check", "folder", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    root = build(tmp_path / "p")
    assert main(["data", "prepare", "folder", str(root)]) == 2
    assert "needs no preparation" in capsys.readouterr().err
