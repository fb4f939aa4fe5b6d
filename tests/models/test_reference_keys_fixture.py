"""dgss's reference-checkpoint names and shapes vs key lists derived from the original projects (issue 11).

The fixtures in ``tests/fixtures/reference_keys/`` are NOT written from dgss: they come from
``tools/reference_keys/derive_reference_keys.py``, which instantiates mmseg/mmdet/mmcv's
``Mask2FormerHead`` with REIN's config and adds the REIN / DepthForge / Vireo head and adapter parameters
read from those repositories (see the script's docstring and each file's ``# source:`` lines).
Everything runs on the meta device or on uint8 stand-in tensors, so the whole module takes seconds.
"""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dgss.cli import main
from dgss.models.checkpoint import save_checkpoint
from dgss.models.presets import build_preset
from dgss.models.reference import IGNORED_PREFIXES, from_reference

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reference_keys"
METHODS = ("rein", "depthforge", "vireo")

# Reference keys that dgss deliberately does not export and skips on import (dgss.models.reference
# IGNORED_PREFIXES, weights.md §5): Vireo creates feat_conv / out_conv but never uses them.
# (``vpt_transforms`` is an empty ModuleList in all three reference heads, so it has no keys.)
IGNORED_IN_FIXTURE = {
    "rein": set(),
    "depthforge": set(),
    "vireo": {
        "decode_head.feat_conv.weight",
        "decode_head.feat_conv.bias",
        "decode_head.out_conv.weight",
        "decode_head.out_conv.bias",
    },
}


def read_fixture(name: str) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    lines = (FIXTURES / name).read_text().splitlines()
    assert lines[0].startswith("# source: ")
    for line in lines:
        if line.startswith("#"):
            continue
        key, shape = line.split("\t")
        assert key not in out, f"duplicate key {key} in {name}"
        out[key] = () if shape == "()" else tuple(int(n) for n in shape.split(","))
    assert list(out) == sorted(out), f"{name} is not sorted"
    return out


def reference_fixture(method: str) -> dict[str, tuple[int, ...]]:
    return {**read_fixture(f"backbone_{method}.txt"), **read_fixture(f"decode_head_{method}.txt")}


@pytest.fixture(scope="module")
def presets():
    with torch.device("meta"):
        return {m: build_preset(f"{m}-dinov2-l") for m in METHODS}


def shapes(sd) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


@pytest.mark.parametrize("method", METHODS)
def test_fixture_ignored_keys_are_the_documented_ones(method):
    ref = reference_fixture(method)
    assert {k for k in ref if k.startswith(IGNORED_PREFIXES)} == IGNORED_IN_FIXTURE[method]
    prefix = {"rein": "backbone.reins.", "depthforge": "backbone.depthforge.", "vireo": "backbone.vireo."}[method]
    assert all(k.startswith((prefix, "decode_head.")) for k in ref)


@pytest.mark.parametrize("method", METHODS)
def test_cli_export_matches_reference_keys(method, presets, tmp_path):
    """`dgss convert --to reference` on a checkpoint with the preset's real names and shapes.

    The tensors are uint8 zeros (the exporter only renames), so the files stay small and fast.
    """
    model = presets[method]
    stand_in = SimpleNamespace(
        cfg=model.cfg,
        frozen_sources=model.frozen_sources,
        trainable_state_dict=lambda: {
            k: torch.zeros(v.shape, dtype=torch.uint8) for k, v in model.trainable_state_dict().items()
        },
    )
    src = save_checkpoint(stand_in, tmp_path / f"{method}.safetensors")
    dst = tmp_path / f"{method}_reference.pth"
    assert main(["convert", str(src), str(dst), "--to", "reference"]) == 0
    exported = torch.load(dst, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    want = {k: v for k, v in reference_fixture(method).items() if k not in IGNORED_IN_FIXTURE[method]}
    got = shapes(exported)
    assert sorted(set(got) - set(want)) == [], "dgss exports keys the reference does not have"
    assert sorted(set(want) - set(got)) == [], "dgss misses keys the reference has"
    assert {k: (got[k], want[k]) for k in got if got[k] != want[k]} == {}


@pytest.mark.parametrize("method", METHODS)
def test_reference_keys_import_onto_trainable_state(method, presets):
    """Every fixture key (ignored ones included, as in a real reference file) lands on a dgss parameter
    of the same shape, and every trainable dgss parameter is covered."""
    ref = {k: torch.empty(s, device="meta") for k, s in reference_fixture(method).items()}
    imported = shapes(from_reference(ref, method))
    assert imported == shapes(presets[method].trainable_state_dict())
