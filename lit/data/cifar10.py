"""CIFAR-10 (the 2009 technical report) through torchvision: its download and its md5 checks.

The download runs in a staging folder inside `root`; only a verified, fully extracted
`cifar-10-batches-py` is moved into `root`, so a failed or corrupt download leaves
nothing behind. The images are then held as one uint8 tensor (N, 3, 32, 32).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from lit.data.base import Augment, RawData, Split, register_dataset

GET_HINT = "set data.download=true or run `lit prepare-data <config>`"


def torchvision_cifar10() -> type:
    """torchvision's CIFAR10 class, imported on first use: importing torchvision costs about
    two seconds, which every `lit` process would pay for a data set most runs never read."""
    from torchvision.datasets import CIFAR10

    return CIFAR10


@register_dataset("cifar10")
def cifar10(root: Path, download: bool = False, subset_per_class: int | None = None) -> RawData:
    """`subset_per_class`: keep only the first k training images of every class (a fast CPU
    subset); the test split is always the full official one."""
    if subset_per_class is not None and (
        isinstance(subset_per_class, bool) or not isinstance(subset_per_class, int) or subset_per_class < 1
    ):
        raise ValueError(f"data.options.subset_per_class must be a positive integer or null, got {subset_per_class!r}")
    root = Path(root)
    if download:
        download_cifar10(root)
    else:
        require_files(root)
    train, class_names = load_split(root, train=True)
    test, _ = load_split(root, train=False)
    if subset_per_class is not None:
        train = train.subset(first_per_class(train.labels, subset_per_class))
    return RawData(
        train=train,
        test=test,
        num_classes=10,
        augment=Augment(crop_padding=4, flip=True),
        class_names=class_names,
    )


def expected_files() -> list[tuple[str, str]]:
    """(file name, md5) of every file torchvision checks, read from the class at call time."""
    listed = torchvision_cifar10().train_list + torchvision_cifar10().test_list + [[torchvision_cifar10().meta["filename"], torchvision_cifar10().meta["md5"]]]
    return [(name, md5) for name, md5 in listed]


def data_folder(root: Path) -> Path:
    return root / torchvision_cifar10().base_folder


def require_files(root: Path) -> None:
    """Raise FileNotFoundError naming what is missing and how to get it."""
    missing = [name for name, _ in expected_files() if not (data_folder(root) / name).is_file()]
    if not missing:
        return
    archive = root / torchvision_cifar10().filename
    archive_note = (
        f" ({archive} is there: data.download=true verifies and extracts it without downloading)"
        if archive.is_file()
        else ""
    )
    where = (
        f"{data_folder(root)} lacks {', '.join(missing)}"
        if data_folder(root).is_dir()
        else f"no folder {data_folder(root)}"
    )
    raise FileNotFoundError(f"CIFAR-10 not found: {where}{archive_note}; {GET_HINT} to download it (about 170 MB)")


def is_intact(root: Path) -> bool:
    from torchvision.datasets.utils import check_integrity

    return all(check_integrity(str(data_folder(root) / name), md5) for name, md5 in expected_files())


def download_cifar10(root: Path) -> None:
    """Download, verify and extract into a staging folder, then move the result into `root`."""
    if is_intact(root):
        return
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cifar10-download-", dir=root))
    try:
        local_archive = root / torchvision_cifar10().filename
        if local_archive.is_file():  # placed by hand: torchvision checks its md5 and skips the network
            shutil.copyfile(local_archive, staging / torchvision_cifar10().filename)
        # downloads, checks the archive's md5, extracts, then checks every extracted file's md5
        torchvision_cifar10()(str(staging), train=False, download=True)
        install_extracted(staging, root)
    except Exception as err:
        raise RuntimeError(
            f"could not download CIFAR-10 from {torchvision_cifar10().url} into {root} ({type(err).__name__}: {err}); "
            f"nothing was kept in {root}. Retry, or fetch {torchvision_cifar10().filename} (md5 {torchvision_cifar10().tgz_md5}) by hand, "
            f"put it in {root} and run again with data.download=true"
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install_extracted(staging: Path, root: Path) -> None:
    """Swap the verified folder into place; an old incomplete copy goes with the staging folder."""
    target = data_folder(root)
    if target.exists():
        os.replace(target, staging / "replaced-incomplete-copy")
    os.replace(staging / torchvision_cifar10().base_folder, target)


def load_split(root: Path, train: bool) -> tuple[Split, list[str]]:
    """One official split as uint8 (N, 3, 32, 32) images and int64 labels, and the class names."""
    try:
        dataset = torchvision_cifar10()(str(root), train=train, download=False)
    except RuntimeError as err:  # torchvision's md5 check failed on a file that is present
        raise RuntimeError(
            f"CIFAR-10 in {data_folder(root)} is corrupt ({err}); delete that folder and {GET_HINT}"
        ) from None
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    return Split(images, torch.tensor(dataset.targets, dtype=torch.int64)), list(dataset.classes)


def first_per_class(labels: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the first `count` examples of every class, in the data set's order."""
    parts = [torch.nonzero(labels == cls).flatten()[:count] for cls in torch.unique(labels)]
    return torch.sort(torch.cat(parts)).values
