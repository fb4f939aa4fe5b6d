"""`dgss app` without the browser: inputs, limits, vocabulary, progress, and the page chosen for the CLI flags."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from dgss.app.service import SegmentationService, demo_checkpoint, generated_scene, vocabulary_text
from dgss.engine.predict import predict_image
from dgss.errors import UserError
from dgss.models.checkpoint import save_checkpoint
from dgss.models.segmentor import window_boxes
from dgss.testing import tiny_segmentor


@pytest.fixture(scope="module")
def df_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tiny_segmentor("depthforge"), tmp_path_factory.mktemp("ck") / "df.safetensors")


@pytest.fixture(scope="module")
def svc(df_ckpt):
    return SegmentationService(str(df_ckpt), random_weights=True, precision="fp32", short_side=64)


def test_bad_files_become_one_line_messages(svc, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match=r"cannot read image notes.txt: not an image file"):
        svc.read_upload(tmp_path / "notes.txt")
    _, rgb = generated_scene("scene 1 · clean")
    Image.fromarray(rgb).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"cut.png: damaged or truncated"):
        svc.read_upload(tmp_path / "cut.png")
    name, got = svc.read_upload(tmp_path / "full.png")
    assert name == "full" and np.array_equal(got, rgb)


def test_huge_images_are_refused_with_the_limit_named(svc, tmp_path):
    Image.new("RGB", (4200, 2100)).save(tmp_path / "huge.png")  # 8.8 MP > 8.4 MP
    with pytest.raises(UserError, match=r"huge.png is 4200x2100 \(8.8 MP\), over the limit of 8.4 MP"):
        svc.read_upload(tmp_path / "huge.png")
    with pytest.raises(UserError, match="over the limit"):  # arrays (generated scenes) too
        svc.segment([("big", np.zeros((2100, 4200, 3), np.uint8))])


def test_segment_reports_every_window_and_matches_predict(svc):
    name, rgb = generated_scene("scene 2 · night")
    calls = []
    res = svc.segment([(name, rgb)], progress=lambda i, done, total: calls.append((i, done, total)))[0]
    # short side 64 -> a 64x128 input in 64-px windows (stride 42)
    total = len(window_boxes(64, 128, 64, 42))
    assert calls == [(0, k, total) for k in range(1, total + 1)]
    assert "predict_windows" not in svc.model.__dict__  # the counting wrapper is gone
    ref = predict_image(svc.model, rgb, short_side=64).label
    assert np.array_equal(res.label, ref)
    assert np.array_equal(np.asarray(Image.open(res.label_file)), ref)
    shares = svc.shares(res)
    assert sum(s for _, s in shares) == pytest.approx(100, abs=0.05)
    assert res.depth is not None and res.depth.shape == rgb.shape[:2]
    assert svc.attention(res, 1).shape == rgb.shape
    assert svc.overlay(res).shape == rgb.shape


def test_closed_vocabulary_models_ignore_the_class_box(svc):
    assert svc.use_classes("dog, cat") == svc.model.class_names


def test_vireo_class_list_checks(tmp_path):
    torch.manual_seed(0)
    vocab = ("road", "person with clothes,people,human", "bicycle, bike", "car")
    model = tiny_segmentor("vireo", vocab=list(vocab))
    model.cfg = dataclasses.replace(model.cfg, class_names=vocab, text=dataclasses.replace(model.cfg.text, vocab=vocab))
    ckpt = save_checkpoint(model, tmp_path / "v.safetensors")
    svc = SegmentationService(str(ckpt), random_weights=True, short_side=64)
    assert svc.open_vocabulary and svc.train_vocabulary == vocab
    text = vocabulary_text(svc.train_vocabulary)
    assert text == "road; person with clothes,people,human; bicycle, bike; car"  # ";" between entries
    assert svc.use_classes(text) == svc.train_vocabulary
    with pytest.raises(UserError, match="the class list is empty"):
        svc.use_classes(" ;, ")
    with pytest.raises(UserError, match="no cached text table.*--weights clip=FILE"):
        svc.use_classes("zebra, giraffe")
    assert svc.model.class_names == svc.train_vocabulary  # a refused list changes nothing


def test_demo_checkpoint_is_the_newest_complete_one(tmp_path):
    assert demo_checkpoint(tmp_path / "nothing") is None
    run = tmp_path / "run"
    run.mkdir()
    assert demo_checkpoint(tmp_path) is None
    for it in (10, 20):
        (run / f"iter_{it:06d}.safetensors").write_bytes(b"x")
        (run / f"iter_{it:06d}.train_state.pt").write_bytes(b"x")
    assert demo_checkpoint(tmp_path) == run / "iter_000020.safetensors"


def _texts(page) -> str:
    return "\n".join(str(getattr(b, "value", "")) for b in page.blocks.values())


def test_cli_pages_explain_a_missing_or_unusable_model(tmp_path, df_ckpt):
    from dgss.cli import build_parser
    from dgss.commands.app import build_page

    page = build_page(build_parser().parse_args(["app", "--demo-out", str(tmp_path / "none")]))
    assert "no model" in _texts(page) and "dgss demo" in _texts(page)
    # a checkpoint trained with random encoders, random weights not asked for: the page says what to do
    page = build_page(build_parser().parse_args(["app", "--model", str(df_ckpt)]))
    assert "could not load the model" in _texts(page) and "--random-weights" in _texts(page)
    page = build_page(build_parser().parse_args(["app", "--model", str(df_ckpt), "--random-weights"]))
    assert "RANDOM weights" in _texts(page)


def test_catseg_model_with_a_typed_vocabulary(tmp_path):
    """CAT-Seg in the app: any typed class list (its own trained text tower), progress per reference view."""
    from dgss.cli import build_parser
    from dgss.commands.app import build_page
    from dgss.models.catseg import build_catseg

    torch.manual_seed(0)
    model = build_catseg("catseg-tiny", class_names=("road", "car", "sky"))
    model.randomize_clip(0)
    ckpt = save_checkpoint(model, tmp_path / "catseg.safetensors")
    svc = SegmentationService(str(ckpt), random_weights=True, precision="fp32", short_side=48)
    assert svc.open_vocabulary and svc.train_vocabulary == ("road", "car", "sky")
    assert not svc.has_attention and svc.num_blocks == 1 and svc.dav2 is None and svc.random_frozen
    assert "catseg" in svc.describe()
    name, rgb = generated_scene("scene 1 · fog")
    calls = []
    res = svc.segment([(name, rgb)], "tree; bicycle, bike; road", progress=lambda i, d, t: calls.append((i, d, t)))[0]
    assert res.class_names == ("tree", "bicycle, bike", "road") == svc.model.class_names
    assert calls == [(0, 5, 5)]  # four reference crops and the global view, one batch
    model.set_vocabulary(["tree", "bicycle, bike", "road"])  # the model written above, not the loaded one
    assert np.array_equal(res.label, predict_image(model.eval(), rgb, short_side=48).label)
    assert np.array_equal(np.asarray(Image.open(res.label_file)), res.label)
    with pytest.raises(UserError, match="the class list is empty"):
        svc.use_classes(" ; ")
    assert svc.model.class_names == ("tree", "bicycle, bike", "road")  # a refused list changes nothing
    page = build_page(build_parser().parse_args(["app", "--model", str(ckpt), "--random-weights"]))
    assert "RANDOM weights" in _texts(page) and "road, car, sky" in _texts(page)
