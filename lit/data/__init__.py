"""Data sets held in memory as tensors, a registry (a data set's module is imported on
first use; the names are in `lit.catalog`), and batched on-device augmentation."""

from lit.data.base import DATASETS, Augment, DataSplits, RawData, Split, build_data, load_data, register_dataset
from lit.data.loader import Batches, BatchStream

__all__ = ["DATASETS", "Augment", "Batches", "BatchStream", "DataSplits", "RawData", "Split", "build_data", "load_data", "register_dataset"]
