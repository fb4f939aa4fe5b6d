"""`dgss data check <dataset> <root>`: verify a dataset tree without modifying it.

``dgss data check folder ROOT`` checks a folder dataset (`dgss.data.folder`, `check_folder`) the same
way, against its `classes.yaml` (no official sizes; domain folders checked against ``domains:``).

Checks, per split: the directories exist; every image has its label and every label its image;
images and labels decode; label and image sizes agree; label values are classes or ignore; the
number of images equals the official split size (overridable, e.g. for subsets).
The report has one line per kind of problem and split (count + first examples).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from .datasets import SegSample, dataset_info, decode_label, invalid_label_values, pair_rules, resolve_root, scan

MAX_EXAMPLES = 3


@dataclass
class Problem:
    """One kind of problem in one split: `detail` says what, `paths` lists the files concerned."""

    kind: str  # "missing directory", "missing label", "unpaired label", "corrupt image", ...
    split: str
    detail: str
    paths: list[Path] = field(default_factory=list)
    values: set[int] = field(default_factory=set)  # offending label values ("label values")


@dataclass
class CheckReport:
    """Result of `check_dataset`; `ok` is True when there are no problems."""

    dataset: str
    root: Path
    counts: dict[str, int]  # split key -> images found
    expected: dict[str, int]  # split key -> images expected (0 = not checked)
    problems: list[Problem]
    hints: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """Summary line, then one `ERROR [split] kind: detail: examples` line per problem, then hints."""
        counts = ", ".join(
            f"{k} {v}" + (f"/{self.expected[k]}" if self.expected.get(k) else "") for k, v in self.counts.items()
        )
        status = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        out = [f"{self.dataset} at {self.root}: {counts or 'no images'} - {status}"]
        for p in self.problems:
            line = f"ERROR [{p.split}] {p.kind}: {p.detail}"
            if p.paths:
                shown = ", ".join(_rel(x, self.root) for x in p.paths[:MAX_EXAMPLES])
                more = len(p.paths) - MAX_EXAMPLES
                line += f": {shown}" + (f" (+{more} more)" if more > 0 else "")
            out.append(line)
        return out + [f"hint: {h}" for h in self.hints]


def _rel(p: Path, root: Path) -> str:
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


@dataclass
class _PairResult:
    image_error: str = ""
    label_error: str = ""
    mismatch: str = ""
    bad_values: tuple[int, ...] = ()


def _check_pair(
    sample: SegSample, num_classes: int, ignore_index: int, id_map: tuple[tuple[int, int], ...] = ()
) -> _PairResult:
    """Fully decode one image/label pair and validate it (``id_map``: raw values must be its keys)."""
    res = _PairResult()
    size = None
    try:
        with Image.open(sample.image) as im:
            im.load()  # full decode: truncated or garbled files fail here
            size = im.size
    except Exception as exc:
        res.image_error = f"{type(exc).__name__}: {exc}"
    assert sample.label is not None  # pairs are scanned with their labels
    try:
        lab = decode_label(sample.label, sample.label_format)
    except DataError as exc:
        if exc.values:
            res.bad_values = exc.values  # the format's conversion refused these raw values
        else:
            res.label_error = str(exc).replace(f"cannot decode label {sample.label}: ", "")
        return res
    if size is not None and (lab.shape[1], lab.shape[0]) != size:
        res.mismatch = f"{lab.shape[1]}x{lab.shape[0]} vs {size[0]}x{size[1]}"
    if id_map:
        known = {r for r, _ in id_map} | {ignore_index}
        res.bad_values = tuple(int(v) for v in np.unique(lab) if int(v) not in known)
        return res
    res.bad_values = tuple(int(v) for v in invalid_label_values(lab, num_classes, ignore_index))
    return res


def check_dataset(
    name: str,
    root: str | Path,
    *,
    splits: Sequence[str] | None = None,
    expected: Mapping[str, int] | None = None,
    workers: int = 4,
    progress: bool = False,
) -> CheckReport:
    """Check dataset `name` under `root` (read-only).

    Args:
        splits: plain split names to check (default: every split of the dataset).
        expected: split key -> image count, overriding the official sizes for those keys
            (keys as in `DatasetInfo.splits`, e.g. "val", "night/val"; 0 disables the check).
        workers: threads decoding files in parallel (Pillow releases the GIL while decoding).
    Raises `DataError` for an unknown dataset or split, or a missing root.
    """
    info = dataset_info(name)
    root_p = resolve_root(name, root)
    rules = [r for s in (splits or (None,)) for r in pair_rules(name, s, root=root_p)]
    exp = {**info.splits, **dict(expected or {})}
    counts: dict[str, int] = {}
    problems: list[Problem] = []
    hints: list[str] = []

    add = _collector(problems)

    pairs: list[tuple[str, SegSample]] = []
    for res in (scan(root_p, r) for r in rules):
        r = res.rule
        counts.setdefault(r.split, 0)
        if not res.image_dir_exists:
            add("missing directory", r.split, f"{root_p / r.image_dir} does not exist")
            continue
        counts[r.split] += len(res.samples) + len(res.missing_labels)
        if res.missing_labels:
            add("missing label", r.split, f"image(s) without their '*{r.label_suffix}' label", res.missing_labels)
            if r.prepared and info.needs_prepare:
                hint = f"'*{r.label_suffix}' files are written by `dgss data prepare {name} {root_p}`"
                if hint not in hints:
                    hints.append(hint)
        if res.orphan_labels:
            add("unpaired label", r.split, "label(s) without an image", res.orphan_labels)
        pairs += [(r.split, s) for s in res.samples]

    for key, n in counts.items():
        want = exp.get(key, 0)
        if want and n != want and not any(p.kind == "missing directory" and p.split == key for p in problems):
            source = "" if key in (expected or {}) else " (official split size)"
            add("count", key, f"{n} images, expected {want}{source}")

    _decode_pass(name, pairs, info.num_classes, info.ignore_index, (), add, workers, progress)
    _finalise(problems, f"neither classes 0..{info.num_classes - 1} nor ignore {info.ignore_index}")
    return CheckReport(name, root_p, counts, {k: exp.get(k, 0) for k in counts}, problems, hints)


def _decode_pass(
    name: str,
    pairs: list[tuple[str, SegSample]],
    num_classes: int,
    ignore_index: int,
    id_map: tuple[tuple[int, int], ...],
    add,
    workers: int,
    progress: bool,
) -> None:
    """Decode every pair in parallel and `add` its problems."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        futures = [pool.submit(_check_pair, s, num_classes, ignore_index, id_map) for _, s in pairs]
        iterator: Iterable[Future[_PairResult]] = futures
        if progress and futures:
            from tqdm.auto import tqdm

            iterator = tqdm(futures, desc=f"check {name}", unit="pair")
        results = [f.result() for f in iterator]
    for (split, s), r in zip(pairs, results, strict=False):
        if r.image_error:
            add("corrupt image", split, f"cannot decode ({r.image_error})", [s.image])
        if r.label_error:
            add("corrupt label", split, f"cannot decode ({r.label_error})", [s.label])
        if r.mismatch:
            add("size mismatch", split, f"label and image sizes differ (first: {r.mismatch})", [s.label])
        if r.bad_values:
            add("label values", split, "", [s.label], values=r.bad_values)


def _finalise(problems: list[Problem], known_values: str) -> None:
    """Counts and offending values into the details."""
    for p in problems:
        if p.kind == "label values":
            vals = sorted(p.values)
            p.detail = (
                f"values {vals[:10]}{' ...' if len(vals) > 10 else ''} are {known_values}, in {len(p.paths)} label(s)"
            )
        elif p.paths and p.kind != "missing directory":
            p.detail = (
                f"{len(p.paths)} {p.detail}"
                if p.kind in ("missing label", "unpaired label")
                else f"{len(p.paths)} file(s): {p.detail}"
            )


def _collector(problems: list[Problem]):
    def add(kind: str, split: str, detail: str, paths: Sequence[Path] = (), values: Sequence[int] = ()) -> None:
        for p in problems:
            if (p.kind, p.split) == (kind, split):
                p.paths.extend(paths)
                p.values.update(values)
                return
        problems.append(Problem(kind, split, detail, list(paths), set(values)))

    return add


def check_folder(
    root: str | Path, *, splits: Sequence[str] | None = None, workers: int = 4, progress: bool = False
) -> CheckReport:
    """Check a folder dataset (`dgss.data.folder`) read-only: `classes.yaml` (a bad one raises
    `ClassesFileError`), pairing, domain folders, decodability, sizes, label values known to
    `classes.yaml`. Split keys in the report are ``<split>/<domain>`` when domains are declared."""
    from .folder import CLASSES_FILE, IMAGE_SUFFIXES, load_classes, scan_split
    from .folder import splits as folder_splits

    root_p = Path(root)
    if not root_p.is_dir():
        raise DataError(f"folder dataset: root directory {root_p} does not exist")
    classes = load_classes(root_p)
    problems: list[Problem] = []
    add = _collector(problems)
    counts: dict[str, int] = {}
    found = folder_splits(root_p)
    if not (root_p / "images").is_dir():
        add(
            "missing directory",
            "-",
            f"{root_p / 'images'} does not exist (layout: images/<split>/..., labels/<split>/...)",
        )
    elif not found:
        add("missing directory", "-", f"no split folders (train, val, ...) under {root_p / 'images'}")
    for s in splits or []:
        if s not in found:
            add("missing directory", s, f"{root_p / 'images' / s} does not exist")
    pairs: list[tuple[str, SegSample]] = []
    for split in [s for s in (splits or found) if s in found]:
        res = scan_split(root_p, classes, split)
        if not (root_p / "labels" / split).is_dir():
            add("missing directory", split, f"{root_p / 'labels' / split} does not exist")

        def key(path: Path, split: str = split) -> str:
            rel = path.relative_to(root_p / "images" / split)
            return f"{split}/{rel.parts[0]}" if classes.domains is not None and len(rel.parts) > 1 else split

        for sample in res.samples:
            counts[key(sample.image)] = counts.get(key(sample.image), 0) + 1
            pairs.append((key(sample.image), sample))
        for img in res.missing_labels:
            counts[key(img)] = counts.get(key(img), 0) + 1
            add("missing label", key(img), "image(s) without a label of the same name under labels/", [img])
        if res.orphan_labels:
            add("unpaired label", split, "label(s) without an image of the same name under images/", res.orphan_labels)
        if res.unknown_domains:
            listed = ", ".join(classes.domains) if isinstance(classes.domains, tuple) else ""
            add(
                "unknown domain",
                split,
                f"image(s) in a folder that 'domains:' of classes.yaml does not list ({listed})",
                res.unknown_domains,
            )
        if res.outside_domains:
            add(
                "outside domain",
                split,
                "image(s) directly under the split although classes.yaml declares domain folders",
                res.outside_domains,
            )
        if not res.samples and not res.missing_labels and not res.unknown_domains and not res.outside_domains:
            add("no images", split, f"no images ({' '.join(IMAGE_SUFFIXES)}) under {root_p / 'images' / split}")
    _decode_pass("folder", pairs, classes.num_classes, classes.ignore_index, classes.id_map, add, workers, progress)
    known = (
        f"neither keys of id_map in {CLASSES_FILE} nor ignore {classes.ignore_index}"
        if classes.id_map
        else f"neither classes 0..{classes.num_classes - 1} of {CLASSES_FILE} nor ignore {classes.ignore_index}"
    )
    _finalise(problems, known)
    return CheckReport(f"folder dataset {classes.name!r}", root_p, counts, {}, problems, [])
