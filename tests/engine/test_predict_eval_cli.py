"""`dgss predict` and `dgss eval` end to end on tiny checkpoints and generated scenes."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dgss.cli import main
from dgss.data.scenes import make_scene
from dgss.metrics import DomainMetrics
from dgss.models.checkpoint import load_checkpoint, save_checkpoint
from dgss.testing import tiny_segmentor, write_cityscapes_scenes


@pytest.fixture
def tiny_ckpt(tmp_path):
    torch.manual_seed(0)
    m = tiny_segmentor("depthforge")
    return save_checkpoint(m, tmp_path / "tiny.safetensors")


def test_predict_writes_label_overlay_depth_and_tokens(tmp_path, tiny_ckpt):
    img = tmp_path / "scene.png"
    Image.fromarray(make_scene(3, 128, 256).image).save(img)
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            str(img),
            "--model",
            str(tiny_ckpt),
            "--random-weights",
            "--depth",
            "--attention",
            "-1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    lab = np.asarray(Image.open(out / "scene_label.png"))
    assert lab.shape == (128, 256) and lab.max() < 19
    ov = np.asarray(Image.open(out / "scene_overlay.png"))
    assert ov.shape[0] == 128 and ov.shape[1] > 256  # legend appended
    assert np.asarray(Image.open(out / "scene_depth.png")).shape == (128, 256, 3)
    assert (out / "scene_tokens_l3.png").is_file()


def test_predict_label_equals_model_output(tmp_path, tiny_ckpt):
    rgb = make_scene(4, 128, 256).image
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert (
        main(
            [
                "predict",
                str(tmp_path / "a.png"),
                "--model",
                str(tiny_ckpt),
                "--random-weights",
                "--precision",
                "fp32",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    model = load_checkpoint(tiny_ckpt, random_frozen=True).eval()
    with torch.no_grad():
        x = model.normalize(torch.from_numpy(rgb).permute(2, 0, 1).float()[None])
        ref = model.slide_inference(x)[0].argmax(0).numpy()
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / "a_label.png")), ref)


def test_predict_open_vocabulary_classes(tmp_path):
    torch.manual_seed(0)
    m = tiny_segmentor("vireo")
    ckpt = save_checkpoint(m, tmp_path / "vireo.safetensors")
    Image.fromarray(make_scene(1, 64, 128).image).save(tmp_path / "s.png")
    # the tiny CLIP's tables for this vocabulary are not cached and no CLIP is given -> clear error
    rc = main(
        [
            "predict",
            str(tmp_path / "s.png"),
            "--model",
            str(ckpt),
            "--random-weights",
            "--classes",
            "road, car, person, dog",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    from dgss.models.vireo import use_vocabulary
    from dgss.testing import tiny_text_encoder

    use_vocabulary(m, "road, car, person, dog", text_encoder=tiny_text_encoder())  # fills the cache
    rc = main(
        [
            "predict",
            str(tmp_path / "s.png"),
            "--model",
            str(ckpt),
            "--random-weights",
            "--classes",
            "road, car, person, dog",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 0
    assert np.asarray(Image.open(tmp_path / "o" / "s_label.png")).max() < 4


def test_predict_bad_inputs(tmp_path, tiny_ckpt, capsys):
    assert main(["predict", str(tmp_path / "missing.png"), "--model", str(tiny_ckpt), "--random-weights"]) == 2
    assert "input not found" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"garbage")
    assert main(["predict", str(tmp_path / "bad.png"), "--model", str(tiny_ckpt), "--random-weights"]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "bad.png"), "--model", str(tiny_ckpt)]) == 2  # random frozen, not asked
    assert "random" in capsys.readouterr().err
    assert (
        main(["predict", str(tmp_path / "bad.png"), "--model", str(tiny_ckpt), "--random-weights", "--classes", "a, b"])
        == 2
    )
    assert "closed-vocabulary" in capsys.readouterr().err


@pytest.mark.e2e
def test_eval_cli_tables_files_and_values(tmp_path, tiny_ckpt):
    root = write_cityscapes_scenes(tmp_path / "cityscapes")
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                str(tiny_ckpt),
                "--data",
                f"cityscapes={root}",
                "--random-weights",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    for f in ("results.csv", "results.md", "miou_per_domain.png", "iou_per_class.png"):
        assert (out / f).is_file()
    # independent recomputation: protocol test resize (fit 1024x512 -> 2x), slide, resize back, confusion
    model = load_checkpoint(tiny_ckpt, random_frozen=True).eval()
    m = DomainMetrics(19)
    for img in sorted((root / "leftImg8bit" / "val").rglob("*.png")):
        rgb = torch.from_numpy(np.asarray(Image.open(img).convert("RGB")).copy()).permute(2, 0, 1).float()[None]
        lab = torch.from_numpy(
            np.asarray(
                Image.open(str(img).replace("leftImg8bit", "gtFine").replace("gtFine.png", "gtFine_labelTrainIds.png"))
            ).astype(np.int64)
        )
        x = torch.nn.functional.interpolate(rgb, size=(256, 512), mode="bilinear", align_corners=False)
        with torch.no_grad():
            s = model.slide_inference(model.normalize(x))
        s = torch.nn.functional.interpolate(s, size=lab.shape, mode="bilinear", align_corners=False)
        m.update("cityscapes", s[0].argmax(0), lab)
    assert res["mean"] == pytest.approx(round(100 * m.summary().mean, 2), abs=0.011)


def test_train_then_eval_reproduces_the_validation_table(tmp_path):
    """`dgss train` validates at its last step; `dgss eval` on that checkpoint gives the same mIoU."""
    from pathlib import Path

    from dgss.engine.logging import read_jsonl

    config = Path(__file__).resolve().parents[2] / "src" / "dgss" / "configs" / "tiny" / "rein_cityscapes_layout.yaml"
    data = tmp_path / "data"
    write_cityscapes_scenes(data / "cityscapes", n=2, seed=10)
    for i in range(4):  # a train split too
        s = make_scene(20 + i, 128, 256)
        for sub, arr, suffix in (("leftImg8bit", s.image, "leftImg8bit"), ("gtFine", s.label, "gtFine_labelTrainIds")):
            f = data / "cityscapes" / sub / "train" / "synth" / f"synth_{i:06d}_000019_{suffix}.png"
            f.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(f)
    work = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(config),
                f"data.root={data}",
                "train.max_iters=10",
                "train.val_interval=10",
                "train.ckpt_interval=10",
                "--work-dir",
                str(work),
                "--no-progress",
            ]
        )
        == 0
    )
    val = read_jsonl(work / "log.jsonl", "val")[10]["cityscapes/mIoU"]
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                str(work / "iter_000010.safetensors"),
                "--data",
                f"cityscapes={data / 'cityscapes'}",
                "--random-weights",
                "--resize",
                "128",
                "64",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    assert res["domains"]["cityscapes"]["mIoU"] == pytest.approx(val, abs=0.006)


@pytest.mark.e2e
def test_bf16_and_compiled_inference_match_fp32(tmp_path, tiny_ckpt):
    """Inference options: bf16 autocast (close scores) and torch.compile (same scores; compiled on a tiny REIN
    checkpoint, whose graph compiles in half the time of DepthForge's two encoders)."""
    from dgss.engine.predict import inference_context, maybe_compile

    model = load_checkpoint(tiny_ckpt, random_frozen=True).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        ref = model.slide_inference(x)
        with inference_context(torch.device("cpu"), "bf16"):
            bf = model.slide_inference(x).float()
        assert (bf - ref).abs().max() < 0.05
    torch.manual_seed(0)
    rein = save_checkpoint(tiny_segmentor("rein"), tmp_path / "rein.safetensors")
    with torch.inference_mode():
        ref = load_checkpoint(rein, random_frozen=True).eval().slide_inference(x)
        compiled = maybe_compile(load_checkpoint(rein, random_frozen=True).eval(), True)
        torch.testing.assert_close(compiled.slide_inference(x), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="precision"):
        inference_context(torch.device("cpu"), "fp8")


def test_token_attention_covers_the_whole_image():
    from dgss.engine.predict import token_attention

    torch.manual_seed(0)
    model = tiny_segmentor("depthforge").eval()
    with torch.inference_mode():
        att = token_attention(model, torch.randn(1, 3, 64, 96), [0, 3])
    assert set(att) == {0, 3}
    assert att[3].shape == (4, 6, 2)  # the full 64x96 image's patch grid
    assert att[3][..., 0].max() < model.adapter.cfg.num_tokens and (att[3][..., 1] <= 1).all()
