"""Splits too large to hold decoded: image files decoded batch by batch, in worker processes.

A `FileSplit` holds paths and labels only. `Batches` (lit/data/loader.py) asks it for the
images of each batch; it decodes them in `torch.utils.data.DataLoader` workers, with
ImageNet-style transforms: for training a random resized crop (area 8%-100% of the image,
aspect 3/4-4/3) and a horizontal flip; for evaluation the short side resized to
`size / crop_fraction` and the centre `size x size` cut out. Every random draw of an image
comes from a generator seeded by (the epoch's seed, the image's row), and the epoch's seed
from the run's data generator: the same run gives the same pixels whichever worker decodes
an image, and a resumed run the same as an uninterrupted one. Workers return uint8 pixels;
standardising and the memory format are the loader's, on the training device, as for an
in-memory split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lit.data.base import batch_channel_stats

STATS_IMAGES = 1000  # images whose pixels give a streamed training split's channel statistics


@dataclass(frozen=True)
class StreamTransform:
    size: int  # every image comes out size x size
    grayscale: bool = False
    min_scale: float = 0.08  # training: the random crop covers at least this fraction of the image's area
    flip: bool = True  # training: random horizontal flips
    crop_fraction: float = 0.875  # evaluation: the centre crop's share of the resized short side

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3


class FileSplit:
    """A split of image files with int64 labels; decoded only batch by batch."""

    def __init__(self, paths: Sequence[str], labels: torch.Tensor, transform: StreamTransform, workers: int = 0) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"split has {len(paths)} files but {len(labels)} labels")
        self.paths = list(paths)
        self.labels = labels
        self.transform = transform
        self.workers = workers  # decoding processes per epoch (0: the training process decodes)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def inputs(self) -> torch.Tensor:
        raise AttributeError("a streamed split holds no decoded images: read them through lit.data.Batches")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.transform.channels, self.transform.size, self.transform.size)

    def subset(self, index: torch.Tensor) -> "FileSplit":
        return FileSplit([self.paths[i] for i in index.tolist()], self.labels[index], self.transform, self.workers)

    def decode(self, rows: Sequence[int], seed: int | None) -> torch.Tensor:
        """The images of `rows` as uint8 (B, C, size, size), in this process: random
        training transforms with `seed`, the evaluation ones with None."""
        images = Images(self)
        return torch.stack([images[(row, seed)] for row in rows])

    def batches(self, rows: Sequence[Sequence[int]], seed: int | None, workers: int | None = None) -> Iterator[torch.Tensor]:
        """The images of each batch of `rows`, in order, decoded by `workers` processes (the
        split's own number by default; 0: in this one), a few batches ahead of the consumer."""
        workers = self.workers if workers is None else workers
        loader = DataLoader(
            Images(self), batch_sampler=[[(row, seed) for row in batch] for batch in rows], num_workers=workers,
            collate_fn=torch.stack, prefetch_factor=4 if workers else None,
        )
        yield from loader

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std on the 0..1 scale of up to `STATS_IMAGES` evenly spaced
        images under the evaluation transform (all of them in a smaller split)."""
        rows = np.linspace(0, len(self) - 1, num=min(len(self), STATS_IMAGES)).round().astype(int)
        return batch_channel_stats(self.batches([rows[i : i + 64].tolist() for i in range(0, len(rows), 64)], None, 0))


class Images(Dataset):
    """Item (row, seed): the row's image, transformed (for training when seed is not None)."""

    def __init__(self, split: FileSplit) -> None:
        self.paths, self.transform = split.paths, split.transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int | None]) -> torch.Tensor:
        # imported here, not at the top: a process that never decodes a streamed batch (every
        # other pipeline job) does not pay for torchvision's import
        from torchvision.transforms import InterpolationMode, RandomResizedCrop
        from torchvision.transforms.v2 import functional as TF

        row, seed = item
        spec = self.transform
        try:
            with Image.open(self.paths[row]) as opened:
                image = opened.convert("L" if spec.grayscale else "RGB")
        except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
            raise ValueError(f"cannot decode image {self.paths[row]}: {err}") from None
        if seed is None:
            resized = TF.resize(image, [max(spec.size, round(spec.size / spec.crop_fraction))],
                                interpolation=InterpolationMode.BILINEAR, antialias=True)
            image = TF.center_crop(resized, [spec.size, spec.size])
        else:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + row)
            with torch.random.fork_rng(devices=[]):  # torchvision draws the crop from the global generator
                torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
                top, left, height, width = RandomResizedCrop.get_params(image, [spec.min_scale, 1.0], [3 / 4, 4 / 3])
            image = TF.resized_crop(image, top, left, height, width, [spec.size, spec.size],
                                    interpolation=InterpolationMode.BILINEAR, antialias=True)
            if spec.flip and torch.rand(1, generator=generator).item() < 0.5:
                image = TF.horizontal_flip(image)
        return TF.pil_to_tensor(image)
