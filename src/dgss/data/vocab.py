"""Vocabularies (class names) and prompt templates for open-vocabulary segmentation.

A vocabulary is an ordered list of K class names; a final ``"background"`` entry (the no-object
class) is always added internally, so tables have K + 1 rows. A name containing ", " is a synonym
list ("bicycle, bike"): each synonym is encoded with every template and the embeddings are averaged.
A bare comma ("person with clothes,people,human") is part of the name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import VocabularyError

BACKGROUND = "background"
BUILTIN_VOCABULARIES = ("cityscapes", "deliver", "ade150", "ade847", "coco_stuff")
MAX_TOKENS = 77  # CLIP context


@dataclass(frozen=True)
class Vocabulary:
    """K class names (without the background entry)."""

    names: tuple[str, ...]
    source: str = "inline"

    def __post_init__(self):
        validate_names(self.names)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def with_background(self) -> tuple[str, ...]:
        return self.names + (BACKGROUND,)

    def display_names(self) -> list[str]:
        """Short names for tables and legends (first synonym, first comma part)."""
        return [n.split(", ")[0].split(",")[0].strip() for n in self.names]


def validate_names(names) -> None:
    names = list(names)
    if not names:
        raise VocabularyError("empty vocabulary: give at least one class name")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise VocabularyError(f"empty or non-text class names: {bad[:5]}")
    seen, dups = set(), []
    for n in names:
        key = n.strip().lower()
        if key in seen:
            dups.append(n)
        seen.add(key)
    if dups:
        raise VocabularyError(f"duplicate class names: {sorted(set(dups))[:10]}")
    if any(n.strip().lower() == BACKGROUND for n in names):
        raise VocabularyError('"background" is reserved for the no-object entry; drop it from the class list')
    long = [n for n in names if len(n) > 200]
    if long:
        raise VocabularyError(f"over-long class names (> 200 characters): {[n[:40] + '...' for n in long[:3]]}")


def _strip_background(names: list[str]) -> list[str]:
    return names[:-1] if names and names[-1].strip().lower() == BACKGROUND else names


def builtin_vocabulary(name: str) -> Vocabulary:
    if name not in BUILTIN_VOCABULARIES:
        raise VocabularyError(
            f"unknown vocabulary {name!r}; built-in: {', '.join(BUILTIN_VOCABULARIES)} "
            "(or pass a JSON file or a comma-separated list)"
        )
    text = resources.files("dgss.assets.vocabularies").joinpath(f"{name}.json").read_text()
    return Vocabulary(tuple(_strip_background(json.loads(text))), source=name)


def load_vocabulary(spec: str | list[str] | tuple[str, ...] | Vocabulary) -> Vocabulary:
    """A built-in name (cityscapes, deliver, ade150, ade847, coco_stuff), a JSON file (list of names), a folder
    dataset's ``classes.yaml`` (or its folder; synonyms become ", " entries), a list of names, or a
    :class:`Vocabulary`. A trailing "background" entry is accepted and dropped."""
    if isinstance(spec, Vocabulary):
        return spec
    if isinstance(spec, (list, tuple)):
        return Vocabulary(tuple(_strip_background([str(s) for s in spec])))
    s = str(spec)
    if s in BUILTIN_VOCABULARIES:
        return builtin_vocabulary(s)
    p = Path(s)
    if p.is_dir() or p.suffix in (".yaml", ".yml"):  # a folder dataset's classes.yaml: names + synonyms
        from .folder import load_classes

        return Vocabulary(load_classes(p).vocab_entries, source=str(p))
    if not p.is_file():
        raise VocabularyError(
            f"unknown vocabulary {s!r}: not a built-in ({', '.join(BUILTIN_VOCABULARIES)}) "
            "and no such JSON file (for your own words use a class list: 'road, car, dog')"
        )
    try:
        names = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise VocabularyError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(names, list):
        raise VocabularyError(f"{p}: expected a JSON list of class names")
    return Vocabulary(tuple(_strip_background([str(n) for n in names])), source=str(p))


def parse_class_list(text: str) -> Vocabulary:
    """A command-line class list: "road, car, person, dog". Entries may be separated by ``;``
    instead, so that they can carry ", " synonyms: "bicycle, bike; car; person"."""
    sep = ";" if ";" in text else ","
    return Vocabulary(tuple(n.strip() for n in text.split(sep) if n.strip()), source="command line")


def resolve_vocabulary(spec) -> Vocabulary:
    """Anything a user may pass: a Vocabulary, a list, a built-in name, a JSON file, or a class list."""
    if (
        isinstance(spec, str)
        and spec not in BUILTIN_VOCABULARIES
        and not Path(spec).is_file()
        and ("," in spec or ";" in spec)
    ):
        return parse_class_list(spec)
    return load_vocabulary(spec)


def synonyms(name: str) -> list[str]:
    """The synonyms of one entry ("a, b" -> ["a", "b"]; bare commas are kept)."""
    return [p.strip() for p in name.split(", ")] if ", " in name else [name]


def encoder_templates() -> list[str]:
    """The 32 GeoText ("imagenet_select_clip") templates."""
    text = resources.files("dgss.assets.vocabularies").joinpath("templates_select32.txt").read_text()
    return [line.rstrip("\n") for line in text.splitlines() if line.strip()]


def head_templates() -> list[str]:
    """CLIP's 80 ImageNet templates (from open_clip)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
