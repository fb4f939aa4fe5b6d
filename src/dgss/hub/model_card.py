"""The model card (``README.md``) of an exported dgss model folder.

YAML front matter as the Hugging Face Hub reads it (``library_name: dgss``, ``license``, ``tags``,
``datasets``, ``metrics``, ``model-index`` with the evaluation results when an eval JSON is given),
then: what the model is, how to load it, which frozen encoder files to pass (SHA-256, licence), the
licence the frozen encoders impose, the evaluation tables, intended use and limits, the training config.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import yaml

HF_LICENSES = {"Apache-2.0": "apache-2.0", "MIT": "mit"}
NON_COMMERCIAL = "cc-by-nc-4.0"
OPEN_VOCABULARY = ("vireo", "catseg")  # methods that segment class lists given as text
METHOD_TEXT = {
    "rein": "REIN (CVPR 2024): low-rank learnable tokens refining the features of a frozen ViT",
    "depthforge": "DepthForge (ICCV 2025): REIN tokens fed by a frozen Depth Anything V2 encoder, with a depth "
    "refinement decoder",
    "vireo": "Vireo (NeurIPS 2025): open-vocabulary DGSS with GeoText queries, a coarse mask prior and a CLIP text "
    "classifier; it segments any classes named in text",
    "catseg": "CAT-Seg (CVPR 2024): cost aggregation between CLIP image and text embeddings, with the CLIP "
    "attention q/v fine-tuned; it segments any classes named in text",
    "soma": "SoMA (CVPR 2025): the minor singular components of the frozen encoder's weights, trained (the "
    "frozen weights stay as published)",
}


def frozen_encoders(config: dict) -> dict[str, dict]:
    """Frozen encoder entries of ``config.json`` (``frozen_weights``), by module name."""
    return dict(config.get("frozen_weights") or {})


def model_license(config: dict) -> str:
    """The Hub licence id: CC-BY-NC-4.0 as soon as a frozen encoder is non-commercial, else the most
    restrictive known one (Apache-2.0 / MIT, the dgss code's Apache-2.0 by default)."""
    lic = [str(e.get("licence") or "") for e in frozen_encoders(config).values()]
    if any("NC" in x for x in lic):
        return NON_COMMERCIAL
    return "apache-2.0" if any(x == "Apache-2.0" for x in lic) or not lic else HF_LICENSES.get(lic[0], "other")


def dataset_name(result: dict) -> str:
    """The dataset of a results.json: its name, or for a folder dataset the name its domain tags carry."""
    name = str(result.get("dataset") or "?")
    if name == "folder" and result.get("domains"):
        return next(iter(result["domains"])).split("/")[0]
    return name


def _pct(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def eval_tables(results: list[dict]) -> list[str]:
    """Markdown tables of `dgss eval` ``results.json`` files: mIoU per domain, then IoU per class."""
    out: list[str] = []
    for r in results:
        doms = list(r.get("domains") or {})
        title = f"{dataset_name(r)} ({r.get('split', '?')})"
        out += [
            f"#### {title}",
            "",
            "| | " + " | ".join(doms) + f" | mean ({len(r.get('mean_over') or doms)}) |",
            "|---|" + "---:|" * (len(doms) + 1),
            "| **mIoU** | "
            + " | ".join(_pct(r["domains"][d]["mIoU"]) for d in doms)
            + f" | **{_pct(r.get('mean'))}** |",
        ]
        classes = list((r["domains"][doms[0]].get("IoU") or {}) if doms else [])
        for c in classes:
            out.append(f"| {c} | " + " | ".join(_pct(r["domains"][d]["IoU"].get(c)) for d in doms) + " | |")
        out.append("")
    return out


def front_matter(config: dict, results: list[dict]) -> dict:
    meta: dict = {
        "library_name": "dgss",
        "license": model_license(config),
        "pipeline_tag": "image-segmentation",
        "tags": ["semantic-segmentation", "domain-generalization", "dgss", config["method"]],
    }
    if config["method"] in OPEN_VOCABULARY:
        meta["tags"].append("open-vocabulary")
    if any(e.get("random") for e in frozen_encoders(config).values()):
        meta["tags"].append("random-frozen-weights")
    datasets = list(dict.fromkeys([*config.get("training_datasets", []), *(dataset_name(r) for r in results)]))
    meta["datasets"] = datasets or ["unknown"]
    meta["metrics"] = ["mean_iou"]
    if results:
        meta["model-index"] = [
            {
                "name": config["name"],
                "results": [
                    {
                        "task": {"type": "image-segmentation", "name": "Semantic segmentation"},
                        "dataset": {"name": d, "type": dataset_name(r), "split": str(r.get("split", "val"))},
                        "metrics": [{"type": "mean_iou", "name": "mIoU", "value": r["domains"][d]["mIoU"]}],
                    }
                    for r in results
                    for d in r.get("domains", {})
                    if r["domains"][d].get("mIoU") is not None
                ],
            }
        ]
    return meta


def render_model_card(
    config: dict, *, results: Sequence[dict] = (), example: str | None = None, repo_hint: str = "org/name"
) -> str:
    """The README.md text of a model folder described by ``config`` (the folder's config.json)."""
    results = list(results)
    enc = frozen_encoders(config)
    random = [n for n, e in enc.items() if e.get("random")]
    vocab = config.get("vocabulary") or []
    lic = model_license(config)
    lines = [
        "---",
        yaml.safe_dump(front_matter(config, results), sort_keys=False).rstrip(),
        "---",
        "",
        f"# {config['name']}",
        "",
    ]
    if random:
        lines += [
            f"> **Random frozen weights.** This model was trained with random {', '.join(random)} weights "
            "(a demo or test run): its numbers show the pipeline working, not what the method achieves.",
            "",
        ]
    lines += [
        f"A **dgss** model: {METHOD_TEXT.get(config['method'], config['method'])}. "
        f"It predicts **{len(vocab)} classes**"
        + (f": {', '.join(v.split(', ')[0] for v in vocab)}." if vocab else ".")
        + (
            " Being open-vocabulary, it also segments other class lists given as text (no retraining)."
            if config["method"] in OPEN_VOCABULARY
            else ""
        ),
        "",
        f"Trained for {config.get('iteration', 0)} iterations"
        + (f" on {', '.join(config['training_datasets'])}" if config.get("training_datasets") else "")
        + ".",
        "",
    ]
    if example:
        lines += [
            f"![example prediction]({example})",
            "",
            "*Example: a generated street scene (left) and the model's prediction (right).*",
            "",
        ]
    lines += ["## How to use", "", "```bash", "pip install dgss"]
    args = " ".join(f"{n}={e.get('file')}" for n, e in enc.items() if not e.get("random"))
    w = f" --weights {args}" if args else " --random-weights"
    py_weights = ", ".join(f'"{n}": "{e.get("file")}"' for n, e in enc.items() if not e.get("random"))
    py_args = (f", weights={{{py_weights}}}" if py_weights else "") + (", random_weights=True" if random else "")
    lines += [
        f"dgss predict my_images/ --model hf-hub:{repo_hint}{w}",
        f"dgss eval hf-hub:{repo_hint} --data folder=my_dataset{w}",
        f"dgss app --model hf-hub:{repo_hint}{w}",
        "```",
        "",
        "```python",
        "import dgss",
        "from dgss.engine.predict import predict_image, read_rgb",
        "",
        f'model = dgss.load_model("hf-hub:{repo_hint}"{py_args})',
        'labels = predict_image(model, read_rgb("street.jpg")).label   # (H, W) class ids',
        "```",
        "",
        "`hf-hub:org/name@revision` pins a revision; a local copy of this folder works as well "
        "(`--model path/to/folder`). With `HF_HUB_OFFLINE=1` the Hugging Face cache is used.",
        "",
    ]
    lines += [
        "## Frozen encoders (not included)",
        "",
        "The frozen encoders are **never bundled** with a dgss model: download them from their publishers and "
        "pass them with `--weights` (`weights=` in Python). They are checked against the SHA-256 recorded at "
        "training time.",
        "",
        "| module | architecture | file to pass | SHA-256 | licence |",
        "|---|---|---|---|---|",
    ]
    for n, e in enc.items():
        lines.append(
            f"| `{n}` | {e.get('architecture', '?')} | "
            + ("random weights (`--random-weights`)" if e.get("random") else f"`{e.get('file')}`")
            + f" | {'–' if e.get('random') else '`' + str(e.get('sha256')) + '`'} | {e.get('licence') or '?'} |"
        )
    lines += ["", "## Licence", ""]
    if lic == NON_COMMERCIAL:
        lines += [
            "**CC-BY-NC-4.0 (non-commercial).** The frozen Depth Anything V2 Large (or Base) encoder is "
            "licensed CC-BY-NC-4.0, and a model trained on its features inherits that restriction: "
            "no commercial use. (DAv2-Small is Apache-2.0: `depthforge-<enc>-dav2s` models avoid the restriction.)",
            "",
        ]
    else:
        lines += [
            f"`{lic}`, as the frozen encoders it was trained with (see the table above); the dgss code is Apache-2.0.",
            "",
        ]
    lines += ["## Evaluation", ""]
    if results:
        lines += [
            "mIoU and per-class IoU in %, from `dgss eval` (the DG protocol: sliding windows, every domain "
            "reported separately):",
            "",
            *eval_tables(results),
        ]
    else:
        lines += ["No evaluation was attached at export (`dgss export-model ... --eval-json results.json`).", ""]
    lines += [
        "## Intended use and limits",
        "",
        "Semantic segmentation of street scenes (or of the data it was trained on) that stays accurate under "
        "domain shift: other cities, cameras, weather, night. Research use. It was trained on the data named "
        "above only; check it on your own target domain (`dgss eval`) before relying on it, in particular for "
        "safety-relevant decisions. Classes outside its training vocabulary are "
        + (
            "recognised through their text only (open vocabulary), with lower accuracy."
            if config["method"] in OPEN_VOCABULARY
            else "not recognised."
        ),
        "",
    ]
    if vocab:
        lines += ["## Classes", "", "| id | class (synonyms) |", "|---:|---|"]
        lines += [f"| {i} | {v} |" for i, v in enumerate(vocab)]
        lines.append("")
    lines += ["## Training configuration", ""]
    if config.get("training_config"):
        lines += [
            "The `dgss train` run config (all keys, defaults resolved):",
            "",
            "<details><summary>run config (YAML)</summary>",
            "",
            "```yaml",
            yaml.safe_dump(config["training_config"], sort_keys=False).rstrip(),
            "```",
            "",
            "</details>",
            "",
        ]
    else:
        lines += ["Not recorded in the checkpoint. The model's full segmentor configuration is in `config.json`.", ""]
    lines += [
        "## Files",
        "",
        "* `model.safetensors`: the trained weights (adapter + head) with dgss metadata;",
        "* `config.json`: the full segmentor config, vocabulary and frozen-weight sources (SHA-256, licence);",
        "* `README.md`: this card" + ("; `example.png`: the example prediction." if example else "."),
        "",
        f"<!-- written by dgss export-model; config.json: {json.dumps({'format': config.get('format')})} -->",
        "",
    ]
    return "\n".join(lines)
