"""Your own data: a folder dataset whose classes are described by its `classes.yaml`.

Layout (``ROOT``)::

    classes.yaml
    images/<split>/[<domain>/]**/<stem>.{png,jpg,jpeg,bmp,tif,tiff,webp}
    labels/<split>/[<domain>/]**/<stem>.{png,tif,tiff}     single-channel class ids, 8 or 16 bit

``classes.yaml``::

    name: my_scenes                  # optional; default: the folder's name. Domain tags start with it
    classes:                         # the class list, in label-id order (id 0 first)
      - road
      - {name: car, synonyms: [automobile, vehicle]}   # synonyms feed open-vocabulary text prompts
    palette: [[128, 64, 128], [0, 0, 142]]             # optional, one RGB per class
    ignore_index: 255                # optional (default 255)
    id_map: {7: road, 26: car, 0: ignore}              # optional: raw label value -> class (name or id)
    domains: [clean, night]          # optional: first-level folders under images/<split>/ are domains
                                     # ("auto": every such folder); tags "<name>/<domain>"

Without ``id_map`` a label value is a class id (0..K-1) or the ignore index; with it, every raw value
must be a key of the map or the ignore index. Everything here reads; nothing writes into ``ROOT``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from ..errors import ClassesFileError, ConfigError, DataError
from .records import DatasetInfo, SegSample
from .transforms import EVAL_RESIZE, EvalResize

FOLDER = "folder"
CLASSES_FILE = "classes.yaml"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
LABEL_SUFFIXES = (".png", ".tif", ".tiff")
_KEYS = ("name", "classes", "palette", "ignore_index", "id_map", "domains")


@dataclass(frozen=True)
class NativeSize(EvalResize):
    """Test-time "resize" of folder datasets: none, images are evaluated at their own size
    (sliding windows cover any size); `--resize` / a run config's val `resize` override it."""

    box: tuple[int, int] = (0, 0)

    def size(self, height: int, width: int) -> tuple[int, int]:
        return height, width


EVAL_RESIZE.setdefault(FOLDER, NativeSize())


@dataclass(frozen=True)
class FolderClasses:
    """The parsed `classes.yaml` of a folder dataset.

    ``id_map``: (raw value, class id or ``ignore_index``) pairs, empty = labels hold class ids.
    ``domains``: domain folder names, ``"auto"`` (every first-level folder), or None (no domain folders).
    """

    name: str
    names: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...]
    palette: tuple[tuple[int, int, int], ...] | None = None
    ignore_index: int = 255
    id_map: tuple[tuple[int, int], ...] = ()
    domains: tuple[str, ...] | str | None = None
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def vocab_entries(self) -> tuple[str, ...]:
        """Vocabulary entries for open-vocabulary models: "name, synonym, ..." (see `dgss.data.vocab`)."""
        return tuple(", ".join((n, *s)) for n, s in zip(self.names, self.synonyms, strict=False))

    def known_raw_values(self) -> set[int]:
        """Label values a label file may hold (before the id map)."""
        if self.id_map:
            return {r for r, _ in self.id_map} | {self.ignore_index}
        return set(range(self.num_classes)) | {self.ignore_index}

    def info(self) -> DatasetInfo:
        """The `DatasetInfo` that readers, metrics and evaluation use."""
        conds = self.domains if isinstance(self.domains, tuple) else ()
        return DatasetInfo(
            FOLDER,
            "",
            self.num_classes,
            self.ignore_index,
            {},
            conditions=conds,
            class_names=self.names,
            id_map=self.id_map,
            vocab=self.vocab_entries,
        )


def _fail(path: Path, msg: str) -> ClassesFileError:
    return ClassesFileError(f"{path}: {msg}")


def _int(value, path: Path, key: str, lo: int = 0, hi: int = 65535) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _fail(path, f"'{key}' must be an integer in {lo}..{hi}, got {value!r}")
    return value


def parse_classes(data, path: Path, default_name: str = FOLDER) -> FolderClasses:
    """Validate the content of a `classes.yaml` (already YAML-decoded) into `FolderClasses`."""
    if not isinstance(data, dict):
        raise _fail(path, "expected a mapping with at least 'classes:' (a list of class names)")
    unknown = sorted(set(map(str, data)) - set(_KEYS))
    if unknown:
        raise _fail(path, f"unknown key(s) {unknown}; known: {', '.join(_KEYS)}")
    entries = data.get("classes")
    if not isinstance(entries, list) or not entries:
        raise _fail(path, "'classes' must be a non-empty list of class names")
    names, syns = [], []
    for i, e in enumerate(entries):
        if isinstance(e, dict):
            extra = sorted(set(map(str, e)) - {"name", "synonyms"})
            if extra or "name" not in e:
                raise _fail(path, f"classes[{i}] must be a name or {{name: ..., synonyms: [...]}}, got {e!r}")
            n, s = e["name"], e.get("synonyms") or []
            if not isinstance(s, list) or not all(isinstance(x, str) and x.strip() for x in s):
                raise _fail(path, f"classes[{i}].synonyms must be a list of words, got {s!r}")
        else:
            n, s = e, []
        if not isinstance(n, str) or not n.strip():
            raise _fail(path, f"classes[{i}] must be a non-empty name, got {n!r}")
        if "," in n or any("," in x for x in s):
            raise _fail(
                path, f"classes[{i}] {n!r}: names and synonyms cannot contain commas (list synonyms under 'synonyms:')"
            )
        names.append(n.strip())
        syns.append(tuple(x.strip() for x in s))
    lowered = [n.lower() for n in names]
    dups = sorted({n for n in lowered if lowered.count(n) > 1})
    if dups:
        raise _fail(path, f"duplicate class name(s) {dups}")
    if "background" in lowered or "ignore" in lowered:
        raise _fail(path, "'background' and 'ignore' are reserved; unlabelled pixels use ignore_index")
    ignore = _int(data.get("ignore_index", 255), path, "ignore_index")
    if ignore < len(names):
        raise _fail(
            path, f"ignore_index {ignore} is a class id (there are {len(names)} classes, ids 0..{len(names) - 1})"
        )
    if len(names) > 65535:
        raise _fail(path, "at most 65535 classes")
    palette = data.get("palette")
    if palette is not None:
        from ..viz import is_palette

        if not is_palette(palette, len(names)):
            raise _fail(path, f"'palette' must list one [r, g, b] (0..255) per class ({len(names)} entries)")
        palette = tuple(tuple(c) for c in palette)
    id_map: list[tuple[int, int]] = []
    raw_map = data.get("id_map")
    if raw_map is not None:
        if not isinstance(raw_map, dict) or not raw_map:
            raise _fail(path, "'id_map' must be a mapping raw label value -> class name (or 'ignore')")
        by_name = {n.lower(): i for i, n in enumerate(names)}
        for raw, target in raw_map.items():
            r = _int(raw, path, f"id_map key {raw!r}")
            if isinstance(target, str):
                if target.lower() == "ignore":
                    cls = ignore
                elif target.lower() in by_name:
                    cls = by_name[target.lower()]
                else:
                    raise _fail(path, f"id_map {r}: {target!r} is not a class name (nor 'ignore')")
            else:
                cls = _int(target, path, f"id_map {r}")
                if cls >= len(names) and cls != ignore:
                    raise _fail(
                        path, f"id_map {r}: class id {cls} is not in 0..{len(names) - 1} (nor the ignore index)"
                    )
            id_map.append((r, cls))
        id_map.sort()
    domains = data.get("domains")
    if domains is not None and domains != "auto":
        if (
            not isinstance(domains, list)
            or not domains
            or not all(isinstance(d, str) and d and "/" not in d for d in domains)
        ):
            raise _fail(path, "'domains' must be 'auto' or a list of folder names")
        domains = tuple(domains)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise _fail(path, f"'name' must be a word without '/', got {name!r}")
    return FolderClasses(name.strip(), tuple(names), tuple(syns), palette, ignore, tuple(id_map), domains, str(path))


def load_classes(root: str | Path) -> FolderClasses:
    """Read ``ROOT/classes.yaml`` (``root`` may also be the file itself)."""
    p = Path(root)
    path = p if p.suffix in (".yaml", ".yml") else p / CLASSES_FILE
    if not path.is_file():
        raise ClassesFileError(
            f"{path} not found: a folder dataset describes its classes in {CLASSES_FILE} "
            "(see `dgss data generate-scenes` for an example)"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ClassesFileError(f"{path}: not valid YAML ({e})") from None
    return parse_classes(data, path, default_name=path.resolve().parent.name)


def folder_info(root: str | Path) -> DatasetInfo:
    """The `DatasetInfo` of the folder dataset at ``root`` (from its `classes.yaml`)."""
    return load_classes(root).info()


# ------------------------------------------------------------------------------------------ pairing
@dataclass
class FolderScan:
    """Pairing of one split: samples, images without label, labels without image, misplaced files."""

    split: str
    samples: list[SegSample]
    missing_labels: list[Path]
    orphan_labels: list[Path]
    unknown_domains: list[Path]  # files under a first-level folder that `domains:` does not list
    outside_domains: list[Path]  # files directly under images/<split>/ while domains are declared


def splits(root: str | Path) -> list[str]:
    """Split folders under ``ROOT/images`` (sorted)."""
    img = Path(root) / "images"
    return sorted(p.name for p in img.iterdir() if p.is_dir() and not p.name.startswith(".")) if img.is_dir() else []


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def scan_split(root: str | Path, classes: FolderClasses, split: str) -> FolderScan:
    """Pair ``images/<split>/rel/stem.*`` with ``labels/<split>/rel/stem.{png,tif,tiff}``."""
    root = Path(root)
    img_dir, lab_dir = root / "images" / split, root / "labels" / split
    labels: dict[Path, Path] = {}
    lab: Path | None
    for lab in _files(lab_dir, LABEL_SUFFIXES):
        labels.setdefault(lab.relative_to(lab_dir).with_suffix(""), lab)
    missing: list[Path]
    samples, missing, unknown, outside, used = [], [], [], [], set()
    for img in _files(img_dir, IMAGE_SUFFIXES):
        rel = img.relative_to(img_dir)
        domain = classes.name
        if classes.domains is not None:
            if len(rel.parts) < 2:
                outside.append(img)
                continue
            if classes.domains != "auto" and rel.parts[0] not in classes.domains:
                unknown.append(img)
                continue
            domain = f"{classes.name}/{rel.parts[0]}"
        lab = labels.get(rel.with_suffix(""))
        if lab is None:
            missing.append(img)
            continue
        used.add(lab)
        samples.append(SegSample(img, lab, domain))
    orphans = sorted(set(labels.values()) - used)
    return FolderScan(split, samples, missing, orphans, unknown, outside)


def list_folder_samples(
    root: str | Path, split: str, domains: Sequence[str] | None = None, *, classes: FolderClasses | None = None
) -> list[SegSample]:
    """All labelled samples of ``split`` (optionally only these domain folders); strict: any pairing
    problem raises `DataError` naming a file and pointing at `dgss data check folder`."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"folder dataset: root directory {root} does not exist")
    classes = classes or load_classes(root)
    known = splits(root)
    if split not in known:
        raise DataError(
            f"folder dataset {root}: no split {split!r} under {root / 'images'}; found: {', '.join(known) or 'none'}"
        )
    res = scan_split(root, classes, split)
    hint = f"run `dgss data check folder {root}`"
    for what, files in (
        ("image(s) have no label", res.missing_labels),
        ("image(s) lie in a folder that 'domains:' of classes.yaml does not list", res.unknown_domains),
        ("image(s) lie outside a domain folder although classes.yaml declares domains", res.outside_domains),
    ):
        if files:
            raise DataError(f"folder dataset {root}: {len(files)} {what}, e.g. {files[0]}; {hint}")
    samples = res.samples
    if domains:
        wanted = {f"{classes.name}/{d}" for d in domains}
        samples = [s for s in samples if s.domain in wanted]
    if not samples:
        raise DataError(
            f"folder dataset {root}: no labelled images under {root / 'images' / split}"
            + (f" in domains {list(domains)}" if domains else "")
        )
    return samples


# ------------------------------------------------------------------------------------------ labels
@lru_cache(maxsize=16)
def _lookup(id_map: tuple[tuple[int, int], ...], ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(lut (65536,) int64, known (65536,) bool) of an id map."""
    lut = np.full(65536, ignore_index, dtype=np.int64)
    known = np.zeros(65536, dtype=bool)
    for raw, cls in id_map:
        lut[raw], known[raw] = cls, True
    lut[ignore_index], known[ignore_index] = ignore_index, True
    return lut, known


def remap_label(
    raw: np.ndarray, id_map: tuple[tuple[int, int], ...], ignore_index: int, path: str | Path = "label"
) -> np.ndarray:
    """Raw label values (H, W) -> class ids (H, W) int64 through ``id_map``; unknown values raise
    `DataError` listing them (``values`` attribute)."""
    lut, known = _lookup(id_map, ignore_index)
    flat = raw.astype(np.int64)
    ok = known[flat]
    if not ok.all():
        bad = np.unique(flat[~ok])
        raise DataError(
            f"label {path} has values {bad[:10].tolist()} that id_map of classes.yaml does not list "
            f"(nor ignore {ignore_index})",
            bad.tolist(),
        )
    return lut[flat]


# ------------------------------------------------------------------------------------------ run configs
def config_root(data_root: str, root: str | None) -> Path:
    """Where a run config's dataset entry points (as the trainer resolves it)."""
    if root is None:
        return Path(data_root)
    p = Path(root)
    return p if p.is_absolute() or p.exists() else Path(data_root) / p


def apply_folder_classes(cfg) -> None:
    """Fill a run config (`dgss.config.RunConfig`) from the `classes.yaml` of its folder datasets.

    Training on a folder: ``model.num_classes`` = its class count, the class names go into the model
    config (``model.overrides.class_names``: checkpoints, legends, model cards), so does its ``palette``
    (``model.overrides.palette``: the colours of overlays, legends and model cards) and, for Vireo,
    ``model.vocab`` = its `classes.yaml` (names + synonyms) unless set. Validating on a folder with other classes: Vireo
    switches to that folder's vocabulary (``vocab``), closed-vocabulary methods get a `ConfigError`.
    Folders that do not exist (yet) are left to the data readers, which name them.
    """
    t = cfg.data.train
    train_classes = None
    if t.dataset == FOLDER:
        path = config_root(cfg.data.root, t.root)
        if (path / CLASSES_FILE).is_file():
            train_classes = load_classes(path)
            cfg.model.num_classes = train_classes.num_classes
            if cfg.model.method != "vireo" and "class_names" not in cfg.model.overrides:
                cfg.model.overrides = {**cfg.model.overrides, "class_names": list(train_classes.names)}
            if train_classes.palette and "palette" not in cfg.model.overrides:  # overlays, legends, model cards
                cfg.model.overrides = {**cfg.model.overrides, "palette": [list(c) for c in train_classes.palette]}
            if cfg.model.method == "vireo" and cfg.model.vocab is None:
                cfg.model.vocab = str(path / CLASSES_FILE)
    for i, v in enumerate(cfg.data.val):
        if v.dataset != FOLDER:
            continue
        path = config_root(cfg.data.root, v.root)
        if not (path / CLASSES_FILE).is_file():
            continue
        val_classes = load_classes(path)
        if cfg.model.method == "vireo":
            if v.vocab is None and (train_classes is None or val_classes.vocab_entries != train_classes.vocab_entries):
                v.vocab = str(path / CLASSES_FILE)
        elif val_classes.num_classes != cfg.model.num_classes:
            raise ConfigError(
                f"config key 'data.val.{i}.dataset': the folder dataset {path} has "
                f"{val_classes.num_classes} classes, the model {cfg.model.num_classes}; only "
                "open-vocabulary methods (vireo) evaluate another class list"
            )
