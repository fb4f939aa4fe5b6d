"""Readers of the DG benchmarks from their official directory layouts (`docs/data-protocol.md`).

A reader lists `SegSample`s (image path, label path, label format, domain tag) by pairing image and
label files with fixed rules (`PairRule`); `SegDataset` decodes them for PyTorch.

`SegDataset[i]` returns a dict:
    image  (3,H,W) uint8 RGB tensor (0..255) - or whatever its `transform` returns
    label  (H,W) int64 tensor of trainIds; ignore = `info.ignore_index` (255; 65535 for ADE-847)
    domain str, e.g. "cityscapes", "acdc/night", "deliver/fog"
    path   str, the image path

Roots: every function takes the dataset's own directory (e.g. `data/cityscapes`); passing the data
root that contains it under its default name (`data/`) works too (`resolve_root`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from . import label_maps as lm
from .records import DatasetInfo, PairRule, SegSample
from .vocab import builtin_vocabulary

# Label formats: how a label file becomes a trainId map.
LABEL_FORMATS = ("trainid", "deliver", "ade150", "ade847", "coco_stuff")


_CS19 = lm.CITYSCAPES_CLASSES
ACDC_CONDITIONS = ("fog", "night", "rain", "snow")
DELIVER_CONDITIONS = ("sun", "night", "cloud", "rain", "fog")

DATASETS: dict[str, DatasetInfo] = {
    "cityscapes": DatasetInfo(
        "cityscapes", "cityscapes", 19, 255, {"train": 2975, "val": 500}, needs_prepare=True, class_names=_CS19
    ),
    "gta5": DatasetInfo("gta5", "gta", 19, 255, {"all": 24966}, needs_prepare=True, class_names=_CS19),
    "bdd100k": DatasetInfo("bdd100k", "bdd100k", 19, 255, {"train": 7000, "val": 1000}, class_names=_CS19),
    "mapillary": DatasetInfo(
        "mapillary", "mapillary", 19, 255, {"train": 18000, "val": 2000}, needs_prepare=True, class_names=_CS19
    ),
    "acdc": DatasetInfo(
        "acdc",
        "acdc",
        19,
        255,
        {
            **{f"{c}/train": 400 for c in ACDC_CONDITIONS},
            **{f"{c}/val": n for c, n in zip(ACDC_CONDITIONS, (100, 106, 100, 100), strict=False)},
        },
        conditions=ACDC_CONDITIONS,
        class_names=_CS19,
    ),
    "deliver": DatasetInfo(
        "deliver",
        "DELIVER",
        25,
        255,
        {"train": 3983, "val": 2005, "test": 1897},
        conditions=DELIVER_CONDITIONS,
        class_names=lm.DELIVER_CLASSES,
    ),
    "ade150": DatasetInfo("ade150", "ADEChallengeData2016", 150, 255, {"train": 20210, "val": 2000}),
    "ade847": DatasetInfo(
        "ade847", "ADE20K_2021_17_01", 847, lm.ADE847_IGNORE_INDEX, {"val": 2000}, needs_prepare=True
    ),
    "coco_stuff": DatasetInfo(
        "coco_stuff",
        "coco-stuff",
        171,
        255,
        {"train": 118287, "val": 5000},
        class_names=builtin_vocabulary("coco_stuff").names,
    ),
    # your own data (`dgss.data.folder`): classes, ignore index and domains come from ROOT/classes.yaml
    "folder": DatasetInfo("folder", "", 0, 255, {}),
}
"""Known datasets by CLI name. Split sizes are the official ones (`docs/data-protocol.md`). ``folder`` is a
placeholder: its `DatasetInfo` is read from the folder (`dgss.data.folder.folder_info`)."""


def dataset_info(name: str) -> DatasetInfo:
    """`DATASETS[name]` with a clear error listing the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


# COCO-Stuff 164k: where images and labels may live under the dataset directory, first existing folder wins
# ({s} = train2017 / val2017). Prepared labels hold the classes 0..170; raw stuffthingmaps hold ids 0..181.
COCO_STUFF_IMAGE_DIRS = ("images/{s}", "{s}")
COCO_STUFF_LABEL_DIRS: tuple[tuple[str, str], ...] = (
    ("stuffthingmaps_detectron2/{s}", "trainid"),  # detectron2 / MaskFormer preparation
    ("annotations_detectron2/{s}", "trainid"),  # CAT-Seg's preparation
    ("annotations/{s}", "coco_stuff"),  # stuffthingmaps_trainval2017.zip unpacked into annotations/
    ("annotations/stuffthingmaps_trainval2017/{s}", "coco_stuff"),
    ("stuffthingmaps/{s}", "coco_stuff"),
    ("stuffthingmaps_trainval2017/{s}", "coco_stuff"),
)


def _first_dir(root: Path | None, candidates: Sequence[str], s: str) -> int:
    """Index of the first candidate folder that exists under `root` (0 if none does or `root` is None)."""
    if root is not None:
        for i, c in enumerate(candidates):
            if (root / c.format(s=s)).is_dir():
                return i
    return 0


def _coco_stuff_rules(root: Path | None) -> list[PairRule]:
    rules = []
    for split in ("train", "val"):
        s = f"{split}2017"
        image_dir = COCO_STUFF_IMAGE_DIRS[_first_dir(root, COCO_STUFF_IMAGE_DIRS, s)].format(s=s)
        label_dir, fmt = COCO_STUFF_LABEL_DIRS[_first_dir(root, [d for d, _ in COCO_STUFF_LABEL_DIRS], s)]
        rules.append(PairRule(split, image_dir, ".jpg", label_dir.format(s=s), ".png", "coco_stuff", label_format=fmt))
    return rules


def _coco_stuff_missing_folder(root: Path, rule: PairRule) -> str | None:
    """One line naming the missing image or label folder of a COCO-Stuff split, or None."""
    s = f"{rule.split}2017"
    if not (root / rule.image_dir).is_dir():
        tried = " nor ".join(str(root / d.format(s=s)) for d in COCO_STUFF_IMAGE_DIRS)
        return f"coco_stuff: no image folder for {s}: neither {tried} exists"
    if not (root / rule.label_dir).is_dir():
        tried = ", ".join(d.format(s=s) for d, _ in COCO_STUFF_LABEL_DIRS)
        return f"coco_stuff: no label folder for {s} under {root}: none of {tried} exists"
    return None


def pair_rules(
    name: str, split: str | None = None, conditions: Sequence[str] | None = None, root: str | Path | None = None
) -> list[PairRule]:
    """The file-pairing rules of dataset `name`, optionally restricted to a split / conditions.

    `split` is a plain split name ("train", "val", "test", "all"); for ACDC/DELIVER every requested
    condition gets its own rule (domain `acdc/<cond>`, `deliver/<cond>`). `root` (the dataset
    directory) picks the layout of datasets that have several (COCO-Stuff: `COCO_STUFF_IMAGE_DIRS`,
    `COCO_STUFF_LABEL_DIRS`); without it the first layout is returned.
    """
    info = dataset_info(name)
    conds = tuple(conditions) if conditions else info.conditions
    unknown = [c for c in conds if c not in info.conditions]
    if unknown:
        raise DataError(f"{name}: unknown condition(s) {unknown}; known: {', '.join(info.conditions)}")
    rules: list[PairRule] = []
    if name == "cityscapes":
        for s in ("train", "val"):
            rules.append(
                PairRule(
                    s,
                    f"leftImg8bit/{s}",
                    "_leftImg8bit.png",
                    f"gtFine/{s}",
                    "_gtFine_labelTrainIds.png",
                    "cityscapes",
                    prepared=True,
                )
            )
    elif name == "gta5":
        rules.append(PairRule("all", "images", ".png", "labels", "_labelTrainIds.png", "gta5", prepared=True))
    elif name == "bdd100k":
        for s in ("train", "val"):
            rules.append(PairRule(s, f"images/10k/{s}", ".jpg", f"labels/sem_seg/masks/{s}", ".png", "bdd100k"))
    elif name == "mapillary":
        rules.append(
            PairRule(
                "train",
                "training/images",
                ".jpg",
                "cityscapes_trainIdLabel/train/label",
                ".png",
                "mapillary",
                prepared=True,
            )
        )
        rules.append(PairRule("val", "half/val_img", ".jpg", "half/val_label", ".png", "mapillary", prepared=True))
    elif name == "acdc":
        for c in conds:
            for s in ("train", "val"):
                rules.append(
                    PairRule(
                        f"{c}/{s}",
                        f"rgb_anon/{c}/{s}",
                        "_rgb_anon.png",
                        f"gt/{c}/{s}",
                        "_gt_labelTrainIds.png",
                        f"acdc/{c}",
                    )
                )
    elif name == "deliver":
        for s in ("train", "val", "test"):
            for c in conds:
                rules.append(
                    PairRule(
                        s,
                        f"img/{c}/{s}",
                        "_rgb_front.png",
                        f"semantic/{c}/{s}",
                        "_semantic_front.png",
                        f"deliver/{c}",
                        label_format="deliver",
                    )
                )
    elif name == "ade150":
        for s, d in (("train", "training"), ("val", "validation")):
            rules.append(
                PairRule(s, f"images/{d}", ".jpg", f"annotations/{d}", ".png", "ade150", label_format="ade150")
            )
    elif name == "coco_stuff":
        rules = _coco_stuff_rules(None if root is None else Path(root))
    elif name == "ade847":
        for s, d in (("train", "training"), ("val", "validation")):
            rules.append(
                PairRule(
                    s,
                    f"images_detectron2/{d}",
                    ".jpg",
                    f"annotations_detectron2/{d}",
                    ".tif",
                    "ade847",
                    label_format="ade847",
                    prepared=True,
                )
            )
    if split is not None:
        known = sorted({r.split.split("/")[-1] for r in rules})
        if split not in known:
            raise DataError(f"{name}: unknown split {split!r}; known: {', '.join(known)}")
        rules = [r for r in rules if r.split.split("/")[-1] == split]
    return rules


def resolve_root(name: str, root: str | Path) -> Path:
    """The dataset directory: `root` itself, or `root/<default dir>` if `root` is the data root."""
    info = dataset_info(name)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{name}: root directory {root} does not exist")
    if name == "folder":
        return root
    first_dirs = {r.image_dir.split("/")[0] for r in pair_rules(name)}
    if name == "coco_stuff":
        first_dirs |= {d.format(s=f"{s}2017").split("/")[0] for d in COCO_STUFF_IMAGE_DIRS for s in ("train", "val")}
    if not any((root / d).is_dir() for d in first_dirs) and (root / info.default_dir).is_dir():
        return root / info.default_dir
    return root


DELIVER_PREPARED_SUFFIX = "_semantic_front_labelTrainIds.png"


@dataclass
class ScanResult:
    """Pairing outcome of one rule: paired samples, images without label, labels without image."""

    rule: PairRule
    samples: list[SegSample]
    missing_labels: list[Path]
    orphan_labels: list[Path]
    image_dir_exists: bool


def scan(root: Path, rule: PairRule) -> ScanResult:
    """Pair files under `root` with `rule` (recursive; sorted by path; hidden files skipped)."""
    img_dir, lab_dir = root / rule.image_dir, root / rule.label_dir
    if not img_dir.is_dir():
        return ScanResult(rule, [], [], [], False)
    images = sorted(p for p in img_dir.rglob(f"*{rule.image_suffix}") if p.is_file() and not p.name.startswith("."))
    labels = (
        {p for p in lab_dir.rglob(f"*{rule.label_suffix}") if p.is_file() and not p.name.startswith(".")}
        if lab_dir.is_dir()
        else set()
    )
    samples, missing, used = [], [], set()
    for img in images:
        rel = img.relative_to(img_dir)
        stem = rel.name[: -len(rule.image_suffix)]
        lab = lab_dir / rel.parent / f"{stem}{rule.label_suffix}"
        if lab in labels:
            used.add(lab)
            fmt = rule.label_format
            if rule.label_format == "deliver":  # prefer labels written by `dgss data prepare deliver`
                prepared = lab.with_name(lab.name[: -len(rule.label_suffix)] + DELIVER_PREPARED_SUFFIX)
                if prepared.is_file():
                    lab, fmt = prepared, "trainid"
            samples.append(SegSample(img, lab, rule.domain, fmt))
        else:
            missing.append(img)
    orphans = sorted(labels - used)
    return ScanResult(rule, samples, missing, orphans, True)


def list_samples(
    name: str, root: str | Path, split: str, conditions: Sequence[str] | None = None, *, allow_unlabelled: bool = False
) -> list[SegSample]:
    """All samples of `name`/`split` under `root`, sorted; strict about missing labels.

    Raises `DataError` if a split directory is missing, empty, or (unless `allow_unlabelled`) if
    images lack labels - with a hint to `dgss data prepare` / `dgss data check`.
    """
    if name == "folder":
        from .folder import list_folder_samples

        return list_folder_samples(root, split, conditions)
    info = dataset_info(name)
    root = resolve_root(name, root)
    out: list[SegSample] = []
    for rule in pair_rules(name, split, conditions, root=root):
        if name == "coco_stuff" and (missing := _coco_stuff_missing_folder(root, rule)):
            raise DataError(missing)
        res = scan(root, rule)
        if not res.image_dir_exists:
            if name in ("mapillary", "ade847"):  # these image folders are written by `prepare`
                raise DataError(
                    f"{name}: {root / rule.image_dir} does not exist; run `dgss data prepare {name} {root}` first"
                )
            raise DataError(f"{name}: image directory {root / rule.image_dir} does not exist")
        if not res.samples and not res.missing_labels:
            raise DataError(f"{name}: no '*{rule.image_suffix}' images under {root / rule.image_dir}")
        if res.missing_labels and not allow_unlabelled:
            hint = (
                f"run `dgss data prepare {name} {root}`"
                if rule.prepared and info.needs_prepare
                else f"run `dgss data check {name} {root}`"
            )
            raise DataError(
                f"{name}: {len(res.missing_labels)} image(s) under {root / rule.image_dir} have no "
                f"'*{rule.label_suffix}' label, e.g. {res.missing_labels[0]}; {hint}"
            )
        out += res.samples
        if allow_unlabelled:
            out += [SegSample(p, None, rule.domain, rule.label_format) for p in res.missing_labels]
    return out


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------
def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file -> (H,W,3) uint8 RGB; `DataError` naming the file if it is unreadable."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None


def decode_label(path: str | Path, label_format: str) -> np.ndarray:
    """Read a label file and convert it to trainIds -> (H,W) uint8 (uint16 for "ade847").

    Formats: "trainid" (single-channel trainId PNG, as stored), "deliver" (`deliver_to_trainids`),
    "ade150" (`ade150_to_trainids`), "ade847" (16-bit TIFF, `load_ade847_label`), "coco_stuff" (raw
    stuffthingmaps ids, `coco_stuff_to_trainids`).
    """
    try:
        if label_format == "ade847":
            return lm.load_ade847_label(path)
        raw = lm.read_label(path)
        if label_format == "deliver":
            return lm.deliver_to_trainids(raw)
        if raw.ndim != 2:
            raise lm.LabelValueError(f"expected a single-channel label, got shape {raw.shape}", [])
        if label_format == "ade150":
            return lm.ade150_to_trainids(raw)
        if label_format == "coco_stuff":
            return lm.coco_stuff_to_trainids(raw)
        if label_format == "trainid":
            return raw
        raise ValueError(f"unknown label format {label_format!r}; known: {', '.join(LABEL_FORMATS)}")
    except FileNotFoundError:
        raise DataError(f"label file not found: {path}") from None
    except lm.LabelValueError as exc:
        raise DataError(f"bad label {path}: {exc}", exc.values) from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode label {path}: {exc}") from None


def invalid_label_values(label: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """Sorted unique values of `label` that are neither a class (0..K-1) nor `ignore_index`."""
    bad = (label >= num_classes) & (label != ignore_index)
    return np.unique(label[bad]) if bad.any() else np.empty(0, dtype=label.dtype)


def sample_seed(seed: int, index: int, epoch: int = 0) -> int:
    """A 63-bit seed mixed from (seed, epoch, index) - independent of worker count and order."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


Transform = Callable[[torch.Tensor, torch.Tensor, "torch.Generator | None"], tuple[torch.Tensor, torch.Tensor]]


class SegDataset(torch.utils.data.Dataset):
    """Map-style dataset over `SegSample`s.

    Args:
        samples: from `list_samples` (or hand-built).
        info: the dataset's `DatasetInfo` (classes, ignore index).
        transform: `(image uint8 (3,H,W), label int64 (H,W), generator) -> (image, label)`,
            e.g. `TrainPipeline` or `EvalPipeline`. None: raw tensors.
        seed: if set, item i gets its own generator seeded from (seed, epoch, i), so the result is
            independent of worker count/order; if None the transform uses torch's global RNG
            (which a seeded DataLoader makes deterministic for a fixed number of workers).
    Labels are validated on load: a value that is neither a class nor ignore raises `DataError`.
    """

    def __init__(
        self,
        samples: Sequence[SegSample],
        info: DatasetInfo,
        transform: Transform | None = None,
        seed: int | None = None,
    ):
        self.samples = list(samples)
        self.info = info
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    @classmethod
    def from_root(
        cls,
        name: str,
        root: str | Path,
        split: str,
        conditions: Sequence[str] | None = None,
        transform: Transform | None = None,
        seed: int | None = None,
    ) -> SegDataset:
        """Read dataset `name` / `split` from its official layout under `root` (``folder``: the folder
        dataset at `root`, `conditions` = its domain folders)."""
        if name == "folder":
            from .folder import list_folder_samples, load_classes

            classes = load_classes(root)
            return cls(list_folder_samples(root, split, conditions, classes=classes), classes.info(), transform, seed)
        return cls(list_samples(name, root, split, conditions), dataset_info(name), transform, seed)

    def with_transform(self, transform: Transform | None, seed: int | None = None) -> SegDataset:
        """A copy of this dataset with another transform (and seed)."""
        return SegDataset(self.samples, self.info, transform, self.seed if seed is None else seed)

    def set_epoch(self, epoch: int) -> None:
        """Change the per-item seeds (only used when `seed` is set)."""
        self.epoch = epoch

    @property
    def domains(self) -> list[str]:
        """Domain tags in first-appearance order."""
        return list(dict.fromkeys(s.domain for s in self.samples))

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded (image (3,H,W) uint8, label (H,W) int64) of sample `index`, untransformed."""
        s = self.samples[index]
        img = load_image(s.image)
        lab: np.ndarray
        if s.label is None:
            lab = np.full(img.shape[:2], self.info.ignore_index, dtype=np.int64)
        else:
            lab = decode_label(s.label, s.label_format)
            if self.info.id_map:
                from .folder import remap_label

                lab = remap_label(lab, self.info.id_map, self.info.ignore_index, s.label)
            if lab.shape != img.shape[:2]:
                raise DataError(
                    f"label {s.label} is {lab.shape[1]}x{lab.shape[0]} but its image "
                    f"{s.image} is {img.shape[1]}x{img.shape[0]}"
                )
            bad = invalid_label_values(lab, self.info.num_classes, self.info.ignore_index)
            if bad.size:
                raise DataError(
                    f"label {s.label} has values {bad[:10].tolist()} outside the "
                    f"{self.info.num_classes} classes of {self.info.name} "
                    f"(ignore = {self.info.ignore_index})"
                )
        image = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()
        label = torch.from_numpy(lab.astype(np.int64))
        return image, label

    def __getitem__(self, index: int) -> dict:
        image, label = self.load(index)
        if self.transform is not None:
            gen = None
            if self.seed is not None:
                gen = torch.Generator().manual_seed(sample_seed(self.seed, index, self.epoch))
            image, label = self.transform(image, label, gen)
        s = self.samples[index]
        return {"image": image, "label": label, "domain": s.domain, "path": str(s.image)}
