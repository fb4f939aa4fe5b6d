"""A CAT-Seg model as a shareable model folder: `dgss export-model` writes it, `dgss.load_model` and
`load_for_inference` read it back with bit-identical tensors and outputs; a model trained on a CLIP file asks
for that file (``--weights clip=``) and checks its SHA-256."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import dgss
from catseg_helpers import perturbed, tiny_open_clip
from dgss.cli import main
from dgss.errors import ClipWeightsError, HubError
from dgss.models.catseg import CATSeg, build_catseg
from dgss.models.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ("road", "car", "sky")


def scores(model: CATSeg) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 40, 56, generator=g) * 255
    with torch.inference_mode():
        return model.slide_inference(model.normalize(x))


def same_state(a: CATSeg, b: CATSeg) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("catseg_folder")
    torch.manual_seed(0)
    model = build_catseg("catseg-tiny", class_names=CLASSES)
    model.randomize_clip(0)
    perturbed(model)
    ckpt = save_checkpoint(model, d / "catseg.safetensors", iteration=5)
    out = d / "folder"
    assert main(["export-model", str(ckpt), str(out), "--random-weights"]) == 0
    return model, ckpt, out


def test_folder_config_and_card_describe_catseg(exported):
    _, _, out = exported
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "example.png", "model.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "catseg" and cfg["vocabulary"] == list(CLASSES) and cfg["iteration"] == 5
    clip = cfg["frozen_weights"]["clip"]
    assert clip["random"] and clip["seed"] == 0 and clip["used_for"] == "CLIP image and text towers"
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert {"catseg", "open-vocabulary", "random-frozen-weights"} <= set(front["tags"])
    assert "CAT-Seg (CVPR 2024)" in card and "other class lists given as text" in card


def test_folder_round_trip_is_bit_identical(exported):
    from dgss.hub.resolve import load_for_inference

    model, _, out = exported
    for got in (dgss.load_model(out, random_weights=True), load_for_inference(str(out), {}, True)):
        assert isinstance(got, CATSeg) and not got.training
        assert same_state(model, got)  # the trained tensors and the rebuilt random CLIP towers
        assert got.class_names == CLASSES
        assert torch.equal(scores(got), scores(model))
        got.set_vocabulary(["sky", "tree"])
        model.set_vocabulary(["sky", "tree"])
        assert torch.equal(scores(got), scores(model))
        model.set_vocabulary(list(CLASSES))


def test_a_clip_file_model_asks_for_its_file_and_checks_it(tmp_path):
    def clip_file(seed: int, name: str):
        torch.save(tiny_open_clip(seed).state_dict(), tmp_path / name)
        return tmp_path / name

    clip, other = clip_file(0, "tiny-clip.pt"), clip_file(1, "other-clip.pt")
    torch.manual_seed(0)
    model = build_catseg("catseg-tiny", class_names=CLASSES)
    model.load_clip(clip)
    perturbed(model)
    ckpt = save_checkpoint(model, tmp_path / "real.safetensors")
    out = tmp_path / "folder"
    assert main(["export-model", str(ckpt), str(out), "--weights", f"clip={clip}"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["frozen_weights"]["clip"]["file"] == "tiny-clip.pt"  # no directories of the exporter
    with pytest.raises(HubError, match=r"--weights clip=tiny-clip.pt .*licence MIT \(OpenAI CLIP\)"):
        dgss.load_model(out)
    got = dgss.load_model(out, weights={"clip": str(clip)})
    assert same_state(model, got) and torch.equal(scores(got), scores(model))
    alias = dgss.load_model(out, weights={"encoder": str(clip)})  # the run config's name for the file
    assert torch.equal(scores(alias), scores(model))
    with pytest.raises(ClipWeightsError, match="was trained with CLIP"):
        dgss.load_model(out, weights={"clip": str(other)})
