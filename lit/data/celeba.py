"""CelebA (Liu et al. 2015) for StarGAN: aligned faces with binary attributes as domains.

Layout under `root` (torchvision's): `celeba/img_align_celeba/*.jpg`,
`celeba/list_attr_celeba.txt` and `celeba/list_eval_partition.txt`. `download=True` calls
torchvision's own downloader (Google Drive, needs `gdown`). The attribute and partition
files are read here rather than through `torchvision.datasets.CelebA`, whose checks also
demand the identity, bounding-box and landmark files with exact checksums, which the
translation task does not use.

Images are center-cropped to `crop` (178, as StarGAN) and resized to `image_size` (128)
with PIL's bilinear filter; labels are the chosen `attributes` as float (N, K) in {0, 1}.
Splits follow the official partition file: train = partition 0, test = partition 2
(StarGAN instead held out 2,000 randomly drawn images; the official partition keeps test
identities out of training). `train_limit`/`test_limit` keep the first images in file
order. Decoded tensors are cached under `celeba/lit_cache/` (one file per option set,
written atomically); the full training partition at 128 px is about 8 GB of uint8.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import torch

from lit.data.base import Augment, RawData, Split, register_dataset
from lit.runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

DEFAULT_ATTRIBUTES = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young")  # StarGAN's five domains
HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")  # mutually exclusive (StarGAN's rule)
TRAIN_PARTITION, TEST_PARTITION = 0, 2
CACHE_KIND = "celeba-cache"

HOW_TO_GET = (
    "CelebA may not be redistributed: request it from http://mmlab.ie.cuhk.edu.hk/projects/CelebA.html "
    "(or pass download=True to use torchvision's Google Drive downloader, which needs `gdown`), then place "
    "img_align_celeba/, list_attr_celeba.txt and list_eval_partition.txt in {folder}"
)


def require_files(folder: Path) -> None:
    needed = [folder / "img_align_celeba", folder / "list_attr_celeba.txt", folder / "list_eval_partition.txt"]
    missing = [path.name for path in needed if not path.exists()]
    if missing:
        raise FileNotFoundError(f"CelebA is missing {', '.join(missing)} in {folder}. " + HOW_TO_GET.format(folder=folder))


def read_attributes(path: Path) -> tuple[list[str], dict[str, list[int]]]:
    """`list_attr_celeba.txt`: a count line, a line of attribute names, then one row per
    image `000001.jpg -1  1 ...` (space-aligned, values in {-1, 1})."""
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise ValueError(f"{path} is not a CelebA attribute file (expected a count line and a names line)")
    names = lines[1].split()
    rows = {}
    for line_no, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            raise ValueError(f"{path} line {line_no}: expected a file name and {len(names)} values, got {len(fields)} fields")
        rows[fields[0]] = [int(value) for value in fields[1:]]
    return names, rows


def read_partition(path: Path) -> dict[str, int]:
    """`list_eval_partition.txt`: `000001.jpg 0` per line (0 train, 1 valid, 2 test)."""
    return {fields[0]: int(fields[1]) for fields in (line.split() for line in path.read_text().splitlines()) if fields}


def decode_images(folder: Path, files: Sequence[str], crop: int, image_size: int) -> torch.Tensor:
    """uint8 (N, 3, S, S): each JPEG center-cropped to `crop`, resized to `image_size`."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    images = torch.empty((len(files), 3, image_size, image_size), dtype=torch.uint8)
    for index, name in enumerate(files):
        with Image.open(folder / "img_align_celeba" / name) as image:
            square = TF.center_crop(image.convert("RGB"), [crop, crop])
            resized = TF.resize(square, [image_size, image_size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
            images[index] = TF.pil_to_tensor(resized)
    return images


def select_split(partition: dict[str, int], rows: dict[str, list[int]], which: int, limit: int | None) -> list[str]:
    files = sorted(name for name, part in partition.items() if part == which and name in rows)
    return files if limit is None else files[:limit]


def cache_path(folder: Path, options: dict) -> Path:
    """One cache file per option set and per version of the label files (their sizes)."""
    key = dict(
        options,
        attr_bytes=(folder / "list_attr_celeba.txt").stat().st_size,
        partition_bytes=(folder / "list_eval_partition.txt").stat().st_size,
    )
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return folder / "lit_cache" / f"celeba-{digest}.pt"


def build_tensors(
    folder: Path, attributes: list[str], crop: int, image_size: int, train_limit: int | None, test_limit: int | None
) -> dict:
    names, rows = read_attributes(folder / "list_attr_celeba.txt")
    unknown = [a for a in attributes if a not in names]
    if unknown:
        raise ValueError(f"celeba option attributes: unknown {unknown}; CelebA has {', '.join(names)}")
    columns = [names.index(a) for a in attributes]
    partition = read_partition(folder / "list_eval_partition.txt")
    tensors = {}
    for split, which, limit in (("train", TRAIN_PARTITION, train_limit), ("test", TEST_PARTITION, test_limit)):
        files = select_split(partition, rows, which, limit)
        if not files:
            raise ValueError(f"CelebA in {folder} has no images in partition {which} ({split})")
        signs = torch.tensor([[rows[f][c] for c in columns] for f in files])
        tensors[f"{split}_labels"] = (signs > 0).float()  # {-1, 1} -> {0, 1}
        tensors[f"{split}_images"] = decode_images(folder, files, crop, image_size)
    return tensors


@register_dataset("celeba")
def celeba(
    root: Path,
    download: bool = False,
    attributes: Sequence[str] = DEFAULT_ATTRIBUTES,
    crop: int = 178,
    image_size: int = 128,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> RawData:
    folder = Path(root) / "celeba"
    if download and not (folder / "img_align_celeba").is_dir():
        import torchvision

        torchvision.datasets.CelebA(str(root), split="all", target_type=[], download=True)
    require_files(folder)
    attributes = list(attributes)
    options = {
        "attributes": attributes,
        "crop": crop,
        "image_size": image_size,
        "train_limit": train_limit,
        "test_limit": test_limit,
    }
    path = cache_path(folder, options)
    try:
        tensors = load_checkpoint(path, kind=CACHE_KIND)
    except CheckpointError:  # absent or unreadable: decode again and replace it
        tensors = {
            "format": "lit-checkpoint/1",
            "kind": CACHE_KIND,
            **build_tensors(folder, attributes, crop, image_size, train_limit, test_limit),
        }
        save_checkpoint(tensors, path)
    return RawData(
        train=Split(tensors["train_images"], tensors["train_labels"]),
        test=Split(tensors["test_images"], tensors["test_labels"]),
        num_classes=len(attributes),
        augment=Augment(crop_padding=0, flip=True),  # StarGAN: random horizontal flips only
        class_names=attributes,
    )
