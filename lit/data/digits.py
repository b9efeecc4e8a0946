"""scikit-learn's bundled 8x8 digits (1,797 images): the embedded default, offline anywhere."""

from __future__ import annotations

from pathlib import Path

import torch

from lit.data.base import Augment, RawData, Split, register_dataset


@register_dataset("digits")
def digits(root: Path, download: bool = False, test_fraction: float = 0.2, split_seed: int = 0) -> RawData:
    """The digits have no official test split: a fixed, seeded stratified `test_fraction`
    is set aside (independent of the run seed, so every run is scored on the same images)."""
    from sklearn.datasets import load_digits

    from lit.data.base import stratified_holdout

    bunch = load_digits()
    # pixel values are 0..16: scale to the uint8 range every image data set uses
    images = torch.from_numpy(bunch.images).mul(255.0 / 16.0).round().to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    train_idx, test_idx = stratified_holdout(labels, test_fraction, split_seed)
    return RawData(
        train=Split(images[train_idx], labels[train_idx]),
        test=Split(images[test_idx], labels[test_idx]),
        num_classes=10,
        augment=Augment(crop_padding=1, flip=False),  # a flipped digit is another symbol
        class_names=[str(d) for d in range(10)],
    )
