"""GTR-LTR texture randomisation (``docs/methods/gtr-ltr.md``): an INTERFACE only, off by default.

GTR-LTR (Peng et al., IEEE TIP) re-renders source images in "unreal" painting textures with a neural
style-transfer network: GTR stylises the whole image, LTR only random local regions, and a consistency
loss (CGL) ties the two views together. **It cannot be reproduced from public sources**: no code was
released, the texture collection (reportedly Kaggle "Painter by Numbers") and a trained style-transfer
network are not ours to ship, and the blending schedule, region generator and CGL loss are unknown.

What dgss provides is the place to plug them in:

* ``style_dir``: a folder of style images you supply (searched recursively: png, jpg, jpeg, bmp, webp);
* ``weights``: your style-transfer network (e.g. an AdaIN encoder/decoder) as a ``torch.export`` program
  (``.pt2``, saved with ``torch.export.save``; export with dynamic H/W) or a TorchScript file (any other
  suffix; ``torch.jit.script``/``trace``), called as ``net(content, style) -> stylised`` with
  ``content`` (1, 3, H, W) and ``style`` (1, 3, h, w) float32 in [0, 1]; the output (1, 3, H', W') is
  clipped to [0, 1] and resized back to H×W if needed.

Per image (our choices, unverified): draw u ~ U(0, 1); u < ``global_prob``: GTR (whole image stylised with
one random style image); else u < ``global_prob + local_prob``: LTR (the image stylised with one random
style image, pasted back only inside ``num_regions`` random axis-aligned rectangles whose sides are
U(``region_scale``) of the image sides); else unchanged. It runs on the decoded uint8 image before any
geometric transform (like PASTA; before PASTA when both are on). The CGL loss is not implemented.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ...errors import GtrLtrError

STYLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
NOT_REPRODUCIBLE = "GTR-LTR cannot be reproduced from public sources; dgss only provides the interface"


def list_style_images(style_dir: str | Path) -> list[Path]:
    root = Path(style_dir)
    if not root.is_dir():
        raise GtrLtrError(
            f"augment.gtr_ltr.style_dir: folder not found: {root} (supply your own texture/painting "
            f"images; {NOT_REPRODUCIBLE})"
        )
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in STYLE_SUFFIXES and p.is_file())
    if not files:
        raise GtrLtrError(f"augment.gtr_ltr.style_dir: no images ({', '.join(STYLE_SUFFIXES)}) in {root}")
    return files


def load_style_network(weights: str | Path) -> Callable:
    """``.pt2``: a ``torch.export`` program; anything else: a TorchScript file."""
    path = Path(weights)
    if not path.is_file():
        raise GtrLtrError(
            f"augment.gtr_ltr.weights: file not found: {path} (supply your style-transfer network as "
            f"a torch.export .pt2 or TorchScript file; {NOT_REPRODUCIBLE})"
        )
    exported = path.suffix == ".pt2"
    try:
        if exported:
            return torch.export.load(str(path)).module()
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:
        kind = "torch.export (.pt2) program" if exported else "TorchScript file"
        raise GtrLtrError(
            f"augment.gtr_ltr.weights: {path} is not a loadable {kind} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})"
        ) from None


class GtrLtr:
    """Callable ``(image (3, H, W) uint8 or float in 0..255, generator) -> uint8 (3, H, W)``.

    ``network`` may be given directly (any callable of the TorchScript signature, e.g. in tests);
    otherwise it is loaded lazily from ``weights`` (once per data-loader worker).
    """

    def __init__(
        self,
        style_dir: str | Path,
        weights: str | Path | None = None,
        *,
        global_prob: float = 0.5,
        local_prob: float = 0.5,
        num_regions: int = 3,
        region_scale: tuple[float, float] = (0.1, 0.5),
        style_size: int = 512,
        network: Callable | None = None,
    ):
        self.styles = list_style_images(style_dir)
        if network is None:
            if weights is None:
                raise GtrLtrError(
                    f"augment.gtr_ltr.weights: required (a TorchScript style-transfer network); {NOT_REPRODUCIBLE}"
                )
            network = load_style_network(weights)  # fail now (main process), not inside a worker
        self.weights, self._net = weights, network
        self.global_prob, self.local_prob = global_prob, local_prob
        self.num_regions, self.region_scale, self.style_size = num_regions, tuple(region_scale), style_size

    @classmethod
    def from_config(cls, cfg) -> GtrLtr:
        return cls(
            cfg.style_dir,
            cfg.weights,
            global_prob=cfg.global_prob,
            local_prob=cfg.local_prob,
            num_regions=cfg.num_regions,
            region_scale=cfg.region_scale,
            style_size=cfg.style_size,
        )

    def __getstate__(self) -> dict:  # data-loader workers load the network themselves
        state = dict(self.__dict__)
        if self.weights is not None:
            state["_net"] = None
        return state

    @property
    def network(self) -> Callable:
        if self._net is None:
            self._net = load_style_network(self.weights)
        return self._net

    def style_image(self, index: int) -> torch.Tensor:
        """Style ``index`` as (1, 3, h, w) float32 in [0, 1], short edge ``style_size``."""
        with Image.open(self.styles[index]) as f:
            im = f.convert("RGB")
            w, h = im.size
            s = self.style_size / min(w, h)
            im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / 255.0
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]

    def stylize(self, image01: torch.Tensor, style_index: int) -> torch.Tensor:
        """(3, H, W) float32 in [0, 1] -> the network's output (3, H, W) in [0, 1]."""
        with torch.no_grad():
            out = self.network(image01[None], self.style_image(style_index))
        if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[:2] != (1, 3):
            raise GtrLtrError(
                f"augment.gtr_ltr.weights: the network must return a (1, 3, H, W) tensor, got "
                f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}"
            )
        out = out.float().clamp(0, 1)
        if out.shape[-2:] != image01.shape[-2:]:
            out = F.interpolate(out, size=tuple(image01.shape[-2:]), mode="bilinear", align_corners=False)
        return out[0]

    def region_mask(self, height: int, width: int, generator: torch.Generator | None) -> torch.Tensor:
        """Union of ``num_regions`` random rectangles, (H, W) bool."""
        mask = torch.zeros(height, width, dtype=torch.bool)
        lo, hi = self.region_scale
        for _ in range(self.num_regions):
            fh, fw = (lo + (hi - lo) * torch.rand(2, generator=generator, dtype=torch.float64)).tolist()
            rh, rw = max(1, round(fh * height)), max(1, round(fw * width))
            top = int(torch.randint(0, height - rh + 1, (), generator=generator))
            left = int(torch.randint(0, width - rw + 1, (), generator=generator))
            mask[top : top + rh, left : left + rw] = True
        return mask

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        u = float(torch.rand((), generator=generator))
        if u >= self.global_prob + self.local_prob:
            return image
        style = int(torch.randint(0, len(self.styles), (), generator=generator))
        x = image.to(torch.float32) / 255.0
        styl = self.stylize(x, style)
        if u >= self.global_prob:  # LTR: only inside random local regions
            mask = self.region_mask(x.shape[-2], x.shape[-1], generator)
            styl = torch.where(mask[None], styl, x)
        return (styl * 255.0).to(torch.uint8)
