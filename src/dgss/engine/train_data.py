"""Training data for the iteration loop: an infinite, resumable, rank-aware sample stream.

**Sample stream.** Position ``p = 0, 1, 2, ...`` of the global stream is sample ``perm_e[p mod n]`` of
epoch ``e = p div n``, where ``perm_e`` is a permutation seeded by ``(seed, e)``. Every optimiser
micro-step consumes ``G = batch_size x world_size`` consecutive positions; rank ``r`` takes the slice
``[r·b, (r+1)·b)`` of them. So (a) one process with batch ``G`` sees exactly the samples that ``N``
processes with batch ``G/N`` see together, in the same order, and (b) the data position of a run is one
integer (``samples_consumed``), which a checkpoint stores and a resumed run starts from.

**Augmentation randomness.** Sample ``i`` in epoch ``e`` is transformed with a generator seeded by
``(seed, i, e)`` (``dgss.data.datasets.sample_seed``), independent of workers, ranks and prefetching.

**Image augmentation baselines.** An optional ``augment`` callable (PASTA, GTR-LTR:
``dgss.data.augment.build_image_augment``) acts on the decoded image before the transform, drawing from the
same per-sample generator first; in-memory datasets get it too (their images are quantised to uint8 by it).

**Items.** ``{"image": (3, H, W) float32, "label": (H, W) int64}``. Real datasets go through
``dgss.data.transforms.TrainPipeline`` and come out ImageNet-normalised (``normalized = True``); the
in-memory datasets here (and any dataset without a ``normalized`` attribute) hold images in [0, 255],
which the trainer normalises with the model's mean/std.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..data.datasets import sample_seed


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(sample_seed(seed, 0x5EED, epoch))
    return torch.randperm(n, generator=g)


class InfiniteStreamSampler(Sampler):
    """Yields ``(index, epoch)`` of this rank's share of the global sample stream, from ``start`` on.

    ``start`` is a global stream position and must be a multiple of ``batch_size x world_size``.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        seed: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        shuffle: bool = True,
    ):
        if num_samples < 1:
            raise ValueError("the training dataset is empty")
        global_batch = batch_size * world_size
        if start % global_batch:
            raise ValueError(f"stream position {start} is not a multiple of the global batch {global_batch}")
        self.n, self.seed, self.b, self.rank, self.world = num_samples, seed, batch_size, rank, world_size
        self.start, self.shuffle = start, shuffle
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = epoch_permutation(self.n, self.seed, epoch) if self.shuffle else torch.arange(self.n)
        return self._perms[epoch]

    def positions(self, step: int) -> range:
        """Global stream positions this rank reads at global micro-step ``step``."""
        base = step * self.b * self.world + self.rank * self.b
        return range(base, base + self.b)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step = self.start // (self.b * self.world)
        while True:
            for p in self.positions(step):
                epoch, offset = divmod(p, self.n)
                yield int(self._perm(epoch)[offset]), epoch
            step += 1

    def __len__(self) -> int:  # infinite; DataLoader only needs it for len(loader)
        return 2**62


class StreamDataset(Dataset):
    """Index ``(i, epoch)`` -> transformed sample ``i`` with its per-(seed, i, epoch) generator.

    ``base`` is a ``dgss.data.datasets.SegDataset`` (raw ``load(i)`` + ``transform``) or any map-style
    dataset returning ``{"image", "label"}`` (used as is). ``augment(image 0..255, generator) -> uint8`` is
    applied to the image first (image-level augmentation baselines), with the same generator.
    """

    def __init__(self, base, seed: int, transform=None, augment=None):
        self.base, self.seed, self.transform, self.augment = base, seed, transform, augment
        self.normalized = bool(getattr(base, "normalized", False)) if transform is None else True

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if self.transform is not None:
            image, label = self.base.load(index)
            g = torch.Generator().manual_seed(sample_seed(self.seed, index, epoch))
            if self.augment is not None:
                image = self.augment(image, g)
            image, label = self.transform(image, label, g)
        else:
            item = self.base[index]
            image, label = item["image"], item["label"]
            if self.augment is not None:
                image = self.augment(image, torch.Generator().manual_seed(sample_seed(self.seed, index, epoch)))
        return {"image": torch.as_tensor(image).float(), "label": torch.as_tensor(label).long()}


def collate(batch: list[dict]) -> dict:
    shapes = {tuple(b["image"].shape) for b in batch}
    if len(shapes) != 1:
        raise ValueError(
            f"training images in one batch differ in size: {sorted(shapes)} "
            "(the training pipeline pads every crop to crop_size)"
        )
    return {"image": torch.stack([b["image"] for b in batch]), "label": torch.stack([b["label"] for b in batch])}


# ---------------------------------------------------------------------------------------------- synthetic data
class SyntheticSegDataset(Dataset):
    """Procedural, deterministic segmentation data held in memory (tests, demos, smoke runs).

    Image ``i`` is a 4x4 grid of cells, each filled with one class; class ``c`` has a fixed colour
    (plus pixel noise), a 2-pixel band along one cell border is ignore (255). Images are float32 in
    [0, 255] (``normalized = False``). ``domain`` tags every item (for evaluation tables).
    """

    normalized = False
    ignore_index = 255

    def __init__(
        self,
        num_images: int = 16,
        height: int = 64,
        width: int = 64,
        num_classes: int = 19,
        seed: int = 0,
        domain: str = "synthetic",
        classes_used: int | None = None,
    ):
        self.n, self.h, self.w, self.num_classes = num_images, height, width, num_classes
        self.seed, self.domain = seed, domain
        self.classes_used = min(num_classes, classes_used or 8)
        rng = np.random.default_rng(1234)
        self.palette = rng.uniform(20, 235, size=(num_classes, 3)).astype(np.float32)
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return self.n

    def _make(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        grid = rng.integers(0, self.classes_used, size=(4, 4))
        ys = np.minimum(np.arange(self.h) * 4 // self.h, 3)
        xs = np.minimum(np.arange(self.w) * 4 // self.w, 3)
        label = grid[ys[:, None], xs[None, :]].astype(np.int64)
        image = self.palette[label] + rng.normal(0, 12, size=(self.h, self.w, 3)).astype(np.float32)
        row = int(rng.integers(1, 4)) * self.h // 4
        label[max(row - 1, 0) : row + 1, :] = self.ignore_index
        image = np.clip(image, 0, 255).transpose(2, 0, 1)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "label": torch.from_numpy(label),
            "domain": self.domain,
            "path": f"synthetic/{self.domain}/{index:05d}",
        }

    def __getitem__(self, index: int) -> dict:
        if index not in self._cache:
            self._cache[index] = self._make(index)
        item = self._cache[index]
        return {**item, "image": item["image"].clone(), "label": item["label"].clone()}


def synthetic_from_config(cfg, num_classes: int, *, default_size: int, default_seed: int) -> SyntheticSegDataset:
    """A :class:`SyntheticSegDataset` from a :class:`dgss.config.SyntheticConfig` (or None = defaults)."""
    from ..config import SyntheticConfig

    cfg = cfg or SyntheticConfig(height=default_size, width=default_size, seed=default_seed)
    return SyntheticSegDataset(
        cfg.num_images, cfg.height, cfg.width, num_classes, cfg.seed, cfg.domain, classes_used=cfg.num_classes
    )
