"""Shareable models: `dgss export-model` writes a Hub model folder; it loads back bit-identically from the folder
and through `huggingface_hub` with HF_HUB_OFFLINE=1 (a cache laid out here with the library's own cache
functions; the loader is not mocked), in `dgss.load_model`, `dgss predict`, `dgss eval` and the app service.
Frozen encoders are never bundled: the card and the error say which files to pass, and the SHA-256 applies."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import dgss
from dgss.cli import main
from dgss.errors import HubError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread

ROOT = Path(__file__).resolve().parents[2]
REPO = "dgss-test/tiny-depthforge"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CLASSES = ("road", "car", "sky")


def make_checkpoint(path: Path, method: str = "depthforge") -> Path:
    """A tiny checkpoint whose trainable weights are not at their initial values."""
    from dgss.backbones.weights import mark_random
    from dgss.models.checkpoint import save_checkpoint
    from dgss.models.segmentor import Segmentor
    from dgss.testing import tiny_segmentor_config

    torch.manual_seed(0)
    if method == "vireo":  # as `dgss train` builds it for a folder dataset whose classes.yaml has a synonym
        from dgss.config import ModelConfig, segmentor_config_from
        from dgss.models.vireo import use_vocabulary
        from dgss.testing import tiny_text_encoder

        (path.parent / "classes.yaml").write_text("classes: [road, {name: car, synonyms: [automobile]}, sky]\n")
        model = Segmentor(
            segmentor_config_from(ModelConfig(method="vireo", tiny=True, vocab=str(path.parent / "classes.yaml")))
        )
        for seed, m in enumerate(model.frozen_modules().values()):
            mark_random(m, seed=seed)
        use_vocabulary(model, list(model.cfg.class_names), text_encoder=tiny_text_encoder())
    else:
        model = Segmentor(dataclasses.replace(tiny_segmentor_config(method, num_classes=3), class_names=CLASSES))
        for seed, m in enumerate(model.frozen_modules().values()):
            mark_random(m, seed=seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    run = {"name": "tiny_run", "data": {"train": {"dataset": "folder", "root": "/somewhere/street5"}}}
    return save_checkpoint(model, path, iteration=7, extra={"run_config": json.dumps(run)})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hub")
    ckpt = make_checkpoint(tmp / "iter_000007.safetensors")
    results = {
        "mean": 41.5,
        "mean_over": ["street5/clean", "street5/night"],
        "dataset": "folder",
        "split": "val",
        "domains": {
            "street5/clean": {
                "mIoU": 50.25,
                "images": 2,
                "pixels": 10,
                "IoU": {"road": 80.0, "car": 20.5, "sky": 50.25},
            },
            "street5/night": {"mIoU": 32.75, "images": 2, "pixels": 10, "IoU": {"road": 60.0, "car": None, "sky": 5.5}},
        },
    }
    (tmp / "results.json").write_text(json.dumps(results))
    out = tmp / "model"
    assert main(["export-model", str(ckpt), str(out), "--eval-json", str(tmp / "results.json"), "--repo-id", REPO]) == 0
    return ckpt, out


def scene():
    from dgss.data.scenes import make_scene

    return make_scene(11, 64, 128).image


def logits_of(model) -> torch.Tensor:
    from dgss.engine.predict import prepare_input

    with torch.inference_mode():
        return model.slide_inference(prepare_input(model, scene()))


def test_folder_layout_weights_config_and_card(exported):
    ckpt, out = exported
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "example.png", "model.safetensors"]
    a, b = load_file(str(ckpt)), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["library_name"] == "dgss" and cfg["vocabulary"] == list(CLASSES) and cfg["iteration"] == 7
    assert cfg["segmentor_config"]["depth_encoder"]["name"] == "dav2-s"
    assert set(cfg["frozen_weights"]) == {"encoder", "depth_encoder"}
    assert cfg["frozen_weights"]["depth_encoder"]["licence"] == "Apache-2.0"  # dav2-s (tiny); DAv2-L is CC-BY-NC
    card = (out / "README.md").read_text()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "dgss" and front["license"] == "apache-2.0"
    assert {"dgss", "depthforge", "random-frozen-weights"} <= set(front["tags"])
    assert front["datasets"] == ["street5"] and front["metrics"] == ["mean_iou"]
    values = [r["metrics"][0]["value"] for r in front["model-index"][0]["results"]]
    assert values == [50.25, 32.75]
    assert "| **mIoU** | 50.25 | 32.75 | **41.50** |" in card  # the eval JSON's table, as given
    assert "| car | 20.50 | – | |" in card
    assert f"dgss predict my_images/ --model hf-hub:{REPO} --random-weights" in card
    assert "![example prediction](example.png)" in card
    assert Image.open(out / "example.png").size[1] >= 160


def test_loads_bit_identically_from_the_folder(exported):
    ckpt, out = exported
    from dgss.models.checkpoint import load_checkpoint

    ref = load_checkpoint(ckpt, random_frozen=True).eval()
    got = dgss.load_model(out, random_weights=True)
    sa, sb = ref.state_dict(), got.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(logits_of(ref), logits_of(got))
    assert got.class_names == CLASSES


def lay_out_hub_cache(cache: Path, repo_id: str, folder: Path, commit: str, refs=("main", "v1")) -> None:
    """The snapshot of a model repo as `huggingface_hub` stores downloads: blobs, snapshots/<commit>, refs, tree."""
    from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache
    from huggingface_hub.file_download import (
        _cache_commit_hash_for_specific_revision,
        _create_symlink,
        repo_folder_name,
    )

    storage = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    entries = {}
    for f in sorted(folder.iterdir()):
        data = f.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        blob = storage / "blobs" / sha
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        (storage / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
        _create_symlink(str(blob), str(storage / "snapshots" / commit / f.name), new_blob=True)
        git_sha = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        entries[f.name] = TreeCacheEntry(size=len(data), blob_id=git_sha, lfs_sha256=sha, lfs_size=len(data))
    write_tree_cache(str(storage), commit, entries)
    for ref in refs:
        _cache_commit_hash_for_specific_revision(str(storage), ref, commit)


@pytest.fixture
def offline_cache(exported, tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hf_cache"
    lay_out_hub_cache(cache, REPO, exported[1], COMMIT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("ref", [f"hf-hub:{REPO}", f"hf-hub:{REPO}@v1", f"hf-hub:{REPO}@{COMMIT}"])
def test_loads_bit_identically_through_the_offline_hub_cache(exported, offline_cache, ref):
    ckpt, _ = exported
    from dgss.models.checkpoint import load_checkpoint

    ref_model = load_checkpoint(ckpt, random_frozen=True).eval()
    got = dgss.load_model(ref, random_weights=True)
    sa, sb = ref_model.state_dict(), got.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(logits_of(ref_model), logits_of(got))


def test_unknown_hub_reference_is_a_clear_error(offline_cache):
    with pytest.raises(HubError, match="not in the Hugging Face cache"):
        dgss.load_model("hf-hub:dgss-test/absent", random_weights=True)
    with pytest.raises(HubError, match="hf-hub:org/name"):
        dgss.load_model("hf-hub:not a repo", random_weights=True)


def test_eval_and_app_read_the_hub_model(exported, offline_cache, tmp_path, capsys):
    ckpt, _ = exported
    from dgss.data.generate import generate_scene_folder

    data = generate_scene_folder(
        tmp_path / "d", train=0, val=1, height=64, width=128, classes={c: c for c in CLASSES}
    ).root
    outs = {}
    for name, spec in (("ckpt", str(ckpt)), ("hub", f"hf-hub:{REPO}")):
        assert (
            main(
                [
                    "eval",
                    spec,
                    "--data",
                    f"folder={data}",
                    "--random-weights",
                    "--out",
                    str(tmp_path / name),
                    "--no-progress",
                ]
            )
            == 0
        )
        outs[name] = json.loads((tmp_path / name / "results.json").read_text())["domains"]
    assert outs["ckpt"] == outs["hub"]
    from dgss.app.service import SegmentationService

    labels = [
        SegmentationService(spec, random_weights=True, precision="fp32").segment([("s", scene())])[0].label
        for spec in (str(ckpt), f"hf-hub:{REPO}")
    ]
    assert np.array_equal(*labels)
    capsys.readouterr()


@pytest.mark.e2e
def test_predict_cli_with_hf_hub_offline_in_a_fresh_process(exported, offline_cache, tmp_path):
    ckpt, _ = exported
    Image.fromarray(scene()).save(tmp_path / "s.png")
    assert (
        main(
            [
                "predict",
                str(tmp_path / "s.png"),
                "--model",
                str(ckpt),
                "--random-weights",
                "--precision",
                "fp32",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(offline_cache), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "dgss",
            "predict",
            str(tmp_path / "s.png"),
            "--model",
            f"hf-hub:{REPO}@v1",
            "--random-weights",
            "--precision",
            "fp32",
            "--out",
            str(tmp_path / "b"),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    a, b = (np.array(Image.open(tmp_path / d / "s_label.png")) for d in "ab")
    assert np.array_equal(a, b)


def real_weights_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A REIN checkpoint that recorded a real encoder file (tiny weights written here), and that file."""
    from dgss.backbones.weights import load_encoder_weights
    from dgss.models.checkpoint import save_checkpoint
    from dgss.models.segmentor import Segmentor
    from dgss.testing import tiny_segmentor_config

    torch.manual_seed(1)
    model = Segmentor(dataclasses.replace(tiny_segmentor_config("rein", num_classes=3), class_names=CLASSES))
    weights = tmp_path / "weights" / "dinov2_tiny_pretrain.safetensors"
    weights.parent.mkdir()
    save_file({k: v.contiguous() for k, v in model.encoder.vit.state_dict().items()}, str(weights))
    load_encoder_weights(model.encoder, weights)
    return save_checkpoint(model, tmp_path / "real.safetensors"), weights


def test_frozen_weights_are_never_bundled_and_are_asked_for(tmp_path):
    ckpt, weights = real_weights_checkpoint(tmp_path)
    out = tmp_path / "model"
    assert main(["export-model", str(ckpt), str(out), "--weights", f"encoder={weights}"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "example.png", "model.safetensors"]
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert all(not k.startswith("encoder.") for k in f.keys())  # trainable weights only
        recorded = json.loads(f.metadata()["frozen_sources"])["encoder"]
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert recorded["file"] == weights.name and recorded["sha256"] == sha  # no exporter directories in the file
    card = (out / "README.md").read_text()
    assert f"`{weights.name}`" in card and f"`{sha}`" in card and f"--weights encoder={weights.name}" in card
    with pytest.raises(HubError, match=rf"pass --weights encoder={weights.name} .*SHA-256 {sha}"):
        dgss.load_model(out)
    model = dgss.load_model(out, weights={"encoder": str(weights)})  # the right file: loads, hash checked
    assert model.encoder.frozen_source["sha256"] == sha
    other = tmp_path / "other.safetensors"
    sd = load_file(str(weights))
    sd["norm.weight"] = sd["norm.weight"] + 1
    save_file(sd, str(other))
    from dgss.errors import FrozenWeightsError

    with pytest.raises(FrozenWeightsError, match="SHA-256"):
        dgss.load_model(out, weights={"encoder": str(other)})


def test_export_refuses_a_non_empty_folder_and_bad_eval_json(exported, tmp_path, capsys):
    ckpt, _ = exported
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["export-model", str(ckpt), str(tmp_path / "busy"), "--no-example"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    (tmp_path / "r.json").write_text("{}")
    assert main(["export-model", str(ckpt), str(tmp_path / "m"), "--eval-json", str(tmp_path / "r.json")]) == 2
    assert "not a `dgss eval` results.json" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_vireo_folder_keeps_its_vocabulary(tmp_path):
    ckpt = make_checkpoint(tmp_path / "v.safetensors", "vireo")
    out = tmp_path / "m"
    assert main(["export-model", str(ckpt), str(out), "--no-example"]) == 0
    from dgss.models.checkpoint import load_checkpoint

    ref = load_checkpoint(ckpt, random_frozen=True).eval()
    got = dgss.load_model(out, random_weights=True)
    assert got.class_names == ("road", "car, automobile", "sky")
    assert torch.equal(got.head_table, ref.head_table) and torch.equal(logits_of(ref), logits_of(got))
    card = (out / "README.md").read_text()
    assert "open-vocabulary" in card and "| 1 | car, automobile |" in card


def test_push_is_a_thin_wrapper(tmp_path):
    from dgss.cli import build_parser

    args = build_parser().parse_args(["push", str(tmp_path), "org/name", "--private"])
    assert (args.folder, args.repo_id, args.private) == (str(tmp_path), "org/name", True)
    from dgss.hub.push import push_model_folder

    with pytest.raises(HubError, match="not a dgss model folder"):
        push_model_folder(tmp_path, "org/name")


def test_card_of_a_dav2_large_model_is_non_commercial_and_names_the_files():
    from dgss.hub.model_card import render_model_card

    config = {
        "name": "depthforge-dinov2-l",
        "method": "depthforge",
        "format": "dgss/1",
        "iteration": 40000,
        "vocabulary": ["road", "car"],
        "training_datasets": ["gta5"],
        "frozen_weights": {
            "encoder": {
                "architecture": "dinov2-l",
                "file": "dinov2_vitl14_pretrain.pth",
                "sha256": "ab" * 32,
                "licence": "Apache-2.0",
            },
            "depth_encoder": {
                "architecture": "dav2-l",
                "file": "depth_anything_v2_vitl.pth",
                "sha256": "cd" * 32,
                "licence": "CC-BY-NC-4.0 (non-commercial)",
            },
        },
    }
    card = render_model_card(config, repo_hint="me/df")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["license"] == "cc-by-nc-4.0" and front["datasets"] == ["gta5"] and "model-index" not in front
    assert "**CC-BY-NC-4.0 (non-commercial).**" in card
    assert "--weights encoder=dinov2_vitl14_pretrain.pth depth_encoder=depth_anything_v2_vitl.pth" in card
    assert f"| `depth_encoder` | dav2-l | `depth_anything_v2_vitl.pth` | `{'cd' * 32}` | CC-BY-NC-4.0" in card
    assert "No evaluation was attached" in card and "random" not in card.lower()
