"""The records every data reader shares: one image/label pair, one pairing rule, one benchmark's facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SegSample:
    """One image/label pair. `label` is None for unlabelled images."""

    image: Path
    label: Path | None
    domain: str
    label_format: str = "trainid"


@dataclass(frozen=True)
class PairRule:
    """Images `image_dir/**/*{image_suffix}` pair with `label_dir/<same rel dir>/<stem>{label_suffix}`."""

    split: str  # split key as used in `DatasetInfo.splits`, e.g. "val" or "fog/val"
    image_dir: str
    image_suffix: str
    label_dir: str
    label_suffix: str
    domain: str
    label_format: str = "trainid"
    prepared: bool = False  # labels are written by `dgss data prepare`


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one benchmark."""

    name: str
    default_dir: str  # folder name under the data root
    num_classes: int
    ignore_index: int
    splits: dict[str, int]  # split key -> official number of images (0 = not fixed here)
    conditions: tuple[str, ...] = ()  # domains within the dataset (ACDC, DELIVER)
    needs_prepare: bool = False
    class_names: tuple[str, ...] = field(default=(), repr=False)
    id_map: tuple[tuple[int, int], ...] = field(default=(), repr=False)  # raw value -> class (folder datasets)
    vocab: tuple[str, ...] = field(default=(), repr=False)  # open-vocabulary entries with synonyms (folder)
