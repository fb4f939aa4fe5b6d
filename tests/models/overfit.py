"""Shared overfit routine: a tiny model must memorise one image (a real fixture or a generated scene)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from dgss.data.label_maps import cityscapes_ids_to_trainids
from dgss.losses import Mask2FormerCriterion, Mask2FormerCriterionConfig, semantic_to_targets


def load_cityscapes_fixture(fixtures_dir):
    d = fixtures_dir / "cityscapes"
    img = np.asarray(Image.open(next((d / "leftImg8bit").rglob("*_leftImg8bit.png"))).convert("RGB"))
    ids = np.asarray(Image.open(next((d / "gtFine").rglob("*_gtFine_labelIds.png"))))
    label = cityscapes_ids_to_trainids(ids).astype(np.int64)
    image = torch.from_numpy(img.copy()).permute(2, 0, 1).float()[None]  # (1, 3, 128, 256) in [0, 255]
    return image, torch.from_numpy(label)[None]  # (1, 128, 256)


def load_generated_scene(seed: int = 0, height: int = 128, width: int = 256):
    """A procedural street scene (``dgss.data.scenes``, exact trainId labels), as ``load_cityscapes_fixture``."""
    from dgss.data.scenes import make_scene

    s = make_scene(seed, height, width)
    image = torch.from_numpy(s.image.copy()).permute(2, 0, 1).float()[None]  # (1, 3, H, W) in [0, 255]
    return image, torch.from_numpy(s.label.astype(np.int64))[None]  # (1, H, W)


def load_image(source: str, request, seed: int = 0):
    """The overfit image of a parametrized test: ``generated`` needs nothing, ``cityscapes`` the real fixtures
    (requested only then, so the generated variant runs, and the cityscapes one skips, without ../shared)."""
    if source == "generated":
        return load_generated_scene(seed)
    if source == "cityscapes":
        return load_cityscapes_fixture(request.getfixturevalue("fixtures_dir"))
    raise ValueError(f"unknown image source {source!r}")


def majority_share(label) -> float:
    """Pixel accuracy of always predicting the most frequent class (the trivial baseline)."""
    valid = label[label != 255]
    return torch.bincount(valid.flatten()).max().item() / valid.numel()


def overfit(model, image, label, *, max_steps=400, lr=2e-3, target=0.9, seed=0):
    """Train the trainable parameters on one image; returns (losses, pixel accuracy, steps)."""
    torch.manual_seed(seed)
    crit = Mask2FormerCriterion(Mask2FormerCriterionConfig(num_classes=model.num_classes, num_points=2048))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    x = model.normalize(image)
    targets = semantic_to_targets(label, model.num_classes)
    valid = label != 255
    losses, acc = [], 0.0
    for step in range(1, max_steps + 1):
        model.train()
        out = model(x)
        loss = sum(crit(out, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 25 == 0:
            model.eval()
            with torch.no_grad():
                pred = model.predict_windows(x).argmax(1)
            acc = (pred[valid] == label[valid]).float().mean().item()
            if acc >= target:
                break
    return losses, acc, step
