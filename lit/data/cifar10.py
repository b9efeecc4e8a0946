"""CIFAR-10 (the 2009 technical report) through torchvision: its download and its md5 checks.

The download runs in a staging folder inside `root`; only a verified, fully extracted
`cifar-10-batches-py` is moved into `root`, so a failed or corrupt download leaves
nothing behind. The images are then held as one uint8 tensor (N, 3, 32, 32).

The code is shared by every torchvision CIFAR class: a `Cifar` names the class and how to
speak of it, and `load_cifar` does the rest (`lit.data.cifar100` registers CIFAR-100).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from lit.data.base import Augment, RawData, Split, register_dataset

GET_HINT = "set data.download=true or run `lit prepare-data <config>`"


def torchvision_cifar10() -> type:
    """torchvision's CIFAR10 class, imported on first use: importing torchvision costs about
    two seconds, which every `lit` process would pay for a data set most runs never read."""
    from torchvision.datasets import CIFAR10

    return CIFAR10


@dataclass(frozen=True)
class Cifar:
    """One torchvision CIFAR data set: its class (imported on first use, read at call time so
    that its url and md5 lists are the class's current ones), its name in messages, its
    number of classes and the size of its archive."""

    title: str  # "CIFAR-10"
    torchvision_class: Callable[[], type]
    num_classes: int
    download_size: str  # "about 170 MB"

    @property
    def staging_prefix(self) -> str:
        return f".{self.title.lower().replace('-', '')}-download-"  # .cifar10-download-


CIFAR_10 = Cifar("CIFAR-10", torchvision_cifar10, num_classes=10, download_size="about 170 MB")


@register_dataset("cifar10")
def cifar10(root: Path, download: bool = False, subset_per_class: int | None = None) -> RawData:
    """`subset_per_class`: keep only the first k training images of every class (a fast CPU
    subset); the test split is always the full official one."""
    return load_cifar(CIFAR_10, root, download, subset_per_class)


def load_cifar(cifar: Cifar, root: Path, download: bool, subset_per_class: int | None) -> RawData:
    """Both official splits of `cifar` (downloaded first where `download`), crop 4 + flip."""
    if subset_per_class is not None and (
        isinstance(subset_per_class, bool) or not isinstance(subset_per_class, int) or subset_per_class < 1
    ):
        raise ValueError(f"data.options.subset_per_class must be a positive integer or null, got {subset_per_class!r}")
    root = Path(root)
    if download:
        download_cifar(cifar, root)
    else:
        require_files(cifar, root)
    train, class_names = load_split(cifar, root, train=True)
    test, _ = load_split(cifar, root, train=False)
    if subset_per_class is not None:
        train = train.subset(first_per_class(train.labels, subset_per_class))
    return RawData(
        train=train,
        test=test,
        num_classes=cifar.num_classes,
        augment=Augment(crop_padding=4, flip=True),
        class_names=class_names,
    )


def expected_files(cifar: Cifar) -> list[tuple[str, str]]:
    """(file name, md5) of every file torchvision checks, read from the class at call time."""
    source = cifar.torchvision_class()
    listed = source.train_list + source.test_list + [[source.meta["filename"], source.meta["md5"]]]
    return [(name, md5) for name, md5 in listed]


def data_folder(cifar: Cifar, root: Path) -> Path:
    return root / cifar.torchvision_class().base_folder


def require_files(cifar: Cifar, root: Path) -> None:
    """Raise FileNotFoundError naming what is missing and how to get it."""
    folder = data_folder(cifar, root)
    missing = [name for name, _ in expected_files(cifar) if not (folder / name).is_file()]
    if not missing:
        return
    archive = root / cifar.torchvision_class().filename
    archive_note = (
        f" ({archive} is there: data.download=true verifies and extracts it without downloading)"
        if archive.is_file()
        else ""
    )
    where = f"{folder} lacks {', '.join(missing)}" if folder.is_dir() else f"no folder {folder}"
    raise FileNotFoundError(
        f"{cifar.title} not found: {where}{archive_note}; {GET_HINT} to download it ({cifar.download_size})"
    )


def is_intact(cifar: Cifar, root: Path) -> bool:
    from torchvision.datasets.utils import check_integrity

    return all(check_integrity(str(data_folder(cifar, root) / name), md5) for name, md5 in expected_files(cifar))


def download_cifar(cifar: Cifar, root: Path) -> None:
    """Download, verify and extract into a staging folder, then move the result into `root`."""
    if is_intact(cifar, root):
        return
    source = cifar.torchvision_class()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=cifar.staging_prefix, dir=root))
    try:
        local_archive = root / source.filename
        if local_archive.is_file():  # placed by hand: torchvision checks its md5 and skips the network
            shutil.copyfile(local_archive, staging / source.filename)
        # downloads, checks the archive's md5, extracts, then checks every extracted file's md5
        source(str(staging), train=False, download=True)
        install_extracted(cifar, staging, root)
    except Exception as err:
        raise RuntimeError(
            f"could not download {cifar.title} from {source.url} into {root} ({type(err).__name__}: {err}); "
            f"nothing was kept in {root}. Retry, or fetch {source.filename} (md5 {source.tgz_md5}) by hand, "
            f"put it in {root} and run again with data.download=true"
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install_extracted(cifar: Cifar, staging: Path, root: Path) -> None:
    """Swap the verified folder into place; an old incomplete copy goes with the staging folder."""
    target = data_folder(cifar, root)
    if target.exists():
        os.replace(target, staging / "replaced-incomplete-copy")
    os.replace(staging / cifar.torchvision_class().base_folder, target)


def load_split(cifar: Cifar, root: Path, train: bool) -> tuple[Split, list[str]]:
    """One official split as uint8 (N, 3, 32, 32) images and int64 labels, and the class
    names (CIFAR-100: its 100 fine labels and their names, what torchvision reads)."""
    try:
        dataset = cifar.torchvision_class()(str(root), train=train, download=False)
    except RuntimeError as err:  # torchvision's md5 check failed on a file that is present
        raise RuntimeError(
            f"{cifar.title} in {data_folder(cifar, root)} is corrupt ({err}); delete that folder and {GET_HINT}"
        ) from None
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    return Split(images, torch.tensor(dataset.targets, dtype=torch.int64)), list(dataset.classes)


def first_per_class(labels: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the first `count` examples of every class, in the data set's order."""
    parts = [torch.nonzero(labels == cls).flatten()[:count] for cls in torch.unique(labels)]
    return torch.sort(torch.cat(parts)).values
