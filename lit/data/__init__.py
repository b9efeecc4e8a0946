"""Data sets held in memory as tensors, a registry, and batched on-device augmentation."""

from lit.data import celeba, cifar10, cifar100, colordigits, digits, imagefolder, synthetic, text  # noqa: F401  (registers the data sets)
from lit.data.base import DATASETS, Augment, DataSplits, RawData, Split, build_data, load_data, register_dataset
from lit.data.loader import Batches, BatchStream

__all__ = ["DATASETS", "Augment", "Batches", "BatchStream", "DataSplits", "RawData", "Split", "build_data", "load_data", "register_dataset"]
