"""Text tables (K+1, P, D): every class (+ "background") encoded with every prompt template, cached.

Row k, template p: ``normalise(mean_s normalise(clip(template_p(synonym_s))))``. Tables are computed
once per (CLIP weights, template list, vocabulary) and stored as safetensors under
``$DGSS_CACHE_DIR/text_tables`` (default ``~/.cache/dgss``), so a run that changes nothing never
re-encodes text, and a model can be built without CLIP when its tables are cached. There is no
fallback to random text: no cache and no CLIP is an error.

Text towers that are trained (CAT-Seg) cache their embeddings under :func:`embedding_key`, which hashes
the tower's current tensors (:func:`module_digest`): a training step gives a new key, never a stale table.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..backbones.clip_text import ClipTextEncoder
from ..data.vocab import Vocabulary, synonyms
from ..errors import TextTableError


def cache_dir() -> Path:
    root = Path(os.environ.get("DGSS_CACHE_DIR", Path.home() / ".cache" / "dgss"))
    return root / "text_tables"


def table_key(clip_id: str, templates: list[str], names: tuple[str, ...]) -> str:
    blob = json.dumps({"clip": clip_id, "templates": list(templates), "names": list(names)}, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@torch.no_grad()
def compute_text_table(encoder: ClipTextEncoder, names: tuple[str, ...], templates: list[str]) -> torch.Tensor:
    """(len(names), P, D) unit-norm rows; ", " synonyms averaged per template then re-normalised."""
    prompts, owners = [], []
    for i, name in enumerate(names):
        for syn in synonyms(name):
            for t in templates:
                prompts.append(t.replace("{}", syn))
                owners.append(i)
    feats = encoder.encode(prompts)  # (n_prompts, D)
    P, D = len(templates), feats.shape[-1]
    table = torch.zeros(len(names), P, D)
    counts = torch.zeros(len(names))
    feats = feats.view(-1, P, D)  # prompts come in blocks of P
    for j, owner in enumerate(owners[::P]):
        table[owner] += feats[j]
        counts[owner] += 1
    return F.normalize(table / counts.view(-1, 1, 1), dim=-1)


def text_table(
    vocab: Vocabulary,
    templates: list[str],
    *,
    encoder: ClipTextEncoder | None = None,
    clip_id: str | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Table for ``vocab`` + background: from the cache, else computed with ``encoder`` and cached.

    ``clip_id`` identifies the CLIP weights (``encoder.fingerprint()``, or the SHA-256 recorded in a
    checkpoint when no encoder is at hand).
    """
    if clip_id is None:
        if encoder is None:
            raise TextTableError("text tables need the CLIP text encoder or the identity of its weights")
        clip_id = encoder.fingerprint()
    names = vocab.with_background
    path = cache_dir() / f"{table_key(clip_id, templates, names)}.safetensors"
    if use_cache and path.is_file():
        return load_file(str(path))["table"]
    if encoder is None:
        raise TextTableError(
            f"no cached text table for this vocabulary ({len(vocab.names)} classes, {len(templates)} templates) and "
            "no CLIP text encoder to compute it: pass the CLIP weights (--weights clip=FILE on the command line)"
        )
    table = compute_text_table(encoder, names, templates)
    if use_cache:
        from ..files import atomic_write

        meta = {"clip": clip_id, "num_templates": str(len(templates)), "names": json.dumps(list(names))}
        atomic_write(path, lambda tmp: save_file({"table": table.contiguous()}, tmp, metadata=meta))
    return table


def module_digest(module: torch.nn.Module) -> str:
    """SHA-256 of every tensor of ``module`` (names, shapes, dtypes, values): the identity of trained weights."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def embedding_key(kind: str, weights_digest: str, prompt: dict, names: tuple[str, ...]) -> str:
    """Cache key of the text embeddings of ``names`` by a tower whose tensors hash to ``weights_digest``."""
    blob = json.dumps(
        {"kind": kind, "weights": weights_digest, "prompt": prompt, "names": list(names)}, ensure_ascii=False
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def cached_embeddings(key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The tensor cached under ``key`` (a file in :func:`cache_dir`), else ``compute()``, stored under it."""
    path = cache_dir() / f"emb-{key}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))["embeddings"]
        except (SafetensorError, OSError, KeyError):  # a damaged cache file is recomputed and replaced
            pass
    emb = compute()
    from ..files import atomic_write

    atomic_write(path, lambda tmp: save_file({"embeddings": emb.detach().cpu().contiguous()}, tmp), durable=False)
    return emb
