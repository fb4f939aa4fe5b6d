"""`dgss data generate-scenes`: the generated street scenes (`dgss.data.scenes`) as a folder dataset.

Writes ``OUT/classes.yaml``, ``OUT/images/<split>/<domain>/scene_NNNNN.png`` and
``OUT/labels/<split>/<domain>/scene_NNNNN.png`` (see `dgss.data.folder`). Domains are ``clean`` and
synthetic adverse conditions of `dgss.data.robustness` (``night``, ``fog``, ``rain``, ``snow``,
severity 3), applied to the same scenes. ``classes`` renames and subsets the generator's classes
(pixels of the classes left out become ignore), so that two folders with different, partly disjoint
class lists can be made from the same scenes (open-vocabulary tests). ``raw_ids`` stores the
generator's Cityscapes trainIds in the label files and an ``id_map`` in `classes.yaml` instead.
Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from ..errors import DataError
from ..files import atomic_write
from . import scenes as S
from .folder import CLASSES_FILE

GENERATOR_CLASSES: dict[str, int] = {
    "road": S.ROAD,
    "sidewalk": S.SIDEWALK,
    "building": S.BUILDING,
    "pole": S.POLE,
    "traffic light": S.LIGHT,
    "traffic sign": S.SIGN,
    "vegetation": S.VEGETATION,
    "terrain": S.TERRAIN,
    "sky": S.SKY,
    "person": S.PERSON,
    "car": S.CAR,
}
"""The classes `dgss.data.scenes` draws, by Cityscapes name -> trainId."""
DOMAINS = ("clean", "night", "fog", "rain", "snow")
SEVERITY = 3


@dataclass
class GeneratedFolder:
    root: Path
    counts: dict[str, int]  # "<split>/<domain>" -> images written
    class_names: tuple[str, ...]


def _png(array: np.ndarray, path: Path) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"), durable=False)


def parse_class_spec(items: Sequence[str]) -> dict[str, str]:
    """``["road=street", "car", ...]`` -> {generator class: new name}, in the given order."""
    out: dict[str, str] = {}
    for item in items:
        src, _, new = item.partition("=")
        src, new = src.strip(), (new or src).strip()
        if src not in GENERATOR_CLASSES:
            raise DataError(
                f"--classes: {src!r} is not a class of the generated scenes; known: {', '.join(GENERATOR_CLASSES)}"
            )
        if src in out:
            raise DataError(f"--classes: {src!r} is listed twice")
        out[src] = new
    return out


def generate_scene_folder(
    out: str | Path,
    *,
    train: int = 16,
    val: int = 4,
    height: int = 128,
    width: int = 256,
    seed: int = 0,
    domains: Sequence[str] = ("clean",),
    train_domains: Sequence[str] = ("clean",),
    classes: Mapping[str, str] | None = None,
    synonyms: Mapping[str, Sequence[str]] | None = None,
    raw_ids: bool = False,
    bits: int = 8,
    name: str | None = None,
    force: bool = False,
) -> GeneratedFolder:
    """Write generated scenes in the folder layout.

    Args:
        train / val: scenes per split (the val scenes use other seeds than the train scenes).
        domains: domain folders of the val split; ``train_domains`` those of the train split.
        classes: {generator class: new name} in class-id order; default all generator classes, named as
            Cityscapes names them. Pixels of other classes become ignore (255).
        synonyms: {new name: [synonym, ...]} written to `classes.yaml`.
        raw_ids: labels hold the generator's trainIds; `classes.yaml` gets an ``id_map``.
        bits: 8 or 16-bit label PNGs.
        force: write into a folder that is not empty or already holds a `classes.yaml`.
    """
    root = Path(out)
    if (root / CLASSES_FILE).exists() and not force:
        raise DataError(f"{root} already holds a {CLASSES_FILE}: choose an empty folder (or pass --force)")
    if root.is_dir() and any(root.iterdir()) and not force:
        raise DataError(
            f"{root} is not empty and holds no {CLASSES_FILE}: generate-scenes writes into a new or "
            "empty folder, never among other files (or pass --force to add the scenes anyway)"
        )
    bad = [d for d in (*domains, *train_domains) if d not in DOMAINS]
    if bad:
        raise DataError(f"unknown domain(s) {bad}; known: {', '.join(DOMAINS)}")
    if bits not in (8, 16):
        raise DataError(f"label bits must be 8 or 16, got {bits}")
    mapping = dict(classes) if classes else {n: n for n in GENERATOR_CLASSES}
    names = list(mapping.values())
    if len({n.lower() for n in names}) != len(names):
        raise DataError(f"class names must be distinct, got {names}")
    synonyms = dict(synonyms or {})
    unknown_syn = sorted(set(synonyms) - set(names))
    if unknown_syn:
        raise DataError(f"synonyms given for {unknown_syn}, which are not among the classes {names}")
    lut = np.full(256, 255, dtype=np.uint8)  # generator trainId -> new class id
    for new_id, src in enumerate(mapping):
        lut[GENERATOR_CLASSES[src]] = new_id
    from ..viz import cityscapes_palette

    pal = cityscapes_palette()
    spec: dict = {
        "name": name or root.resolve().name,
        "classes": [{"name": n, "synonyms": list(synonyms[n])} if synonyms.get(n) else n for n in names],
        "palette": [[int(v) for v in pal[GENERATOR_CLASSES[src]]] for src in mapping],
        "ignore_index": 255,
    }
    if raw_ids:
        spec["id_map"] = {int(raw): mapping.get(src, "ignore") for src, raw in GENERATOR_CLASSES.items()}
    spec["domains"] = sorted(set(domains) | set(train_domains), key=DOMAINS.index)
    counts: dict[str, int] = {}
    for split, n, split_domains, seed_base in (
        ("train", train, train_domains, seed * 1_000_003),
        ("val", val, domains, seed * 1_000_003 + 500_000),
    ):
        for i in range(n):
            scene = S.make_scene(seed_base + i, height, width)
            label = scene.label if raw_ids else lut[scene.label]
            label = label.astype(np.uint16 if bits == 16 else np.uint8)
            for d in split_domains:
                img = scene.image if d == "clean" else _under_condition(scene.image, d, seed_base + i)
                stem = f"scene_{i:05d}.png"
                _png(img, root / "images" / split / d / stem)
                _png(label, root / "labels" / split / d / stem)
                counts[f"{split}/{d}"] = counts.get(f"{split}/{d}", 0) + 1
    text = (
        "# Classes of a folder dataset written by `dgss data generate-scenes` (see dgss.data.folder).\n"
        + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, default_flow_style=None)
    )
    atomic_write(root / CLASSES_FILE, lambda tmp: Path(tmp).write_text(text), durable=False)
    return GeneratedFolder(root, counts, tuple(names))


def _under_condition(image: np.ndarray, condition: str, seed: int) -> np.ndarray:
    """A generated scene under a synthetic adverse condition (`dgss.data.robustness`, severity 3)."""
    from .robustness import corrupt

    return corrupt(image, condition, SEVERITY, seed)
