"""CAT-Seg in `dgss predict` and `dgss export`: the user's own classes (comma list, vocabulary file), labels equal
to the model's forward folded by the reference protocol written here, the ONNX window graph with the vocabulary
baked in, progress per view, and one-line errors (empty vocabulary, --attention, --backend onnxruntime)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from catseg_helpers import perturbed
from dgss.cli import main
from dgss.models.catseg import CATSeg, build_catseg
from dgss.models.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

TRAINED = ("road", "car", "sky")


def tiny_trained(seed: int = 0, **over) -> CATSeg:
    """catseg-tiny with random CLIP towers (seed 0, as recorded) and order-one changes to every trained tensor,
    so that a path ignoring the checkpoint's tensors (text q/v included) gives other outputs."""
    model = build_catseg("catseg-tiny", class_names=TRAINED, **over)
    model.randomize_clip(0)
    return perturbed(model, seed)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("catseg_predict")
    model = tiny_trained()
    ckpt = save_checkpoint(model, d / "catseg.safetensors")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    rgb[:20] = (70, 130, 180)  # some structure: a flat top half
    Image.fromarray(rgb).save(d / "street.png")
    return d, model, ckpt, rgb


def reference_scores(model: CATSeg, rgb: np.ndarray) -> torch.Tensor:
    """The reference protocol re-derived from the model's forward: squash to S², crops of c every
    int(c·(1−overlap)) plus the whole image at c², logits -> bilinear c² -> sigmoid, crop scores summed per
    pixel and divided by their count, global view resized to S², mean of the two, bilinear to (H, W)."""
    cfg = model.cfg
    c, S = cfg.crop_size, cfg.reference_size
    step = int(c * (1 - cfg.reference_overlap))
    H, W = rgb.shape[:2]
    x = torch.from_numpy(rgb).permute(2, 0, 1).float()[None]
    x = (x - torch.tensor(cfg.mean).view(1, 3, 1, 1)) / torch.tensor(cfg.std).view(1, 3, 1, 1)
    big = F.interpolate(x, size=(S, S), mode="bilinear", align_corners=False)
    offsets = [(y, xx) for y in range(0, S - c + 1, step) for xx in range(0, S - c + 1, step)]
    views = [big[..., y : y + c, xx : xx + c] for y, xx in offsets]
    views.append(F.interpolate(x, size=(c, c), mode="bilinear", align_corners=False))
    with torch.no_grad():
        logits = model(torch.cat(views))
    sc = F.interpolate(logits, size=(c, c), mode="bilinear", align_corners=False).sigmoid()
    K = sc.shape[1]
    acc, cnt = torch.zeros(K, S, S), torch.zeros(1, S, S)
    for i, (y, xx) in enumerate(offsets):
        acc[:, y : y + c, xx : xx + c] += sc[i]
        cnt[:, y : y + c, xx : xx + c] += 1
    glob = F.interpolate(sc[-1:], size=(S, S), mode="bilinear", align_corners=False)[0]
    fused = (acc / cnt + glob) / 2
    return F.interpolate(fused[None], size=(H, W), mode="bilinear", align_corners=False)[0]


def run(argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_with_a_comma_list_equals_the_forward_folded_here(setup, tmp_path, capsys):
    d, model, ckpt, rgb = setup
    out = tmp_path / "out"
    code, text, err = run(
        [
            "predict",
            str(d / "street.png"),
            "--model",
            str(ckpt),
            "--random-weights",
            "--classes",
            "tree, road, sky, car",
        ]
        + ["--out", str(out), "--no-progress"],
        capsys,
    )
    assert code == 0, err
    assert "RANDOM weights" in text  # the CLIP towers are random: the note says so
    label = np.asarray(Image.open(out / "street_label.png"))
    model.set_vocabulary(["tree", "road", "sky", "car"])  # the in-memory model, not the loader
    ref = reference_scores(model, rgb)
    assert label.shape == rgb.shape[:2]
    assert np.array_equal(label, ref.argmax(0).numpy())
    assert len(np.unique(label)) > 1  # the check is not a constant picture
    assert (out / "street_overlay.png").is_file()
    # the trained vocabulary (no --classes): the checkpoint's three classes
    code, _, err = run(
        ["predict", str(d / "street.png"), "--model", str(ckpt), "--random-weights", "--out", str(tmp_path / "o2")],
        capsys,
    )
    assert code == 0, err
    model.set_vocabulary(list(TRAINED))
    label = np.asarray(Image.open(tmp_path / "o2" / "street_label.png"))
    assert np.array_equal(label, reference_scores(model, rgb).argmax(0).numpy())


def test_predict_with_a_vocabulary_file(setup, tmp_path, capsys):
    """A JSON list with ", " synonyms and a trailing "background" (dropped): the first synonym is prompted."""
    d, model, ckpt, rgb = setup
    names = ["bicycle, bike", "person with clothes,people,human", "road", "background"]
    (tmp_path / "mine.json").write_text(json.dumps(names))
    code, _, err = run(
        ["predict", str(d / "street.png"), "--model", str(ckpt), "--random-weights"]
        + ["--vocab", str(tmp_path / "mine.json"), "--out", str(tmp_path / "out")],
        capsys,
    )
    assert code == 0, err
    label = np.asarray(Image.open(tmp_path / "out" / "street_label.png"))
    model.set_vocabulary(["bicycle", "person with clothes,people,human", "road"])  # first synonym only
    assert np.array_equal(label, reference_scores(model, rgb).argmax(0).numpy())


def test_predict_with_the_ade847_vocabulary(setup, tmp_path, capsys, fixtures_dir):
    """847 classes (more than the 256 class slots: the top 256 per view are kept, the rest score -100)."""
    d, model, ckpt, rgb = setup
    vocab = fixtures_dir / "vocabularies" / "ade847.json"
    if not vocab.is_file():
        pytest.skip(f"{vocab} not found")
    names = json.loads(vocab.read_text())
    names = names[:-1] if names[-1] == "background" else names
    code, _, err = run(
        ["predict", str(d / "street.png"), "--model", str(ckpt), "--random-weights", "--vocab", str(vocab)]
        + ["--out", str(tmp_path / "out")],
        capsys,
    )
    assert code == 0, err
    label = np.asarray(Image.open(tmp_path / "out" / "street_label.png"))
    model.set_vocabulary(names)
    assert model.num_classes == len(names) == 847
    scores = reference_scores(model, rgb)
    assert np.array_equal(label, scores.argmax(0).numpy())
    assert label.dtype == np.uint16  # more than 256 classes: 16-bit label PNG


def test_export_bakes_the_vocabulary_into_the_window_graph(setup, tmp_path, capsys):
    import onnxruntime as ort

    d, model, ckpt, _ = setup
    path = tmp_path / "catseg.onnx"
    code, text, err = run(
        ["export", str(ckpt), str(path), "--random-weights", "--classes", "sky, car, tree, road, person"], capsys
    )
    assert code == 0, err
    assert "labels equal on 100.00% of pixels" in text
    model.set_vocabulary(["sky", "car", "tree", "road", "person"])
    x = torch.randn(2, 3, 32, 32) * 1.5  # the exported window: the reference view size of catseg-tiny
    with torch.no_grad():
        ref = F.interpolate(model(x), size=(32, 32), mode="bilinear", align_corners=False).sigmoid()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]  # no text input: the vocabulary is a constant
    got = torch.from_numpy(sess.run(None, {"image": x.numpy()})[0])
    assert got.shape == (2, 5, 32, 32)
    assert (got - ref).abs().max().item() < 1e-5


def test_export_beyond_256_classes_prunes_inside_the_graph(setup, tmp_path):
    import onnxruntime as ort

    from dgss.engine.export import export_onnx
    from dgss.heads.catseg_aggregator import cost_volume

    _, model, _, _ = setup
    x = torch.randn(1, 3, 32, 32) * 1.5
    # 300 names whose 256th and 257th max-cosine scores on x lie far apart, so that float rounding in either
    # runtime cannot swap a kept and a pruned class: the 256 best of a pool of 400 and its 44 worst
    pool = [f"thing {i}" for i in range(400)]
    model.set_vocabulary(pool)
    with torch.no_grad():
        score = cost_volume(model.extract_features(x)[0], model.encode_text()[None]).amax(dim=(1, 3, 4))[0]
    order = score.argsort(descending=True).tolist()
    assert score[order[255]] - score[order[-44]] > 1e-4
    model.set_vocabulary([pool[i] for i in order[:256] + order[-44:]])
    path = export_onnx(model, tmp_path / "p300.onnx")
    assert not any(m.training for m in model.modules())  # the export leaves the model in eval mode
    with torch.no_grad():
        ref = model.predict_windows(x)
    got = torch.from_numpy(ort.InferenceSession(str(path)).run(None, {"image": x.numpy()})[0])
    assert got.shape == (1, 300, 32, 32)
    assert (got - ref).abs().max().item() < 1e-5
    kept = (got[0, :, 0, 0] > torch.sigmoid(torch.tensor(-100.0)) * 2).sum().item()
    assert kept == 256  # the other 44 classes carry logit -100


def test_progress_counts_the_reference_views(setup):
    from dgss.engine.predict import predict_image

    _, model, _, rgb = setup
    model.set_vocabulary(list(TRAINED))
    calls = []
    predict_image(model, rgb, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(5, 5)]  # 4 crops + the global view, one batch
    assert "predict_views" not in model.__dict__ and "predict_windows" not in model.__dict__


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--vocab", "{d}/empty.json"], ["--vocab", "empty vocabulary: give at least one class name"]),
        (["--vocab", "{d}/bg.json"], ["--vocab", "empty vocabulary"]),
        (["--attention", "1"], ["--attention", "no adapter tokens"]),
        (["--backend", "onnxruntime"], ["--backend onnxruntime cannot run catseg-tiny", "--backend torch"]),
        (["--precision", "int8"], ["--precision int8", "--precision fp32"]),
    ],
    ids=["empty-json", "only-background", "attention", "onnxruntime", "int8"],
)
def test_bad_input_is_one_line(setup, tmp_path, capsys, extra, words):
    d, _, ckpt, _ = setup
    (d / "empty.json").write_text("[]")
    (d / "bg.json").write_text('["background"]')
    argv = ["predict", str(d / "street.png"), "--model", str(ckpt), "--random-weights", "--out", str(tmp_path / "o")]
    code, _, err = run(argv + [e.replace("{d}", str(d)) for e in extra], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("dgss predict: error: "), err
    assert all(w in lines[0] for w in words), lines[0]
    assert not (tmp_path / "o" / "street_label.png").exists()


def test_empty_vocabulary_in_python_names_the_fix():
    from dgss.errors import VocabularyError

    model = build_catseg("catseg-tiny", class_names=TRAINED)
    with pytest.raises(VocabularyError, match="empty vocabulary: give at least one class name"):
        model.set_vocabulary([])
    assert model.class_names == TRAINED


def test_preset_needs_a_vocabulary_and_runs_with_one(setup, tmp_path, capsys):
    d = setup[0]
    argv = ["predict", str(d / "street.png"), "--model", "catseg-tiny", "--random-weights", "--out"]
    code, _, err = run([*argv, str(tmp_path / "a")], capsys)
    assert code == 2 and err.strip() == (
        "dgss predict: error: catseg-tiny has no vocabulary: name the classes with --classes or --vocab"
    )
    code, _, err = run([*argv, str(tmp_path / "b"), "--classes", "road, sky"], capsys)
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "b" / "street_label.png")).max() <= 1
    code, _, err = run(["export", "catseg-tiny", str(tmp_path / "x.onnx"), "--random-weights"], capsys)
    assert code == 2 and "catseg-tiny has no vocabulary: name the classes with --classes or --vocab" in err
