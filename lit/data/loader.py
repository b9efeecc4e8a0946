"""Batches from a split, standardised on the training device.

An in-memory split is moved to the training device once; every batch is then an index, a
gather, a random translate and a flip on the device: nothing per image in Python. A
streamed split (`lit.data.stream.FileSplit`) decodes and augments each batch's files in
worker processes, from a seed the batches' generator draws once per epoch.
"""

from __future__ import annotations

from typing import Iterator

import torch

from lit.data.base import Augment, DataSplits, Split
from lit.data.stream import FileSplit


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding` and crop back to the original size at a random offset per image."""
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=generator.device)
    rows = (offsets[0, :, None] + torch.arange(height, device=images.device))[:, :, None]
    cols = (offsets[1, :, None] + torch.arange(width, device=images.device))[:, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(len(images), generator=generator, device=generator.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def augment_batch(images: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    if augment.crop_padding:
        images = random_crop(images, augment.crop_padding, generator)
    if augment.flip:
        images = random_flip(images, generator)
    return images


class Batches:
    """Iterates one split in batches of (inputs, labels) on `device`; `indexed()` gives
    each batch's rows in the split as well (what a method keeping per-example state reads).

    Images come out as float tensors (in `memory_format`), standardised with the training
    split's statistics, or scaled to [-1, 1] with `scaling="symmetric"` (what a generator
    with a tanh output reads and writes); token ids come out unchanged.
    """

    def __init__(
        self,
        split: Split,
        data: DataSplits,
        batch_size: int,
        device: torch.device | str = "cpu",
        train: bool = False,
        generator: torch.Generator | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
        scaling: str = "standardise",
    ) -> None:
        if scaling not in ("standardise", "symmetric"):
            raise ValueError(f"image scaling must be 'standardise' or 'symmetric', got {scaling!r}")
        self.device = torch.device(device)
        self.files = split if isinstance(split, FileSplit) else None
        self.inputs = None if self.files is not None else split.inputs.to(self.device)
        self.labels = split.labels.to(self.device)
        self.batch_size = batch_size
        self.train = train
        self.kind = data.kind
        # a streamed split is augmented where it is decoded
        self.augment = data.augment if train and self.files is None else Augment()
        self.generator = generator or torch.Generator(device=self.device).manual_seed(0)
        self.memory_format = memory_format
        self.scaling = scaling
        if data.kind == "image" and scaling == "standardise":
            shape = (1, -1, 1, 1)
            self.mean = torch.tensor(data.mean, device=self.device).view(shape) * 255.0
            self.std = torch.tensor(data.std, device=self.device).view(shape) * 255.0

    def __len__(self) -> int:
        # training drops the last partial batch: equal-size steps, and BN never sees a batch of one
        full, rest = divmod(len(self.labels), self.batch_size)
        return full if self.train and full > 0 else full + bool(rest)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _, inputs, labels in self.indexed():
            yield inputs, labels

    def indexed(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(rows, inputs, labels) per batch: `rows` are the examples' positions in the split."""
        count = len(self.labels)
        if self.train:
            order = torch.randperm(count, generator=self.generator, device=self.device)
        else:
            order = torch.arange(count, device=self.device)
        rows = [order[step * self.batch_size : (step + 1) * self.batch_size] for step in range(len(self))]
        if self.files is None:
            for index in rows:
                yield index, self.prepare(self.inputs[index]), self.labels[index]
            return
        images = self.files.batches([index.tolist() for index in rows], self.epoch_seed())
        for index, pixels in zip(rows, images):
            yield index, self.scale(pixels.to(self.device)), self.labels[index]

    def fetch(self, index: torch.Tensor) -> torch.Tensor:
        """The prepared inputs of the split's rows `index` (a streamed split decodes them here)."""
        if self.files is None:
            return self.prepare(self.inputs[index])
        return self.scale(self.files.decode(index.tolist(), self.epoch_seed()).to(self.device))

    def epoch_seed(self) -> int | None:
        """The seed of a streamed split's random transforms (None: evaluation transforms)."""
        if not self.train:
            return None
        return int(torch.randint(0, 2**31, (1,), generator=self.generator, device=self.device))

    def prepare(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.kind != "image":
            return inputs.long()
        return self.scale(augment_batch(inputs.float(), self.augment, self.generator))

    def scale(self, images: torch.Tensor) -> torch.Tensor:
        images = images.float()
        scaled = images / 127.5 - 1.0 if self.scaling == "symmetric" else (images - self.mean) / self.std
        return scaled.contiguous(memory_format=self.memory_format)


class BatchStream:
    """Endless training batches for iteration-based phases: a new order of the split every
    pass (drawn from the batches' generator), the incomplete last batch dropped. The order
    and the position in it are its state, so with the generator's state a run resumes
    mid-pass exactly."""

    def __init__(self, batches: Batches) -> None:
        if len(batches.labels) < batches.batch_size:
            raise ValueError(f"the batch size ({batches.batch_size}) exceeds the {len(batches.labels)} training examples")
        self.batches = batches
        self.order: torch.Tensor | None = None
        self.cursor = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rows, inputs, labels) of the next batch, as `Batches.indexed`."""
        batches, size = self.batches, self.batches.batch_size
        if self.order is None or self.cursor + size > len(self.order):
            self.order = torch.randperm(len(batches.labels), generator=batches.generator, device=batches.device)
            self.cursor = 0
        index = self.order[self.cursor : self.cursor + size]
        self.cursor += size
        return index, batches.fetch(index), batches.labels[index]

    def state_dict(self) -> dict:
        return {"order": None if self.order is None else self.order.cpu(), "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.order = None if state["order"] is None else state["order"].to(self.batches.device)
        self.cursor = int(state["cursor"])
