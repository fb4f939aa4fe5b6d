"""Load a model from a checkpoint file, an exported model folder, or ``hf-hub:org/name[@revision]``.

Hub references are resolved with ``huggingface_hub.snapshot_download`` (the standard cache; with
``HF_HUB_OFFLINE=1`` only the cache is used). Frozen encoders are never part of a model folder: they come
from ``weights`` (``--weights NAME=FILE``), or from the file the checkpoint recorded if it exists here;
either way their SHA-256 must match the one recorded at training time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import HubError, OptionError

HUB_PREFIX = "hf-hub:"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def is_model_reference(spec) -> bool:
    """True for ``hf-hub:...`` and for folders (an exported model folder is expected there)."""
    s = str(spec)
    return s.startswith(HUB_PREFIX) or Path(s).is_dir()


def parse_hub_reference(spec: str) -> tuple[str, str | None]:
    """``hf-hub:org/name[@revision]`` -> (``org/name``, revision or None)."""
    body = spec[len(HUB_PREFIX) :] if spec.startswith(HUB_PREFIX) else spec
    repo_id, _, revision = body.partition("@")
    if not _REPO_ID.match(repo_id) or (spec.count("@") and not revision):
        raise HubError(f"model reference {spec!r} is not of the form hf-hub:org/name[@revision]")
    return repo_id, revision or None


def resolve_model_dir(spec: str | Path) -> Path:
    """The local folder of a model reference: the folder itself, or the Hub snapshot in the cache."""
    s = str(spec)
    if s.startswith(HUB_PREFIX):
        repo_id, revision = parse_hub_reference(s)
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            path = Path(snapshot_download(repo_id, revision=revision, repo_type="model"))
        except LocalEntryNotFoundError:
            raise HubError(
                f"{s}: not in the Hugging Face cache and the Hub cannot be reached (HF_HUB_OFFLINE=1 "
                "or no network); download it once online, or pass an exported model folder"
            ) from None
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
            raise HubError(f"{s}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
        except (HfHubHTTPError, OSError) as e:
            raise HubError(
                f"{s}: could not download from the Hugging Face Hub ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''})"
            ) from None
    else:
        path = Path(s)
        if not path.is_dir():
            raise HubError(f"model folder {path} does not exist")
    if not (path / MODEL_FILE).is_file():
        raise HubError(
            f"{s}: no {MODEL_FILE} in {path}; a dgss model folder is written by `dgss export-model CHECKPOINT DIR`"
        )
    return path


def checkpoint_path(spec: str | Path) -> Path:
    """The dgss checkpoint file behind a file path, a model folder or a Hub reference."""
    p = Path(str(spec))
    if not str(spec).startswith(HUB_PREFIX) and (p.is_file() or p.suffix == ".safetensors"):
        if not p.is_file():
            raise HubError(f"checkpoint not found: {p}")
        return p
    return resolve_model_dir(spec) / MODEL_FILE


def read_metadata(path: str | Path) -> dict:
    """The decoded metadata of a dgss checkpoint, without reading its tensors."""
    from safetensors import safe_open

    from ..errors import CheckpointError

    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as e:
        raise CheckpointError(f"{path}: not a dgss checkpoint (safetensors expected): {e}") from None
    for k in ("config", "frozen_sources", "vocab"):
        if k in meta:
            meta[k] = json.loads(meta[k])
    return meta


def needed_frozen(frozen_sources: dict) -> dict[str, dict]:
    """The frozen-weight records a model cannot run without: every frozen encoder, and the CLIP file when
    it is marked ``required`` (CAT-Seg's towers; Vireo's CLIP only computes text tables, which may be cached)."""
    return {k: v for k, v in (frozen_sources or {}).items() if v and (k != "clip" or v.get("required"))}


def weights_hint(frozen_sources: dict, config: dict | None = None) -> list[str]:
    """One ``NAME=FILE (SHA-256 ..., licence)`` entry per frozen encoder a model needs."""
    out = []
    for name, rec in needed_frozen(frozen_sources).items():
        enc = (config or {}).get(name) or {}
        if rec.get("random"):
            out.append(f"{name}: RANDOM weights (seed {rec.get('seed', 0)}; --random-weights)")
            continue
        file = (
            Path(str(rec.get("file", "?"))).name if not str(rec.get("file", "")).startswith(HUB_PREFIX) else rec["file"]
        )
        licence = rec.get("licence") or enc.get("licence") or ("MIT (OpenAI CLIP)" if name == "clip" else "unknown")
        out.append(f"{name}={file} (SHA-256 {rec.get('sha256', '?')}, {enc.get('name', '')} licence {licence})")
    return out


def _available(rec: dict) -> bool:
    file = str(rec.get("file") or "")
    return file.startswith(HUB_PREFIX) or (bool(file) and Path(file).is_file())


def load_model(
    spec: str | Path,
    *,
    weights: dict[str, str] | None = None,
    random_weights: bool = False,
    device: str = "cpu",
    allow_hash_mismatch: bool = False,
):
    """A ready (eval mode) :class:`~dgss.models.segmentor.Segmentor` (or CAT-Seg model) from a dgss checkpoint
    file, an exported model folder, or ``hf-hub:org/name[@revision]``.

    ``weights``: frozen encoder files by name (``encoder``, ``depth_encoder``, ``clip``), as ``--weights``;
    their SHA-256 must equal the recorded one unless ``allow_hash_mismatch``. ``random_weights``: random
    frozen encoders (tests, demos). Raises :class:`HubError` naming the files to pass when frozen
    weights are missing.
    """
    from ..models.checkpoint import load_checkpoint

    weights = dict(weights or {})
    path = checkpoint_path(spec)
    meta = read_metadata(path)
    if not random_weights:
        frozen = needed_frozen(meta.get("frozen_sources") or {})
        given = {k for k in frozen if weights.get(k) or (k == "clip" and weights.get("encoder"))}  # CAT-Seg alias
        missing = {k: v for k, v in frozen.items() if k not in given and not v.get("random") and not _available(v)}
        if missing:
            hints = weights_hint(missing, meta.get("config"))
            raise HubError(
                f"{spec} needs its frozen encoder weights, which are never bundled with a model: pass "
                f"--weights {' '.join(h.split(' (')[0] for h in hints)} (files or hf-hub: ids); "
                f"expected: {'; '.join(hints)}"
            )
    model = load_checkpoint(
        path, frozen_weights=weights, random_frozen=random_weights, allow_frozen_hash_mismatch=allow_hash_mismatch
    )
    if not random_weights:
        model.check_frozen_weights()
    return model.eval().to(device)


def load_for_inference(spec: str, weights: dict[str, str], random_weights: bool, *, allow_hash_mismatch=False):
    """A model for inference from ``spec``: a dgss checkpoint file, an exported model folder,
    ``hf-hub:org/name[@revision]``, or a preset name (untrained head: only useful with random weights for
    smoke tests, or to look at depth / attention). ``weights`` maps frozen parts to their files."""
    from ..models.build import load_frozen_weights
    from ..models.catseg import CATSEG_PRESETS, build_catseg
    from ..models.checkpoint import load_checkpoint
    from ..models.presets import PRESETS, build_preset

    if is_model_reference(spec):  # an exported model folder or hf-hub:org/name[@revision]
        model = load_model(
            spec, weights=weights, random_weights=random_weights, allow_hash_mismatch=allow_hash_mismatch
        )
    elif Path(spec).is_file():
        model = load_checkpoint(
            spec, frozen_weights=weights, random_frozen=random_weights, allow_frozen_hash_mismatch=allow_hash_mismatch
        )
    elif spec in PRESETS:
        model = load_frozen_weights(build_preset(spec), weights, random=random_weights)
    elif spec in CATSEG_PRESETS:  # untrained aggregator, no vocabulary until --classes / --vocab
        model = build_catseg(spec)
        model.load_clip_weights(weights.get("clip") or weights.get("encoder"), random=random_weights)
    else:
        raise OptionError(
            f"--model {spec!r} is neither a checkpoint file nor a preset"
            + (" (it is a folder)" if Path(spec).is_dir() else "")
            + f"; presets: {', '.join(sorted(PRESETS) + list(CATSEG_PRESETS))}"
        )
    if not random_weights:
        model.check_frozen_weights()
    return model
