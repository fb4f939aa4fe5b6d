"""What the web app does, without the web: load a model once, read inputs, segment, render.

Every step is a call into :mod:`dgss.engine.predict` (the functions behind ``dgss predict``), so the
app has no inference path of its own. Errors a user can cause raise :class:`UserError` (one line
naming the problem and what to do); the web layer shows them on the page.
"""

from __future__ import annotations

import html
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import viz
from ..engine import predict as P
from ..errors import UserError

DEFAULT_MAX_PIXELS = 4096 * 2048  # 8.4 MP: a 4096x2048 panorama, a 12 MP photo is refused
DEMO_OUT = Path("demo_out")
CONDITIONS = ("clean", "night", "fog", "rain", "snow")
SCENE_COUNT = 4
KEEP_LABEL_FILES = 256  # label PNGs kept for download (older ones are deleted)


def demo_checkpoint(out: Path = DEMO_OUT) -> Path | None:
    """The newest complete checkpoint `dgss demo` wrote under ``out`` (None if there is none)."""
    from ..engine.checkpointing import latest_checkpoint

    if not out.is_dir():
        return None
    runs = [out / "run"] + sorted(p for p in out.glob("run*") if p.is_dir() and p.name != "run")
    found = [c for c in (latest_checkpoint(r) for r in runs if r.is_dir()) if c is not None]
    if not found:
        return None
    return max(found, key=lambda c: c.weights.stat().st_mtime).weights


def scene_choices() -> list[str]:
    """Names of the generated scenes the page offers: held-out demo scenes, clean and under each condition."""
    return [f"scene {i + 1} · {c}" for i in range(SCENE_COUNT) for c in CONDITIONS]


def generated_scene(choice: str) -> tuple[str, np.ndarray]:
    """(name, RGB) of a choice from :func:`scene_choices` (the demo's held-out scenes, seed 2)."""
    from ..data.robustness import corrupt
    from ..data.scenes import make_scene
    from ..demo.run import VAL_SEED, scene_seed

    if choice not in scene_choices():
        raise UserError(f"unknown scene {choice!r}: pick one from the list")
    num, cond = choice.removeprefix("scene ").split(" · ")
    rgb = make_scene(scene_seed(VAL_SEED, int(num) - 1)).image
    if cond != "clean":
        rgb = np.ascontiguousarray(corrupt(rgb, cond, 3, 0))
    return f"scene{num}_{cond}", rgb


def display_name(name: str) -> str:
    """Short class name for legends and tables ("bicycle, bike" -> "bicycle")."""
    return name.split(", ")[0].split(",")[0].strip() or name


def vocabulary_text(names) -> str:
    """Class names as the class box shows them: ", " between plain names, "; " once a name has a comma."""
    return ("; " if any("," in n for n in names) else ", ").join(names)


@dataclass
class Result:
    name: str
    rgb: np.ndarray  # (H, W, 3) uint8
    label: np.ndarray  # (H, W) class ids
    class_names: tuple[str, ...]
    depth: np.ndarray | None = None  # (H, W) relative depth
    label_file: Path | None = None
    palette: tuple | None = None  # the model's display colours (None: default colours)
    attention: dict[int, np.ndarray] = field(default_factory=dict)


class SegmentationService:
    """A loaded model and everything the page can ask of it."""

    def __init__(
        self,
        model_spec: str,
        *,
        weights: dict[str, str] | None = None,
        random_weights: bool = False,
        depth_weights: str | None = None,
        device: str = "cpu",
        precision: str = "auto",
        short_side: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        from ..hub.resolve import load_for_inference

        self.weights = dict(weights or {})
        self.random_weights = random_weights
        self.device = torch.device(device)
        self.precision = precision
        self.short_side = short_side
        self.max_pixels = int(max_pixels)
        self.model = load_for_inference(model_spec, self.weights, random_weights).eval().to(self.device)
        self.model_spec = str(model_spec)
        self.open_vocabulary = self.model.open_vocabulary
        self.train_vocabulary = tuple(self.model.class_names)
        self.text_encoder = P.text_encoder_for(self.model, self.weights)
        self.dav2, self.depth_note = None, ""
        if self.model.depth_encoder is not None or depth_weights:
            try:
                self.dav2 = P.depth_model_for(self.model, depth_weights)
            except (P.InputError, OSError, RuntimeError, ValueError) as e:
                self.depth_note = f"no depth map: {e}"
        self.out_dir = Path(tempfile.mkdtemp(prefix="dgss-app-"))
        self._label_dirs: list[Path] = []

    # ------------------------------------------------------------------ facts for the page
    @property
    def num_blocks(self) -> int:
        """Encoder blocks the token-attention slider offers (1 for models without adapter tokens)."""
        return self.model.encoder.depth if self.has_attention else 1

    @property
    def has_attention(self) -> bool:
        """Token-attention maps need an adapter that records its token attention (the REIN family)."""
        return self.model.adapter is not None and hasattr(self.model.adapter, "recorder")

    @property
    def random_frozen(self) -> bool:
        return self.model.random_frozen

    def describe(self) -> str:
        m = self.model
        n = sum(p.numel() for p in m.parameters())
        vocab = "open vocabulary (type class names)" if self.open_vocabulary else f"{m.num_classes} classes"
        return (
            f"**Model** `{Path(self.model_spec).name}`: {m.cfg.name} ({m.cfg.method}, {n / 1e6:.1f} M parameters, "
            f"{vocab}); windows of {m.window_size} px on {self.device.type}. "
            f"Images up to {self.max_pixels / 1e6:.1f} MP."
        )

    # ------------------------------------------------------------------ inputs
    def read_upload(self, path: str | Path) -> tuple[str, np.ndarray]:
        """(name, RGB) of an uploaded file; not an image, truncated or too large -> :class:`UserError`."""
        path = Path(path)
        try:
            rgb = P.read_rgb(path, self.max_pixels, name=path.name)
        except P.InputError as e:
            raise UserError(str(e)) from None
        return path.stem, rgb

    def check_size(self, name: str, rgb: np.ndarray) -> None:
        try:
            P.check_image_size(rgb.shape[1], rgb.shape[0], self.max_pixels, name)
        except P.InputError as e:
            raise UserError(str(e)) from None

    # ------------------------------------------------------------------ vocabulary
    def use_classes(self, text: str | None) -> tuple[str, ...]:
        """Open-vocabulary models: switch to the classes in ``text`` (unchanged vocabulary: nothing to do)."""
        if not self.open_vocabulary:
            return self.model.class_names
        text = (text or "").strip()
        if not text.replace(",", "").replace(";", "").strip():
            raise UserError("the class list is empty: type class names separated by commas, e.g. road, car, person")
        from ..data.vocab import parse_class_list

        try:
            names = parse_class_list(text).names
            if names != tuple(self.model.class_names):
                P.set_classes(self.model, names, self.text_encoder)
        except (ValueError, RuntimeError) as e:  # VocabularyError, TextTableError, table shape checks
            msg = str(e)
            if "no cached text table" in msg:
                msg = (
                    "no cached text table for these class names and no CLIP text tower to compute them: "
                    "start the app with --weights clip=FILE (or compute the tables once with dgss predict)"
                )
            raise UserError(msg) from None
        return self.model.class_names

    # ------------------------------------------------------------------ inference
    def segment(self, inputs: list[tuple[str, np.ndarray]], classes: str | None = None, progress=None) -> list[Result]:
        """Labels (and depth) for each input; ``progress(image_index, done, total)`` after every window."""
        names = self.use_classes(classes)
        results = []
        for i, (name, rgb) in enumerate(inputs):
            self.check_size(name, rgb)
            cb = (lambda done, total, i=i: progress(i, done, total)) if progress else None
            with P.inference_context(self.device, self.precision):
                pred = P.predict_image(self.model, rgb, short_side=self.short_side, progress=cb)
            depth = P.predict_depth(self.dav2, self.model, rgb) if self.dav2 is not None else None
            res = Result(name, rgb, pred.label, tuple(names), depth, palette=self.model.palette)
            res.label_file = self._write_label(res)
            results.append(res)
        return results

    def attention(self, result: Result, block: int) -> np.ndarray | None:
        """Token-attention picture of ``result``'s image at encoder block ``block`` (one encoder pass)."""
        if not self.has_attention:
            return None
        block = int(min(max(block, 0), self.num_blocks - 1))
        if block not in result.attention:
            x = P.prepare_input(self.model, result.rgb, self.short_side)
            with P.inference_context(self.device, self.precision):
                result.attention[block] = P.token_attention(self.model, x, [block])[block]
        return P.token_picture(result.attention[block], result.rgb.shape[:2])

    def _write_label(self, res: Result) -> Path:
        """The label PNG offered for download, in a folder of its own; only the newest folders are kept."""
        d = Path(tempfile.mkdtemp(dir=self.out_dir))
        path = d / f"{res.name}_label.png"
        P.label_image(res.label).save(path)
        self._label_dirs.append(d)
        while len(self._label_dirs) > KEEP_LABEL_FILES:
            shutil.rmtree(self._label_dirs.pop(0), ignore_errors=True)
        return path

    # ------------------------------------------------------------------ rendering
    @staticmethod
    def overlay(res: Result) -> np.ndarray:
        """The prediction over the image, at the image's size (the legend is drawn beside it on the page)."""
        return P.render_overlay(res.rgb, res.label, res.class_names, legend=False, palette=res.palette)

    @staticmethod
    def shares(res: Result) -> list[list]:
        return [[display_name(n), round(100 * s, 2)] for _, n, s in P.class_shares(res.label, res.class_names)]

    @staticmethod
    def legend_html(res: Result) -> str:
        """Colour swatches of the classes present, largest share first."""
        pal = viz.palette_for(res.class_names, res.palette)
        items = []
        for k, n, s in P.class_shares(res.label, res.class_names):
            r, g, b = (int(c) for c in pal[k]) if k < len(pal) else (0, 0, 0)
            items.append(
                f'<li class="dgss-legend-item" data-class="{html.escape(display_name(n))}">'
                f'<span class="dgss-swatch" style="background: rgb({r},{g},{b})"></span>'
                f'<span class="dgss-legend-name">{html.escape(display_name(n))}</span>'
                f'<span class="dgss-legend-share">{100 * s:.1f}%</span></li>'
            )
        return f'<ul class="dgss-legend" data-image="{html.escape(res.name)}">' + "".join(items) + "</ul>"

    @staticmethod
    def depth_picture(res: Result) -> np.ndarray | None:
        return viz.colorize_depth(res.depth) if res.depth is not None else None
