"""Offline, `hf-hub:` weights fail at once with one line (issue 16: five Hub retries, ~50 s of messages)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from dgss.backbones import weights as W
from dgss.cli import main
from dgss.data.scenes import make_scene
from dgss.models.checkpoint import save_checkpoint
from dgss.testing import tiny_segmentor

HUB_ID = "hf-hub:nobody/no-such-repo-dgss/weights.safetensors"
TINY = Path(__file__).resolve().parents[2] / "src" / "dgss" / "configs" / "tiny" / "rein_synthetic.yaml"


@pytest.fixture
def no_download(monkeypatch):
    """Any call of the Hub client's download fails the test (it would retry)."""
    import huggingface_hub

    def forbidden(*a, **k):
        raise AssertionError("hf_hub_download was called although the Hub cannot be used")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", forbidden)


def test_offline_env_fails_fast_without_download(monkeypatch, no_download):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(W.FrozenWeightsError, match="HF_HUB_OFFLINE is set.*local path"):
        W.resolve_source(HUB_ID)
    assert time.perf_counter() - t0 < 2.0


def test_unreachable_hub_fails_fast_without_download(monkeypatch, no_download):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls = []

    def unreachable(address, timeout=None, *a, **k):
        calls.append((address, timeout))
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(W.FrozenWeightsError, match="cannot be reached: Network is unreachable"):
        W.resolve_source(HUB_ID)
    assert calls and calls[0][1] is not None and calls[0][1] <= 5  # one probe with a short timeout


def test_train_with_hub_weights_offline_is_one_line(tmp_path, capsys, monkeypatch, no_download):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    capsys.readouterr()
    t0 = time.perf_counter()
    rc = main(
        [
            "train",
            str(TINY),
            "weights.random=false",
            f"weights.encoder={HUB_ID}",
            "--work-dir",
            str(tmp_path / "run"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and time.perf_counter() - t0 < 30
    (line,) = [ln for ln in err.splitlines() if ln.startswith("dgss train: error: ")]
    assert HUB_ID in line and "HF_HUB_OFFLINE" in line


def test_random_trained_checkpoint_with_given_weights_says_what_to_do(tmp_path, capsys):
    """A checkpoint trained on random encoders: the message names --random-weights (a real flag)."""
    torch.manual_seed(0)
    ckpt = save_checkpoint(tiny_segmentor("rein"), tmp_path / "m.safetensors")
    Image.fromarray(make_scene(1, 64, 96).image).save(tmp_path / "a.png")
    (tmp_path / "enc.pth").write_bytes(b"x")
    for extra in ([], ["--weights", f"encoder={tmp_path / 'enc.pth'}"]):
        capsys.readouterr()
        rc = main(["predict", str(tmp_path / "a.png"), "--model", str(ckpt), *extra, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err and "--random-weights" in err
        if extra:
            assert "pass the encoder weights" not in err  # they were passed: the message must not ask for them
