"""`dgss data prepare <dataset> <root>`: write the trainId labels a dataset does not ship (`docs/data-protocol.md`).

- cityscapes: `*_gtFine_labelIds.png` -> `*_gtFine_labelTrainIds.png` (cityscapesscripts' table);
  from `*_gtFine_polygons.json` with cityscapesscripts' `json2labelImg` if only polygons exist.
- gta5: `labels/<n>.png` (Cityscapes ids) -> `labels/<n>_labelTrainIds.png`; a label whose size
  differs from its image is resized (nearest) and reported.
- mapillary: v1.2 labels -> `cityscapes_trainIdLabel/{train,val}/label/*.png` (name rules), then
  the half-resolution validation set `half/val_img` (bicubic, JPEG q95) + `half/val_label` (nearest).
- deliver: `*_semantic_front.png` -> `*_semantic_front_labelTrainIds.png` (optional: the reader
  converts on the fly when these are absent).
- ade847: MaskFormer's "ADE20K full" preparation from `index_ade20k.pkl`: images/labels resized to
  short side <= 512, 16-bit TIFF labels in `{images,annotations}_detectron2/{training,validation}`.

Idempotent and resumable: an existing output is skipped (every output is written to a temporary
name and renamed, so a half-written file never looks done). Source files are never written.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from . import label_maps as lm
from .datasets import DELIVER_CONDITIONS, DELIVER_PREPARED_SUFFIX, dataset_info, resolve_root

log = logging.getLogger(__name__)

NOTHING_TO_DO = {
    "bdd100k": "BDD100K ships trainId masks (labels/sem_seg/masks); nothing to prepare",
    "acdc": "ACDC ships *_gt_labelTrainIds.png; nothing to prepare",
    "ade150": "ADE20K-150 labels are converted on the fly (v-1, 0 -> 255); nothing to prepare",
    "coco_stuff": "COCO-Stuff labels are converted on the fly (182 ids -> 171 classes); nothing to prepare",
}


@dataclass
class PrepareReport:
    """What `prepare` did. `notes` are one-line remarks (e.g. resized labels)."""

    dataset: str
    root: Path
    written: int = 0
    skipped: int = 0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.dataset}: wrote {self.written} file(s), skipped {self.skipped} existing under {self.root}"]
        return out + self.notes


class _Writer:
    """Atomic, non-overwriting writes with a guard against touching source files."""

    def __init__(self, report: PrepareReport, sources: set[Path], force: bool):
        self.report, self.sources, self.force = report, sources, force

    def todo(self, out: Path) -> bool:
        if out.resolve() in self.sources:
            raise DataError(f"refusing to overwrite source file {out}")
        if out.exists() and not self.force:
            self.report.skipped += 1
            return False
        return True

    def save(self, out: Path, save: Callable[[Path], None]) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.stem}.tmp{os.getpid()}{out.suffix}")  # hidden: readers skip it
        try:
            save(tmp)
            os.replace(tmp, out)
        finally:
            if tmp.exists():
                tmp.unlink()
        self.report.written += 1


def _progress(items: list, desc: str, enabled: bool) -> Iterable:
    if not enabled or not items:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="file")


def _save_png(arr: np.ndarray) -> Callable[[Path], None]:
    return lambda p: Image.fromarray(arr).save(p, format="PNG")


def _read(path: Path, what: str) -> np.ndarray:
    try:
        return lm.read_label(path)
    except lm.LabelValueError as exc:
        raise DataError(f"bad {what} {path}: {exc}") from None
    except (OSError, SyntaxError) as exc:
        raise DataError(f"cannot decode {what} {path}: {exc}") from None


def _convert_ids(src: Path, what: str) -> np.ndarray:
    raw = _read(src, what)
    try:
        return lm.cityscapes_ids_to_trainids(raw)
    except lm.LabelValueError as exc:
        raise DataError(f"bad {what} {src}: {exc}") from None


def prepare_cityscapes(root: Path, w: _Writer, progress: bool) -> None:
    gt = root / "gtFine"
    if not gt.is_dir():
        raise DataError(f"cityscapes: {gt} does not exist (expected gtFine/<split>/<city>/)")
    ids = sorted(gt.rglob("*_gtFine_labelIds.png"))
    polys = sorted(
        p
        for p in gt.rglob("*_gtFine_polygons.json")
        if not p.with_name(p.name.replace("_polygons.json", "_labelIds.png")).exists()
    )
    if not ids and not polys:
        raise DataError(f"cityscapes: no *_gtFine_labelIds.png or *_gtFine_polygons.json under {gt}")
    w.sources.update(p.resolve() for p in ids + polys)
    for src in _progress(ids, "cityscapes labelIds->trainIds", progress):
        out = src.with_name(src.name.replace("_labelIds.png", "_labelTrainIds.png"))
        if w.todo(out):
            w.save(out, _save_png(_convert_ids(src, "Cityscapes label")))
    if polys:
        from cityscapesscripts.preparation.json2labelImg import json2labelImg

        for src in _progress(polys, "cityscapes polygons->trainIds", progress):
            out = src.with_name(src.name.replace("_polygons.json", "_labelTrainIds.png"))
            if w.todo(out):
                # ignore[misc] in this file: mypy cannot infer a lambda whose default argument binds a value
                w.save(out, lambda p, s=src: json2labelImg(str(s), str(p), "trainIds"))  # type: ignore[misc]


def prepare_gta5(root: Path, w: _Writer, progress: bool) -> None:
    lab_dir, img_dir = root / "labels", root / "images"
    if not lab_dir.is_dir():
        raise DataError(f"gta5: {lab_dir} does not exist (expected gta/labels/*.png)")
    srcs = sorted(
        p for p in lab_dir.glob("*.png") if not p.name.endswith("_labelTrainIds.png") and not p.name.startswith(".")
    )
    if not srcs:
        raise DataError(f"gta5: no label PNGs under {lab_dir}")
    w.sources.update(p.resolve() for p in srcs)
    resized: list[str] = []
    for src in _progress(srcs, "gta5 ids->trainIds", progress):
        out = src.with_name(f"{src.stem}_labelTrainIds.png")
        if not w.todo(out):
            continue
        train = _convert_ids(src, "GTA5 label")
        img = img_dir / src.name
        if img.exists():
            with Image.open(img) as im:
                size = im.size
            if size != (train.shape[1], train.shape[0]):
                resized.append(f"{src.name} {train.shape[1]}x{train.shape[0]} -> {size[0]}x{size[1]}")
                log.info("gta5: resized label %s to its image size %s", src, size)
                train = np.asarray(Image.fromarray(train).resize(size, Image.Resampling.NEAREST))
        w.save(out, _save_png(train))
    if resized:
        w.report.notes.append(
            f"gta5: {len(resized)} label(s) resized (nearest) to their image size: "
            + "; ".join(resized[:5])
            + (" ..." if len(resized) > 5 else "")
        )


def _mapillary_config(root: Path) -> tuple[list[dict], str]:
    for cfg, sub in (("config_v1.2.json", "v1.2/labels"), ("config.json", "labels")):
        if (root / cfg).is_file():
            return lm.load_mapillary_config(root / cfg), sub
    raise DataError(f"mapillary: neither {root / 'config_v1.2.json'} nor {root / 'config.json'} exists")


def prepare_mapillary(root: Path, w: _Writer, progress: bool) -> None:
    labels, sub = _mapillary_config(root)
    if len(labels) != 66:
        w.report.notes.append(f"mapillary: config has {len(labels)} labels (v1.2 has 66)")
    lut_out = {"training": "train", "validation": "val"}
    found = False
    for split, short in lut_out.items():
        src_dir = root / split / sub
        if not src_dir.is_dir():
            continue
        found = True
        srcs = sorted(p for p in src_dir.glob("*.png") if not p.name.startswith("."))
        w.sources.update(p.resolve() for p in srcs)
        for src in _progress(srcs, f"mapillary {split} -> trainIds", progress):
            out = root / "cityscapes_trainIdLabel" / short / "label" / src.name
            if w.todo(out):
                try:
                    train = lm.mapillary_to_trainids(_read(src, "Mapillary label"), labels)
                except lm.LabelValueError as exc:
                    raise DataError(f"bad Mapillary label {src}: {exc}") from None
                w.save(out, _save_png(train))
    if not found:
        raise DataError(f"mapillary: no {{training,validation}}/{sub} folder under {root}")
    # half-resolution validation set of the protocol
    val_labels = sorted(
        p for p in (root / "cityscapes_trainIdLabel" / "val" / "label").glob("*.png") if not p.name.startswith(".")
    )
    val_imgs = root / "validation" / "images"
    if val_labels and not val_imgs.is_dir():
        raise DataError(f"mapillary: {val_imgs} does not exist (needed for the half-resolution val set)")
    if val_imgs.is_dir():
        w.sources.update(p.resolve() for p in val_imgs.glob("*.jpg"))
    for lab in _progress(val_labels, "mapillary half-res val", progress):
        img = val_imgs / f"{lab.stem}.jpg"
        if not img.is_file():
            raise DataError(f"mapillary: validation label {lab.name} has no image {img}")
        out_img, out_lab = root / "half" / "val_img" / img.name, root / "half" / "val_label" / lab.name
        if w.todo(out_img):
            try:
                with Image.open(img) as im:
                    rgb = im.convert("RGB")
                    half = rgb.resize((rgb.width // 2, rgb.height // 2), Image.Resampling.BICUBIC)
            except (OSError, SyntaxError) as exc:
                raise DataError(f"cannot decode image {img}: {exc}") from None
            w.save(out_img, lambda p, h=half: h.save(p, format="JPEG", quality=95))  # type: ignore[misc]
        if w.todo(out_lab):
            with Image.open(lab) as im:
                half_lab = im.resize((im.width // 2, im.height // 2), Image.Resampling.NEAREST)
            w.save(out_lab, lambda p, h=half_lab: h.save(p, format="PNG"))  # type: ignore[misc]


def prepare_deliver(root: Path, w: _Writer, progress: bool) -> None:
    sem = root / "semantic"
    if not sem.is_dir():
        raise DataError(f"deliver: {sem} does not exist (expected semantic/<cond>/<split>/<scene>/)")
    srcs = sorted(p for c in DELIVER_CONDITIONS if (sem / c).is_dir() for p in (sem / c).rglob("*_semantic_front.png"))
    if not srcs:
        raise DataError(f"deliver: no *_semantic_front.png under {sem}")
    w.sources.update(p.resolve() for p in srcs)
    for src in _progress(srcs, "deliver -> trainIds", progress):
        out = src.with_name(src.name[: -len("_semantic_front.png")] + DELIVER_PREPARED_SUFFIX)
        if w.todo(out):
            try:
                train = lm.deliver_to_trainids(_read(src, "DELIVER label"))
            except lm.LabelValueError as exc:
                raise DataError(f"bad DELIVER label {src}: {exc}") from None
            w.save(out, _save_png(train))


def _ade_source(root: Path, folder: str, file_name: str) -> Path:
    """Resolve an `index_ade20k.pkl` folder entry (relative to the root's parent, or the root)."""
    folder_p = Path(folder)
    for base in (root.parent, root.parent.parent, root):
        cand = base / folder_p / file_name
        if cand.is_file():
            return cand
    parts = folder_p.parts
    if root.name in parts:  # strip everything up to the dataset folder name
        cand = root.joinpath(*parts[parts.index(root.name) + 1 :], file_name)
        if cand.is_file():
            return cand
    raise DataError(f"ade847: image {file_name} listed in index_ade20k.pkl not found (folder {folder})")


def prepare_ade847(root: Path, w: _Writer, progress: bool) -> None:
    import cv2

    index_file = root / "index_ade20k.pkl"
    if not index_file.is_file():
        raise DataError(f"ade847: {index_file} does not exist (expected the ADE20K_2021_17_01 release)")
    with open(index_file, "rb") as f:  # the dataset's own index (a pickle by the ADE20K authors)
        index = pickle.load(f)
    items = list(zip(index["folder"], index["filename"], strict=False))
    lut = lm.ade847_lut(65536)
    for folder, file_name in _progress(items, "ade847 full -> detectron2", progress):
        split = "validation" if file_name.split("_")[1] == "val" else "training"
        out_img = root / "images_detectron2" / split / file_name
        out_lab = root / "annotations_detectron2" / split / file_name.replace(".jpg", ".tif")
        need_img, need_lab = w.todo(out_img), w.todo(out_lab)
        if not (need_img or need_lab):
            continue
        src = _ade_source(root, folder, file_name)
        seg_path = Path(str(src).replace(".jpg", "_seg.png"))
        w.sources.update({src.resolve(), seg_path.resolve()})
        try:
            with Image.open(src) as im:
                img = np.asarray(im)
            with Image.open(seg_path) as im:
                seg = np.asarray(im.convert("RGB"))
        except (OSError, SyntaxError) as exc:
            raise DataError(f"ade847: cannot decode {src} or {seg_path}: {exc}") from None
        lab = lm.ade_full_seg_to_class_mask(seg)
        h, wd = img.shape[:2]
        if wd >= h > 512:
            size = (round(wd / float(h) * 512), 512)
        elif h >= wd > 512:
            size = (512, round(h / float(wd) * 512))
        else:
            size = None
        if size is not None:
            img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
            lab = cv2.resize(lab, size, interpolation=cv2.INTER_NEAREST)
        out = lut[np.clip(lab, 0, 65535)]
        if need_img:
            w.save(out_img, lambda p, a=img: Image.fromarray(a).save(p, format="JPEG"))  # type: ignore[misc]
        if need_lab:
            w.save(out_lab, lambda p, a=out: Image.fromarray(a).save(p, format="TIFF"))  # type: ignore[misc]


PREPARERS: dict[str, Callable[[Path, _Writer, bool], None]] = {
    "cityscapes": prepare_cityscapes,
    "gta5": prepare_gta5,
    "mapillary": prepare_mapillary,
    "deliver": prepare_deliver,
    "ade847": prepare_ade847,
}


def prepare(name: str, root: str | Path, *, force: bool = False, progress: bool = True) -> PrepareReport:
    """Write the derived labels of dataset `name` under `root`; returns what was done.

    `force` rewrites existing outputs (never source files). Raises `DataError` on bad input.
    """
    dataset_info(name)  # clear error for unknown names
    if name in NOTHING_TO_DO:
        root_p = resolve_root(name, root)
        return PrepareReport(name, root_p, notes=[NOTHING_TO_DO[name]])
    root_p = resolve_root(name, root)
    report = PrepareReport(name, root_p)
    removed = remove_stale_temp_files(root_p)
    if removed:
        report.notes.append(f"removed {removed} half-written temporary file(s) of an interrupted earlier run")
    PREPARERS[name](root_p, _Writer(report, set(), force), progress)
    return report


_TEMP_RE = re.compile(r"^\..+\.tmp\d+\.[A-Za-z0-9]+$")  # `_Writer.save`'s temporary names


def remove_stale_temp_files(root: Path) -> int:
    """Delete the temporary files (``.<stem>.tmp<pid>.<ext>``) a killed `prepare` left behind; returns
    how many. Only names `_Writer.save` makes are touched."""
    n = 0
    for p in root.rglob(".*.tmp*"):
        if p.is_file() and _TEMP_RE.match(p.name):
            p.unlink()
            n += 1
    return n
