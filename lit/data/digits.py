"""scikit-learn's bundled 8x8 digits (1,797 images): the embedded default, offline anywhere."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from lit.data.base import Augment, RawData, Split, register_dataset


@register_dataset("digits")
def digits(root: Path, download: bool = False, test_fraction: float = 0.2, split_seed: int = 0) -> RawData:
    """The digits have no official test split: a fixed, seeded stratified `test_fraction`
    is set aside (independent of the run seed, so every run is scored on the same images)."""
    from lit.data.base import stratified_holdout

    pixels, target = read_bundled_digits()
    # pixel values are 0..16: scale to the uint8 range every image data set uses
    images = torch.from_numpy(pixels.reshape(-1, 8, 8)).mul(255.0 / 16.0).round().to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(target).long()
    train_idx, test_idx = stratified_holdout(labels, test_fraction, split_seed)
    return RawData(
        train=Split(images[train_idx], labels[train_idx]),
        test=Split(images[test_idx], labels[test_idx]),
        num_classes=10,
        augment=Augment(crop_padding=1, flip=False),  # a flipped digit is another symbol
        class_names=[str(d) for d in range(10)],
    )


def read_bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """(pixels (1797, 64) float, labels (1797,) int): the file `sklearn.datasets.load_digits`
    reads, `datasets/data/digits.csv.gz` inside the installed scikit-learn, read the way it
    reads it. Importing scikit-learn's `datasets` costs about two seconds (it loads SciPy),
    which every training and evaluation process on the embedded default would pay."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the digits data set is scikit-learn's: install scikit-learn (`pip install scikit-learn`)")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"scikit-learn's bundled digits file {path} is missing: reinstall scikit-learn")
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)
