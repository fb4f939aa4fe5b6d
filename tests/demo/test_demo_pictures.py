"""`dgss demo` pictures that explain themselves, the whole-run progress bar, and the picture helpers."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from dgss import viz
from dgss.demo.progress import RunProgress

pytestmark = pytest.mark.e2e  # the demo's pictures drawn end to end

RED = (176, 0, 32)


def has_color(img: np.ndarray, rgb, min_pixels: int = 1) -> bool:
    return int((img.reshape(-1, 3) == np.asarray(rgb, np.uint8)).all(1).sum()) >= min_pixels


def test_titled_grid_places_tiles_labels_and_full_width_strips():
    rng = np.random.default_rng(0)
    tiles = [[rng.integers(0, 255, (20, 30, 3), dtype=np.uint8) for _ in range(3)] for _ in range(2)]
    widths = []

    def strip(w):
        widths.append(w)
        return viz.banner("a warning the picture carries", w)

    grid = viz.titled_grid(
        tiles,
        row_labels=["clean", "night"],
        col_titles=["input", "prediction", "truth"],
        header=[strip],
        footer=[np.zeros((5, 10, 3), np.uint8)],
    )
    assert widths == [grid.shape[1]]  # the banner is drawn at the full width
    head = viz.banner("a warning the picture carries", grid.shape[1]).shape[0]
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            hits = [
                (y, x)
                for y in range(grid.shape[0] - 19)
                for x in range(grid.shape[1] - 29)
                if np.array_equal(grid[y, x : x + 30], tile[0]) and np.array_equal(grid[y : y + 20, x : x + 30], tile)
            ]
            assert len(hits) == 1  # every tile, once, unscaled
            if c == 0:
                y, x = hits[0]
                assert (grid[y : y + 20, :x] < 128).any()  # its row label, left of it
            if r == 0:
                y, x = hits[0]
                assert (grid[head:y, x : x + 30] < 128).any()  # its column title, above it
    assert has_color(grid[:head], RED, 100)
    assert grid[-5:, :10].max() == 0 and grid[-5:, 10:].min() == 255  # a narrow footer is padded with white


def test_banner_wraps_and_legend_strip_shows_exactly_the_given_classes():
    assert viz.banner("word " * 40, 200).shape[0] > viz.banner("word " * 40, 2000).shape[0]
    pal = viz.cityscapes_palette()
    names = [f"class{i}" for i in range(19)]
    strip = viz.legend_strip(names, pal, [0, 10, 13], 600)
    for k in range(19):
        assert has_color(strip, pal[k], 50) == (k in (0, 10, 13))


def test_run_progress_eta_covers_the_whole_run(capsys):
    import sys

    prog = RunProgress({"a": (10, 1.0), "b": (30, 1.0)}, file=sys.stdout)  # not a terminal: plain lines
    prog.begin("a")
    assert prog.eta() == pytest.approx(40)  # expected cost before any step
    prog.t0 -= 20  # 20 s for the first 10 of 40 units
    prog.advance(10)
    assert prog.fraction == pytest.approx(0.25)
    assert prog.eta() == pytest.approx(60, rel=0.01)  # the rest at the observed speed
    prog.begin("b")
    prog.advance(100)  # clamped to the stage's steps
    assert prog.fraction == pytest.approx(1.0)
    prog.finish()
    out = capsys.readouterr().out
    assert "demo  25% | a 10/10" in out and "ETA 1:00" in out and "demo 100% | done in" in out


def test_clean_vs_adverse_means_only_where_a_class_occurs():
    from dgss.demo.run import clean_vs_adverse
    from dgss.metrics import DomainResult, MetricsSummary

    nan = math.nan
    doms = {
        "clean": DomainResult(0, [0.5, 0.2, nan], 1, 1),
        "night": DomainResult(0, [0.1, nan, nan], 1, 1),
        "fog": DomainResult(0, [0.3, 0.4, nan], 1, 1),
        "rain": DomainResult(0, [0.2, nan, nan], 1, 1),
        "snow": DomainResult(0, [0.0, nan, nan], 1, 1),
    }
    clean, adverse = clean_vs_adverse(MetricsSummary(["a", "b", "c"], doms, ["night", "fog", "rain", "snow"], 0))
    assert clean[:2] == pytest.approx([50, 20]) and math.isnan(clean[2])
    assert adverse[:2] == pytest.approx([15, 40]) and math.isnan(adverse[2])


def test_demo_pictures_carry_labels_legend_true_depth_and_the_random_warning(tmp_path, capsys):
    from dgss.cli import main

    threads = torch.get_num_threads()
    try:
        rc = main(["demo", "--iters", "2", "--train-scenes", "2", "--val-scenes", "1", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    err = capsys.readouterr().err
    assert "ETA" in err and "demo 100% | done in" in err and "training 2/2" in err
    cond = np.asarray(Image.open(tmp_path / "scene0_conditions.png").convert("RGB"))
    assert cond.shape[1] > 3 * 512 and cond.shape[0] > 5 * 256  # 5 x 3 tiles plus labels and legend
    assert has_color(cond[:60], RED, 1000)  # the random-weights banner on top
    pal = viz.cityscapes_palette()
    gt = np.asarray(Image.open(next((tmp_path / "data" / "cityscapes" / "gtFine" / "val").rglob("*.png"))))
    # the last ground-truth tile (bottom right, 8 px from the edge) ends where the legend begins
    x = cond.shape[1] - 8 - 512
    last = viz.colorize(gt, pal)[-1]
    ends = [y for y in range(cond.shape[0]) if np.array_equal(cond[y, x : x + 512], last)]
    assert ends
    legend = cond[ends[-1] + 1 :]
    assert legend.shape[0] < 100
    for k in np.unique(gt[gt != 255]):
        assert has_color(legend, pal[k], 50)  # every ground-truth class in the legend
    depth = np.asarray(Image.open(tmp_path / "scene0_depth.png").convert("RGB"))
    assert depth.shape[1] > 3 * 512 and has_color(depth[:60], RED, 1000)  # input | true depth | DAv2, warned
    report = (tmp_path / "report.md").read_text()
    assert "![per-class IoU, clean vs adverse](iou_clean_vs_adverse.png)" in report
    chart = Image.open(io.BytesIO((tmp_path / "iou_clean_vs_adverse.png").read_bytes()))
    assert chart.size[0] >= 700
