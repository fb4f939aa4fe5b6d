"""`dgss data prepare`: correct outputs, idempotent, resumable, never touches source files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dgss.data import label_maps as lm
from dgss.data.prepare import prepare
from dgss.errors import DataError


def test_cityscapes_trainids_from_labelids(dh, tmp_path, fixtures):
    cs = dh.build_cityscapes(tmp_path, fixtures, n_val=2, n_train=1, trainids=False)
    sources = dh.tree_digest(cs)
    rep = prepare("cityscapes", tmp_path, progress=False)
    assert rep.written == 3 and rep.skipped == 0
    after = dh.tree_digest(cs)
    assert all(after[k] == v for k, v in sources.items())  # sources untouched
    assert len(after) == len(sources) + 3
    out = np.array(Image.open(cs / "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelTrainIds.png"))
    np.testing.assert_array_equal(out, lm.CITYSCAPES_ID_TO_TRAINID[dh.cs_label_ids(fixtures)])
    # the shipped labelTrainIds agree except on 77 border pixels (separate downscales; SOURCES.md)
    shipped = np.array(Image.open(fixtures / f"cityscapes/gtFine/val/frankfurt/{dh.CS_STEM}_gtFine_labelTrainIds.png"))
    assert int((shipped != out).sum()) == 77


def test_idempotent_resumable_force(dh, tmp_path, fixtures):
    cs = dh.build_cityscapes(tmp_path, fixtures, n_val=3, n_train=0, trainids=False)
    outs = sorted(cs.rglob("*_labelTrainIds.png"))
    assert outs == []
    prepare("cityscapes", cs, progress=False)
    outs = sorted(cs.rglob("*_labelTrainIds.png"))
    mtimes = {p: p.stat().st_mtime_ns for p in outs}
    # second run: nothing written, nothing changed
    rep = prepare("cityscapes", cs, progress=False)
    assert (rep.written, rep.skipped) == (0, 3)
    assert {p: p.stat().st_mtime_ns for p in outs} == mtimes
    # resumable: a deleted output and a stale temp file from an interrupted run
    outs[1].unlink()
    (outs[1].parent / f".{outs[1].stem}.tmp999.png").write_bytes(b"partial")
    rep = prepare("cityscapes", cs, progress=False)
    assert (rep.written, rep.skipped) == (1, 2) and outs[1].is_file()
    # force rewrites outputs only
    src = dh.tree_digest(cs)
    rep = prepare("cityscapes", cs, force=True, progress=False)
    assert rep.written == 3
    assert dh.tree_digest(cs) == src


def test_cityscapes_from_polygons(tmp_path):
    city = tmp_path / "cityscapes/gtFine/val/x"
    city.mkdir(parents=True)
    ann = {
        "imgHeight": 8,
        "imgWidth": 16,
        "objects": [
            {"label": "road", "polygon": [[0, 4], [15, 4], [15, 7], [0, 7]]},
            {"label": "sky", "polygon": [[0, 0], [15, 0], [15, 1], [0, 1]]},
        ],
    }
    (city / "x_000000_000019_gtFine_polygons.json").write_text(json.dumps(ann))
    assert prepare("cityscapes", tmp_path, progress=False).written == 1
    out = np.array(Image.open(city / "x_000000_000019_gtFine_labelTrainIds.png"))
    assert out.shape == (8, 16)
    assert (out[5] == 0).all() and (out[0] == 10).all() and (out[3] == 255).all()


def test_nothing_to_prepare_and_errors(tmp_path):
    (tmp_path / "bdd100k").mkdir()
    rep = prepare("bdd100k", tmp_path, progress=False)
    assert rep.written == 0 and "nothing to prepare" in rep.notes[0]
    with pytest.raises(DataError, match="unknown dataset 'foo'"):
        prepare("foo", tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        prepare("gta5", tmp_path / "missing")
    (tmp_path / "gta/labels").mkdir(parents=True)
    with pytest.raises(DataError, match="no label PNGs"):
        prepare("gta5", tmp_path / "gta")
    (tmp_path / "mapillary").mkdir()
    with pytest.raises(DataError, match="config_v1.2.json"):
        prepare("mapillary", tmp_path / "mapillary")


def test_corrupt_source_label_is_reported(dh, tmp_path, fixtures):
    cs = dh.build_cityscapes(tmp_path, fixtures, n_val=1, n_train=0, trainids=False)
    lab = next(cs.rglob("*_labelIds.png"))
    lab.write_bytes(lab.read_bytes()[:60])
    with pytest.raises(DataError, match="cannot decode Cityscapes label .*labelIds.png"):
        prepare("cityscapes", cs, progress=False)
    assert list(cs.rglob("*_labelTrainIds.png")) == [] and list(cs.rglob(".*tmp*")) == []
