"""CIFAR-100 (the 2009 technical report) through torchvision, with CIFAR-10's code
(`lit.data.cifar10`): the same staged download and md5 checks, the same crop 4 + flip.

The labels are the 100 fine classes (torchvision reads `fine_labels`; the 20 coarse
superclasses are not used) and the class names are the meta file's `fine_label_names`.
"""

from __future__ import annotations

from pathlib import Path

from lit.data.base import RawData, register_dataset
from lit.data.cifar10 import Cifar, load_cifar


def torchvision_cifar100() -> type:
    """torchvision's CIFAR100 class, imported on first use (as CIFAR-10's: about two seconds)."""
    from torchvision.datasets import CIFAR100

    return CIFAR100


CIFAR_100 = Cifar("CIFAR-100", torchvision_cifar100, num_classes=100, download_size="about 170 MB")


@register_dataset("cifar100")
def cifar100(root: Path, download: bool = False, subset_per_class: int | None = None) -> RawData:
    """`subset_per_class`: keep only the first k training images of every fine class (a fast
    CPU subset); the test split is always the full official one (10,000 images)."""
    return load_cifar(CIFAR_100, root, download, subset_per_class)
