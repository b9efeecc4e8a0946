"""Small image fixtures made on the fly: a CIFAR-10 archive in the official on-disk layout,
a local HTTP server to download it from, and a class-per-folder image tree."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import pickle
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class CifarArchive:
    archive: Path
    archive_md5: str
    file_md5: dict[str, str]  # extracted file name -> md5, as torchvision lists them
    train_images: np.ndarray  # uint8 (N, 3, 32, 32)
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_batch(path: Path, images: np.ndarray, labels: np.ndarray, name: str) -> None:
    # the official batches: rows of 3072 bytes, all red then all green then all blue values
    entry = {
        "batch_label": name,
        "data": images.reshape(len(images), -1),
        "labels": [int(label) for label in labels],
        "filenames": [f"{name}_{index}.png" for index in range(len(images))],
    }
    path.write_bytes(pickle.dumps(entry, protocol=2))


def make_cifar_archive(folder: Path, per_batch: int = 4, seed: int = 0) -> CifarArchive:
    """Five training batches and a test batch of `per_batch` random images each, tarred."""
    rng = np.random.default_rng(seed)
    staging = folder / "staging" / CIFAR_FOLDER
    staging.mkdir(parents=True)
    images = rng.integers(0, 256, size=(6 * per_batch, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(6 * per_batch) % 10
    for batch in range(6):
        name = f"data_batch_{batch + 1}" if batch < 5 else "test_batch"
        part = slice(batch * per_batch, (batch + 1) * per_batch)
        write_batch(staging / name, images[part], labels[part], name)
    meta = {"label_names": CIFAR_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (staging / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    archive = folder / CIFAR_ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging, arcname=CIFAR_FOLDER)
    n_train = 5 * per_batch
    return CifarArchive(
        archive=archive,
        archive_md5=md5_of(archive),
        file_md5={path.name: md5_of(path) for path in staging.iterdir()},
        train_images=images[:n_train],
        train_labels=labels[:n_train],
        test_images=images[n_train:],
        test_labels=labels[n_train:],
    )


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve `folder` over HTTP on a free local port; yields the base URL."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def random_pixels(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def smooth_pixels(height: int, width: int) -> np.ndarray:
    """A gentle gradient: JPEG keeps it to within a few grey levels."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows * 16, cols * 16, (rows + cols) * 8], axis=-1).clip(0, 255).astype(np.uint8)


def make_image_tree(folder: Path, size: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """train/ and test/ with classes bee, ant, cat (made in unsorted order); file names are
    chosen so that sorted order differs from creation order. Returns relative path -> pixels
    (H, W, 3) for every lossless image; the JPEG's source pixels are under its path too."""
    rng = np.random.default_rng(seed)
    written: dict[str, np.ndarray] = {}
    layout = {
        "train": {"bee": ["b.png", "a.png", "c.bmp"], "ant": ["z.png", "m.png"], "cat": ["k.png", "e.jpg", "f.png"]},
        "test": {"bee": ["q.png"], "ant": ["r.png", "p.png"], "cat": ["s.png"]},
    }
    for split, classes in layout.items():
        for class_name, names in classes.items():
            class_dir = folder / split / class_name
            class_dir.mkdir(parents=True)
            for name in names:
                if name.endswith(".jpg"):
                    pixels = smooth_pixels(size, size)
                    Image.fromarray(pixels).save(class_dir / name, quality=95)
                else:
                    pixels = random_pixels(rng, size, size)
                    Image.fromarray(pixels).save(class_dir / name)
                written[f"{split}/{class_name}/{name}"] = pixels
            (class_dir / "notes.txt").write_text("not an image")
            (class_dir / ".hidden.png").write_bytes(b"not an image either")
    return written
