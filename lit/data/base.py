"""Data-set contract: every registered data set yields its splits as tensors held in
memory, or (an image folder too large for memory) as image files decoded batch by batch
(`lit.data.stream.FileSplit`, which answers the same questions: length, labels, subset,
sample shape, channel statistics).

A builder returns the data set's own train and test splits (`RawData`); `build_data`
holds out a seeded, stratified validation split from the training set and computes the
normalisation statistics on what remains for training, so every family and method
sees the same three splits for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from lit import catalog
from lit.runtime.registry import Registry


@dataclass(frozen=True)
class Augment:
    """Batched augmentation applied on the training device (images only)."""

    crop_padding: int = 0  # random crop of the original size after zero-padding by this much
    flip: bool = False  # random horizontal flip


@dataclass
class Split:
    """`inputs`: uint8 images (N, C, H, W) or integer token ids (N, L); `labels`: int64 (N,)
    class indices, or float (N, K) attribute vectors for multi-domain image data."""

    inputs: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.labels):
            raise ValueError(f"split has {len(self.inputs)} inputs but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "Split":
        return Split(self.inputs[index], self.labels[index])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape[1:])

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return channel_stats(self.inputs)


@dataclass
class RawData:
    """What a data-set builder returns: the data set's official train and test splits."""

    train: Split
    test: Split
    num_classes: int
    kind: str = "image"  # "image" or "text"
    augment: Augment = field(default_factory=Augment)
    class_names: list[str] | None = None


@dataclass
class DataSplits:
    train: Split
    val: Split
    test: Split
    num_classes: int
    kind: str
    augment: Augment
    mean: tuple[float, ...] | None  # per channel, on the 0..1 scale, from the training split
    std: tuple[float, ...] | None
    class_names: list[str] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.sample_shape

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]


DATASETS: Registry[Callable[..., RawData]] = Registry(catalog.DATASETS)
register_dataset = DATASETS.register


def stratified_holdout(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val): `fraction` of every class, chosen by `seed`, goes to val."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    class_ids = labels if labels.dim() == 1 else torch.zeros(len(labels), dtype=torch.long)
    train_parts, val_parts = [], []
    for cls in torch.unique(class_ids):
        members = torch.nonzero(class_ids == cls).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_val = int(round(fraction * len(members)))
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    return torch.sort(torch.cat(train_parts)).values, torch.sort(torch.cat(val_parts)).values


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images on the 0..1 scale (chunked: large sets fit)."""
    return batch_channel_stats(images[start : start + chunk] for start in range(0, len(images), chunk))


def batch_channel_stats(batches: Iterable[torch.Tensor]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the 0..1 scale over batches of uint8 (N, C, H, W) images."""
    total = total_sq = None
    count = 0
    for batch in batches:
        block = batch.to(torch.float64) / 255.0
        sums, squares = block.sum(dim=(0, 2, 3)), (block**2).sum(dim=(0, 2, 3))
        total, total_sq = (sums, squares) if total is None else (total + sums, total_sq + squares)
        count += block.shape[0] * block.shape[2] * block.shape[3]
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def build_data(
    name: str,
    root: str | Path = "data",
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = False,
    **options: Any,
) -> DataSplits:
    """Load a registered data set and split it into train / val / test."""
    builder = DATASETS.get(name)
    try:
        raw = builder(root=Path(root), download=download, **options)
    except TypeError as err:
        raise ValueError(f"data set {name!r}: {err}") from None
    train_idx, val_idx = stratified_holdout(raw.train.labels, val_fraction, seed)
    train, val = raw.train.subset(train_idx), raw.train.subset(val_idx)
    mean = std = None
    if raw.kind == "image":
        mean, std = train.channel_stats()
    return DataSplits(train, val, raw.test, raw.num_classes, raw.kind, raw.augment, mean, std, raw.class_names)


def load_data(data_cfg: Any) -> DataSplits:
    """`build_data` from a run config's `data` section."""
    return build_data(
        data_cfg.name, root=data_cfg.root, val_fraction=data_cfg.val_fraction,
        seed=data_cfg.split_seed, download=data_cfg.download, **data_cfg.options,
    )
