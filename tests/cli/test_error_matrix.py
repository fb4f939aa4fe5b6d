"""Every verb against a table of bad inputs: exit status, no traceback, the bad argument named, no damage.

Each row runs ``dgss <verb> ...`` in-process (``dgss.cli.main``) on a sandbox: ``inputs/`` holds every
kind of bad file (missing, empty, truncated, wrong type, a folder where a file is expected and the
reverse, a zero-frame video, a regular file to put outputs under; plus a read-only place) and a few valid
but unusual images (1x1, 16-bit, greyscale, RGBA), which must work. Every row asserts

* the exit status (2 for the error contract, 0 for valid inputs);
* no "Traceback" on stderr, and an error line ``dgss <verb>: error: ...`` naming the bad argument or file;
* every ``--flag`` the message names exists in that verb's parser;
* nothing under ``inputs/`` changed (SHA-256 of every file and the list of folders, before and after).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dgss.checks import OWNER_MARKER
from dgss.cli import build_parser, main
from dgss.data.scenes import make_scene
from dgss.models.catseg import build_catseg
from dgss.models.checkpoint import save_checkpoint
from dgss.testing import tiny_segmentor, write_cityscapes_scenes

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "src" / "dgss" / "configs" / "tiny" / "rein_synthetic.yaml")
FLAG_RE = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file, and "<dir>" for every folder under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    base = tmp_path_factory.mktemp("matrix")
    d = base / "inputs"
    d.mkdir()
    torch.manual_seed(0)
    ckpt = save_checkpoint(tiny_segmentor("rein"), d / "ckpt.safetensors")
    catseg = build_catseg("catseg-tiny", class_names=("road", "car", "sky"))
    catseg.randomize_clip(0)
    save_checkpoint(catseg, d / "catseg.safetensors")
    (d / "empty_vocab.json").write_text("[]\n")
    data = ckpt.read_bytes()
    (d / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    (d / "empty.safetensors").write_bytes(b"")
    (d / "text.safetensors").write_text("not a checkpoint\n")
    (d / "empty.yaml").write_text("")
    (d / "afile").write_text("a regular file\n")
    (d / "emptydir").mkdir()
    (d / "dir.png").mkdir()  # a folder where an image file is expected
    (d / "dir.safetensors").mkdir()
    rgb = make_scene(3, 64, 96).image
    Image.fromarray(rgb).save(d / "good.png")
    png = (d / "good.png").read_bytes()
    (d / "trunc.png").write_bytes(png[: len(png) // 3])
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("hello, I am not a PNG\n")
    Image.fromarray(np.full((1, 1, 3), 120, np.uint8)).save(d / "one_pixel.png")
    Image.fromarray(rgb.mean(-1).astype(np.uint8), mode="L").save(d / "grey.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(d / "grey16.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)]), mode="RGBA").save(d / "rgba.png")
    assert Image.open(d / "grey16.png").mode.startswith("I")
    import cv2

    w = cv2.VideoWriter(str(d / "zero.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 64))
    w.release()  # a video of zero frames (OpenCV cannot open it)
    w = cv2.VideoWriter(str(d / "zero.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 64))
    w.release()  # zero frames, but it opens
    assert (d / "zero.mp4").is_file() and cv2.VideoCapture(str(d / "zero.avi")).isOpened()
    foreign = d / "foreign"  # a user's folder: never to be touched
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my own files\n")
    owned_demo = d / "owned_demo"  # an earlier demo folder, whose run/ holds user files
    (owned_demo / "run").mkdir(parents=True)
    (owned_demo / OWNER_MARKER).write_text("x\n")
    (owned_demo / "run" / "thesis.tex").write_text("\\documentclass{article}\n")
    clash = d / "clash"  # someone else's *_label.png: predict must not overwrite
    clash.mkdir()
    (clash / "good_label.png").write_bytes(png)
    write_cityscapes_scenes(d / "cityscapes", seed=10, height=64, width=128)
    (d / "generated").mkdir()  # an earlier generated dataset: not overwritten
    (d / "generated" / "classes.yaml").write_text("classes: [road]\n")
    (base / "outs").mkdir()
    return base


@pytest.fixture(scope="module")
def readonly(tmp_path_factory):
    """A folder where nothing can be created: /sys for root (which ignores permission bits), else a
    folder without write permission."""
    import os

    if os.geteuid() == 0:
        yield Path("/sys")
        return
    ro = tmp_path_factory.mktemp("readonly")
    ro.chmod(0o555)
    yield ro
    ro.chmod(0o755)


# (id, argv with {in} = inputs folder and {out} = a scratch folder outside it, exit status, words stderr names)
ERR = 2
ROWS = [
    # ---------------------------------------------------------------- a read-only place for the output
    (
        "predict-out-readonly",
        ["predict", "{in}/good.png", "--model", "{in}/ckpt.safetensors", "--random-weights", "--out", "{ro}/dgss_out"],
        ERR,
        ["--out", "not writable"],
    ),
    (
        "eval-out-readonly",
        [
            "eval",
            "{in}/ckpt.safetensors",
            "--random-weights",
            "--data",
            "cityscapes={in}/cityscapes",
            "--out",
            "{ro}/dgss_out",
        ],
        ERR,
        ["--out", "not writable"],
    ),
    ("train-workdir-readonly", ["train", TINY, "--work-dir", "{ro}/dgss_run"], ERR, ["--work-dir", "not writable"]),
    ("demo-out-readonly", ["demo", "--out", "{ro}/dgss_demo"], ERR, ["--out", "not writable"]),
    (
        "export-out-readonly",
        ["export", "{in}/ckpt.safetensors", "{ro}/x.onnx", "--random-weights"],
        ERR,
        ["not writable"],
    ),
    (
        "convert-out-readonly",
        ["convert", "{in}/ckpt.safetensors", "{ro}/x.pth", "--to", "reference"],
        ERR,
        ["not writable"],
    ),
    # ---------------------------------------------------------------- params
    ("params-unknown", ["params", "dinov2-xxl"], ERR, ["dinov2-xxl"]),
    ("params-num-classes-0", ["params", "rein-dinov2-l", "--num-classes", "0"], ERR, ["--num-classes"]),
    ("params-clip-text", ["params", "clip-l-336-text"], 0, []),
    ("configs-show-unknown", ["configs", "show", "gta2citys_rein_dinov2_l"], ERR, ["gta2citys_rein_dinov2-l"]),
    ("configs-no-sub-verb", ["configs"], ERR, ["configs"]),
    # ---------------------------------------------------------------- train
    ("train-missing-config", ["train", "{in}/missing.yaml"], ERR, ["missing.yaml"]),
    ("train-empty-config", ["train", "{in}/empty.yaml"], ERR, ["empty.yaml"]),
    ("train-config-is-dir", ["train", "{in}/emptydir"], ERR, ["emptydir"]),
    ("train-config-wrong-type", ["train", "{in}/good.png"], ERR, ["good.png"]),
    ("train-bad-override", ["train", TINY, "train.max_iters=ten"], ERR, ["train.max_iters"]),
    ("train-workdir-under-file", ["train", TINY, "--work-dir", "{in}/afile/run"], ERR, ["--work-dir", "afile"]),
    ("train-resume-nothing", ["train", TINY, "--work-dir", "{out}/fresh", "--resume"], ERR, ["nothing to resume"]),
    ("train-resume-bad-path", ["train", TINY, "--work-dir", "{out}/fresh2", "--resume", "{in}/afile"], ERR, ["afile"]),
    # ---------------------------------------------------------------- eval
    (
        "eval-missing-root",
        ["eval", "{in}/ckpt.safetensors", "--random-weights", "--data", "cityscapes={in}/nope"],
        ERR,
        ["nope"],
    ),
    (
        "eval-empty-root",
        ["eval", "{in}/ckpt.safetensors", "--random-weights", "--data", "cityscapes={in}/emptydir"],
        ERR,
        ["emptydir"],
    ),
    (
        "eval-root-is-file",
        ["eval", "{in}/ckpt.safetensors", "--random-weights", "--data", "cityscapes={in}/afile"],
        ERR,
        ["afile"],
    ),
    (
        "eval-unknown-dataset",
        ["eval", "{in}/ckpt.safetensors", "--random-weights", "--data", "kitti={in}/emptydir"],
        ERR,
        ["kitti"],
    ),
    ("eval-no-equals", ["eval", "{in}/ckpt.safetensors", "--random-weights", "--data", "cityscapes"], ERR, ["--data"]),
    (
        "eval-out-under-file",
        [
            "eval",
            "{in}/ckpt.safetensors",
            "--random-weights",
            "--data",
            "cityscapes={in}/cityscapes",
            "--resize",
            "128",
            "64",
            "--out",
            "{in}/afile/x",
        ],
        ERR,
        ["--out", "afile"],
    ),
    (
        "eval-resize-0",
        ["eval", "{in}/ckpt.safetensors", "--data", "cityscapes={in}/cityscapes", "--resize", "0", "64"],
        ERR,
        ["--resize"],
    ),
    (
        "eval-empty-ckpt",
        [
            "eval",
            "{in}/empty.safetensors",
            "--random-weights",
            "--data",
            "cityscapes={in}/cityscapes",
            "--resize",
            "128",
            "64",
            "--out",
            "{out}/e1",
        ],
        ERR,
        ["empty.safetensors"],
    ),
    (
        "eval-trunc-ckpt",
        [
            "eval",
            "{in}/trunc.safetensors",
            "--random-weights",
            "--data",
            "cityscapes={in}/cityscapes",
            "--resize",
            "128",
            "64",
            "--out",
            "{out}/e2",
        ],
        ERR,
        ["trunc.safetensors"],
    ),
    # ---------------------------------------------------------------- predict
    *[
        (
            f"predict-{name}",
            [
                "predict",
                f"{{in}}/{name}",
                "--model",
                "{in}/ckpt.safetensors",
                "--random-weights",
                "--out",
                f"{{out}}/p-{name}",
            ],
            ERR,
            [name],
        )
        for name in (
            "missing.png",
            "empty.png",
            "text.png",
            "trunc.png",
            "dir.png",
            "emptydir",
            "zero.mp4",
            "zero.avi",
            "afile",
        )
    ],
    (
        "predict-model-missing",
        ["predict", "{in}/good.png", "--model", "{in}/missing.safetensors", "--out", "{out}/p1"],
        ERR,
        ["missing.safetensors"],
    ),
    *[
        (
            f"predict-model-{name}",
            [
                "predict",
                "{in}/good.png",
                "--model",
                f"{{in}}/{name}",
                "--random-weights",
                "--out",
                f"{{out}}/pm-{name}",
            ],
            ERR,
            [name],
        )
        for name in ("empty.safetensors", "trunc.safetensors", "text.safetensors", "dir.safetensors")
    ],
    (
        "predict-random-ckpt-without-flag",
        ["predict", "{in}/good.png", "--model", "{in}/ckpt.safetensors", "--out", "{out}/p2"],
        ERR,
        ["--random-weights", "--weights"],
    ),
    (
        "predict-out-under-file",
        ["predict", "{in}/good.png", "--model", "{in}/ckpt.safetensors", "--random-weights", "--out", "{in}/afile/x"],
        ERR,
        ["--out", "afile"],
    ),
    (
        "predict-out-is-file",
        ["predict", "{in}/good.png", "--model", "{in}/ckpt.safetensors", "--random-weights", "--out", "{in}/afile"],
        ERR,
        ["--out", "afile", "is a file"],
    ),
    (
        "predict-out-clash",
        ["predict", "{in}/good.png", "--model", "{in}/ckpt.safetensors", "--random-weights", "--out", "{in}/clash"],
        ERR,
        ["--out", "good_label.png"],
    ),
    (
        "predict-attention-99",
        [
            "predict",
            "{in}/good.png",
            "--model",
            "{in}/ckpt.safetensors",
            "--random-weights",
            "--attention",
            "99",
            "--out",
            "{out}/p3",
        ],
        ERR,
        ["--attention", "99", "-1..3"],
    ),
    (
        "predict-attention-neg",
        [
            "predict",
            "{in}/good.png",
            "--model",
            "{in}/ckpt.safetensors",
            "--random-weights",
            "--attention",
            "-5",
            "--out",
            "{out}/p4",
        ],
        ERR,
        ["--attention", ">= -1"],
    ),
    (
        "predict-short-side-0",
        [
            "predict",
            "{in}/good.png",
            "--model",
            "{in}/ckpt.safetensors",
            "--random-weights",
            "--short-side",
            "0",
            "--out",
            "{out}/p5",
        ],
        ERR,
        ["--short-side", ">= 1"],
    ),
    (
        "predict-short-side-neg",
        [
            "predict",
            "{in}/good.png",
            "--model",
            "{in}/ckpt.safetensors",
            "--random-weights",
            "--short-side=-5",
            "--out",
            "{out}/p6",
        ],
        ERR,
        ["--short-side"],
    ),
    (
        "predict-every-0",
        [
            "predict",
            "{in}/good.png",
            "--model",
            "{in}/ckpt.safetensors",
            "--random-weights",
            "--every",
            "0",
            "--out",
            "{out}/p7",
        ],
        ERR,
        ["--every"],
    ),
    (
        "predict-classes-empty",
        [
            "predict",
            "{in}/good.png",
            "--model",
            "{in}/ckpt.safetensors",
            "--random-weights",
            "--classes",
            "",
            "--out",
            "{out}/p8",
        ],
        ERR,
        ["--classes", "empty"],
    ),
    (
        "predict-classes-closed-vocab",
        [
            "predict",
            "{in}/good.png",
            "--model",
            "{in}/ckpt.safetensors",
            "--random-weights",
            "--classes",
            "road, car",
            "--out",
            "{out}/p9",
        ],
        ERR,
        ["--classes", "closed-vocabulary"],
    ),
    (
        "predict-weights-no-equals",
        ["predict", "{in}/good.png", "--model", "{in}/ckpt.safetensors", "--weights", "encoder", "--out", "{out}/p10"],
        ERR,
        ["--weights"],
    ),
    (
        "predict-weights-missing-file",
        [
            "predict",
            "{in}/good.png",
            "--model",
            "{in}/ckpt.safetensors",
            "--weights",
            "encoder={in}/missing.pth",
            "--out",
            "{out}/p11",
        ],
        ERR,
        ["missing.pth"],
    ),
    (
        "predict-weights-is-dir",
        [
            "predict",
            "{in}/good.png",
            "--model",
            "{in}/ckpt.safetensors",
            "--weights",
            "encoder={in}/emptydir",
            "--out",
            "{out}/p12",
        ],
        ERR,
        ["emptydir"],
    ),
    # valid but unusual images: they must work
    *[
        (
            f"predict-valid-{name}",
            [
                "predict",
                f"{{in}}/{name}",
                "--model",
                "{in}/ckpt.safetensors",
                "--random-weights",
                "--out",
                f"{{out}}/ok-{name}",
            ],
            0,
            [],
        )
        for name in ("one_pixel.png", "grey.png", "grey16.png", "rgba.png")
    ],
    # ---------------------------------------------------------------- convert
    ("convert-missing", ["convert", "{in}/missing.pth", "{out}/c1.safetensors"], ERR, ["missing.pth"]),
    ("convert-input-is-dir", ["convert", "{in}/emptydir", "{out}/c2.safetensors"], ERR, ["emptydir"]),
    ("convert-empty", ["convert", "{in}/empty.safetensors", "{out}/c3.safetensors"], ERR, ["empty.safetensors"]),
    ("convert-wrong-type", ["convert", "{in}/text.safetensors", "{out}/c4.safetensors"], ERR, ["text.safetensors"]),
    (
        "convert-out-under-file",
        ["convert", "{in}/ckpt.safetensors", "{in}/afile/x.pth", "--to", "reference"],
        ERR,
        ["afile"],
    ),
    (
        "convert-out-is-dir",
        ["convert", "{in}/ckpt.safetensors", "{in}/emptydir", "--to", "reference"],
        ERR,
        ["emptydir"],
    ),
    (
        "convert-trunc-to-reference",
        ["convert", "{in}/trunc.safetensors", "{out}/c5.pth", "--to", "reference"],
        ERR,
        ["trunc.safetensors"],
    ),
    (
        "convert-model-config-wrong-type",
        ["convert", "{in}/ckpt.safetensors", "{out}/c6.safetensors", "--model", "{in}/good.png"],
        ERR,
        ["ckpt.safetensors"],
    ),
    # ---------------------------------------------------------------- export
    (
        "export-empty",
        ["export", "{in}/empty.safetensors", "{out}/x.onnx", "--random-weights"],
        ERR,
        ["empty.safetensors"],
    ),
    (
        "export-out-under-file",
        ["export", "{in}/ckpt.safetensors", "{in}/afile/x.onnx", "--random-weights"],
        ERR,
        ["afile"],
    ),
    ("export-out-is-dir", ["export", "{in}/ckpt.safetensors", "{in}/emptydir", "--random-weights"], ERR, ["emptydir"]),
    ("export-window-0", ["export", "{in}/ckpt.safetensors", "{out}/x.onnx", "--window", "0"], ERR, ["--window"]),
    (
        "export-catseg-vocab-empty",
        ["export", "{in}/catseg.safetensors", "{out}/cs.onnx", "--random-weights", "--vocab", "{in}/empty_vocab.json"],
        ERR,
        ["--vocab", "empty vocabulary"],
    ),
    (
        "export-classes-empty",
        ["export", "{in}/ckpt.safetensors", "{out}/x.onnx", "--classes", " , "],
        ERR,
        ["--classes"],
    ),
    # ---------------------------------------------------------------- CAT-Seg (its own text tower, no adapter)
    (
        "predict-catseg-classes",
        ["predict", "{in}/good.png", "--model", "{in}/catseg.safetensors", "--random-weights"]
        + ["--classes", "road, car, sky, tree", "--out", "{out}/pc1"],
        0,
        [],
    ),
    (
        "predict-catseg-vocab-empty",
        ["predict", "{in}/good.png", "--model", "{in}/catseg.safetensors", "--random-weights"]
        + ["--vocab", "{in}/empty_vocab.json", "--out", "{out}/pc2"],
        ERR,
        ["--vocab", "empty vocabulary"],
    ),
    (
        "predict-catseg-attention",
        ["predict", "{in}/good.png", "--model", "{in}/catseg.safetensors", "--random-weights"]
        + ["--attention", "0", "--out", "{out}/pc3"],
        ERR,
        ["--attention", "no adapter tokens"],
    ),
    (
        "predict-catseg-onnxruntime",
        ["predict", "{in}/good.png", "--model", "{in}/catseg.safetensors", "--random-weights"]
        + ["--backend", "onnxruntime", "--out", "{out}/pc4"],
        ERR,
        ["--backend", "CAT-Seg"],
    ),
    # ---------------------------------------------------------------- data
    ("data-check-missing-root", ["data", "check", "cityscapes", "{in}/nope"], ERR, ["nope"]),
    ("data-check-root-is-file", ["data", "check", "cityscapes", "{in}/afile"], ERR, ["afile"]),
    ("data-check-unknown-dataset", ["data", "check", "kitti", "{in}/cityscapes"], ERR, ["kitti"]),
    ("data-check-workers-0", ["data", "check", "cityscapes", "{in}/cityscapes", "--workers", "0"], ERR, ["--workers"]),
    ("data-prepare-missing-root", ["data", "prepare", "gta5", "{in}/nope"], ERR, ["nope"]),
    ("data-prepare-root-is-file", ["data", "prepare", "cityscapes", "{in}/afile"], ERR, ["afile"]),
    ("data-prepare-empty-root", ["data", "prepare", "cityscapes", "{in}/emptydir"], ERR, ["emptydir"]),
    ("data-stats-missing", ["data", "stats", "folder", "{in}/nope"], ERR, ["nope"]),
    ("data-stats-empty", ["data", "stats", "folder", "{in}/emptydir"], ERR, ["emptydir"]),
    ("data-generate-out-under-file", ["data", "generate-scenes", "{in}/afile/g"], ERR, ["afile"]),
    ("data-generate-existing", ["data", "generate-scenes", "{in}/generated"], ERR, ["generated", "classes.yaml"]),
    ("data-generate-foreign", ["data", "generate-scenes", "{in}/foreign"], ERR, ["foreign", "not empty"]),
    ("data-generate-train-neg", ["data", "generate-scenes", "{out}/g1", "--train=-1"], ERR, ["--train"]),
    # ---------------------------------------------------------------- demo (all refused before any work starts)
    ("demo-out-under-file", ["demo", "--out", "{in}/afile/d"], ERR, ["--out", "afile"]),
    ("demo-out-is-file", ["demo", "--out", "{in}/afile"], ERR, ["--out", "afile", "is a file"]),
    ("demo-out-foreign", ["demo", "--out", "{in}/foreign"], ERR, ["--out", "foreign", "not empty"]),
    ("demo-run-dir-with-user-files", ["demo", "--out", "{in}/owned_demo"], ERR, ["run", "did not write"]),
    ("demo-iters-0", ["demo", "--iters", "0", "--out", "{out}/d1"], ERR, ["--iters"]),
    ("demo-lr-0", ["demo", "--lr", "0", "--out", "{out}/d2"], ERR, ["--lr"]),
    ("demo-severity-9", ["demo", "--severity", "9", "--out", "{out}/d3"], ERR, ["--severity"]),
    ("demo-methods-unknown", ["demo", "--methods", "rein,nope", "--out", "{out}/d4"], ERR, ["nope"]),
    # ---------------------------------------------------------------- app (option checks; serving: tests/app)
    ("app-port-0", ["app", "--port", "0"], ERR, ["--port"]),
    ("app-short-side-0", ["app", "--short-side", "0"], ERR, ["--short-side"]),
    ("app-max-megapixels-0", ["app", "--max-megapixels", "0"], ERR, ["--max-megapixels"]),
    # ---------------------------------------------------------------- export-model / push (issue 14's verbs)
    ("export-model-empty", ["export-model", "{in}/empty.safetensors", "{out}/m1"], ERR, ["empty.safetensors"]),
    (
        "export-model-out-under-file",
        ["export-model", "{in}/ckpt.safetensors", "{in}/afile/m", "--random-weights"],
        ERR,
        ["afile"],
    ),
    ("push-missing-folder", ["push", "{in}/nope", "org/name"], ERR, ["nope"]),
]


def verb_parser(argv: list[str]):
    """The argparse parser of the verb (and sub-verb) ``argv`` starts with."""
    import argparse

    parser = build_parser()
    for token in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or token not in subs[0].choices:
            break
        parser = subs[0].choices[token]
    return parser


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse rejected an option value at parse time
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_matrix(row, sandbox, readonly, capsys, monkeypatch):
    name, argv, status, names = row
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("DGSS_DEBUG", raising=False)
    inputs, outs = sandbox / "inputs", sandbox / "outs"
    argv = [a.replace("{in}", str(inputs)).replace("{out}", str(outs)).replace("{ro}", str(readonly)) for a in argv]
    before = tree_digest(inputs)
    code, err = run_cli(argv, capsys)
    assert tree_digest(inputs) == before, f"{name}: the input tree changed"
    assert "Traceback" not in err, err
    assert code == status, f"{name}: exit {code}, expected {status}\n{err}"
    if status == 0:
        if argv[0] == "predict":  # a label map of the input's full size
            src, out = Path(argv[1]), Path(argv[argv.index("--out") + 1])
            with Image.open(src) as im:
                size = (im.height, im.width)
            lab = np.asarray(Image.open(out / f"{src.stem}_label.png"))
            assert lab.shape == size and lab.max() < 19
        return
    verb = " ".join(argv[:2]) if argv[0] == "data" else argv[0]
    lines = [ln for ln in err.splitlines() if ln.startswith(f"dgss {verb}: error: ")]
    assert len(lines) == 1, f"{name}: expected one `dgss {verb}: error:` line, got:\n{err}"
    for word in names:
        assert word in lines[0], f"{name}: {word!r} not named in {lines[0]!r}"
    flags = set(FLAG_RE.findall(lines[0]))
    parser = verb_parser(argv)
    known = {s for a in parser._actions for s in a.option_strings}
    assert flags <= known, f"{name}: the message names flags {sorted(flags - known)} that `dgss {verb}` lacks"


def test_matrix_covers_every_verb():
    verbs = {r[1][0] if r[1][0] != "data" else " ".join(r[1][:2]) for r in ROWS}
    import argparse

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    expected = set(sub.choices) - {"data"}
    (data_sub,) = [a for a in sub.choices["data"]._actions if isinstance(a, argparse._SubParsersAction)]
    expected |= {f"data {v}" for v in data_sub.choices}
    assert expected <= verbs, f"verbs without a row: {sorted(expected - verbs)}"


def test_debug_shows_the_traceback(sandbox, capsys, monkeypatch):
    code, err = run_cli(
        [
            "predict",
            str(sandbox / "inputs" / "text.png"),
            "--model",
            str(sandbox / "inputs" / "ckpt.safetensors"),
            "--random-weights",
            "--out",
            str(sandbox / "outs" / "dbg"),
            "--debug",
        ],
        capsys,
    )
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("dgss predict: error:")
    monkeypatch.setenv("DGSS_DEBUG", "1")
    code, err = run_cli(["params", "nope"], capsys)
    assert code == 2 and "Traceback" in err


def test_unexpected_exception_is_reported_as_a_bug(capsys, monkeypatch):
    import dgss.commands.params as params

    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(params, "cmd_params", boom)
    code, err = run_cli(["params", "dinov2-l"], capsys)
    assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err
    assert err.strip().splitlines()[-1].startswith("dgss params: internal error (ZeroDivisionError): this is a bug")
