"""The encoder-adapter-head segmentor: normalise, run the frozen blocks with the adapter between
them, tap four blocks into a stride 4/8/16/32 pyramid, decode with Mask2Former; sliding windows.

Data flow (512 crop, ViT-L/16)::

    image (B,3,512,512) -> embed -> for l in blocks: x = block_l(x); F = adapter(F, l)  (patch tokens)
        [LoRA / AdaptFormer / VPT / SoMA act inside the blocks instead: x = adapter.run_block(encoder, l, x)]
    taps after blocks [7,11,15,23] -> (B,1024,32,32) -> bilinear x4, x2, x1, x0.5
    -> [s4 (128²), s8 (64²), s16 (32²), s32 (16²)] -> Mask2Former(query_embed = adapter query link)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..adapters.adaptformer import AdaptFormerAdapter, AdaptFormerConfig
from ..adapters.base import BlockAdapter
from ..adapters.depthforge import DepthForgeAdapter, DepthForgeConfig
from ..adapters.fada import FADAAdapter, FADAConfig, window_problem
from ..adapters.lora import LoRAAdapter, LoRAConfig
from ..adapters.rein import ReinAdapter, ReinConfig
from ..adapters.soma import SoMAAdapter, SoMAConfig
from ..adapters.vireo import GeoTextAdapter, GeoTextConfig
from ..adapters.vpt import VPTAdapter, VPTConfig
from ..backbones.config import EncoderConfig
from ..backbones.vit_encoder import ViTEncoder, build_encoder
from ..errors import FrozenWeightsError
from ..heads.mask2former import Mask2FormerHead, Mask2FormerHeadConfig
from ..heads.refine import GatedLevelFusion
from ..heads.vireo_head import VireoHead
from ..viz import is_palette

Method = Literal["rein", "freeze", "full", "depthforge", "vireo", "lora", "adaptformer", "vpt", "fada", "soma"]
METHODS = ("rein", "freeze", "full", "depthforge", "vireo", "lora", "adaptformer", "vpt", "fada", "soma")
AdapterConfig = ReinConfig | LoRAConfig | AdaptFormerConfig | VPTConfig | SoMAConfig  # FADAConfig is a ReinConfig
ADAPTER_KINDS = {
    "rein": ReinConfig,
    "depthforge": DepthForgeConfig,
    "geotext": GeoTextConfig,
    "fada": FADAConfig,
    "lora": LoRAConfig,
    "adaptformer": AdaptFormerConfig,
    "vpt": VPTConfig,
    "soma": SoMAConfig,
}
ADAPTER_MODULES = {
    "rein": ReinAdapter,
    "depthforge": DepthForgeAdapter,
    "geotext": GeoTextAdapter,
    "fada": FADAAdapter,
    "lora": LoRAAdapter,
    "adaptformer": AdaptFormerAdapter,
    "vpt": VPTAdapter,
    "soma": SoMAAdapter,  # built for its encoder: SoMAAdapter(cfg, encoder)
}
# the baselines' adapter kind per method (REIN, DepthForge and Vireo: see __post_init__)
BASELINE_ADAPTERS = {
    "lora": LoRAConfig,
    "adaptformer": AdaptFormerConfig,
    "vpt": VPTConfig,
    "fada": FADAConfig,
    "soma": SoMAConfig,
}


def adapter_kind(cfg: AdapterConfig | None) -> str | None:
    if cfg is None:
        return None
    return {cls: kind for kind, cls in ADAPTER_KINDS.items()}[type(cfg)]


@dataclass
class TextSettings:
    """Open-vocabulary parts (Vireo, ``docs/methods/vireo.md`` switches; defaults = reference)."""

    vocab: tuple[str, ...] = ()  # training vocabulary (K names, no background)
    classifier: Literal["text", "linear"] = "text"  # DOV-VEH or Linear(256 -> K+1)
    cmpe: bool = True  # prior generator + prior loss
    cmpe_residual_level: int = 0  # 0: s4 + f_M (code); 3: resize(s32) + f_M (paper)
    cmpe_spatial_weights: Literal["softmax_sigmoid", "softmax_logits"] = "softmax_sigmoid"
    cmpe_loss_weight: float = 0.1
    cmpe_class_chunk: int | None = 32  # classes per chunk of the coarse-mask einsum
    text_vocab: Literal["eval", "train"] = "eval"  # GeoText uses the evaluation vocabulary (reference)
    cls_proj: Literal["linear", "mlp2"] = "linear"  # DOV-VEH projection: Linear (code) / 2-layer MLP (paper)
    logit_scale: Literal["none", "learnable"] = "none"  # optional learnable temperature on text logits
    clip: str = "clip-l-336-text"
    text_dim: int = 768
    encoder_templates: int = 32
    head_templates: int = 80


IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
TAP_SCALES = (4.0, 2.0, 1.0, 0.5)


@dataclass
class SegmentorConfig:
    """Everything that describes a segmentor (serialised into every checkpoint)."""

    name: str
    method: Method
    encoder: EncoderConfig
    head: Mask2FormerHeadConfig
    adapter: AdapterConfig | None = None
    depth_encoder: EncoderConfig | None = None  # frozen depth encoder (DepthForge)
    depth_layer_map: tuple[int, ...] | None = None  # depth block feeding each visual block (None: proportional)
    head_refine: Literal["none", "aag"] = "none"  # depth refinement decoder (gated level fusion) in the head
    refine_split_fusion: bool = True  # fusion without the 4C concatenation (same result)
    text: TextSettings | None = None  # open-vocabulary parts (Vireo)
    loss_mode: Literal["stock", "full_res_query_mean"] = "stock"  # the training loss of the method row:
    #   stock point-sampled Mask2Former loss, or Vireo's full-resolution loss (docs/methods/vireo.md). The one
    #   place the trainer, build_loss and checkpoints read it from.
    grad_checkpoint_frozen: bool = True  # training: recompute frozen blocks in backward (memory)
    depth_interleave: bool = True  # run depth block l just before visual block l
    recompute_level_fusion: bool = True  # training: recompute the AAG level fusion level by level
    recompute_pixel_decoder: bool = True  # training: recompute pixel-decoder layers / FPN steps
    recompute_cmpe: bool = True  # training: recompute Vireo's CMPE class chunks
    frozen_bf16: bool = True  # training in bf16 only: frozen Linear/Conv weights in bf16
    taps: tuple[int, ...] = (7, 11, 15, 23)
    crop_size: int = 512
    slide_stride: int = 341
    window_batch: int = 4  # windows per forward on GPU (CPU: 1, measured faster)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    class_names: tuple[str, ...] = field(default_factory=tuple)
    palette: tuple[tuple[int, int, int], ...] = ()  # display colours per class (classes.yaml); () = default colours

    def __post_init__(self) -> None:
        if self.palette and not is_palette(self.palette, len(self.class_names)):
            raise ValueError(
                f"palette must give one [r, g, b] (0..255) per class name "
                f"({len(self.class_names)}), got {len(self.palette)} entries"
            )
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        if self.loss_mode not in ("stock", "full_res_query_mean"):
            raise ValueError(f"loss_mode must be 'stock' or 'full_res_query_mean', got {self.loss_mode!r}")
        needs_adapter = self.method not in ("freeze", "full")
        if (self.adapter is None) == needs_adapter:
            raise ValueError(f"method {self.method!r} {'needs' if needs_adapter else 'takes no'} adapter")
        if self.method == "depthforge" and not isinstance(self.adapter, DepthForgeConfig):
            raise ValueError("method 'depthforge' needs a DepthForgeConfig adapter")
        if self.method in BASELINE_ADAPTERS and type(self.adapter) is not BASELINE_ADAPTERS[self.method]:
            raise ValueError(
                f"method {self.method!r} needs a {BASELINE_ADAPTERS[self.method].__name__} adapter, "
                f"got {type(self.adapter).__name__}"
            )
        if self.method in ("rein", "depthforge", "vireo") and (
            not isinstance(self.adapter, ReinConfig) or isinstance(self.adapter, FADAConfig)
        ):
            raise ValueError(f"method {self.method!r} needs a REIN-family adapter, got {type(self.adapter).__name__}")
        if self.method in BASELINE_ADAPTERS:
            a, e = self.adapter, self.encoder
            assert a is not None  # its type was checked above
            if a.num_layers != e.depth or a.embed_dim != e.embed_dim:
                raise ValueError(
                    f"the {self.method} adapter is built for {a.num_layers} blocks of width "
                    f"{a.embed_dim}, encoder {e.name!r} has {e.depth} of width {e.embed_dim}"
                )
        if self.method == "vpt" and self.encoder.family == "sam":
            raise ValueError("VPT needs global token-sequence blocks; SAM's windowed blocks have no place for prompts")
        if self.method == "fada":
            p = self.encoder.patch_size
            problem = window_problem((self.crop_size // p, self.crop_size // p), self.encoder.embed_dim)
            if problem is not None or self.crop_size % p:
                raise ValueError(
                    f"FADA cannot run on the {self.crop_size}x{self.crop_size} crop: "
                    f"{problem or f'not a multiple of the patch size {p}'}"
                )
        if (self.method == "vireo") != (self.text is not None):
            raise ValueError("method 'vireo' and only it takes text settings")
        if self.text is not None and not self.text.vocab:
            raise ValueError("text.vocab (the training vocabulary) is empty")
        if isinstance(self.adapter, GeoTextConfig) and self.text is None:
            raise ValueError("a GeoText adapter needs text settings")
        if self.text is not None and self.text.cmpe and self.head.query_source != "link":
            raise ValueError("the CMPE query prior is added to the linked queries: it needs adapter.link_queries")
        fusion = getattr(self.adapter, "depth_fusion", "none")
        if fusion != "none":
            if self.depth_encoder is None:
                raise ValueError(f"depth_fusion {fusion!r} needs a depth_encoder")
            d = self.depth_encoder
            adapter = cast("DepthForgeConfig | GeoTextConfig", self.adapter)  # the configs with depth_fusion
            if d.embed_dim != self.encoder.embed_dim and adapter.depth_dim != d.embed_dim:
                raise ValueError(
                    f"depth encoder width {d.embed_dim} != visual width {self.encoder.embed_dim}: "
                    f"set adapter.depth_dim={d.embed_dim} (a learned projection)"
                )
        if self.depth_layer_map is not None:
            if (
                self.depth_encoder is None
                or len(self.depth_layer_map) != self.encoder.depth
                or any(not 0 <= i < self.depth_encoder.depth for i in self.depth_layer_map)
            ):
                raise ValueError("depth_layer_map needs one depth-block index per visual block")
        if self.head_refine not in ("none", "aag"):
            raise ValueError(f"head_refine must be 'none' or 'aag', got {self.head_refine!r}")
        if len(self.taps) != 4 or any(not 0 <= t < self.encoder.depth for t in self.taps):
            raise ValueError(f"taps must be 4 block indices in [0, {self.encoder.depth}), got {self.taps}")
        if list(self.taps) != sorted(set(self.taps)):
            raise ValueError(f"taps must be strictly increasing (they give s4, s8, s16, s32 in order), got {self.taps}")
        link = self.head.query_source == "link"
        if self.adapter is not None and getattr(self.adapter, "link_queries", False):
            if not link or cast(ReinConfig, self.adapter).num_tokens != self.head.num_queries:
                raise ValueError("with link_queries the head needs query_source='link' and num_queries == num_tokens")
        elif link:
            raise ValueError("query_source='link' needs an adapter with link_queries=True")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["adapter"] is not None:
            d["adapter"]["kind"] = adapter_kind(self.adapter)
        return d

    @property
    def prior_loss_weight(self) -> float:
        """Weight of Vireo's CMPE prior loss (0 without the prior generator)."""
        return self.text.cmpe_loss_weight if self.text is not None and self.text.cmpe else 0.0

    @property
    def depth_in_use(self) -> bool:
        return self.depth_encoder is not None and getattr(self.adapter, "depth_fusion", "none") != "none"

    @classmethod
    def from_dict(cls, d: dict) -> SegmentorConfig:
        d = dict(d)
        d["encoder"] = EncoderConfig.from_dict(d["encoder"])
        d["head"] = Mask2FormerHeadConfig(**d["head"])
        if d.get("adapter"):
            a = dict(d["adapter"])
            kind = a.pop("kind", "depthforge" if d.get("method") == "depthforge" else "rein")
            if kind not in ADAPTER_KINDS:
                raise ValueError(f"unknown adapter kind {kind!r}; known: {', '.join(ADAPTER_KINDS)}")
            d["adapter"] = ADAPTER_KINDS[kind](**{k: tuple(v) if isinstance(v, list) else v for k, v in a.items()})
        else:
            d["adapter"] = None
        if d.get("text"):
            t = dict(d["text"])
            t["vocab"] = tuple(t.get("vocab", ()))
            if "loss_mode" in t:  # checkpoints written before loss_mode moved to the top level
                d.setdefault("loss_mode", t.pop("loss_mode"))
            d["text"] = TextSettings(**t)
        if d.get("depth_encoder"):
            d["depth_encoder"] = EncoderConfig.from_dict(d["depth_encoder"])
        for k in ("taps", "mean", "std", "class_names", "depth_layer_map"):
            if k in d:
                d[k] = tuple(d[k]) if d[k] is not None else None
        if "palette" in d:
            d["palette"] = tuple(tuple(int(v) for v in c) for c in d["palette"] or ())
        return cls(**d)

    def resolved_depth_layer_map(self) -> tuple[int, ...]:
        """Depth block for each visual block: explicit, identity, or proportional (l * Ld // Lv)."""
        if self.depth_layer_map is not None:
            return self.depth_layer_map
        assert self.depth_encoder is not None  # asked for only when depth is in use
        Lv, Ld = self.encoder.depth, self.depth_encoder.depth
        return tuple(l * Ld // Lv for l in range(Lv))


class Segmentor(nn.Module):
    """Frozen (or fine-tuned) ViT + optional adapter + Mask2Former head, assembled from a config."""

    # declared for type checkers (nn.Module attribute access hides them)
    adapter: Any  # one of the dgss.adapters modules (duck-typed: update, all_tokens, query_embed, ...) or None
    mean: torch.Tensor  # buffers (1, 3, 1, 1)
    std: torch.Tensor
    encoder_table: torch.Tensor  # Vireo text tables
    head_table: torch.Tensor
    text_source: dict  # provenance of the text tables (set by use_vocabulary)
    window_forwards = ("predict_windows",)  # the per-window forward(s) slide_inference calls (progress counts them)
    window_graph_problem: str | None = None  # why an exported fixed-window graph cannot replace them (None: it can)

    def __init__(self, cfg: SegmentorConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder: ViTEncoder = build_encoder(cfg.encoder, frozen=cfg.method != "full")
        kind = adapter_kind(cfg.adapter)
        if kind == "soma":  # target shapes and biases are read from the encoder's blocks
            self.adapter = SoMAAdapter(cast(SoMAConfig, cfg.adapter), self.encoder)
        else:
            self.adapter = ADAPTER_MODULES[kind](cfg.adapter) if kind is not None else None
        if isinstance(self.adapter, BlockAdapter):
            self.adapter.check_encoder(self.encoder)
        self.depth_encoder: ViTEncoder | None = None
        if cfg.depth_in_use:
            self.depth_encoder = build_encoder(cast(EncoderConfig, cfg.depth_encoder), frozen=True)
            self.depth_layer_map = cfg.resolved_depth_layer_map()
        refine = (
            GatedLevelFusion(
                cfg.encoder.embed_dim, split_fusion=cfg.refine_split_fusion, recompute=cfg.recompute_level_fusion
            )
            if cfg.head_refine == "aag"
            else None
        )
        if cfg.text is None:
            self.head = Mask2FormerHead(cfg.head, refine=refine)
        else:
            self.head = VireoHead(cfg.head, cfg.text, embed_dim=cfg.encoder.embed_dim, refine=refine)
            self.register_buffer("encoder_table", torch.zeros(0), persistent=False)
            self.register_buffer("head_table", torch.zeros(0), persistent=False)
            self.vocab: tuple[str, ...] = ()
        self.head.pixel_decoder.recompute = cfg.recompute_pixel_decoder
        prior = getattr(self.head, "prior", None)
        if prior is not None:
            prior.recompute = cfg.recompute_cmpe
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ bookkeeping
    @property
    def num_classes(self) -> int:
        if self.cfg.text is not None and self.cfg.text.classifier == "text":
            return len(self.vocab) if self.vocab else self.cfg.head.num_classes
        return self.cfg.head.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.vocab if self.cfg.text is not None and self.vocab else self.cfg.class_names

    @property
    def open_vocabulary(self) -> bool:
        """True when class names can be switched at inference (Vireo: text tables)."""
        return self.cfg.text is not None

    @property
    def text_encoder_name(self) -> str | None:
        """The separate frozen CLIP text tower computing the text tables (Vireo), None without one."""
        return self.cfg.text.clip if self.cfg.text is not None else None

    @property
    def random_frozen(self) -> bool:
        """True when a frozen encoder holds random weights (tests, demos): outputs show the pipeline only."""
        return any((m.frozen_source or {}).get("random") for m in self.frozen_modules().values())

    @property
    def window_size(self) -> int:
        """Side of the sliding windows :meth:`slide_inference` hands to :meth:`predict_windows`."""
        return self.cfg.crop_size

    def window_count(self, H: int, W: int) -> int:
        """Window forwards :meth:`slide_inference` runs per image of H x W."""
        return len(window_boxes(H, W, self.cfg.crop_size, self.cfg.slide_stride))

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...] | None:
        """Display colours of the current classes: the configured palette (a folder's ``classes.yaml``),
        None when none was given or the vocabulary was switched at runtime (then default colours)."""
        p = self.cfg.palette
        return p if p and tuple(self.class_names) == tuple(self.cfg.class_names) else None

    def set_vocabulary(self, names: tuple[str, ...], encoder_table: torch.Tensor, head_table: torch.Tensor) -> None:
        """Use a vocabulary (K names) with its text tables E_bb (K+1, 32, D) and E_hd (K+1, 80, D).

        Changes the number of output channels and nothing else (no parameter shape depends on K).
        With ``text.text_vocab == "train"`` E_bb is the training vocabulary's table (any row count).
        With a linear classifier the vocabulary must keep the trained K.
        """
        text = self.cfg.text
        if text is None:
            raise RuntimeError(f"{self.cfg.name} is not an open-vocabulary model")
        K = len(names)
        enc_rows = encoder_table.shape[0] if text.text_vocab == "train" and encoder_table.ndim == 3 else K + 1
        for name, t, rows, p in (
            ("encoder", encoder_table, enc_rows, text.encoder_templates),
            ("head", head_table, K + 1, text.head_templates),
        ):
            if t.ndim != 3 or t.shape[0] != rows or t.shape[1] != p or t.shape[2] != text.text_dim:
                raise ValueError(f"{name} text table must be ({rows}, {p}, {text.text_dim}), got {tuple(t.shape)}")
        if text.classifier == "linear" and K != self.cfg.head.num_classes:
            raise ValueError(
                f"this model has a linear classifier for {self.cfg.head.num_classes} classes; "
                f"it cannot switch to a {K}-class vocabulary"
            )
        dev = self.mean.device
        self.encoder_table = encoder_table.to(dev)
        self.head_table = head_table.to(dev)
        self.vocab = tuple(names)
        cast(VireoHead, self.head).set_text(self.head_table)

    def param_groups(self) -> dict[str, nn.Module]:
        """Disjoint named modules for parameter reports."""
        groups: dict[str, nn.Module] = {"backbone.encoder": self.encoder}
        if self.adapter is not None:
            groups["backbone.adapter"] = self.adapter
        if self.depth_encoder is not None:
            groups["backbone.depth_encoder"] = self.depth_encoder
        for name, mod in self.head.named_children():
            groups[f"head.{name}"] = mod
        return groups

    def frozen_modules(self) -> dict[str, ViTEncoder]:
        """Modules whose weights come from public files and never enter trained checkpoints."""
        frozen = {} if self.cfg.method == "full" else {"encoder": self.encoder}
        if self.depth_encoder is not None:
            frozen["depth_encoder"] = self.depth_encoder
        return frozen

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Adapter + head (everything for ``full``): what trained checkpoints hold."""
        frozen = tuple(f"{name}." for name in self.frozen_modules())
        return {k: v for k, v in self.state_dict().items() if not frozen or not k.startswith(frozen)}

    def store_frozen_bf16(self) -> int:
        """Store the weights and biases of the frozen encoders' Linear and Conv2d layers in bf16.

        Only for bf16-autocast runs (the trainer calls it when ``train.amp`` is bf16 and
        ``frozen_bf16`` is on): autocast rounds these fp32 weights to bf16 before every product anyway,
        so the outputs and gradients are bit-identical while the weights take half the memory. Norms,
        layer scales, position embeddings and prefix tokens stay fp32 (autocast would not round them).
        Returns the number of bytes saved.
        """
        saved = 0
        for module in self.frozen_modules().values():
            for m in module.modules():
                if isinstance(m, (nn.Linear, nn.Conv2d)):
                    for p in m.parameters(recurse=False):
                        if p.dtype == torch.float32 and not p.requires_grad:
                            saved += p.numel() * 2
                            p.data = p.data.to(torch.bfloat16)
        return saved

    def frozen_sources(self) -> dict:
        out = {name: m.frozen_source for name, m in self.frozen_modules().items()}
        if self.cfg.text is not None:
            out["clip"] = getattr(self, "text_source", None)
        return out

    def initialize_adapter(self, seed: int = 0) -> dict | None:
        """Weight-level adapters derived from the frozen weights (SoMA): run their initialisation from the
        loaded encoder (call after the frozen weights are in place). Returns the record, None otherwise."""
        if isinstance(self.adapter, SoMAAdapter):
            return self.adapter.initialize_from(self.encoder, seed=seed)
        return None

    def merged_encoder_state(self) -> dict[str, torch.Tensor]:
        """The visual encoder with the adapter folded in (SoMA: W' and b' written over W and b), as a plain
        encoder state dict in the encoder's own names: a different encoder (new hashes, base licence)."""
        if not isinstance(self.adapter, SoMAAdapter):
            raise ValueError(
                f"only weight-level adapters fold into the encoder (SoMA); {self.cfg.name!r} is {self.cfg.method!r}"
            )
        return self.adapter.merged_encoder_state(self.encoder)

    def check_adapter_initialized(self) -> None:
        """Refuse to train an adapter that still waits for :meth:`initialize_adapter` (SoMA)."""
        if isinstance(self.adapter, SoMAAdapter):
            self.adapter.check_initialized()

    def check_frozen_weights(self) -> None:
        """Refuse to run for real with a frozen encoder that was never loaded."""
        for name, module in self.frozen_modules().items():
            if module.frozen_source is None:
                raise FrozenWeightsError(
                    f"the {name} ({module.cfg.name}) has no weights loaded; pass its weights "
                    "(file or hf-hub: id) or ask for random weights explicitly"
                )
        dep = self.depth_encoder
        if dep is not None and not (dep.frozen_source or {}).get("random") and dep.embed_dim == self.encoder.embed_dim:
            a, b = self.encoder.vit.blocks[0].norm1.weight, dep.vit.blocks[0].norm1.weight
            if a.shape == b.shape and torch.equal(a, b):
                raise FrozenWeightsError(
                    "the depth encoder holds the visual encoder's weights (same tensors): "
                    "load the Depth Anything V2 weights into the depth slot"
                )

    # ------------------------------------------------------------------ forward
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """RGB images in [0, 255] (B, 3, H, W) -> ImageNet-normalised."""
        return (images - self.mean) / self.std

    def depth_stream(self, x: torch.Tensor, grid: tuple[int, int]) -> DepthStream:
        """The frozen depth encoder on the same normalised input, under no-grad (see :class:`DepthStream`)."""
        assert self.depth_encoder is not None  # called only when depth is in use
        return DepthStream(self.depth_encoder, x, grid, self.depth_layer_map, interleave=self.cfg.depth_interleave)

    def depth_features(self, x: torch.Tensor, grid: tuple[int, int]) -> list[torch.Tensor]:
        """Depth tokens (B, N, C_d) for every visual block (after the layer map), computed at once."""
        stream = self.depth_stream(x, grid)
        return [stream.get(i) for i in range(self.encoder.depth)]

    def extract_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised images (B, 3, H, W) -> pyramid [s4, s8, s16, s32], each (B, C, ·, ·).

        During training the frozen blocks are recomputed in the backward pass instead of storing
        their activations (``grad_checkpoint_frozen``); gradients still flow through them.
        Token adapters (REIN family, FADA) update the patch tokens after every block; block adapters
        (LoRA, AdaptFormer, VPT) run the blocks themselves (``run_block``) and hand back prefix + patch
        tokens only.
        """
        enc, ad = self.encoder, self.adapter
        t, state = enc.embed(x)
        P = enc.num_prefix_tokens
        inside = isinstance(ad, BlockAdapter)
        after = ad is not None and not inside
        tokens = ad.all_tokens() if after else None
        const: dict[str, Any] = self.encoder_constants() if after else {}
        if isinstance(ad, FADAAdapter):
            ad.check_window(state.grid)
            const["grid"] = state.grid
        depth = self.depth_stream(x, state.grid) if after and self.depth_encoder is not None else None
        recompute = (
            self.cfg.grad_checkpoint_frozen and self.training and torch.is_grad_enabled() and self.cfg.method != "full"
        )
        run_block = partial(ad.run_block, enc) if inside else enc.forward_block
        taps = []
        for i in range(enc.depth):
            if recompute and (t.requires_grad or inside):
                t = checkpoint(run_block, i, t, state, use_reentrant=False)
            else:
                t = run_block(i, t, state)
            if after:
                kw = dict(const)
                if depth is not None:
                    kw["depth"] = depth.get(i)
                t = torch.cat([t[:, :P], ad.update(t[:, P:], i, tokens, **kw)], dim=1)
            if i in self.cfg.taps:
                taps.append(enc.tokens_to_map(t, state.grid))
        return [
            F.interpolate(m, scale_factor=s, mode="bilinear", align_corners=False) if s != 1.0 else m
            for m, s in zip(taps, TAP_SCALES, strict=False)
        ]

    def encoder_constants(self) -> dict[str, torch.Tensor]:
        """Adapter inputs shared by all blocks: the projected text rows for GeoText."""
        if isinstance(self.adapter, GeoTextAdapter):
            if self.encoder_table.numel() == 0:
                raise RuntimeError("no vocabulary set: call set_vocabulary (or dgss.models.vireo.use_vocabulary)")
            return {"text": self.adapter.text_context(self.encoder_table)}
        return {}

    def query_embed(self) -> torch.Tensor | None:
        if self.adapter is not None and getattr(self.adapter.cfg, "link_queries", False):
            return self.adapter.query_embed()
        return None

    def forward(self, x: torch.Tensor) -> dict:
        """Normalised images (B, 3, H, W) -> head outputs (10 class/mask predictions)."""
        feats = self.extract_features(x)
        if self.cfg.text is not None:
            if self.head_table.numel() == 0:
                raise RuntimeError("no vocabulary set: call set_vocabulary (or dgss.models.vireo.use_vocabulary)")
            return self.head(feats, self.query_embed(), self.head_table)
        return self.head(feats, self.query_embed())

    def predict_windows(self, x: torch.Tensor, pad_to: tuple[int, int] | None = None) -> torch.Tensor:
        """Normalised windows (B, 3, h, w) -> per-class scores (B, K, h, w).

        Pads bottom/right with 0 (normalised) to at least ``pad_to`` and to a multiple of the patch
        size, and crops the scores back (``docs/data-protocol.md`` robustness rule).
        """
        h, w = x.shape[-2:]
        p = self.encoder.patch_size
        th, tw = max(h, pad_to[0] if pad_to else 0), max(w, pad_to[1] if pad_to else 0)
        ph, pw = math.ceil(th / p) * p - h, math.ceil(tw / p) * p - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        out = self(x)
        seg = self.head.semantic_inference(out["pred_logits"], out["pred_masks"], x.shape[-2:])
        return seg[..., :h, :w]

    @torch.no_grad()
    def slide_inference(
        self,
        x: torch.Tensor,
        window: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        batch: int | None = None,
    ) -> torch.Tensor:
        """Sliding-window scores for normalised images of any size (B, 3, H, W) -> (B, K, H, W).

        Windows of ``window`` (512, or (h, w)) every ``stride`` (341) pixels, the last one flush with
        the border; scores of overlapping windows are averaged; up to ``batch`` windows run per
        forward. An image side smaller than the window is padded up to it (and cropped back).
        """
        wh, ww = _pair(window or self.cfg.crop_size)
        sh, sw = _pair(stride or self.cfg.slide_stride)
        # batched windows pay off on GPUs; on CPUs one window at a time is faster (benchmarks/README)
        batch = batch or (self.cfg.window_batch if x.device.type == "cuda" else 1)
        B, _, H, W = x.shape
        boxes = window_boxes(H, W, (wh, ww), (sh, sw))
        scores = x.new_zeros(B, self.num_classes, H, W)
        counts = x.new_zeros(1, 1, H, W)
        # windows of the same size run together
        by_size: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
        for box in boxes:
            by_size.setdefault((box[1] - box[0], box[3] - box[2]), []).append(box)
        for group in by_size.values():
            crops = [(b, box) for b in range(B) for box in group]
            for s in range(0, len(crops), batch):
                chunk = crops[s : s + batch]
                inp = torch.stack([x[b, :, y1:y2, x1:x2] for b, (y1, y2, x1, x2) in chunk])
                out = self.predict_windows(inp, pad_to=(wh, ww))
                for (b, (y1, y2, x1, x2)), o in zip(chunk, out, strict=False):
                    scores[b, :, y1:y2, x1:x2] += o
        for y1, y2, x1, x2 in boxes:
            counts[..., y1:y2, x1:x2] += 1
        return scores / counts


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class DepthStream:
    """Depth tokens block by block, without autograd.

    ``get(i)`` returns the patch tokens (B, N, C_d) of the depth block feeding visual block ``i``
    (``layer_map[i]``), resampled in 2-D onto the visual grid if the grids differ. With ``interleave``
    the depth blocks run just in time and only the current depth state is kept alive (reference-like
    behaviour, ``interleave=False``, computes and keeps all of them first). Under autocast the tokens
    stay in the compute dtype.
    """

    def __init__(
        self,
        encoder: ViTEncoder,
        x: torch.Tensor,
        grid: tuple[int, int],
        layer_map: tuple[int, ...],
        interleave: bool = True,
    ):
        self.enc, self.grid, self.layer_map = encoder, grid, layer_map
        p = encoder.patch_size
        if x.shape[-2] % p or x.shape[-1] % p:
            size = (max(1, round(x.shape[-2] / p)) * p, max(1, round(x.shape[-1] / p)) * p)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        with torch.no_grad():
            self.tokens, self.state = encoder.embed(x)
        self.done = -1
        self.cache: dict[int, torch.Tensor] = {}
        if not interleave:
            for j in range(encoder.depth):
                self._advance(j)
                self.cache[j] = self.tokens

    def _advance(self, j: int) -> None:
        with torch.no_grad():
            while self.done < j:
                self.done += 1
                self.tokens = self.enc.forward_block(self.done, self.tokens, self.state)

    def get(self, i: int) -> torch.Tensor:
        j = self.layer_map[i]
        if j in self.cache:
            z = self.cache[j]
        else:
            if j < self.done:
                raise RuntimeError("depth stream consumed out of order")
            self._advance(j)
            z = self.tokens
        z = self.enc.patch_tokens(z)
        if self.state.grid != self.grid:
            z = resample_token_grid(z, self.state.grid, self.grid)
        return z


def resample_token_grid(tokens: torch.Tensor, src: tuple[int, int], dst: tuple[int, int]) -> torch.Tensor:
    """Patch tokens (B, h_s*w_s, C) on grid ``src`` -> (B, h_d*w_d, C) on grid ``dst`` by 2-D bilinear
    resampling of the token map (never a 1-D stretch of the flattened sequence)."""
    B, N, C = tokens.shape
    m = tokens.transpose(1, 2).reshape(B, C, *src)
    m = F.interpolate(m, size=dst, mode="bilinear", align_corners=False)
    return m.flatten(2).transpose(1, 2)


def window_boxes(H: int, W: int, window, stride) -> list[tuple[int, int, int, int]]:
    """(y1, y2, x1, x2) of mmseg's sliding windows: a grid of ``stride`` steps, clamped to the image.
    ``window`` / ``stride``: an int or (h, w)."""
    (wh, ww), (sh, sw) = _pair(window), _pair(stride)
    rows = max(H - wh + sh - 1, 0) // sh + 1
    cols = max(W - ww + sw - 1, 0) // sw + 1
    boxes = []
    for r in range(rows):
        for c in range(cols):
            y1, x1 = r * sh, c * sw
            y2, x2 = min(y1 + wh, H), min(x1 + ww, W)
            y1, x1 = max(y2 - wh, 0), max(x2 - ww, 0)
            boxes.append((y1, y2, x1, x2))
    return boxes
