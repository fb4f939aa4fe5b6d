"""Frozen CLIP text tower (open_clip's ``TextTransformer``) and its tokenizer, for Vireo's text tables.

The papers use OpenAI CLIP ViT-L/14@336px: width 768, 12 layers, 12 heads, context 77, projection
768 -> 768 (123,650,304 parameters). Weights load from OpenAI's TorchScript ``ViT-L-14-336px.pt`` or
open_clip / timm checkpoints (the same key names); the visual tower in those files is ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FrozenWeightsError, TooLongPromptError
from .weights import read_state_dict, resolve_source, sha256_file

MIT = "MIT"


@dataclass(frozen=True)
class ClipTextConfig:
    name: str = "clip-l-336-text"
    width: int = 768
    layers: int = 12
    heads: int = 12
    embed_dim: int = 768
    context_length: int = 77
    vocab_size: int = 49408
    quick_gelu: bool = True
    licence: str = MIT
    default_weights: str = "hf-hub:timm/vit_large_patch14_clip_336.openai/open_clip_model.safetensors"


TEXT_ENCODERS = {
    "clip-l-336-text": ClipTextConfig(),
    # tests and CPU demos: the real tokenizer, a 2-layer 64-wide tower, 32-d output
    "tiny-clip-text": ClipTextConfig(
        name="tiny-clip-text", width=64, layers=2, heads=2, embed_dim=32, default_weights=""
    ),
}
_IGNORED = ("visual.", "logit_scale", "logit_bias", "input_resolution", "context_length", "vocab_size")


class ClipTextEncoder(nn.Module):
    """``encode(texts) -> (n, embed_dim)`` L2-normalised text features; frozen, eval mode."""

    def __init__(self, cfg: ClipTextConfig = ClipTextConfig()):
        super().__init__()
        from open_clip.model import CLIPTextCfg, _build_text_tower

        self.cfg = cfg
        self.text = _build_text_tower(
            cfg.embed_dim,
            CLIPTextCfg(
                context_length=cfg.context_length,
                vocab_size=cfg.vocab_size,
                width=cfg.width,
                heads=cfg.heads,
                layers=cfg.layers,
            ),
            quick_gelu=cfg.quick_gelu,
        )
        for p in self.parameters():
            p.requires_grad_(False)
        self.frozen_source: dict | None = None
        self.train(False)

    def train(self, mode: bool = True) -> ClipTextEncoder:
        return super().train(False)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """CLIP BPE tokens (n, 77); a prompt that does not fit raises :class:`TooLongPromptError`."""
        from open_clip.tokenizer import _tokenizer as bpe

        sot, eot = bpe.sot_token_id, bpe.eot_token_id
        n_ctx = self.cfg.context_length
        out = torch.zeros(len(texts), n_ctx, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [sot] + bpe.encode(t) + [eot]
            if len(ids) > n_ctx:
                raise TooLongPromptError(f"prompt {t[:60]!r}... has {len(ids)} tokens; CLIP's context is {n_ctx}")
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        tokens = self.tokenize(texts)
        device = next(self.parameters()).device
        feats = [self.text(tokens[i : i + batch_size].to(device)).float() for i in range(0, len(tokens), batch_size)]
        return F.normalize(torch.cat(feats), dim=-1)

    def load(self, source: str | os.PathLike) -> ClipTextEncoder:
        path = resolve_source(source)
        sd = read_state_dict(path)
        sd = {k: v for k, v in sd.items() if not k.startswith(_IGNORED)}
        target = self.text.state_dict()
        missing = sorted(set(target) - set(sd))
        unexpected = sorted(set(sd) - set(target))
        wrong = [k for k in set(sd) & set(target) if sd[k].shape != target[k].shape]
        if missing or unexpected or wrong:
            raise FrozenWeightsError(
                f"{path} does not match the CLIP text tower {self.cfg.name!r}: missing "
                f"{missing[:6]}, unexpected {unexpected[:6]}, wrong shapes {sorted(wrong)[:6]}"
            )
        self.text.load_state_dict(sd)
        self.frozen_source = {"file": str(source), "sha256": sha256_file(path), "licence": self.cfg.licence}
        return self

    def fingerprint(self) -> str:
        """Identity of the weights for text-table caching: the file hash, or a hash of the tensors."""
        if self.frozen_source and self.frozen_source.get("sha256"):
            return self.frozen_source["sha256"]
        import hashlib

        h = hashlib.sha256()
        for k, v in sorted(self.text.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return "tensors:" + h.hexdigest()


def build_text_encoder(
    name: str, source: str | os.PathLike | None = None, *, random_seed: int | None = None
) -> ClipTextEncoder:
    """The frozen CLIP text tower ``name`` (a key of :data:`TEXT_ENCODERS`) loaded from ``source``
    (file or ``hf-hub:`` id; default: its public weights), or, with ``random_seed``, reproducible
    random weights for tests and demos (recorded in ``frozen_source``)."""
    cfg = TEXT_ENCODERS[name]
    if random_seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_seed)
            enc = ClipTextEncoder(cfg)
        enc.frozen_source = {"random": True, "seed": random_seed}
        return enc
    source = source or cfg.default_weights
    if not source:
        raise FrozenWeightsError(
            f"no weights for the CLIP text encoder {name!r}: pass its file "
            "(weights.text_encoder in a run config, --weights clip=... on the command line)"
        )
    return ClipTextEncoder(cfg).load(source)
