"""`dgss app` in a real headless Chromium (Playwright driving the system's Debian Chromium).

Three `dgss app` pages are served on free loopback ports: a tiny DepthForge checkpoint, a tiny Vireo
checkpoint (both with random frozen weights, asked for with --random-weights) and no model at all. The
expected labels are recomputed here with plain ``slide_inference`` on the same checkpoint.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import socket
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dgss.app.service import generated_scene
from dgss.models.checkpoint import load_checkpoint, save_checkpoint
from dgss.testing import tiny_segmentor, tiny_text_encoder

SHORT_SIDE = 64  # the servers segment at 64 px short side: a few 64-px windows per image (fast)
TRAIN_CLASSES = ["road", "sidewalk", "building", "vegetation", "sky", "person, pedestrian", "car"]
NEW_CLASSES = "road, car, sky"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000
# Gradio's own use of pandas 3 (not ours)
pytestmark = [
    pytest.mark.e2e,  # a real browser against a running app
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if shutil.which("apt-get") is None:
        pytest.skip("no Chromium and no apt-get to install it (Debian: apt-get install chromium chromium-driver)")
    pytest.fail("Chromium is not installed: apt-get install -y chromium chromium-driver (.ci/run does this)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def short(name: str) -> str:
    return name.split(", ")[0].split(",")[0].strip()


def expected_label(ckpt: Path, rgb: np.ndarray, vocab: str | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """The label `dgss predict --short-side 64 --precision fp32` gives, recomputed with slide_inference."""
    model = load_checkpoint(ckpt, random_frozen=True).eval()
    if vocab:
        from dgss.models.vireo import use_vocabulary

        use_vocabulary(model, vocab)  # the tables the server reads: from the cache, no text tower
    H, W = rgb.shape[:2]
    with torch.no_grad():
        x = model.normalize(torch.from_numpy(rgb).permute(2, 0, 1).float()[None])
        s = SHORT_SIDE / min(H, W)
        x = F.interpolate(x, size=(round(H * s), round(W * s)), mode="bilinear", align_corners=False)
        scores = F.interpolate(model.slide_inference(x), size=(H, W), mode="bilinear", align_corners=False)
    return scores[0].argmax(0).numpy(), tuple(model.class_names)


class Server:
    """`dgss app ARGS` served in this process on a free loopback port (the CLI's own page builder; only
    the blocking launch is replaced by a background one)."""

    def __init__(self, args: list[str]):
        from dgss.app import web
        from dgss.cli import build_parser
        from dgss.commands import app as app_cli

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        parsed = build_parser().parse_args(["app", "--port", str(self.port), *args])
        assert parsed.host == "127.0.0.1"  # loopback unless asked otherwise
        self.page = app_cli.build_page(parsed)
        web.serve(self.page, parsed.host, parsed.port, block=False)
        with urllib.request.urlopen(self.url, timeout=30) as r:
            assert r.status == 200

    def stop(self) -> None:
        self.page.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, _text_cache):
    tmp = tmp_path_factory.mktemp("app")
    # untrained heads mostly predict one class everywhere; with these seeds several classes show on the
    # scenes below (DepthForge: 3; Vireo: 2 of its training classes, then 2 of the new ones)
    torch.manual_seed(7)
    df = save_checkpoint(tiny_segmentor("depthforge"), tmp / "depthforge.safetensors")
    torch.manual_seed(1)
    vireo_model = tiny_segmentor("vireo", vocab=TRAIN_CLASSES)
    # trained on this vocabulary: its config says so, as vireo_config's does (the checkpoint records it)
    vireo_model.cfg = dataclasses.replace(
        vireo_model.cfg,
        class_names=tuple(TRAIN_CLASSES),
        text=dataclasses.replace(vireo_model.cfg.text, vocab=tuple(TRAIN_CLASSES)),
    )
    vireo = save_checkpoint(vireo_model, tmp / "vireo.safetensors")
    from dgss.models.vireo import use_vocabulary

    use_vocabulary(vireo_model, NEW_CLASSES, text_encoder=tiny_text_encoder())  # cache the new tables once
    common = ["--random-weights", "--short-side", str(SHORT_SIDE), "--precision", "fp32", "--device", "cpu"]
    started = {}
    try:
        started["depthforge"] = Server(["--model", str(df), *common])
        started["vireo"] = Server(["--model", str(vireo), *common])
        started["none"] = Server(["--demo-out", str(tmp / "no_demo_here")])
        yield {"ckpt": {"depthforge": df, "vireo": vireo}, "tmp": tmp, **started}
    finally:
        for s in started.values():
            s.stop()


@pytest.fixture(scope="module")
def browser(servers):
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="dgss-chromium-"),
            executable_path=exe,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1100},
        )
        yield ctx
        ctx.close()


def open_page(browser, server):
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.url)
    page.wait_for_selector("#dgss-message")
    return page


def pick_scene(page, choice: str) -> None:
    page.locator("#dgss-scene input").click()
    page.get_by_role("option", name=choice).click()


def wait_for_result(page, image_name: str) -> None:
    """Until the legend shows the result for ``image_name`` (the overlay is filled in the same update)."""
    page.wait_for_selector(f'#dgss-legend ul.dgss-legend[data-image="{image_name}"]')
    page.wait_for_function(
        "() => { const i = document.querySelector('#dgss-overlay img'); return i && i.complete && i.naturalWidth > 0; }"
    )


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of equal pixels (argmax near-ties may flip between processes at float rounding level)."""
    assert a.shape == b.shape
    return float((a == b).mean())


def legend_names(page) -> set[str]:
    return set(page.locator("#dgss-legend .dgss-legend-name").all_inner_texts())


def overlay_size(page) -> tuple[int, int]:
    w, h = page.locator("#dgss-overlay img").evaluate("i => [i.naturalWidth, i.naturalHeight]")
    return h, w


def download_label(page) -> np.ndarray:
    href = page.locator("#dgss-label a[download]").get_attribute("href")
    body = page.request.get(href).body()
    return np.asarray(Image.open(io.BytesIO(body)))


def test_scene_overlay_has_the_input_size_and_legend_lists_the_classes_present(servers, browser):
    page = open_page(browser, servers["depthforge"])
    assert "RANDOM weights" in page.locator("#dgss-random-banner").inner_text()
    name, rgb = generated_scene("scene 2 · fog")
    pick_scene(page, "scene 2 · fog")
    wait_for_result(page, name)
    assert overlay_size(page) == rgb.shape[:2]
    label, names = expected_label(servers["ckpt"]["depthforge"], rgb)
    present = {short(names[k]) for k in np.unique(label)}
    assert legend_names(page) == present
    assert agreement(download_label(page), label) > 0.999  # the label PNG offered for download
    table = page.locator("#dgss-shares").inner_text()
    assert all(n in table for n in present)
    # depth map and token attention at the slider's block (last by default), both at the input size
    for el in ("#dgss-depth img", "#dgss-attention img"):
        w, h = page.locator(el).evaluate("i => [i.naturalWidth, i.naturalHeight]")
        assert (h, w) == rgb.shape[:2]
    page.close()


def test_not_an_image_shows_a_message_and_the_server_keeps_serving(servers, browser, tmp_path):
    page = open_page(browser, servers["depthforge"])
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    page.locator("#dgss-upload input[type=file]").set_input_files(str(notes))
    err = page.locator("#dgss-message .dgss-error")
    err.wait_for()
    assert "notes.txt" in err.inner_text() and "not an image file" in err.inner_text()
    assert "Traceback" not in page.content()
    # a truncated PNG: a message too
    name, rgb = generated_scene("scene 1 · clean")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    page.locator("#dgss-upload input[type=file]").set_input_files(str(cut))
    page.wait_for_function("() => document.querySelector('#dgss-message').innerText.includes('cut.png')")
    assert "truncated" in page.locator("#dgss-message").inner_text()
    # still serving: a real image segments
    good = tmp_path / "street.png"
    Image.fromarray(rgb).save(good)
    page.locator("#dgss-upload input[type=file]").set_input_files(str(good))
    wait_for_result(page, "street")
    assert overlay_size(page) == rgb.shape[:2]
    assert page.locator("#dgss-message .dgss-error").count() == 0
    page.close()


def test_vireo_class_names_change_the_legend(servers, browser):
    page = open_page(browser, servers["vireo"])
    box = page.locator("#dgss-classes textarea")
    assert box.input_value() == "; ".join(TRAIN_CLASSES)  # the training vocabulary (";": it has synonyms)
    name, rgb = generated_scene("scene 3 · clean")
    pick_scene(page, "scene 3 · clean")
    wait_for_result(page, name)
    _, train_names = expected_label(servers["ckpt"]["vireo"], rgb)
    before = legend_names(page)
    assert before and before <= {short(n) for n in train_names}
    box.fill(NEW_CLASSES)
    box.press("Enter")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#dgss-legend .dgss-legend-name')]"
        ".every(e => ['road', 'car', 'sky'].includes(e.innerText))"
    )
    label, names = expected_label(servers["ckpt"]["vireo"], rgb, NEW_CLASSES)
    assert names == ("road", "car", "sky")
    after = legend_names(page)
    assert after == {names[k] for k in np.unique(label)} and after != before
    assert agreement(download_label(page), label) > 0.999
    shots = Path(os.environ.get("DGSS_SCREENSHOT_DIR") or servers["tmp"])
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "app_vireo_new_classes.png"), full_page=True)
    # an empty class list: a message, and the model keeps its vocabulary
    box.fill(" , ")
    box.press("Enter")
    page.locator("#dgss-message .dgss-error").wait_for()
    assert "class list is empty" in page.locator("#dgss-message").inner_text()
    # fixed, Enter segments the same scene again
    box.fill(NEW_CLASSES)
    box.press("Enter")
    wait_for_result(page, name)
    assert legend_names(page) == after
    page.close()


def test_without_a_model_the_page_says_how_to_make_one(servers, browser):
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(servers["none"].url)
    page.wait_for_selector("#dgss-model-error")
    assert "no model" in page.locator("#dgss-model-error").inner_text()
    assert "dgss demo" in page.locator("#dgss-model-hint").inner_text()
    page.close()
