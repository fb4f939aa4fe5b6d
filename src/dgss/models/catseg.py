"""CAT-Seg (Cho et al., CVPR 2024): open-vocabulary segmentation by cost aggregation, on CLIP with
fine-tuned attention q/v (docs/methods/catseg.md).

Data flow (``catseg-clip-l``: ViT-L/14@336, 384 crops)::

    images (B,3,H,W) 0..255 -> (x - CLIP mean) / CLIP std -> bilinear to 336 (align_corners=False)
    -> DenseClipVisual: F (B,768,24,24), taps after blocks 7, 15 (B,1024,24,24)
       -> upsample1 ConvT 2x2/2 -> g1 (B,256,48,48); upsample2 ConvT 4x4/4 -> g2 (B,128,96,96)
    vocabulary (T names, first synonym) -> "A photo of a {} in the scene" -> TrainableClipText (with
       gradient in training; cached by vocabulary and weight version otherwise) -> E (T,1,768)
    -> CatSegAggregator -> logits (B,T,96,96)
    train: per-pixel BCE at the label size;  eval: sigmoid scores, reference views or dgss windows

Trainable: the aggregator, upsample1/2 and W_q, W_v of every CLIP image and text block (weights only);
everything else in CLIP stays as in the OpenAI file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.clip_blocks import split_fused_qkv
from ..backbones.clip_dense import ClipVisionConfig, DenseClipVisual
from ..backbones.clip_text_trainable import ClipTextTowerConfig, TrainableClipText, tokenize
from ..backbones.weights import read_state_dict, resolve_source, sha256_file
from ..errors import ClipWeightsError, OptionError, UnknownModelError, VocabularyError
from ..heads.catseg_aggregator import AggregatorConfig, CatSegAggregator
from ..losses.catseg_loss import CatSegLoss
from .segmentor import window_boxes

CLIP_MEAN = (122.771, 116.746, 104.094)
CLIP_STD = (68.501, 66.632, 70.323)
TEMPLATE = "A photo of a {} in the scene"
_CLIP_FILE_EXTRAS = ("input_resolution", "context_length", "vocab_size")


@dataclass
class CatSegConfig:
    """Everything that describes a CAT-Seg model (switches as docs/methods/catseg.md; defaults = code)."""

    name: str = "catseg-clip-l"
    vision: ClipVisionConfig = field(default_factory=ClipVisionConfig)
    text: ClipTextTowerConfig = field(default_factory=ClipTextTowerConfig)
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    guidance_taps: tuple[int, int] = (7, 15)  # image blocks feeding upsample1 (coarser) / upsample2 (finer)
    upsample_dims: tuple[int, int] = (256, 128)
    template: str = TEMPLATE
    synonyms: Literal["first", "mean"] = "first"
    dense_residual: Literal["cls", "token"] = "cls"
    finetune: Literal["qv", "frozen", "full"] = "qv"
    pool_train: int = 2
    pool_eval: int = 1
    loss_ignore: Literal["negative", "skip"] = "negative"
    ignore_index: int = 255
    inference: Literal["reference", "dgss"] = "reference"
    crop_size: int = 384  # training crop and reference view size
    reference_size: int = 640  # reference protocol: squash to this square, 4 crops + global view
    reference_overlap: float = 0.333
    slide_window: int = 512  # dgss windows (each resized to the CLIP input)
    slide_stride: int = 341
    class_chunk: int | None = 64  # classes per decoder pass / score fold at evaluation (exact)
    clip_lr_mult: float = 0.01
    grad_clip: float = 0.01  # full-model gradient L2 norm
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    class_names: tuple[str, ...] = ()
    method: str = "catseg"

    def __post_init__(self) -> None:
        checks = {
            "synonyms": (self.synonyms, ("first", "mean")),
            "dense_residual": (self.dense_residual, ("cls", "token")),
            "finetune": (self.finetune, ("qv", "frozen", "full")),
            "loss_ignore": (self.loss_ignore, ("negative", "skip")),
            "inference": (self.inference, ("reference", "dgss")),
        }
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise OptionError(f"model.catseg.{key} must be one of {', '.join(allowed)}; got {value!r}")
        if self.vision.embed_dim != self.aggregator.feature_dim or self.text.embed_dim != self.aggregator.feature_dim:
            raise ValueError("the CLIP embedding sizes must equal aggregator.feature_dim")
        if self.vision.grid != self.aggregator.grid:
            raise ValueError(
                f"the CLIP token grid {self.vision.grid} must equal aggregator.grid {self.aggregator.grid}"
            )
        stride = int(self.crop_size * (1 - self.reference_overlap))
        if self.reference_size < self.crop_size or (self.reference_size - self.crop_size) % stride:
            raise ValueError(
                f"reference views: crops of {self.crop_size} every {stride} must tile {self.reference_size} exactly"
            )
        if "{}" not in self.template:
            raise OptionError(f"the prompt template needs a '{{}}' slot, got {self.template!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CatSegConfig:
        d = dict(d)
        d["vision"] = ClipVisionConfig(**d["vision"])
        d["text"] = ClipTextTowerConfig(**d["text"])
        a: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d["aggregator"].items()}
        d["aggregator"] = AggregatorConfig(**a)
        for k in ("guidance_taps", "upsample_dims", "mean", "std", "class_names"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def catseg_config(name: str) -> CatSegConfig:
    """The preset configs: ``catseg-clip-l`` (ViT-L/14@336) and ``catseg-clip-b`` (ViT-B/16 at 384)."""
    if name == "catseg-clip-l":
        return CatSegConfig(name=name)
    if name == "catseg-clip-b":
        return CatSegConfig(
            name=name,
            vision=ClipVisionConfig(
                image_size=384, patch_size=16, width=768, layers=12, heads=12, embed_dim=512, pos_grid=14
            ),
            text=ClipTextTowerConfig(width=512, layers=12, heads=8, embed_dim=512),
            aggregator=AggregatorConfig(feature_dim=512),
            guidance_taps=(3, 7),
        )
    if name == "catseg-tiny":  # tests and CPU smoke runs: 32² input, 8² token grid, width 32
        return CatSegConfig(
            name=name,
            vision=ClipVisionConfig(image_size=32, patch_size=4, width=32, layers=4, heads=2, embed_dim=16, pos_grid=8),
            text=ClipTextTowerConfig(width=32, layers=2, heads=2, embed_dim=16),
            aggregator=AggregatorConfig(
                feature_dim=16,
                hidden=16,
                appearance_guidance=16,
                text_guidance=16,
                tap_guidance_in=(16, 8),
                decoder_guidance=(8, 4),
                decoder_dims=(16, 16),
                heads=2,
                window=4,
                grid=8,
            ),
            guidance_taps=(1, 2),
            upsample_dims=(16, 8),
            crop_size=32,
            reference_size=53,
            slide_window=32,
            slide_stride=21,
        )
    raise UnknownModelError(f"unknown CAT-Seg model {name!r}; known: {', '.join(CATSEG_PRESETS)}")


CATSEG_PRESETS = ("catseg-clip-l", "catseg-clip-b", "catseg-tiny")


def class_prompts(names: tuple[str, ...], template: str, synonyms: str) -> tuple[list[str], list[int]]:
    """Prompts and, per prompt, the index of its class. ``first``: the first ", " synonym only (a bare
    comma is kept); ``mean``: every synonym (their embeddings are averaged)."""
    prompts, owner = [], []
    for i, n in enumerate(names):
        parts = [p.strip() for p in n.split(", ")] if ", " in n else [n]
        for p in parts[:1] if synonyms == "first" else parts:
            prompts.append(template.format(p))
            owner.append(i)
    return prompts, owner


class CATSeg(nn.Module):
    """CAT-Seg from a :class:`CatSegConfig` (random weights; :meth:`load_clip` fills both CLIP towers)."""

    mean: torch.Tensor  # buffers (1, 3, 1, 1)
    std: torch.Tensor
    # the inference interface of Segmentor (what dgss predict / app / export call): no adapter tokens, no depth
    adapter = None
    depth_encoder = None
    open_vocabulary = True
    text_encoder_name = None  # its own trained text tower encodes every vocabulary (no separate frozen one)
    palette = None  # default colours for whatever vocabulary is in use
    window_forwards = ("predict_windows", "predict_views")  # per-window / per-view forwards (progress counts them)
    window_graph_problem = (
        "CAT-Seg resizes every window to its CLIP input (no zero padding to a fixed window) and runs its reference "
        "views outside the window forward"
    )

    def __init__(self, cfg: CatSegConfig):
        super().__init__()
        self.cfg = cfg
        self.clip_visual = DenseClipVisual(cfg.vision, cfg.dense_residual)
        self.clip_text = TrainableClipText(cfg.text)
        w = cfg.vision.width
        self.upsample1 = nn.ConvTranspose2d(w, cfg.upsample_dims[0], kernel_size=2, stride=2)
        self.upsample2 = nn.ConvTranspose2d(w, cfg.upsample_dims[1], kernel_size=4, stride=4)
        self.aggregator = CatSegAggregator(cfg.aggregator)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)
        for name, p in self.clip_parameters():
            p.requires_grad_(self.clip_trainable(name))
        self.clip_source: dict | None = None
        self.vocab: tuple[str, ...] = ()
        self._tokens: torch.Tensor | None = None
        self._owner: torch.Tensor | None = None
        self._text_cache: tuple[tuple, torch.Tensor] | None = None
        self.disk_text_cache = False  # inference: also keep text embeddings on disk (keyed by the tower's weights)
        if cfg.class_names:
            self.set_vocabulary(cfg.class_names)

    # ------------------------------------------------------------------ parameters
    def clip_parameters(self):
        for prefix, tower in (("clip_visual.", self.clip_visual), ("clip_text.", self.clip_text)):
            for n, p in tower.named_parameters():
                yield prefix + n, p

    def clip_trainable(self, name: str) -> bool:
        """The reference rule: inside a ``transformer`` and a q or v projection (weights only)."""
        if self.cfg.finetune == "full":
            return True
        if self.cfg.finetune == "frozen":
            return False
        return "transformer" in name and ("q_proj" in name or "v_proj" in name)

    @property
    def num_classes(self) -> int:
        return len(self.vocab)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.vocab

    @property
    def random_frozen(self) -> bool:
        """True when the CLIP towers hold random weights (tests, demos): outputs show the pipeline only."""
        return bool((self.clip_source or {}).get("random"))

    @property
    def window_size(self) -> int:
        """Side of the square inputs the per-window forward sees: the reference views or the dgss windows."""
        return self.cfg.crop_size if self.cfg.inference == "reference" else self.cfg.slide_window

    def window_count(self, H: int, W: int) -> int:
        """Window (or view) forwards :meth:`slide_inference` runs per image of H x W."""
        if self.cfg.inference == "reference":
            c, S = self.cfg.crop_size, self.cfg.reference_size
            stride = int(c * (1 - self.cfg.reference_overlap))
            return ((S - c) // stride + 1) ** 2 + 1  # crops + the global view
        return len(window_boxes(H, W, self.cfg.slide_window, self.cfg.slide_stride))

    def param_groups(self) -> dict[str, nn.Module]:
        """Disjoint named modules for parameter reports."""
        return {
            "clip.visual": self.clip_visual,
            "clip.text": self.clip_text,
            "upsample1": self.upsample1,
            "upsample2": self.upsample2,
            "aggregator": self.aggregator,
        }

    def frozen_modules(self) -> dict[str, nn.Module]:
        """No module is frozen as a whole (the CLIP towers train their q/v)."""
        return {}

    def frozen_sources(self) -> dict:
        """The CLIP file (or random seed) both towers start from: needed to rebuild the model (``required``)."""
        if self.clip_source is None:
            return {"clip": None}
        return {"clip": {**self.clip_source, "required": True, "used_for": "CLIP image and text towers"}}

    def store_frozen_bf16(self) -> int:
        """Inference-backend hook of the Segmentor interface: every CLIP tower mixes frozen and trained
        tensors, so all weights stay fp32 (bf16 runs as autocast over :meth:`extract_features`). Returns 0."""
        return 0

    def check_adapter_initialized(self) -> None:
        """Trainer hook of the Segmentor interface: CAT-Seg has no adapter to initialise."""

    def initialize_adapter(self, seed: int = 0) -> None:
        """Trainer hook of the Segmentor interface: nothing is derived from the frozen weights."""

    def load_clip_weights(self, source: str | None, *, random: bool = False) -> None:
        """The run config's CLIP source: a file / ``hf-hub:`` id (both towers), or random weights on purpose."""
        if random:
            self.randomize_clip(seed=0)
        elif not source:
            raise ClipWeightsError(
                f"{self.cfg.name}: no CLIP weights: set weights.encoder to the OpenAI file (ViT-L-14-336px.pt for "
                "catseg-clip-l, ViT-B-16.pt for catseg-clip-b)"
            )
        else:
            self.load_clip(source)

    def check_frozen_weights(self) -> None:
        """Refuse to run for real with CLIP towers that were never loaded (:meth:`load_clip`)."""
        if self.clip_source is None:
            raise ClipWeightsError(
                f"{self.cfg.name}: no CLIP weights loaded; pass the OpenAI file (ViT-L-14-336px.pt for catseg-clip-l)"
            )

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Aggregator + upsample + the trainable CLIP tensors: what trained checkpoints hold."""
        clip = {n for n, p in self.clip_parameters() if not p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k not in clip}

    def optimizer_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups of the reference: CLIP tensors at lr x ``clip_lr_mult``; LayerNorm / GroupNorm
        parameters without weight decay; everything else (biases included) lr, weight_decay."""
        norms = {
            f"{m_name}.{p_name}"
            for m_name, m in self.named_modules()
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm))
            for p_name, _ in m.named_parameters(recurse=False)
        }
        groups: dict[tuple[float, float], dict] = {}
        for n, p in self.named_parameters():
            if not p.requires_grad:
                continue
            mult = self.cfg.clip_lr_mult if n.startswith("clip_") else 1.0
            wd = 0.0 if n in norms else weight_decay
            g = groups.setdefault((mult, wd), {"params": [], "lr": lr * mult, "weight_decay": wd, "lr_mult": mult})
            g["params"].append(p)
        return list(groups.values())

    # ------------------------------------------------------------------ weights
    def load_clip(self, source) -> CATSeg:
        """Fill both CLIP towers from an OpenAI (``ViT-L-14-336px.pt``) or open_clip file; q/k/v split.
        A missing or unexpected key, or a wrong shape (another CLIP size), raises :class:`ClipWeightsError`
        naming the key."""
        path = resolve_source(source)
        try:
            sd = read_state_dict(path)
        except Exception as e:  # FrozenWeightsError or worse: report as a CLIP file problem
            raise ClipWeightsError(f"{path}: cannot be read as CLIP weights ({e})") from None
        sd = split_fused_qkv({k: v for k, v in sd.items() if k not in _CLIP_FILE_EXTRAS})
        visual = {k[len("visual.") :]: v for k, v in sd.items() if k.startswith("visual.")}
        text = {k: v for k, v in sd.items() if not k.startswith("visual.")}
        for tower, part, prefix in ((self.clip_visual, visual, "visual."), (self.clip_text, text, "")):
            check_state(tower.state_dict(), part, f"{path}", prefix, self.cfg.name)
        with torch.no_grad():
            for tower, part in ((self.clip_visual, visual), (self.clip_text, text)):
                for k, t in tower.state_dict().items():
                    t.copy_(part[k].to(t.dtype))
        self.clip_source = {"file": str(source), "sha256": sha256_file(path)}
        self._text_cache = None
        return self

    def randomize_clip(self, seed: int = 0) -> None:
        """Reproducible random CLIP towers (tests, smoke runs; recorded, so a checkpoint can rebuild them)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            visual, text = DenseClipVisual(self.cfg.vision), TrainableClipText(self.cfg.text)
        self.clip_visual.load_state_dict(visual.state_dict())
        self.clip_text.load_state_dict(text.state_dict())
        self.clip_source = {"random": True, "seed": seed}
        self._text_cache = None

    # ------------------------------------------------------------------ text
    def set_vocabulary(self, names) -> None:
        """Any vocabulary (a list, a built-in name, a JSON file or a comma list; a trailing "background"
        is dropped; CAT-Seg has no background row). An empty one raises :class:`VocabularyError`."""
        from ..data.vocab import resolve_vocabulary

        if isinstance(names, (list, tuple)) and not names:
            raise VocabularyError("empty vocabulary: give at least one class name")
        vocab = resolve_vocabulary(list(names) if isinstance(names, tuple) else names)
        prompts, owner = class_prompts(vocab.names, self.cfg.template, self.cfg.synonyms)
        self._tokens = tokenize(prompts, self.cfg.text.context_length)
        self._owner = torch.tensor(owner)
        self.vocab = vocab.names
        self.cfg.class_names = vocab.names
        self._text_cache = None

    def text_key(self) -> str:
        """Identity of the text embeddings of the current vocabulary for the on-disk cache: vocabulary,
        prompt, synonym rule and the SHA-256 of every text-tower tensor (a training step changes it)."""
        from .text_tables import embedding_key, module_digest

        prompt = {
            "template": self.cfg.template,
            "synonyms": self.cfg.synonyms,
            "tower": dataclasses.asdict(self.cfg.text),
        }
        return embedding_key("catseg", module_digest(self.clip_text), prompt, self.vocab)

    def text_version(self) -> tuple:
        """Identity of the text tower's current weights: storage and in-place version of every tensor
        (an optimizer step, ``load_state_dict`` or ``copy_`` changes it)."""
        return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self.clip_text.parameters())

    def encode_text(self) -> torch.Tensor:
        """Unit-norm class embeddings (T, P=1, E). With gradient (training) the tower runs every call;
        otherwise the result is cached under (vocabulary, weight version), so a stale table is impossible."""
        if self._tokens is None:
            raise VocabularyError("no vocabulary set: call set_vocabulary(names) first")
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.clip_text.parameters()):
            return self._encode()
        key = (self.vocab, self.text_version())
        if self._text_cache is None or self._text_cache[0] != key:
            with torch.no_grad():
                if self.disk_text_cache:
                    from .text_tables import cached_embeddings

                    emb = cached_embeddings(self.text_key(), self._encode).to(self.mean.device)
                else:
                    emb = self._encode()
                self._text_cache = (key, emb)
        return self._text_cache[1]

    def _encode(self) -> torch.Tensor:
        assert self._tokens is not None and self._owner is not None  # encode_text checked the vocabulary
        dev = self.mean.device
        e = F.normalize(self.clip_text(self._tokens.to(dev)), dim=-1)
        if len(self._owner) != len(self.vocab):  # synonyms: mean: average the synonyms of each class
            owner = self._owner.to(dev)
            s = e.new_zeros(len(self.vocab), e.shape[-1]).index_add_(0, owner, e)
            e = F.normalize(s / torch.bincount(owner, minlength=len(self.vocab))[:, None].to(e.dtype), dim=-1)
        return e[:, None]

    # ------------------------------------------------------------------ forward
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """RGB images in [0, 255] (B, 3, H, W) -> CLIP-normalised."""
        return (images - self.mean) / self.std

    def extract_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised images (B, 3, H, W) -> [F (B, E, g, g), g1 (B, 256, 2g, 2g), g2 (B, 128, 4g, 4g)]:
        the CLIP image tower at its input size and the upsampled guidance taps."""
        s = self.cfg.vision.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        feats, (t1, t2) = self.clip_visual(x, taps=self.cfg.guidance_taps)
        return [feats, self.upsample1(t1), self.upsample2(t2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W) -> logits (B, T, 4g, 4g) (96² for both presets)."""
        feats, g1, g2 = self.extract_features(x)
        taps = (g1, g2)
        text = self.encode_text().to(feats.dtype)
        text = text[None].expand(x.shape[0], *text.shape)
        pool = self.cfg.pool_train if self.training else self.cfg.pool_eval
        chunk = None if self.training else self.cfg.class_chunk
        return self.aggregator(feats, text, taps, pool=pool, class_chunk=chunk)

    def training_loss(self) -> CatSegLoss:
        return CatSegLoss(self.cfg.ignore_index, self.cfg.loss_ignore)

    def predict_windows(self, x: torch.Tensor, pad_to: tuple[int, int] | None = None) -> torch.Tensor:
        """Normalised windows (B, 3, h, w) -> sigmoid scores (B, K, h, w) (each window resized to the CLIP
        input; ``pad_to`` is accepted for the Segmentor interface and not needed)."""
        logits = self(x)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False).sigmoid()

    def predict_views(self, views: torch.Tensor) -> torch.Tensor:
        """Reference views (n, 3, c, c) -> logits (n, K, 4g, 4g): the per-view forward of :meth:`reference_inference`."""
        return self(views)

    @torch.no_grad()
    def slide_inference(self, x: torch.Tensor, window=None, stride=None, batch: int | None = None) -> torch.Tensor:
        """Scores (B, K, H, W) for normalised images of any size: ``cfg.inference`` ``reference``
        (:meth:`reference_inference`) or ``dgss`` (windows of ``slide_window`` every ``slide_stride``,
        the last flush with the border, overlaps averaged)."""
        if self.cfg.inference == "reference" and window is None:
            return self.reference_inference(x, batch=batch)
        win = window or self.cfg.slide_window
        wh, ww = (win, win) if isinstance(win, int) else win
        st = stride or self.cfg.slide_stride
        B, _, H, W = x.shape
        boxes = window_boxes(H, W, (wh, ww), st)
        scores = x.new_zeros(B, self.num_classes, H, W)
        counts = x.new_zeros(1, 1, H, W)
        for y1, y2, x1, x2 in boxes:
            scores[..., y1:y2, x1:x2] += self.predict_windows(x[..., y1:y2, x1:x2])
            counts[..., y1:y2, x1:x2] += 1
        return scores / counts

    @torch.no_grad()
    def reference_inference(self, x: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """The reference protocol: squash to ``reference_size``², four ``crop_size`` crops at stride
        int(crop·(1 − overlap)) (unfold order) plus the whole image resized to ``crop_size``², one batch;
        logits -> bilinear crop² -> sigmoid; crops folded / overlap count, global view resized; the mean
        of the two; bilinear to (H, W). (B, 3, H, W) -> (B, K, H, W)."""
        c, S = self.cfg.crop_size, self.cfg.reference_size
        stride = int(c * (1 - self.cfg.reference_overlap))
        B, _, H, W = x.shape
        K = self.num_classes
        out = x.new_empty(B, K, H, W)
        ones = F.unfold(x.new_ones(1, 1, S, S), c, stride=stride)
        counts = F.fold(ones, (S, S), c, stride=stride)
        for b in range(B):
            big = F.interpolate(x[b : b + 1], size=(S, S), mode="bilinear", align_corners=False)
            crops = F.unfold(big, c, stride=stride)  # (1, 3*c*c, L)
            L = crops.shape[-1]
            views = crops[0].T.reshape(L, 3, c, c)
            views = torch.cat([views, F.interpolate(x[b : b + 1], size=(c, c), mode="bilinear", align_corners=False)])
            n = batch or len(views)
            logits = torch.cat([self.predict_views(views[i : i + n]) for i in range(0, len(views), n)])  # (L+1,K,h,w)
            chunk = self.cfg.class_chunk or K
            for k0 in range(0, K, chunk):
                sc = F.interpolate(logits[:, k0 : k0 + chunk], size=(c, c), mode="bilinear", align_corners=False)
                sc = sc.sigmoid()
                k = sc.shape[1]
                folded = F.fold(sc[:L].reshape(L, k * c * c).T[None], (S, S), c, stride=stride)
                folded = folded.reshape(1, k, S, S) / counts
                glob = F.interpolate(sc[L:], size=(S, S), mode="bilinear", align_corners=False)
                fused = (folded + glob) / 2
                out[b, k0 : k0 + k] = F.interpolate(fused, size=(H, W), mode="bilinear", align_corners=False)[0]
        return out


def load_catseg_checkpoint(
    tensors: dict[str, torch.Tensor],
    meta: dict,
    *,
    clip: str | None = None,
    random_clip: bool = False,
    origin: str = "checkpoint",
    allow_hash_mismatch: bool = False,
) -> CATSeg:
    """Rebuild a CAT-Seg model from a dgss checkpoint's tensors and metadata: CLIP from ``clip`` or the recorded
    file (its SHA-256 must match), or the recorded random towers; then the trained tensors, strictly."""
    from ..errors import CheckpointError

    model = CATSeg(CatSegConfig.from_dict(meta["config"]))
    rec = (meta.get("frozen_sources") or {}).get("clip") or {}
    if random_clip or rec.get("random"):
        if not random_clip:
            raise ClipWeightsError(
                f"{origin} was trained with random CLIP towers: load it with random frozen weights (--random-weights)"
            )
        model.randomize_clip(seed=int(rec.get("seed", 0)))
    else:
        source = clip or rec.get("file")
        if not source:
            raise ClipWeightsError(f"{origin}: no CLIP file recorded: pass the OpenAI CLIP file explicitly")
        model.load_clip(source)
        want, got = rec.get("sha256"), (model.clip_source or {}).get("sha256")
        if want and want != got and not allow_hash_mismatch:
            raise ClipWeightsError(f"{origin} was trained with CLIP {rec.get('file')} ({want[:12]}...), not {source}")
    expected = model.trainable_state_dict()
    bad = sorted(set(expected) ^ set(tensors)) or sorted(k for k in expected if expected[k].shape != tensors[k].shape)
    if bad:
        raise CheckpointError(f"{origin} does not fit {model.cfg.name}: first mismatching tensor {bad[0]!r}")
    model.load_state_dict(tensors, strict=False)
    model._text_cache = None
    model.disk_text_cache = True  # a loaded model runs inference: its text embeddings may persist (weight-keyed)
    return model


def check_state(target: dict, given: dict, origin: str, prefix: str, model: str) -> None:
    """Strict key / shape check; the first problem raises :class:`ClipWeightsError` naming the key."""
    for k in sorted(target):
        if k not in given:
            raise ClipWeightsError(f"{origin}: key {prefix + k!r} is missing: not CLIP weights for {model}")
        if tuple(given[k].shape) != tuple(target[k].shape):
            raise ClipWeightsError(
                f"{origin}: {prefix + k!r} has shape {tuple(given[k].shape)}, {model} needs "
                f"{tuple(target[k].shape)}: this is a CLIP file of another size"
            )
    extra = sorted(set(given) - set(target))
    if extra:
        raise ClipWeightsError(f"{origin}: unexpected key {prefix + extra[0]!r} for {model}'s CLIP towers")


def cosine_lr(iteration: int, base_lr: float, max_iters: int) -> float:
    """The reference schedule: cosine from ``base_lr`` to 0 over ``max_iters``, no warm-up."""
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(iteration, max_iters) / max_iters))


def build_catseg(name_or_cfg: str | CatSegConfig, **overrides) -> CATSeg:
    """A CAT-Seg model from a preset name or a config (random weights; call :meth:`CATSeg.load_clip`)."""
    cfg = catseg_config(name_or_cfg) if isinstance(name_or_cfg, str) else name_or_cfg
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    return CATSeg(cfg)
