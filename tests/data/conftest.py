"""Fixtures and helpers of the data tests: the real fixtures (read-only, never copied into the repo)
and builders of miniature dataset trees in their official layouts under tmp_path.

The suite runs with --import-mode=importlib, so test modules reach the helpers through the `dh`
fixture (this module) instead of importing it."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

FIXTURES = (Path(__file__).resolve().parents[2] / "../shared/fixtures").resolve()
CS_STEM = "frankfurt_000000_000294"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The real fixture folder ../shared/fixtures (read-only); skip if absent."""
    if not (FIXTURES / "cityscapes").is_dir():
        pytest.skip(f"real data fixtures not found at {FIXTURES} (../shared/fixtures next to the repo)")
    return FIXTURES


@pytest.fixture(scope="session")
def dh():
    """This module, for its helper functions and tables."""
    return sys.modules[__name__]


# Mapillary Vistas v1.2 config order (66 labels) -> expected trainId by the rules of data.md §3
MAPILLARY_V12 = [
    ("Bird", 255),
    ("Ground Animal", 255),
    ("Curb", 1),
    ("Fence", 4),
    ("Guard Rail", 255),
    ("Barrier", 255),
    ("Wall", 3),
    ("Bike Lane", 0),
    ("Crosswalk - Plain", 0),
    ("Curb Cut", 1),
    ("Parking", 0),
    ("Pedestrian Area", 1),
    ("Rail Track", 255),
    ("Road", 0),
    ("Service Lane", 0),
    ("Sidewalk", 1),
    ("Bridge", 255),
    ("Building", 2),
    ("Tunnel", 255),
    ("Person", 11),
    ("Bicyclist", 12),
    ("Motorcyclist", 12),
    ("Other Rider", 12),
    ("Lane Marking - Crosswalk", 0),
    ("Lane Marking - General", 0),
    ("Mountain", 255),
    ("Sand", 255),
    ("Sky", 10),
    ("Snow", 255),
    ("Terrain", 9),
    ("Vegetation", 8),
    ("Water", 255),
    ("Banner", 255),
    ("Bench", 255),
    ("Bike Rack", 255),
    ("Billboard", 255),
    ("Catch Basin", 255),
    ("CCTV Camera", 255),
    ("Fire Hydrant", 255),
    ("Junction Box", 255),
    ("Mailbox", 255),
    ("Manhole", 255),
    ("Phone Booth", 255),
    ("Pothole", 255),
    ("Street Light", 5),
    ("Pole", 5),
    ("Traffic Sign Frame", 7),
    ("Utility Pole", 5),
    ("Traffic Light", 6),
    ("Traffic Sign (Back)", 7),
    ("Traffic Sign (Front)", 7),
    ("Trash Can", 255),
    ("Bicycle", 18),
    ("Boat", 255),
    ("Bus", 15),
    ("Car", 13),
    ("Caravan", 255),
    ("Motorcycle", 17),
    ("On Rails", 16),
    ("Other Vehicle", 255),
    ("Trailer", 255),
    ("Truck", 14),
    ("Wheeled Slow", 255),
    ("Car Mount", 255),
    ("Ego Vehicle", 255),
    ("Unlabeled", 255),
]


def cs_image_path(fx: Path) -> Path:
    return fx / "cityscapes/leftImg8bit/val/frankfurt" / f"{CS_STEM}_leftImg8bit.png"


def cs_label_ids_path(fx: Path) -> Path:
    return fx / "cityscapes/gtFine/val/frankfurt" / f"{CS_STEM}_gtFine_labelIds.png"


def cs_image(fx: Path) -> np.ndarray:
    return np.array(Image.open(cs_image_path(fx)).convert("RGB"))


def cs_label_ids(fx: Path) -> np.ndarray:
    return np.array(Image.open(cs_label_ids_path(fx)))


def cs_trainids(fx: Path) -> np.ndarray:
    from dgss.data.label_maps import CITYSCAPES_ID_TO_TRAINID

    return CITYSCAPES_ID_TO_TRAINID[cs_label_ids(fx)]


def save(arr: np.ndarray, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def build_cityscapes(root: Path, fx: Path, n_val: int = 3, n_train: int = 1, trainids: bool = True) -> Path:
    """cityscapes/{leftImg8bit,gtFine}/{train,val}/<city>/ from the real fixture (variants by flipping)."""
    cs = root / "cityscapes"
    img, ids = cs_image(fx), cs_label_ids(fx)
    from dgss.data.label_maps import CITYSCAPES_ID_TO_TRAINID

    for split, n, city in (("val", n_val, "frankfurt"), ("train", n_train, "aachen")):
        for i in range(n):
            stem = f"{city}_{i:06d}_000019"
            im, lab = (img, ids) if i % 2 == 0 else (img[:, ::-1].copy(), ids[:, ::-1].copy())
            save(im, cs / f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png")
            save(lab, cs / f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png")
            if trainids:
                save(CITYSCAPES_ID_TO_TRAINID[lab], cs / f"gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png")
    return cs


def tree_digest(root: Path) -> dict[str, str]:
    """rel path -> sha256 of every file under root (to prove nothing was modified)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
