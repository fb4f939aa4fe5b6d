"""`dgss export-model CKPT DIR`: a dgss checkpoint as a folder the Hugging Face Hub takes as a model repo.

The folder holds ``model.safetensors`` (the checkpoint's tensors, bit for bit, and its metadata with
frozen-weight paths reduced to file names), ``config.json`` (segmentor config, vocabulary, frozen-weight
sources with SHA-256 and licences, training config), ``README.md`` (the model card, `model_card.py`)
and ``example.png`` (a prediction on a generated scene). Frozen encoders are never bundled. The folder
is written under a temporary name next to ``DIR`` and renamed when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import HubError
from .model_card import render_model_card
from .resolve import CONFIG_FILE, HUB_PREFIX, MODEL_FILE, needed_frozen, read_metadata

EXAMPLE_FILE = "example.png"
CARD_FILE = "README.md"


def _portable(file: str | None) -> str | None:
    """A frozen-weight source without the exporter's directories (Hub ids unchanged)."""
    if not file or str(file).startswith(HUB_PREFIX):
        return file
    return Path(str(file)).name


def folder_config(meta: dict) -> dict:
    """``config.json`` content from a checkpoint's decoded metadata."""
    seg = meta["config"]
    frozen = {}
    for name, rec in (meta.get("frozen_sources") or {}).items():
        if not rec:
            continue
        enc = seg.get(name) or {}
        if name == "clip":
            frozen[name] = {
                "architecture": (seg.get("text") or {}).get("clip") or seg.get("name"),
                "random": bool(rec.get("random")),
                "file": _portable(rec.get("file")),
                "sha256": rec.get("sha256"),
                "licence": rec.get("licence") or "MIT (OpenAI CLIP)",
                "used_for": rec.get("used_for") or "text tables only",
            }
            if rec.get("random"):
                frozen[name]["seed"] = rec.get("seed", 0)
            continue
        frozen[name] = {
            "architecture": enc.get("name"),
            "random": bool(rec.get("random")),
            "file": _portable(rec.get("file")),
            "sha256": rec.get("sha256"),
            "licence": rec.get("licence") or enc.get("licence"),
            "conversion": rec.get("conversion"),
            "publisher_source": enc.get("default_weights"),
        }
        if rec.get("random"):
            frozen[name]["seed"] = rec.get("seed", 0)
    run = meta.get("run_config")
    run = json.loads(run) if isinstance(run, str) else run
    datasets = []
    if isinstance(run, dict):
        t = (run.get("data") or {}).get("train") or {}
        if t.get("dataset"):
            datasets.append(
                str(t["dataset"])
                if t["dataset"] != "folder"
                else Path(str(t.get("root") or (run.get("data") or {}).get("root") or "folder")).name
            )
    return {
        "library_name": "dgss",
        "format": meta.get("format"),
        "method": meta.get("method", seg.get("method")),
        "name": seg.get("name"),
        "num_classes": len(meta.get("vocab") or seg.get("class_names") or []),
        "vocabulary": list(meta.get("vocab") or seg.get("class_names") or []),
        "iteration": int(meta.get("iteration", 0)),
        "frozen_weights": frozen,
        "training_datasets": datasets,
        "segmentor_config": seg,
        "training_config": run,
    }


def _example_picture(checkpoint: Path, meta: dict, weights: dict[str, str] | None, random_weights: bool) -> np.ndarray:
    """Input | prediction (with legend) on a generated street scene, at the model's crop size."""
    from .. import viz
    from ..data.scenes import make_scene
    from ..engine.predict import predict_image, render_overlay
    from .resolve import load_model

    random = random_weights or all(r.get("random") for r in needed_frozen(meta.get("frozen_sources") or {}).values())
    model = load_model(checkpoint, weights=weights, random_weights=random)
    crop = int(meta["config"].get("crop_size") or 512)
    h = max(160, min(crop, 512))
    rgb = make_scene(7, h, 2 * h).image
    pred = predict_image(model, rgb)
    names = list(model.class_names) or [f"class {k}" for k in range(model.num_classes)]
    tiles = [rgb, render_overlay(rgb, pred.label, names, palette=model.palette)]
    H = max(t.shape[0] for t in tiles)
    pic = np.concatenate([np.pad(t, ((0, H - t.shape[0]), (0, 0), (0, 0)), constant_values=255) for t in tiles], axis=1)
    if random:
        pic = np.concatenate(
            [
                viz.banner(
                    "RANDOM frozen weights: the picture shows the pipeline, not the method", pic.shape[1], size=14
                ),
                pic,
            ],
            axis=0,
        )
    return pic


def export_model(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    eval_json: Sequence[str | Path] = (),
    weights: dict[str, str] | None = None,
    random_weights: bool = False,
    example: bool = True,
    repo_id: str = "org/name",
    force: bool = False,
) -> Path:
    """Write the model folder of ``checkpoint`` to ``out_dir`` (see the module docstring).

    ``eval_json``: `dgss eval` ``results.json`` files whose tables go into the card. ``weights`` /
    ``random_weights``: frozen weights to run the example prediction (checkpoints trained with random frozen
    weights use random ones). ``force`` replaces an existing model folder (never any other folder).
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ..models.checkpoint import read_checkpoint

    checkpoint, out = Path(checkpoint), Path(out_dir)
    tensors, _ = read_checkpoint(checkpoint)  # validates the format
    meta = read_metadata(checkpoint)
    with safe_open(str(checkpoint), "pt") as f:
        raw_meta = dict(f.metadata() or {})
    if out.exists():
        is_model_folder = (out / CONFIG_FILE).is_file() and '"library_name": "dgss"' in (out / CONFIG_FILE).read_text()
        if not out.is_dir() or (any(out.iterdir()) and not (force and is_model_folder)):
            raise HubError(
                f"{out} exists and is not empty: choose a new folder"
                + (" (--force replaces an earlier dgss model folder)" if not force else "")
            )
    results = []
    for p in eval_json:
        try:
            results.append(json.loads(Path(p).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise HubError(f"--eval-json {p}: cannot read a `dgss eval` results.json ({e})") from None
        if not isinstance(results[-1], dict) or "domains" not in results[-1]:
            raise HubError(f"--eval-json {p}: not a `dgss eval` results.json (no 'domains')")
    config = folder_config(meta)
    sources = {
        k: ({**v, "file": _portable(v.get("file"))} if v else v) for k, v in (meta.get("frozen_sources") or {}).items()
    }
    raw_meta["frozen_sources"] = json.dumps(sources)
    raw_meta["exported_from"] = checkpoint.name
    pic = _example_picture(checkpoint, meta, weights, random_weights) if example else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(tensors, str(tmp / MODEL_FILE), metadata=raw_meta)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        if pic is not None:
            from .. import viz

            viz.save_png(pic, tmp / EXAMPLE_FILE)
        (tmp / CARD_FILE).write_text(
            render_model_card(
                config, results=results, example=EXAMPLE_FILE if pic is not None else None, repo_hint=repo_id
            )
        )
        umask = os.umask(0)
        os.umask(umask)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o777 & ~umask)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
