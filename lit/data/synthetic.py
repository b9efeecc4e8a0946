"""Random images with random labels, for benchmarks and smoke tests (no files, no learning)."""

from __future__ import annotations

from pathlib import Path

import torch

from lit.data.base import Augment, RawData, Split, register_dataset


@register_dataset("synthetic")
def synthetic(
    root: Path, download: bool = False, train_size: int = 4096, test_size: int = 512,
    shape: list[int] | tuple[int, ...] = (3, 32, 32), num_classes: int = 10, seed: int = 0,
    crop_padding: int = 4, flip: bool = True,
) -> RawData:
    generator = torch.Generator().manual_seed(seed)

    def split(size: int) -> Split:
        images = torch.randint(0, 256, (size, *shape), generator=generator, dtype=torch.uint8)
        return Split(images, torch.randint(0, num_classes, (size,), generator=generator))

    return RawData(split(train_size), split(test_size), num_classes, augment=Augment(crop_padding, flip))
