"""dgss checkpoints: one safetensors file of the trained weights with the full config in its metadata.

Layout (``docs/encoders.md``): tensors = ``Segmentor.trainable_state_dict()`` (frozen encoders are never
saved); metadata = ``format`` ("dgss/1"), ``method``, ``config`` (JSON), ``frozen_sources`` (JSON:
file, sha256, conversion, grid per frozen module), ``vocab`` (JSON list), ``iteration``. Writes are
atomic (temporary file, fsync, rename), so a crash never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..backbones.weights import Role, load_encoder_weights, mark_random
from ..errors import CheckpointError, FrozenWeightsError
from ..files import atomic_write
from .segmentor import Segmentor, SegmentorConfig

if TYPE_CHECKING:
    from .catseg import CATSeg

FORMAT = "dgss/1"


def save_checkpoint(
    model: Segmentor | CATSeg, path: str | os.PathLike, *, iteration: int = 0, extra: dict | None = None
) -> Path:
    """Write the trained weights + config of ``model`` to ``path`` (a ``.safetensors`` file)."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.trainable_state_dict().items()}
    meta = {
        "format": FORMAT,
        "method": model.cfg.method,
        "config": json.dumps(model.cfg.to_dict()),
        "frozen_sources": json.dumps(model.frozen_sources()),
        "vocab": json.dumps(list(model.cfg.class_names)),
        "iteration": str(int(iteration)),
    }
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and decoded metadata of a dgss checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a dgss checkpoint (safetensors expected): {e}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: format {meta.get('format')!r}, expected {FORMAT!r} "
            "(reference checkpoints: import them with `dgss convert` first)"
        )
    decoded = dict(meta)
    for k in ("config", "frozen_sources", "vocab"):
        decoded[k] = json.loads(meta[k])
    decoded["iteration"] = int(meta.get("iteration", 0))
    return tensors, decoded


def load_trained_state(model: Segmentor, tensors: dict[str, torch.Tensor], *, origin: str = "checkpoint") -> None:
    """Strictly load adapter + head tensors; mismatches raise :class:`CheckpointError` naming keys."""
    expected = model.trainable_state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(
        f"{k}: {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(tensors) & set(expected)
        if tensors[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{origin} does not fit model {model.cfg.name!r}: missing {missing[:6]}{'...' if len(missing) > 6 else ''}"
            f", unexpected {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}, wrong shapes {wrong[:6]}"
        )
    model.load_state_dict(tensors, strict=False)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    frozen_weights: dict[str, str] | None = None,
    random_frozen: bool = False,
    allow_frozen_hash_mismatch: bool = False,
) -> Segmentor:
    """Rebuild a model from a dgss checkpoint and load its frozen encoder(s).

    ``frozen_weights`` maps a frozen module name (``encoder``, ``depth_encoder``) to a file or Hub id;
    by default the file recorded in the checkpoint is used, and its SHA-256 must match.
    ``random_frozen`` keeps random frozen weights (tests only; such a model says so).
    """
    tensors, meta = read_checkpoint(path)
    if meta.get("method") == "catseg":  # CLIP towers (file or recorded random) + trained tensors
        from .catseg import load_catseg_checkpoint

        return load_catseg_checkpoint(  # type: ignore[return-value]
            tensors,
            meta,
            clip=(frozen_weights or {}).get("clip") or (frozen_weights or {}).get("encoder"),
            random_clip=random_frozen,
            origin=str(path),
            allow_hash_mismatch=allow_frozen_hash_mismatch,
        )
    from .build import build_model

    model = build_model(SegmentorConfig.from_dict(meta["config"]))
    load_trained_state(model, tensors, origin=str(path))
    recorded = meta["frozen_sources"]
    for name, module in model.frozen_modules().items():
        rec = recorded.get(name) or {}
        if random_frozen:
            mark_random(module, seed=int(rec.get("seed", 0)) if rec.get("random") else 0)
            continue
        source = (frozen_weights or {}).get(name) or rec.get("file")
        if rec.get("random") and (frozen_weights or {}).get(name):
            raise FrozenWeightsError(
                f"{path} was trained with random {name} weights: its adapter and head do not fit the given "
                f"{name} weights {source}; run it with random frozen weights as it was trained (--random-weights)"
            )
        if not source or rec.get("random"):
            raise FrozenWeightsError(
                f"{path} was trained with {'random' if rec.get('random') else 'unrecorded'} {name} weights; "
                f"pass the {name} weights explicitly (--weights {name}=FILE on the command line)"
                + (", or run it with random frozen weights too (--random-weights)" if rec.get("random") else "")
            )
        role: Role = "depth" if name == "depth_encoder" else "visual"
        load_encoder_weights(module, source, role=role)
        assert module.frozen_source is not None  # recorded by load_encoder_weights
        want = rec.get("sha256")
        got = module.frozen_source["sha256"]
        if want and want != got and not allow_frozen_hash_mismatch:
            raise FrozenWeightsError(
                f"{name} weights {source} have SHA-256 {got[:12]}..., but the checkpoint was trained with "
                f"{want[:12]}... ({rec.get('file')}); pass --allow-hash-mismatch on the command line "
                "(allow_frozen_hash_mismatch=True in Python) to use them anyway"
            )
    if model.cfg.text is not None:
        _restore_vocabulary(model, meta, (frozen_weights or {}).get("clip"))
    return model


def _restore_vocabulary(model: Segmentor, meta: dict, clip_weights: str | None) -> None:
    """Open-vocabulary models: text tables of the training vocabulary, from the cache or from CLIP."""
    from ..backbones.clip_text import build_text_encoder
    from .vireo import use_vocabulary

    assert model.cfg.text is not None  # called for open-vocabulary models only
    rec = meta["frozen_sources"].get("clip") or {}
    encoder = None
    if clip_weights:
        encoder = build_text_encoder(model.cfg.text.clip, clip_weights)
    elif rec.get("random"):  # trained with a reproducible random text tower (tests, demos): rebuild it
        encoder = build_text_encoder(model.cfg.text.clip, random_seed=int(rec.get("seed", 0)))
    use_vocabulary(model, list(meta["vocab"]), text_encoder=encoder, clip_id=None if encoder else rec.get("clip_id"))
