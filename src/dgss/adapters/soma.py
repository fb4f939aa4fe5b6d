"""SoMA: minor singular components of the frozen weights, adapted at the weight level (``docs/methods/soma.md``).

Per adapted Linear y = W x + b of block l >= ``start_block`` (W (out, in) frozen; a fused ``attn.qkv``
is split into its q, k, v row blocks, each its own SVD)::

    U, S, Vh = svd(W)  (float64)        r smallest triplets (pretrained_minor) or r largest (pretrained_major)
    A  = diag(sqrt(S_r / s)) Vh_r  (r, in)       B = U_r diag(sqrt(S_r / s))  (out, r)       s = alpha / r
    A0, B0 = A, B   (frozen buffers: the init snapshot)
    ΔW = s · ((B − B0) A + B0 (A − A0))   (= s·(BA − B0A0); exactly 0, bit for bit, while A = A0 and B = B0)
    W' = W + ΔW          b' = trainable copy of b          y = x W'ᵀ + b'

W' and b' substitute ``W`` and ``b`` for the duration of the block call (LoRA's substitution): the frozen
encoder and its state dict stay the public weights; the residual W − s·B0A0 is never stored. A and B come
from the weights that are actually loaded (:meth:`SoMAAdapter.initialize_from`); until then the adapter
refuses to train. In eval mode (no autograd) W' and b' are computed once and cached until ``train()``,
``load_state_dict`` or any in-place change of the tensors they come from.

Init modes: ``pretrained_minor`` (default, the method as published), ``pretrained_major`` (ablation),
``reference`` (minor components of a default-initialised Linear drawn from the run seed, A0 = B0 = 0: the
released code's behaviour), ``import`` (factors of a released checkpoint, A0 = B0 = 0, so W' = W + s·BA).

Names: ``adapter.blocks.<l>.<target>.{lora_A (n, r, in), lora_B (n, out/n, r), init_A, init_B, bias}``
with n = 3 for a fused qkv (q, k, v) and 1 otherwise; attention that keeps its biases itself
(``attn.q_bias`` / ``attn.v_bias``, DINOv3) gets ``q_bias`` / ``v_bias`` copies instead of ``bias``.
DINOv2-L (rank 16, blocks 8-23): 4,866,048 trainable parameters (4,718,592 factors + 147,456 biases).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast

import torch
from torch import nn

from ..errors import AdapterInitError
from .base import BlockAdapter
from .lora import substituted_weights

InitMode = Literal["pretrained_minor", "pretrained_major", "reference", "import"]
INIT_MODES = ("pretrained_minor", "pretrained_major", "reference", "import")
SPLIT_ROWS = {"attn.qkv": 3}  # fused targets: number of row blocks, each with its own SVD
ATTENTION_BIASES = ("q_bias", "k_bias", "v_bias")  # biases an attention module may hold beside a bias-free qkv


def default_targets(family: str) -> tuple[str, ...]:
    """Every Linear of a block: attention in/out projections and the MLP."""
    if family == "eva02":
        return ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.proj", "mlp.fc1_g", "mlp.fc1_x", "mlp.fc2")
    return ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


def default_start_block(depth: int) -> int:
    """First adapted block: 8 of 24 (reference), floor(L/3) elsewhere (our choice)."""
    return depth // 3


@dataclass(frozen=True)
class SoMAConfig:
    """SoMA on the Linears of blocks ``start_block``..L-1 (defaults: DINOv2-L, 4,866,048 parameters)."""

    num_layers: int = 24
    embed_dim: int = 1024
    rank: int = 16
    alpha: float = 16.0  # s = alpha / rank = 1 (reference)
    targets: tuple[str, ...] = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    start_block: int = 8
    init: InitMode = "pretrained_minor"
    train_bias: bool = True  # trainable copies of the targets' biases (reference: bias = "all")

    def __post_init__(self):
        if self.init not in INIT_MODES:
            raise ValueError(f"SoMA init must be one of {', '.join(INIT_MODES)}, got {self.init!r}")
        if self.rank < 1:
            raise ValueError(f"SoMA rank must be >= 1, got {self.rank}")
        if not self.targets:
            raise ValueError("SoMA needs at least one target Linear")
        if not 0 <= self.start_block < self.num_layers:
            raise ValueError(f"SoMA start_block must be in [0, {self.num_layers}), got {self.start_block}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    @property
    def layers(self) -> range:
        return range(self.start_block, self.num_layers)


def svd_factors(weight: torch.Tensor, rank: int, scaling: float, *, minor: bool = True):
    """(A (r, in), B (out, r)) in float64 from the r smallest (``minor``) or largest singular triplets of
    ``weight`` (out, in): A = diag(sqrt(S_r/s)) Vh_r, B = U_r diag(sqrt(S_r/s)), so s·B A = U_r diag(S_r) Vh_r."""
    U, S, Vh = torch.linalg.svd(weight.detach().to(torch.float64), full_matrices=False)
    idx = slice(S.shape[0] - rank, None) if minor else slice(0, rank)
    root = (S[idx] / scaling).sqrt()
    return root[:, None] * Vh[idx], U[:, idx] * root[None, :]


class SoMATarget(nn.Module):
    """Factors, init snapshot and bias copies of one adapted Linear (``n`` row blocks)."""

    init_A: torch.Tensor  # buffers: the factors at initialisation
    init_B: torch.Tensor

    def __init__(self, out_features: int, in_features: int, rank: int, splits: int, biases: dict[str, int]):
        super().__init__()
        if out_features % splits:
            raise ValueError(f"{out_features} output rows cannot be split into {splits} blocks")
        rows = out_features // splits
        self.lora_A = nn.Parameter(torch.zeros(splits, rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(splits, rows, rank))
        self.register_buffer("init_A", torch.zeros(splits, rank, in_features))
        self.register_buffer("init_B", torch.zeros(splits, rows, rank))
        self.bias_names = tuple(biases)
        for name, n in biases.items():
            self.register_parameter(name, nn.Parameter(torch.zeros(n)))

    def delta(self, scaling: float) -> torch.Tensor:
        """ΔW = s·((B − B0) A + B0 (A − A0)) with the row blocks stacked: (out, in)."""
        A, B, A0, B0 = self.lora_A, self.lora_B, self.init_A, self.init_B
        d = torch.matmul(B - B0, A) + torch.matmul(B0, A - A0)
        return (scaling * d).reshape(-1, A.shape[-1])


def _bias_sources(block: nn.Module, target: str) -> list[tuple[str, str, str]]:
    """(name in the adapter, module path in the block, attribute) of every bias the target Linear uses."""
    lin = block.get_submodule(target)
    if isinstance(getattr(lin, "bias", None), nn.Parameter):
        return [("bias", target, "bias")]
    parent_path = target.rsplit(".", 1)[0] if "." in target else ""
    if target.endswith("qkv"):
        parent = block.get_submodule(parent_path) if parent_path else block
        return [
            (name, parent_path, name)
            for name in ATTENTION_BIASES
            if isinstance(getattr(parent, name, None), nn.Parameter)
        ]
    return []


class SoMAAdapter(BlockAdapter):
    """``run_block(encoder, l, x, state)``: frozen block l with W' = W + ΔW and b' on every target.

    Built for one encoder (the target shapes and biases are read from its blocks; works on the meta device).
    """

    def __init__(self, cfg: SoMAConfig, encoder):
        super().__init__()
        self.cfg = cfg
        blk = encoder.blocks[cfg.start_block]
        self.sources: dict[str, list[tuple[str, str, str]]] = {}
        shapes = {}
        for target in cfg.targets:
            try:
                lin = blk.get_submodule(target)
            except AttributeError:
                raise ValueError(
                    f"SoMA target {target!r} does not exist in the blocks of {encoder.cfg.name!r} "
                    f"(use {default_targets(encoder.cfg.family)})"
                ) from None
            out_f, in_f = lin.weight.shape
            sources = _bias_sources(blk, target) if cfg.train_bias else []
            self.sources[target] = sources
            splits = SPLIT_ROWS.get(target, 1)
            biases = {
                name: getattr(blk.get_submodule(path) if path else blk, attr).numel() for name, path, attr in sources
            }
            shapes[target] = (out_f, in_f, splits, biases)
        self.blocks = nn.ModuleDict()
        for layer in cfg.layers:
            root = nn.ModuleDict()
            for target, (out_f, in_f, splits, biases) in shapes.items():
                *path, leaf = target.split(".")
                node = root
                for part in path:
                    if part not in node:
                        node[part] = nn.ModuleDict()
                    node = cast(nn.ModuleDict, node[part])
                node[leaf] = SoMATarget(out_f, in_f, cfg.rank, splits, biases)
            self.blocks[str(layer)] = root
        self.initialized = False
        self.init_record: dict | None = None
        self._cache: dict[int, tuple[tuple, list]] = {}
        self.register_load_state_dict_post_hook(_loaded)

    # ------------------------------------------------------------------ bookkeeping
    def target(self, layer: int, target: str) -> SoMATarget:
        return cast(SoMATarget, self.blocks[str(layer)].get_submodule(target))

    def check_encoder(self, encoder) -> None:
        super().check_encoder(encoder)
        for layer in self.cfg.layers:
            blk = encoder.blocks[layer]
            for target in self.cfg.targets:
                t = self.target(layer, target)
                w = blk.get_submodule(target).weight
                want = (t.lora_B.shape[0] * t.lora_B.shape[1], t.lora_A.shape[-1])
                if tuple(w.shape) != want:
                    raise ValueError(f"SoMA target {target!r} of block {layer} has weight {tuple(w.shape)}, not {want}")

    def check_initialized(self) -> None:
        """Refuse to train factors that were never derived from the loaded frozen weights."""
        if not self.initialized:
            raise AdapterInitError(
                "the SoMA adapter was never initialised from the loaded frozen weights: call "
                "adapter.initialize_from(encoder) after loading them (dgss train does), or load a SoMA checkpoint"
            )

    def train(self, mode: bool = True):
        self._cache.clear()
        return super().train(mode)

    def invalidate_cache(self) -> None:
        self._cache.clear()

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def initialize_from(self, encoder, *, seed: int = 0) -> dict:
        """Derive A, B (and A0, B0) from the encoder's loaded weights in float64 and copy its biases.

        ``seed`` draws the random Linears of ``init: reference``. Returns the record kept in checkpoints.
        """
        mode = self.cfg.init
        if mode == "import":
            raise AdapterInitError(
                "SoMA init 'import' takes its factors from a released checkpoint: convert it with "
                "`dgss convert FILE OUT --model soma-...` instead of initialising from the encoder"
            )
        gen = torch.Generator().manual_seed(int(seed))
        device = None
        for layer in self.cfg.layers:
            blk = encoder.blocks[layer]
            for target in self.cfg.targets:
                t = self.target(layer, target)
                weight = blk.get_submodule(target).weight
                if weight.is_meta:
                    raise AdapterInitError("SoMA cannot be initialised from an encoder on the meta device")
                device = weight.device
                n = t.lora_A.shape[0]
                rows = weight.shape[0] // n
                for j in range(n):
                    w = weight[j * rows : (j + 1) * rows]
                    if mode == "reference":  # nn.Linear's default init: U(±1/sqrt(in))
                        bound = 1.0 / math.sqrt(w.shape[1])
                        w = (torch.rand(w.shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound
                    A, B = svd_factors(w, self.cfg.rank, self.cfg.scaling, minor=mode != "pretrained_major")
                    t.lora_A[j].copy_(A)
                    t.lora_B[j].copy_(B)
                if mode == "reference":
                    t.init_A.zero_()
                    t.init_B.zero_()
                else:
                    t.init_A.copy_(t.lora_A)
                    t.init_B.copy_(t.lora_B)
                for name, path, attr in self.sources[target]:
                    getattr(t, name).copy_(getattr(blk.get_submodule(path) if path else blk, attr))
        source = getattr(encoder, "frozen_source", None) or {}
        self.init_record = {
            "mode": mode,
            "svd_dtype": "float64",
            "svd_device": str(device),
            "seed": int(seed) if mode == "reference" else None,
            "frozen_sha256": source.get("sha256"),
            "frozen_random_seed": source.get("seed") if source.get("random") else None,
        }
        self.initialized = True
        self._cache.clear()
        return self.init_record

    @torch.no_grad()
    def minor_alignment(self, encoder) -> dict[str, float]:
        """Diagnostic: per target (and row block), the mean squared cosine of the principal angles between
        the row space of ``lora_A`` and the r minor right-singular vectors of the encoder's W (float64).
        1 = the method's subspace; about r / in = chance (what released factors trained from random minor
        components would show). Keys ``<layer>.<target>[<j>]``."""
        out = {}
        r = self.cfg.rank
        for layer in self.cfg.layers:
            blk = encoder.blocks[layer]
            for target in self.cfg.targets:
                t = self.target(layer, target)
                weight = blk.get_submodule(target).weight.detach().to(torch.float64)
                n = t.lora_A.shape[0]
                for j, w in enumerate(weight.chunk(n)):
                    minor = torch.linalg.svd(w, full_matrices=False)[2][-r:]  # (r, in), orthonormal rows
                    q = torch.linalg.qr(t.lora_A[j].detach().to(torch.float64).T).Q  # (in, r)
                    out[f"{layer}.{target}[{j}]"] = float((minor @ q).square().sum() / r)
        return out

    # ------------------------------------------------------------------ merged weights
    def merged(self, encoder, layer: int) -> list[tuple[nn.Module, str, torch.Tensor]]:
        """(module, attribute, tensor) substitutions of block ``layer``: W' for every target, b' for its biases."""
        blk = encoder.blocks[layer]
        out = []
        for target in self.cfg.targets:
            t = self.target(layer, target)
            lin = blk.get_submodule(target)
            delta = t.delta(self.cfg.scaling)
            out.append((lin, "weight", lin.weight.to(delta.dtype) + delta))
            for name, path, attr in self.sources[target]:
                out.append((blk.get_submodule(path) if path else blk, attr, getattr(t, name)))
        return out

    def _cache_key(self, encoder, layer: int) -> tuple:
        blk = encoder.blocks[layer]
        tensors = [blk.get_submodule(t).weight for t in self.cfg.targets]
        tensors += list(self.blocks[str(layer)].parameters()) + list(self.blocks[str(layer)].buffers())
        return tuple((x.data_ptr(), x._version, x.dtype) for x in tensors)

    def substitutions(self, encoder, layer: int) -> list[tuple[nn.Module, str, torch.Tensor]]:
        """:meth:`merged`, cached in eval mode without autograd."""
        if self.training or torch.is_grad_enabled():
            return self.merged(encoder, layer)
        key = self._cache_key(encoder, layer)
        hit = self._cache.get(layer)
        if hit is None or hit[0] != key:
            with torch.no_grad():
                subs = [(m, a, x.detach()) for m, a, x in self.merged(encoder, layer)]
            self._cache[layer] = hit = (key, subs)
        return hit[1]

    @torch.no_grad()
    def merged_encoder_state(self, encoder) -> dict[str, torch.Tensor]:
        """The encoder's own state dict (``encoder.vit`` names) with W' and b' written in: a plain encoder."""
        sd = {k: v.detach().clone() for k, v in encoder.vit.state_dict().items()}
        names = {id(p): k for k, p in encoder.vit.named_parameters()}
        for layer in self.cfg.layers:
            for module, attr, tensor in self.merged(encoder, layer):
                key = names[id(module._parameters[attr])]
                sd[key] = tensor.detach().to(sd[key].dtype).clone()
        return sd

    # ------------------------------------------------------------------ forward
    def run_block(self, encoder, layer: int, tokens: torch.Tensor, state) -> torch.Tensor:
        if layer < self.cfg.start_block:
            return encoder.forward_block(layer, tokens, state)
        if not self.initialized:
            if self.training and torch.is_grad_enabled():
                self.check_initialized()
            return encoder.forward_block(layer, tokens, state)  # no factors yet: the frozen block
        with substituted_weights(self.substitutions(encoder, layer)):
            return encoder.forward_block(layer, tokens, state)


def _loaded(module: SoMAAdapter, incompatible) -> None:
    """After ``load_state_dict``: the factors come from a checkpoint; cached W' is stale."""
    module.initialized = True
    module._cache.clear()
