"""Any class-per-folder image tree, decoded once into uint8 tensors and cached.

Layouts: `<path>/train/<class>/<image>` with `<path>/test/<class>/<image>` (the folder's
own split), or `<path>/<class>/<image>` (a fixed, seeded, stratified `test_fraction` is
held out, independent of the run seed). Classes are the sorted folder names, labelled
0..K-1; within a class, files are taken in sorted order, so `train_per_class=k` means
the first k files. Decoding tens of thousands of files takes seconds, so the decoded
tensors are cached under `root/imagefolder-cache/`, keyed by the folder, the options
and every file's name, size and modification time: any change decodes afresh.

A folder whose decoded images would exceed `memory_budget_mb` (or any folder, with
`stream: true`) is streamed instead: its splits hold file paths, and every batch is decoded
and augmented ImageNet-style in worker processes (`lit.data.stream`), so an ImageNet-sized
folder trains without its pixels in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from lit.data.base import Augment, RawData, Split, register_dataset, stratified_holdout
from lit.data.stream import FileSplit, StreamTransform
from lit.runtime.files import atomic_write

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
CACHE_FORMAT = "lit-imagefolder-cache/1"  # bump when decoding changes: old caches stop matching
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_MEMORY_BUDGET_MB = 4096  # `stream: auto` streams a folder whose decoded images would exceed this


class ImageFile(NamedTuple):
    path: str
    relative: str  # to the image folder, with "/" separators: what the cache key and sorting use
    label: int
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class DecodeOptions:
    size: int | None
    grayscale: bool
    train_per_class: int | None
    test_per_class: int | None
    test_fraction: float | None
    split_seed: int


@register_dataset("imagefolder")
def imagefolder(
    root: Path,
    download: bool = False,
    path: str | None = None,
    size: int | None = None,
    grayscale: bool = False,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    test_fraction: float | None = None,
    split_seed: int = 0,
    crop_padding: int = 4,
    flip: bool = True,
    stream: bool | str = "auto",
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    workers: int | None = None,
    min_scale: float = 0.08,
    crop_fraction: float = 0.875,
) -> RawData:
    """Options, all under `data.options`: `path` (required); `size` (resize every image to
    size x size; by default the images keep their own size, which must then agree);
    `grayscale` (one channel instead of RGB); `train_per_class` / `test_per_class` (the
    first k files of every class); `test_fraction` (default 0.2) and `split_seed`, only for
    a folder without train/ and test/; `crop_padding` and `flip` (training augmentation).
    Streaming: `stream` (`auto`: when the decoded images would exceed `memory_budget_mb`,
    default 4096; `true`; `false`), then `size` is required, `workers` decoding processes
    (default: up to 4, one per core), training crops of `min_scale` (0.08) to all of an
    image's area resized to size x size and flips, evaluation images resized to
    size / `crop_fraction` (0.875) on the short side and centre-cropped; `crop_padding` is
    for in-memory folders only.
    `download` is accepted for the common signature and ignored: the folder is local."""
    folder = resolve_folder(path)
    options = DecodeOptions(
        size=positive_int_or_none("size", size),
        grayscale=require_bool("grayscale", grayscale),
        train_per_class=positive_int_or_none("train_per_class", train_per_class),
        test_per_class=positive_int_or_none("test_per_class", test_per_class),
        test_fraction=check_test_fraction(test_fraction),
        split_seed=require_int("split_seed", split_seed),
    )
    if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
        raise ValueError(f"data.options.crop_padding must be an integer >= 0, got {crop_padding!r}")
    splits, class_names = list_images(folder)
    if "all" not in splits and options.test_fraction is not None:
        raise ValueError(
            f"data.options.test_fraction={options.test_fraction} applies only to a folder without train/ and "
            f"test/, but {folder} has its own test split: remove test_fraction"
        )
    train_files, test_files = choose_files(splits, options)
    if choose_streaming(stream, memory_budget_mb, train_files + test_files, options):
        transform = StreamTransform(
            size=require_stream_size(options.size), grayscale=options.grayscale,
            min_scale=fraction_in_unit_interval("min_scale", min_scale), flip=require_bool("flip", flip),
            crop_fraction=fraction_in_unit_interval("crop_fraction", crop_fraction),
        )
        processes = default_workers() if workers is None else non_negative_int("workers", workers)
        return RawData(
            train=file_split(train_files, transform, processes), test=file_split(test_files, transform, processes),
            num_classes=len(class_names), class_names=class_names,
        )
    train, test = load_or_decode(Path(root), folder, splits, class_names, options, train_files, test_files)
    return RawData(
        train=train,
        test=test,
        num_classes=len(class_names),
        augment=Augment(crop_padding=crop_padding, flip=require_bool("flip", flip)),
        class_names=class_names,
    )


def choose_streaming(stream: Any, budget_mb: Any, files: list[ImageFile], options: DecodeOptions) -> bool:
    """`stream: true/false` as given; `auto`: whether the decoded images would exceed the budget."""
    if stream not in (True, False, "auto"):
        raise ValueError(f"data.options.stream must be auto, true or false, got {stream!r}")
    if isinstance(budget_mb, bool) or not isinstance(budget_mb, (int, float)) or not budget_mb > 0:
        raise ValueError(f"data.options.memory_budget_mb must be a positive number of megabytes, got {budget_mb!r}")
    if stream != "auto":
        return stream
    return decoded_bytes(files, options) > budget_mb * 2**20


def decoded_bytes(files: list[ImageFile], options: DecodeOptions) -> int:
    """The uint8 pixels of the chosen images, sized by `size` or by the first image's header."""
    if options.size is not None:
        width = height = options.size
    else:
        with Image.open(files[0].path) as image:  # reads the header only
            width, height = image.size
    return len(files) * (1 if options.grayscale else 3) * width * height


def require_stream_size(size: int | None) -> int:
    if size is None:
        raise ValueError(
            "data.options.size is required to stream an image folder (every batch is cropped to size x size); "
            "a folder over data.options.memory_budget_mb streams unless data.options.stream is false"
        )
    return size


def fraction_in_unit_interval(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"data.options.{key} must be a number in (0, 1], got {value!r}")
    return float(value)


def non_negative_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"data.options.{key} must be an integer >= 0, got {value!r}")
    return value


def default_workers() -> int:
    return min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def file_split(files: list[ImageFile], transform: StreamTransform, workers: int) -> FileSplit:
    return FileSplit([image.path for image in files], torch.tensor([image.label for image in files], dtype=torch.int64),
                     transform, workers)


def resolve_folder(path: str | os.PathLike | None) -> Path:
    layout = "<path>/<class>/<image>, or <path>/train/<class>/<image> and <path>/test/<class>/<image>"
    if path is None or str(path) == "":
        raise ValueError(f"data.options.path is required for imagefolder: a folder laid out as {layout}")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"data.options.path={str(path)!r} is not a folder; expected {layout}")
    return folder.resolve()


def positive_int_or_none(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"data.options.{key} must be a positive integer or null, got {value!r}")
    return value


def require_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"data.options.{key} must be an integer, got {value!r}")
    return value


def require_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"data.options.{key} must be true or false, got {value!r}")
    return value


def check_test_fraction(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"data.options.test_fraction must be a number in (0, 1), got {value!r}")
    return float(value)


def list_images(folder: Path) -> tuple[dict[str, list[ImageFile]], list[str]]:
    """Every image per split ("train" and "test", or "all"), in class then file-name order."""
    split_dirs = split_folders(folder)
    first_dir = next(iter(split_dirs.values()))
    class_names = class_folders(first_dir)
    if not class_names:
        raise ValueError(f"data.options.path={folder}: {first_dir} has no class folders (expected <class>/<image>)")
    for split_dir in split_dirs.values():
        if class_folders(split_dir) != class_names:
            raise ValueError(
                f"data.options.path={folder}: {split_dir} has classes {class_folders(split_dir)} but "
                f"{first_dir} has {class_names}; every split needs the same class folders"
            )
    splits = {
        name: [image for label, cls in enumerate(class_names) for image in class_images(folder, split_dir / cls, label)]
        for name, split_dir in split_dirs.items()
    }
    return splits, class_names


def split_folders(folder: Path) -> dict[str, Path]:
    has_train, has_test = (folder / "train").is_dir(), (folder / "test").is_dir()
    if has_train and has_test:
        return {"train": folder / "train", "test": folder / "test"}
    if has_train or has_test:
        present, absent = ("train", "test") if has_train else ("test", "train")
        raise ValueError(
            f"data.options.path={folder} has a {present}/ folder but no {absent}/ folder: "
            "give both, or put the class folders directly in it"
        )
    return {"all": folder}


def class_folders(split_dir: Path) -> list[str]:
    with os.scandir(split_dir) as entries:
        return sorted(entry.name for entry in entries if entry.is_dir() and not entry.name.startswith("."))


def class_images(folder: Path, class_dir: Path, label: int) -> list[ImageFile]:
    """Image files anywhere below `class_dir` (hidden ones skipped), sorted by relative path."""
    prefix_length = len(str(folder)) + 1
    found = []
    pending = [str(class_dir)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    pending.append(entry.path)
                elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                    stat = entry.stat()
                    relative = entry.path[prefix_length:].replace(os.sep, "/")
                    found.append(ImageFile(entry.path, relative, label, stat.st_size, stat.st_mtime_ns))
    if not found:
        raise ValueError(f"class folder {class_dir} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")
    return sorted(found, key=lambda image: image.relative)


def choose_files(splits: dict[str, list[ImageFile]], options: DecodeOptions) -> tuple[list[ImageFile], list[ImageFile]]:
    """The folder's own split, or a seeded stratified hold-out; then the per-class subsets."""
    if "all" in splits:
        files = splits["all"]
        fraction = DEFAULT_TEST_FRACTION if options.test_fraction is None else options.test_fraction
        labels = torch.tensor([image.label for image in files], dtype=torch.int64)
        train_idx, test_idx = stratified_holdout(labels, fraction, options.split_seed)
        train_files, test_files = [files[i] for i in train_idx.tolist()], [files[i] for i in test_idx.tolist()]
    else:
        train_files, test_files = splits["train"], splits["test"]
    train_files = first_per_class(train_files, options.train_per_class)
    test_files = first_per_class(test_files, options.test_per_class)
    if not train_files or not test_files:
        raise ValueError(
            f"the image folder gives {len(train_files)} training and {len(test_files)} test images; "
            "both must be non-empty (add images or change data.options.test_fraction)"
        )
    return train_files, test_files


def first_per_class(files: list[ImageFile], count: int | None) -> list[ImageFile]:
    if count is None:
        return files
    taken: dict[int, int] = {}
    kept = []
    for image in files:
        if taken.get(image.label, 0) < count:
            kept.append(image)
            taken[image.label] = taken.get(image.label, 0) + 1
    return kept


def decode_image(path: str | Path, grayscale: bool, size: int | None) -> np.ndarray:
    """Pixels of one image as uint8 (H, W, C); resized to size x size when `size` is given."""
    try:
        with Image.open(path) as image:
            image = image.convert("L" if grayscale else "RGB")
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            pixels = np.asarray(image)
    except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"cannot decode image {path}: {err}") from None
    return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)


def decode_all(files: list[ImageFile], options: DecodeOptions) -> torch.Tensor:
    """All images as one uint8 (N, C, H, W) tensor; they must agree in size unless resized."""
    first = decode_image(files[0].path, options.grayscale, options.size)
    pixels = np.empty((len(files), *first.shape), dtype=np.uint8)
    for index, image in enumerate(files):
        decoded = first if index == 0 else decode_image(image.path, options.grayscale, options.size)
        if decoded.shape != first.shape:
            raise ValueError(
                f"images differ in size: {files[0].path} is {first.shape[1]}x{first.shape[0]} but {image.path} "
                f"is {decoded.shape[1]}x{decoded.shape[0]}; set data.options.size to resize all to size x size"
            )
        pixels[index] = decoded
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def load_or_decode(
    root: Path, folder: Path, splits: dict[str, list[ImageFile]], class_names: list[str], options: DecodeOptions,
    train_files: list[ImageFile], test_files: list[ImageFile],
) -> tuple[Split, Split]:
    """The chosen files' images, from the cache (keyed by the whole listing) or decoded."""
    cache_path = root / "imagefolder-cache" / f"{cache_key(folder, splits, options)}.pt"
    cached = read_cache(cache_path, class_names)
    if cached is not None:
        return cached
    chosen = train_files + test_files
    images = decode_all(chosen, options)
    labels = torch.tensor([image.label for image in chosen], dtype=torch.int64)
    count = len(train_files)
    # clone: each split owns its storage, so the cache holds no tensor twice
    train = Split(images[:count].clone(), labels[:count].clone())
    test = Split(images[count:].clone(), labels[count:].clone())
    write_cache(cache_path, train, test, class_names)
    return train, test


def cache_key(folder: Path, splits: dict[str, list[ImageFile]], options: DecodeOptions) -> str:
    """Changes with the folder, the decoding options, and any file added, removed or modified."""
    header = json.dumps({"format": CACHE_FORMAT, "folder": str(folder), "options": asdict(options)}, sort_keys=True)
    listing = "\n".join(
        f"{name}\t{image.relative}\t{image.label}\t{image.size_bytes}\t{image.mtime_ns}"
        for name, files in splits.items()
        for image in files
    )
    return hashlib.sha256(f"{header}\n{listing}".encode()).hexdigest()[:32]


def read_cache(cache_path: Path, class_names: list[str]) -> tuple[Split, Split] | None:
    if not cache_path.is_file():
        return None
    try:
        state = torch.load(cache_path, map_location="cpu", weights_only=True)
        if state.get("format") != CACHE_FORMAT or state.get("class_names") != class_names:
            raise ValueError("it was written for other data")
        return Split(state["train_inputs"], state["train_labels"]), Split(state["test_inputs"], state["test_labels"])
    except Exception as err:  # truncated, foreign or from an older format: decode afresh and overwrite it
        warnings.warn(f"ignoring the image cache {cache_path} ({type(err).__name__}: {err}); decoding again")
        return None


def write_cache(cache_path: Path, train: Split, test: Split, class_names: list[str]) -> None:
    state = {
        "format": CACHE_FORMAT,
        "class_names": class_names,
        "train_inputs": train.inputs,
        "train_labels": train.labels,
        "test_inputs": test.inputs,
        "test_labels": test.labels,
    }
    try:
        atomic_write(cache_path, lambda handle: torch.save(state, handle))
    except OSError as err:  # a read-only data folder costs a re-decode next time, nothing more
        warnings.warn(f"could not write the image cache {cache_path} ({err}); the next load decodes again")
