"""Prediction on users' images, folders or videos: labels, overlays, depth maps, token attention."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .. import viz
from ..backbones.weights import mark_random
from ..errors import InputError
from ..models.segmentor import Segmentor

if TYPE_CHECKING:
    from ..models.catseg import CATSeg

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def iter_inputs(paths: list[str | os.PathLike], every_nth_frame: int = 1) -> Iterator[tuple[str, np.ndarray]]:
    """(name, RGB uint8 (H, W, 3)) for image files, folders (recursive, sorted) and video files."""
    for p in map(Path, paths):
        if not p.exists():
            raise InputError(f"input not found: {p}")
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXT)
            if not files:
                raise InputError(f"no images ({', '.join(sorted(IMAGE_EXT))}) in folder {p}")
            for f in files:
                yield str(f.relative_to(p).with_suffix("")).replace(os.sep, "__"), read_rgb(f)
        elif p.suffix.lower() in VIDEO_EXT:
            yield from _video_frames(p, every_nth_frame)
        elif p.suffix.lower() in IMAGE_EXT:
            yield p.stem, read_rgb(p)
        else:
            raise InputError(f"unsupported input type {p.suffix!r}: {p}")


def read_rgb(path: Path, max_pixels: int | None = None, *, name: str | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) of an image file; ``max_pixels`` refuses larger images before decoding them.
    ``name``: how messages call the file (default: its path)."""
    name = name or str(path)
    try:
        with Image.open(path) as im:
            if max_pixels is not None:
                check_image_size(im.width, im.height, max_pixels, name)
            return np.asarray(im.convert("RGB")).copy()
    except UnidentifiedImageError:
        raise InputError(
            f"cannot read image {name}: not an image file (PNG, JPEG, BMP, TIFF or WebP expected)"
        ) from None
    except Image.DecompressionBombError as e:
        raise InputError(f"cannot read image {name}: {e}") from None
    except OSError as e:
        raise InputError(f"cannot read image {name}: damaged or truncated file ({e})") from None


def check_image_size(width: int, height: int, max_pixels: int, name: str = "image") -> None:
    if width * height > max_pixels:
        raise InputError(
            f"{name} is {width}x{height} ({width * height / 1e6:.1f} MP), over the limit of "
            f"{max_pixels / 1e6:.1f} MP: downscale it (or use `dgss predict --short-side`)"
        )


def _video_frames(path: Path, every: int) -> Iterator[tuple[str, np.ndarray]]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"cannot open video {path}")
    i = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % every == 0:
                yield f"{path.stem}_{i:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()
    if i == 0:
        raise InputError(f"no frames could be decoded from {path}")


@dataclass
class Prediction:
    label: np.ndarray  # (H, W) class ids
    attention: dict[int, np.ndarray] = field(default_factory=dict)  # layer -> (h, w, 2) [token, weight]


def _to_tensor(rgb: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float()[None].to(device)


def prepare_input(model: Segmentor, rgb: np.ndarray, short_side: int | None = None) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> normalised (1, 3, h, w), resized so its short side is ``short_side`` if given."""
    H, W = rgb.shape[:2]
    x = model.normalize(_to_tensor(rgb, model.mean.device))
    if short_side:
        s = short_side / min(H, W)
        x = F.interpolate(x, size=(max(1, round(H * s)), max(1, round(W * s))), mode="bilinear", align_corners=False)
    return x


@contextmanager
def window_progress(model: Segmentor, x: torch.Tensor, callback):
    """Call ``callback(done, total)`` after every window forward of ``model.slide_inference(x)`` (the
    methods named by ``model.window_forwards``: sliding windows, or CAT-Seg's reference views)."""
    if callback is None:
        yield
        return
    total = model.window_count(x.shape[-2], x.shape[-1]) * x.shape[0]
    done = 0
    wrapped = []
    for name in model.window_forwards:
        had_own = name in model.__dict__  # e.g. a torch.compile'd forward (maybe_compile)
        inner = getattr(model, name)

        def counted(windows, *args, _inner=inner, **kwargs):
            nonlocal done
            out = _inner(windows, *args, **kwargs)
            done += windows.shape[0]
            callback(done, total)
            return out

        # an instance attribute shadows the bound method on purpose (as maybe_compile / ONNX do)
        setattr(model, name, counted)
        wrapped.append((name, had_own, inner))
    try:
        yield
    finally:
        for name, had_own, inner in wrapped:
            if had_own:
                setattr(model, name, inner)
            else:
                delattr(model, name)


@torch.inference_mode()
def predict_image(
    model: Segmentor,
    rgb: np.ndarray,
    *,
    short_side: int | None = None,
    attention_layers: Sequence[int] = (),
    progress=None,
) -> Prediction:
    """Sliding-window prediction at the image's size (or resized so its short side is ``short_side``),
    labels back at the original size. ``progress(done, total)`` is called after every window."""
    H, W = rgb.shape[:2]
    x = prepare_input(model, rgb, short_side)
    with window_progress(model, x, progress):
        scores = model.slide_inference(x)
    if scores.shape[-2:] != (H, W):
        scores = F.interpolate(scores, size=(H, W), mode="bilinear", align_corners=False)
    label = scores[0].argmax(0).cpu().numpy().astype(np.int32)
    attention = token_attention(model, x, attention_layers) if attention_layers and model.adapter else {}
    return Prediction(label, attention)


@torch.inference_mode()
def token_attention(model: Segmentor, x: torch.Tensor, layers) -> dict[int, np.ndarray]:
    """Which adapter token each patch attends to most, per block in ``layers``: one encoder pass over
    the whole (patch-padded) image -> {layer: (h, w, 2) [token index, weight]}."""
    p = model.encoder.patch_size
    h, w = x.shape[-2:]
    xp = F.pad(x, (0, -w % p, 0, -h % p))
    grid = (xp.shape[-2] // p, xp.shape[-1] // p)
    records: dict[int, torch.Tensor] = {}
    model.adapter.recorder = lambda layer, wts: records.__setitem__(layer, wts) if layer in layers else None
    try:
        model.extract_features(xp)
    finally:
        model.adapter.recorder = None
    out = {}
    for layer, wts in records.items():
        val, idx = wts[0].float().max(dim=-1)
        out[layer] = np.stack([idx.view(grid).cpu().numpy(), val.view(grid).cpu().numpy()], -1)
    return out


def text_encoder_for(model: Segmentor, weights: dict[str, str]):
    """The frozen CLIP text tower of ``weights["clip"]`` for a model that computes text tables with one (Vireo;
    None: text tables from the cache, or a model with its own text tower such as CAT-Seg)."""
    if model.text_encoder_name is None or not weights.get("clip"):
        return None
    from ..backbones.clip_text import build_text_encoder

    return build_text_encoder(model.text_encoder_name, weights["clip"])


def set_classes(model: Segmentor, spec, text_encoder=None) -> tuple[str, ...]:
    """Point an open-vocabulary model at new classes (``"road, car, dog"``, ``;`` between entries with
    ", " synonyms, a built-in vocabulary or a JSON file). Models with a separate frozen CLIP text tower
    (Vireo) take text tables from the cache or ``text_encoder``; models with their own (CAT-Seg, trained)
    encode the names themselves. Returns the class names."""
    if not model.open_vocabulary:
        raise InputError(
            f"{model.cfg.name} is a closed-vocabulary model ({model.num_classes} classes); "
            "class names (--classes, --vocab) need an open-vocabulary (Vireo, CAT-Seg) model"
        )
    if model.text_encoder_name is None:  # its own text tower (CAT-Seg)
        cast("CATSeg", model).set_vocabulary(spec)
        return model.class_names
    from ..models.vireo import use_vocabulary

    use_vocabulary(model, spec, text_encoder=text_encoder)
    return model.class_names


def depth_model_for(model: Segmentor, depth_weights: str | None):
    """A DAv2 (encoder + DPT head) sharing the model's frozen depth encoder when it has one."""
    from ..backbones.depth_anything import DPT_CONFIGS, DepthAnythingV2, DPTConfig

    enc = model.depth_encoder
    size = "l"
    if enc is not None:
        name = enc.cfg.name
        size = name.split("-")[1] if name.startswith("dav2-") and name.split("-")[1] in DPT_CONFIGS else "l"
    dav2 = DepthAnythingV2(size, encoder=enc) if enc is not None else DepthAnythingV2(size)
    cfg = dav2.dpt_cfg
    if max(cfg.layer_idx) >= dav2.encoder.depth:  # a tiny/narrow encoder: evenly spaced taps
        d = dav2.encoder.depth
        dav2.dpt_cfg = DPTConfig(
            tuple(int(round((i + 1) * d / 4)) - 1 for i in range(4)), cfg.features, cfg.out_channels
        )
    source = depth_weights or ((enc.frozen_source or {}).get("file") if enc is not None else None)
    if source:
        dav2.load(source)
    elif enc is None or not (enc.frozen_source or {}).get("random"):
        raise InputError("depth maps need Depth Anything V2 weights (--depth-weights depth_anything_v2_vitl.pth)")
    else:
        mark_random(dav2.encoder)
    return dav2.to(model.mean.device)


@torch.inference_mode()
def predict_depth(dav2, model: Segmentor, rgb: np.ndarray) -> np.ndarray:
    """Relative depth (H, W) at the image size (the DAv2 input is resized to its patch multiple)."""
    H, W = rgb.shape[:2]
    x = model.normalize(_to_tensor(rgb, model.mean.device))
    p = dav2.encoder.patch_size
    size = (max(p, round(H / p) * p), max(p, round(W / p) * p))
    d = dav2(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
    return F.interpolate(d[:, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0].cpu().numpy()


def label_image(label: np.ndarray) -> Image.Image:
    """Class ids as a PNG-ready image (8-bit, 16-bit past 255 classes)."""
    return Image.fromarray(label.astype(np.uint8 if label.max(initial=0) < 256 else np.uint16))


def render_overlay(rgb: np.ndarray, label: np.ndarray, class_names, *, legend: bool = True, palette=None) -> np.ndarray:
    """Prediction over the image in ``palette`` (the model's, :attr:`Segmentor.palette`) or the
    vocabulary's default colours, with a legend column of the classes present."""
    pal = viz.palette_for(class_names, palette)
    ov = viz.overlay(rgb, label, pal)
    if legend:
        present = np.bincount(label.ravel(), minlength=len(class_names)) > 0
        ov = viz.add_legend(ov, list(class_names), pal, present=present)
    return ov


def class_shares(label: np.ndarray, class_names) -> list[tuple[int, str, float]]:
    """(class id, name, share of the image) of every class present, largest first."""
    counts = np.bincount(label.ravel(), minlength=len(class_names))
    total = max(int(counts.sum()), 1)
    rows = [
        (int(k), str(class_names[k]) if k < len(class_names) else str(k), float(counts[k]) / total)
        for k in np.flatnonzero(counts)
    ]
    return sorted(rows, key=lambda r: -r[2])


def token_picture(att: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 2) [token, weight] map -> colour picture (hue = token, brightness = weight) at ``size`` (H, W)."""
    pic = viz.colorize_tokens(att[..., 0].astype(np.int64), att[..., 1], int(att[..., 0].max()) + 1)
    return np.asarray(Image.fromarray(pic).resize((size[1], size[0]), Image.Resampling.NEAREST))


def write_outputs(
    out_dir: Path,
    name: str,
    rgb: np.ndarray,
    pred: Prediction,
    class_names,
    *,
    depth: np.ndarray | None = None,
    palette=None,
) -> list[Path]:
    """``<name>_label.png`` (class ids), ``<name>_overlay.png`` (+ legend of the classes present),
    ``<name>_depth.png``, ``<name>_tokens_l<k>.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    label_image(pred.label).save(out_dir / f"{name}_label.png")
    written.append(out_dir / f"{name}_label.png")
    viz.save_png(render_overlay(rgb, pred.label, class_names, palette=palette), out_dir / f"{name}_overlay.png")
    written.append(out_dir / f"{name}_overlay.png")
    if depth is not None:
        viz.save_png(viz.colorize_depth(depth), out_dir / f"{name}_depth.png")
        written.append(out_dir / f"{name}_depth.png")
    for layer, att in pred.attention.items():
        pic = token_picture(att, rgb.shape[:2])
        viz.save_png(np.concatenate([rgb, pic], axis=1), out_dir / f"{name}_tokens_l{layer}.png")
        written.append(out_dir / f"{name}_tokens_l{layer}.png")
    return written


def inference_context(device: torch.device, precision: str = "auto"):
    """Context for inference: ``bf16`` autocast, or ``fp32`` (on CPUs with the fp32 products on oneDNN
    where exact, :func:`dgss.engine.host.onednn_fp32_matmul`); ``auto`` is bf16 on GPUs, fp32 on CPUs."""
    from .backends import resolve_precision
    from .host import onednn_fp32_matmul

    if precision not in ("auto", "bf16", "fp32"):
        raise InputError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return onednn_fp32_matmul(device.type == "cpu")


def maybe_compile(model: Segmentor, enabled: bool) -> Segmentor:
    """``torch.compile`` the per-window forward (one-off compile cost; fixed window shapes)."""
    if enabled:  # the compiled forward shadows the method on the instance (mypy forbids assigning methods)
        model.predict_windows = torch.compile(model.predict_windows, dynamic=False)  # type: ignore[method-assign]
    return model
