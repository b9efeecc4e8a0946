"""CIFAR-100 (`cifar100`) through torchvision's CIFAR100 and our staged download, against a
tiny archive in the official `cifar-100-python` layout served on 127.0.0.1: what is
downloaded is loaded exactly; a corrupt download leaves the data folder as it was; missing
files are named with the way to get them; `subset_per_class` keeps the first k per class."""

from __future__ import annotations

import ast
import hashlib
import io
import pickle
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR100

from _fixtures_text import listing, serve_folder
from lit.data import Augment, build_data
from lit.data.cifar100 import cifar100

FOLDER = "cifar-100-python"
ARCHIVE = "cifar-100-python.tar.gz"
FINE = [f"fine{index:02d}" for index in range(100)]  # the real names: apple, aquarium_fish, ...
COARSE = [f"coarse{index:02d}" for index in range(20)]
N_TRAIN, N_TEST = 200, 100  # two training images of every fine class, one test image


class Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` (SHORT_BINSTRING / BINSTRING), as the official files were
    written: read with encoding="bytes" the keys are b"data", b"fine_labels", ...; with
    encoding="latin1" (torchvision) they are "data", "fine_labels", ..."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj: object) -> bytes:
    out = io.BytesIO()
    Python2Pickler(out, protocol=2).dump(obj)
    return out.getvalue()


def md5(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


@dataclass
class Cifar100Archive:
    content: bytes
    file_md5: dict[str, str]  # train, test, meta -> md5, as torchvision lists them
    train_images: np.ndarray  # uint8 (N, 3, 32, 32)
    train_fine: np.ndarray
    test_images: np.ndarray
    test_fine: np.ndarray


def split_file(images: np.ndarray, fine: np.ndarray, name: bytes) -> bytes:
    """One split as the official pickle: rows of 3072 bytes (all red, then green, then blue)."""
    return py2_pickle({
        b"filenames": [b"%s_%d.png" % (name, index) for index in range(len(images))],
        b"batch_label": b"%s batch 1 of 1" % name,
        b"fine_labels": [int(label) for label in fine],
        b"coarse_labels": [int(label) // 5 for label in fine],
        b"data": images.reshape(len(images), 3072),
    })


def make_archive(seed: int = 0) -> Cifar100Archive:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(N_TRAIN + N_TEST, 3, 32, 32), dtype=np.uint8)
    fine = np.concatenate([np.arange(N_TRAIN) % 100, rng.permutation(N_TEST) % 100])
    files = {
        "train": split_file(images[:N_TRAIN], fine[:N_TRAIN], b"training"),
        "test": split_file(images[N_TRAIN:], fine[N_TRAIN:], b"testing"),
        "meta": py2_pickle({
            b"fine_label_names": [name.encode() for name in FINE],
            b"coarse_label_names": [name.encode() for name in COARSE],
        }),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            member = tarfile.TarInfo(f"{FOLDER}/{name}")
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
    return Cifar100Archive(
        buffer.getvalue(), {name: md5(content) for name, content in files.items()},
        images[:N_TRAIN], fine[:N_TRAIN], images[N_TRAIN:], fine[N_TRAIN:],
    )


@pytest.fixture(scope="module")
def archive() -> Cifar100Archive:
    return make_archive()


@pytest.fixture
def served(tmp_path, archive, monkeypatch):
    """The archive served locally, torchvision's CIFAR100 pointed at it (url and every md5):
    yields (folder the server publishes, list of requested paths)."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "*")  # the local server must not be reached through a proxy
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / ARCHIVE).write_bytes(archive.content)
    for url, requests in serve_folder(folder):
        monkeypatch.setattr(CIFAR100, "url", f"{url}/{ARCHIVE}")
        monkeypatch.setattr(CIFAR100, "tgz_md5", md5(archive.content))
        monkeypatch.setattr(CIFAR100, "train_list", [["train", archive.file_md5["train"]]])
        monkeypatch.setattr(CIFAR100, "test_list", [["test", archive.file_md5["test"]]])
        monkeypatch.setattr(CIFAR100, "meta", {**CIFAR100.meta, "md5": archive.file_md5["meta"]})
        yield folder, requests


@pytest.fixture
def data_root(tmp_path) -> Path:
    """A data folder that already holds something: an unrelated set and an old, incomplete
    CIFAR-100 folder."""
    root = tmp_path / "data"
    (root / "other_set").mkdir(parents=True)
    (root / "other_set" / "keep.bin").write_bytes(b"\x00\x01 unrelated")
    (root / FOLDER).mkdir()
    (root / FOLDER / "train").write_bytes(b"half a file")
    return root


def test_the_fixture_is_in_the_official_format(archive):
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        assert sorted(tar.getnames()) == [f"{FOLDER}/meta", f"{FOLDER}/test", f"{FOLDER}/train"]
        train = pickle.load(tar.extractfile(f"{FOLDER}/train"), encoding="bytes")
        meta = pickle.load(tar.extractfile(f"{FOLDER}/meta"), encoding="bytes")
    assert set(train) == {b"filenames", b"batch_label", b"fine_labels", b"coarse_labels", b"data"}
    assert train[b"data"].dtype == np.uint8 and train[b"data"].shape == (N_TRAIN, 3072)
    assert set(meta) == {b"fine_label_names", b"coarse_label_names"} and meta[b"fine_label_names"][3] == b"fine03"


def test_download_gives_the_archive_images_labels_and_fine_class_names(served, data_root, archive):
    _, requests = served
    raw = cifar100(data_root, download=True)
    assert f"/{ARCHIVE}" in requests  # it came over HTTP, through torchvision's download
    assert raw.train.inputs.shape == (N_TRAIN, 3, 32, 32) and raw.test.inputs.shape == (N_TEST, 3, 32, 32)
    assert raw.train.inputs.dtype == torch.uint8 and raw.train.labels.dtype == torch.int64
    assert torch.equal(raw.train.inputs, torch.from_numpy(archive.train_images))
    assert torch.equal(raw.train.labels, torch.from_numpy(archive.train_fine).long())
    assert torch.equal(raw.test.inputs, torch.from_numpy(archive.test_images))
    assert torch.equal(raw.test.labels, torch.from_numpy(archive.test_fine).long())
    assert raw.num_classes == 100 and raw.class_names == FINE and raw.augment == Augment(crop_padding=4, flip=True)
    # the old incomplete folder was replaced; no archive, no staging folder left
    assert sorted(p.name for p in data_root.iterdir()) == [FOLDER, "other_set"]
    assert sorted(p.name for p in (data_root / FOLDER).iterdir()) == ["meta", "test", "train"]
    fetched = len(requests)
    data = build_data("cifar100", root=data_root, download=True, val_fraction=0.5)  # 1 of 2 per class
    assert len(requests) == fetched  # verified and present: nothing fetched again
    assert len(data.train) + len(data.val) == N_TRAIN and len(data.val) == 100 and data.num_classes == 100
    assert data.input_shape == (3, 32, 32) and data.class_names == FINE


@pytest.mark.parametrize("fault", ["corrupt archive", "extracted file md5"])
def test_a_bad_download_is_refused_and_leaves_the_data_folder_as_it_was(served, data_root, archive, monkeypatch, fault):
    folder, requests = served
    if fault == "corrupt archive":  # served bytes that do not match the archive's md5
        corrupted = bytearray(archive.content)
        corrupted[len(corrupted) // 2] ^= 0xFF
        (folder / ARCHIVE).write_bytes(bytes(corrupted))
    else:  # the archive is fine, one extracted file does not match its md5
        monkeypatch.setattr(CIFAR100, "test_list", [["test", "0" * 32]])
    before = listing(data_root)
    with pytest.raises(RuntimeError) as caught:
        cifar100(data_root, download=True)
    message = str(caught.value)
    assert message.startswith(f"could not download CIFAR-100 from {CIFAR100.url} into {data_root}")
    assert f"nothing was kept in {data_root}" in message and f"{ARCHIVE} (md5 {md5(archive.content)})" in message
    assert f"/{ARCHIVE}" in requests
    assert listing(data_root) == before  # no staging folder, no archive, old content untouched


def test_without_download_the_missing_files_and_the_fix_are_named(tmp_path):
    nowhere = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as caught:
        build_data("cifar100", root=nowhere, download=False)
    message = str(caught.value)
    assert message.startswith(f"CIFAR-100 not found: no folder {nowhere / FOLDER};")
    assert "data.download=true" in message and "lit prepare-data" in message and "about 170 MB" in message
    assert not nowhere.exists()
    (nowhere / FOLDER).mkdir(parents=True)
    (nowhere / FOLDER / "train").write_bytes(b"x")
    (nowhere / ARCHIVE).write_bytes(b"placed by hand")
    with pytest.raises(FileNotFoundError) as caught:
        cifar100(nowhere, download=False)
    assert f"{nowhere / FOLDER} lacks test, meta ({nowhere / ARCHIVE} is there: data.download=true verifies" in str(
        caught.value)


def test_subset_per_class_keeps_the_first_of_every_fine_class_offline(served, tmp_path, archive, monkeypatch):
    root = tmp_path / "data"
    cifar100(root, download=True)
    monkeypatch.setattr(CIFAR100, "url", "http://127.0.0.1:9/unreachable")  # proves no network is used
    subset = cifar100(root, download=False, subset_per_class=1)
    # fine labels are index % 100 over 200 training images: the first of each class is index 0..99
    assert torch.equal(subset.train.inputs, torch.from_numpy(archive.train_images[:100]))
    assert torch.equal(subset.train.labels, torch.arange(100))
    assert len(subset.test) == N_TEST
    assert len(cifar100(root, subset_per_class=2).train) == N_TRAIN
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="subset_per_class must be a positive integer"):
            cifar100(root, subset_per_class=bad)


def test_torchvision_is_imported_on_first_use_only():
    """`import lit.data` must not pay for torchvision: no module-level import of it."""
    for module in ("cifar10", "cifar100"):
        tree = ast.parse((Path(__file__).parents[1] / "lit" / "data" / f"{module}.py").read_text())
        top = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        names = [alias.name for node in top for alias in node.names] + [node.module or "" for node in top
                                                                         if isinstance(node, ast.ImportFrom)]
        assert not [name for name in names if name.split(".")[0] == "torchvision"], module
