"""Data sets, splits and batched augmentation: behaviour that training silently depends on."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10

import lit.data.imagefolder as imagefolder_module
from _fixtures_images import CIFAR_ARCHIVE, CIFAR_CLASSES, make_cifar_archive, make_image_tree, serve_folder
from lit.data import Augment, Batches, BatchStream, DataSplits, Split, build_data
from lit.data.base import channel_stats, stratified_holdout
from lit.data.loader import random_crop, random_flip

# ---------------------------------------------------------------- stratified hold-out


def imbalanced_labels() -> torch.Tensor:
    counts = [20, 40, 60, 80]
    labels = torch.cat([torch.full((count,), cls) for cls, count in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(5))]


def test_stratified_holdout_is_a_disjoint_cover_with_the_fraction_of_every_class():
    labels = imbalanced_labels()
    train_idx, val_idx = stratified_holdout(labels, 0.25, seed=0)
    assert set(train_idx.tolist()).isdisjoint(val_idx.tolist())
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(len(labels)))
    assert torch.bincount(labels[val_idx]).tolist() == [5, 10, 15, 20]
    assert torch.bincount(labels[train_idx]).tolist() == [15, 30, 45, 60]


def test_stratified_holdout_depends_on_the_seed_only():
    labels = imbalanced_labels()
    first, again, other = (stratified_holdout(labels, 0.25, seed) for seed in (3, 3, 4))
    assert torch.equal(first[1], again[1]) and torch.equal(first[0], again[0])
    assert not torch.equal(first[1], other[1])


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_stratified_holdout_rejects_a_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match="fraction"):
        stratified_holdout(imbalanced_labels(), fraction, seed=0)


# ---------------------------------------------------------------- build_data on digits


def test_digits_splits_shapes_and_sizes():
    data = build_data("digits", val_fraction=0.1, seed=0)
    assert data.num_classes == 10 and data.kind == "image"
    for split in (data.train, data.val, data.test):
        assert split.inputs.dtype == torch.uint8 and split.inputs.shape[1:] == (1, 8, 8)
        assert split.labels.dtype == torch.int64
        assert set(split.labels.unique().tolist()) == set(range(10))
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    per_class_train_val = torch.bincount(torch.cat([data.train.labels, data.val.labels]))
    expected_val = sum(int(round(0.1 * count)) for count in per_class_train_val.tolist())
    assert len(data.val) == expected_val


def test_digits_val_split_follows_the_seed_and_the_test_split_does_not():
    seed0, seed0_again, seed1 = (build_data("digits", seed=seed) for seed in (0, 0, 1))
    assert torch.equal(seed0.val.inputs, seed0_again.val.inputs)
    assert not torch.equal(seed0.val.inputs, seed1.val.inputs)
    assert torch.equal(seed0.test.inputs, seed1.test.inputs)


def test_normalisation_stats_come_from_the_training_split():
    data = build_data("digits", val_fraction=0.1, seed=0)
    assert data.mean == channel_stats(data.train.inputs)[0]
    assert data.std == channel_stats(data.train.inputs)[1]
    assert data.mean != channel_stats(data.test.inputs)[0]
    batches = Batches(data.train, data, batch_size=len(data.train), train=False)
    ((normalised, _),) = list(batches)
    assert abs(normalised.mean().item()) < 1e-4
    assert abs(normalised.std().item() - 1.0) < 1e-3


# ---------------------------------------------------------------- Batches and augmentation


def synthetic_data(count: int = 30, augment: Augment = Augment(crop_padding=2, flip=True)) -> DataSplits:
    """Images with distinct pixels and labels that are each image's index."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (count, 3, 6, 6), dtype=torch.uint8, generator=generator)
    split = Split(images, torch.arange(count))
    return DataSplits(split, split, split, count, "image", augment, (0.25, 0.5, 0.75), (0.1, 0.2, 0.3))


def test_eval_batches_are_in_order_unaugmented_and_cover_the_split_once():
    data = synthetic_data()
    batches = Batches(data.train, data, batch_size=7, train=False)
    seen = list(batches)
    assert len(batches) == len(seen) == 5 and [len(labels) for _, labels in seen] == [7, 7, 7, 7, 2]
    assert torch.equal(torch.cat([labels for _, labels in seen]), torch.arange(30))
    images = torch.cat([inputs for inputs, _ in seen])
    mean = torch.tensor(data.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(data.std).view(1, 3, 1, 1) * 255
    assert torch.allclose(images, (data.train.inputs.float() - mean) / std, atol=1e-5)


def test_indexed_batches_and_the_stream_give_each_examples_row_in_the_split():
    data = synthetic_data()  # labels 0..29: a row's label is its row
    batches = Batches(data.train, data, batch_size=7, train=False)
    for (rows, inputs, labels), (plain_inputs, plain_labels) in zip(batches.indexed(), batches):
        assert torch.equal(labels, rows) and torch.equal(inputs, plain_inputs) and torch.equal(labels, plain_labels)
    shuffled = Batches(data.train, data, batch_size=7, train=True, generator=torch.Generator().manual_seed(3))
    rows = [r for r, _, labels in shuffled.indexed() if torch.equal(r, labels)]
    assert len(rows) == 4 and len(set(torch.cat(rows).tolist())) == 28
    stream = BatchStream(Batches(data.train, data, batch_size=8, train=True, generator=torch.Generator().manual_seed(4)))
    seen = []
    for _ in range(3):  # one pass of 30 rows holds 3 full batches
        rows, _, labels = stream.next()
        assert torch.equal(rows, labels)
        seen += rows.tolist()
    assert len(set(seen)) == 24


def test_training_batches_shuffle_and_drop_the_last_partial_batch():
    data = synthetic_data()
    batches = Batches(data.train, data, batch_size=7, train=True, generator=torch.Generator().manual_seed(1))
    labels = [batch_labels for _, batch_labels in batches]
    assert len(batches) == len(labels) == 4 and all(len(batch) == 7 for batch in labels)
    flat = torch.cat(labels).tolist()
    assert len(set(flat)) == 28 and flat != sorted(flat)


def test_same_generator_seed_gives_the_same_training_batches():
    data = synthetic_data()

    def epoch(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(Batches(data.train, data, batch_size=8, train=True, generator=torch.Generator().manual_seed(seed)))

    first, again, other = epoch(7), epoch(7), epoch(8)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, other))


def shifted(image: torch.Tensor, down: int, right: int) -> torch.Tensor:
    """`image` moved down/right by the given pixels (negative: up/left), zeros entering."""
    _, height, width = image.shape
    out = torch.zeros_like(image)
    out[:, max(down, 0) : height + min(down, 0), max(right, 0) : width + min(right, 0)] = image[
        :, max(-down, 0) : height + min(-down, 0), max(-right, 0) : width + min(-right, 0)
    ]
    return out


def matching_shifts(output: torch.Tensor, source: torch.Tensor, padding: int) -> list[tuple[int, int]]:
    span = range(-padding, padding + 1)
    return [(down, right) for down in span for right in span if torch.equal(output, shifted(source, down, right))]


def test_random_crop_is_a_zero_filled_translation_within_the_padding():
    images = torch.randint(1, 256, (200, 3, 5, 5), generator=torch.Generator().manual_seed(0)).float()
    cropped = random_crop(images, padding=2, generator=torch.Generator().manual_seed(3))
    assert cropped.shape == images.shape
    shifts = [matching_shifts(out, source, 2) for out, source in zip(cropped, images)]
    assert all(len(found) == 1 for found in shifts)  # distinct non-zero pixels: exactly one shift fits
    used = {found[0] for found in shifts}
    assert len(used) == 25  # all (2 * 2 + 1)^2 offsets occur among 200 images
    assert shifted(images[0], 1, -2)[:, 0].eq(0).all()  # the helper itself: zeros enter at the top


def test_random_flip_mirrors_about_half_and_nothing_else():
    images = torch.randint(0, 256, (400, 2, 3, 4), generator=torch.Generator().manual_seed(0)).float()
    flipped = random_flip(images, generator=torch.Generator().manual_seed(1))
    mirrored = [torch.equal(out, source.flip(-1)) for out, source in zip(flipped, images)]
    unchanged = [torch.equal(out, source) for out, source in zip(flipped, images)]
    assert all(m != u for m, u in zip(mirrored, unchanged))  # each is exactly one of the two
    assert 160 <= sum(mirrored) <= 240


def test_training_batches_are_augmented_copies_of_their_images():
    data = synthetic_data(augment=Augment(crop_padding=1, flip=True))
    batches = Batches(data.train, data, batch_size=10, train=True, generator=torch.Generator().manual_seed(2))
    mean = torch.tensor(data.mean).view(3, 1, 1) * 255
    std = torch.tensor(data.std).view(3, 1, 1) * 255
    for inputs, labels in batches:
        for normalised, label in zip(inputs, labels):
            pixels = (normalised * std + mean).round()
            # padding is zero in pixel space, before normalisation
            source = data.train.inputs[label].float()
            assert matching_shifts(pixels, source, 1) or matching_shifts(pixels.flip(-1), source, 1)


# ---------------------------------------------------------------- cifar10 through torchvision


@pytest.fixture
def cifar_source(tmp_path, monkeypatch):
    """A tiny archive in the official layout, served locally, with torchvision pointed at it."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "*")  # the local server must not be reached through a proxy
    fixture = make_cifar_archive(tmp_path / "served")
    with serve_folder(fixture.archive.parent) as base_url:
        monkeypatch.setattr(CIFAR10, "url", f"{base_url}/{CIFAR_ARCHIVE}")
        monkeypatch.setattr(CIFAR10, "tgz_md5", fixture.archive_md5)
        monkeypatch.setattr(
            CIFAR10, "train_list", [[f"data_batch_{i}", fixture.file_md5[f"data_batch_{i}"]] for i in range(1, 6)]
        )
        monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", fixture.file_md5["test_batch"]]])
        monkeypatch.setattr(
            CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": fixture.file_md5["batches.meta"]}
        )
        yield fixture


def test_cifar10_download_returns_the_archive_images_exactly(cifar_source, tmp_path):
    root = tmp_path / "data"
    data = build_data("cifar10", root=root, download=True, val_fraction=0.0)
    assert torch.equal(data.train.inputs, torch.from_numpy(cifar_source.train_images))
    assert torch.equal(data.train.labels, torch.from_numpy(cifar_source.train_labels).long())
    assert torch.equal(data.test.inputs, torch.from_numpy(cifar_source.test_images))
    assert torch.equal(data.test.labels, torch.from_numpy(cifar_source.test_labels).long())
    assert data.train.inputs.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert data.class_names == CIFAR_CLASSES and data.augment == Augment(crop_padding=4, flip=True)
    assert sorted(path.name for path in root.iterdir()) == ["cifar-10-batches-py"]  # no archive, no staging


def test_cifar10_loads_offline_once_downloaded_and_subsets_per_class(cifar_source, tmp_path, monkeypatch):
    root = tmp_path / "data"
    build_data("cifar10", root=root, download=True)
    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/unreachable")  # proves no network is used
    subset = build_data("cifar10", root=root, download=False, val_fraction=0.0, subset_per_class=1)
    # labels are index % 10 over 20 training images: the first of each class is index 0..9
    assert torch.equal(subset.train.inputs, torch.from_numpy(cifar_source.train_images[:10]))
    assert len(subset.test) == len(cifar_source.test_labels)


def test_cifar10_uses_an_archive_placed_in_root_without_the_network(cifar_source, tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    (root / CIFAR_ARCHIVE).write_bytes(cifar_source.archive.read_bytes())
    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/unreachable")
    data = build_data("cifar10", root=root, download=True, val_fraction=0.0)
    assert torch.equal(data.test.inputs, torch.from_numpy(cifar_source.test_images))


def test_cifar10_corrupt_archive_fails_clearly_and_leaves_root_empty(cifar_source, tmp_path):
    root = tmp_path / "data"
    archive = cifar_source.archive
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])  # a truncated transfer
    with pytest.raises(RuntimeError, match="could not download CIFAR-10.*nothing was kept"):
        build_data("cifar10", root=root, download=True)
    assert list(root.iterdir()) == []


def test_cifar10_extracted_file_failing_its_md5_leaves_no_partial_extraction(cifar_source, tmp_path, monkeypatch):
    root = tmp_path / "data"
    wrong = [list(entry) for entry in CIFAR10.train_list]
    wrong[2][1] = "0" * 32  # the archive is fine, one extracted batch does not match
    monkeypatch.setattr(CIFAR10, "train_list", wrong)
    with pytest.raises(RuntimeError, match="could not download CIFAR-10"):
        build_data("cifar10", root=root, download=True)
    assert list(root.iterdir()) == []


def test_cifar10_download_replaces_an_incomplete_folder(cifar_source, tmp_path):
    root = tmp_path / "data"
    (root / "cifar-10-batches-py").mkdir(parents=True)
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"half a file")
    data = build_data("cifar10", root=root, download=True, val_fraction=0.0)
    assert torch.equal(data.train.inputs, torch.from_numpy(cifar_source.train_images))
    assert sorted(path.name for path in root.iterdir()) == ["cifar-10-batches-py"]


def test_cifar10_missing_without_download_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        build_data("cifar10", root=tmp_path / "nowhere", download=False)
    message = str(caught.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "data.download=true" in message and "lit prepare-data" in message
    assert not (tmp_path / "nowhere").exists()


def test_cifar10_corrupt_file_without_download_says_so(cifar_source, tmp_path):
    root = tmp_path / "data"
    build_data("cifar10", root=root, download=True)
    batch = root / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:-1] + b"\0")
    with pytest.raises(RuntimeError, match="corrupt.*data.download=true"):
        build_data("cifar10", root=root, download=False)


def test_cifar10_rejects_a_bad_subset(tmp_path):
    with pytest.raises(ValueError, match="subset_per_class"):
        build_data("cifar10", root=tmp_path, subset_per_class=0)


# ---------------------------------------------------------------- imagefolder


@pytest.fixture
def image_tree(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path / "images"
    return folder, make_image_tree(folder)


def as_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1)


def test_imagefolder_labels_follow_sorted_classes_and_pixels_match(image_tree, tmp_path):
    folder, pixels = image_tree
    data = build_data("imagefolder", root=tmp_path / "root", val_fraction=0.0, path=str(folder))
    assert data.class_names == ["ant", "bee", "cat"] and data.num_classes == 3
    assert data.train.labels.tolist() == [0, 0, 1, 1, 1, 2, 2, 2]
    assert data.test.labels.tolist() == [0, 0, 1, 2]
    assert data.train.inputs.dtype == torch.uint8 and data.input_shape == (3, 6, 6)
    lossless_train = ["ant/m.png", "ant/z.png", "bee/a.png", "bee/b.png", "bee/c.bmp", None, "cat/f.png", "cat/k.png"]
    for image, name in zip(data.train.inputs, lossless_train):
        if name is not None:
            assert torch.equal(image, as_tensor(pixels[f"train/{name}"]))
    jpeg = data.train.inputs[5].int()  # cat/e.jpg, sorted before f.png and k.png
    assert (jpeg - as_tensor(pixels["train/cat/e.jpg"]).int()).abs().float().mean() < 3
    for image, name in zip(data.test.inputs, ["ant/p.png", "ant/r.png", "bee/q.png", "cat/s.png"]):
        assert torch.equal(image, as_tensor(pixels[f"test/{name}"]))
    assert data.augment == Augment(crop_padding=4, flip=True)


def test_imagefolder_takes_the_first_files_of_every_class(image_tree, tmp_path):
    folder, pixels = image_tree
    data = build_data(
        "imagefolder", root=tmp_path / "root", val_fraction=0.0, path=str(folder), train_per_class=2, test_per_class=1
    )
    assert data.train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(data.train.inputs[2], as_tensor(pixels["train/bee/a.png"]))
    assert torch.equal(data.train.inputs[3], as_tensor(pixels["train/bee/b.png"]))
    assert data.test.labels.tolist() == [0, 1, 2]
    assert torch.equal(data.test.inputs[0], as_tensor(pixels["test/ant/p.png"]))


def test_imagefolder_cache_is_written_and_reused_until_a_file_changes(image_tree, tmp_path, monkeypatch):
    folder, _ = image_tree
    root = tmp_path / "root"
    first = build_data("imagefolder", root=root, path=str(folder), crop_padding=0)
    assert len(list((root / "imagefolder-cache").glob("*.pt"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(imagefolder_module, "decode_image", no_decoding)
    again = build_data("imagefolder", root=root, path=str(folder), crop_padding=0)
    assert torch.equal(first.train.inputs, again.train.inputs) and torch.equal(first.test.labels, again.test.labels)
    changed = folder / "test" / "cat" / "s.png"
    Image.fromarray(np.zeros((6, 6, 3), dtype=np.uint8)).save(changed)
    os.utime(changed, ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded"):
        build_data("imagefolder", root=root, path=str(folder))


def test_imagefolder_size_and_grayscale(image_tree, tmp_path):
    folder, pixels = image_tree
    data = build_data("imagefolder", root=tmp_path / "root", path=str(folder), size=4, grayscale=True, val_fraction=0.0)
    assert data.input_shape == (1, 4, 4)
    expected = Image.fromarray(pixels["train/ant/m.png"]).convert("L").resize((4, 4), Image.Resampling.BILINEAR)
    assert torch.equal(data.train.inputs[0, 0], torch.from_numpy(np.array(expected)))


def test_imagefolder_images_of_different_sizes_ask_for_size(image_tree, tmp_path):
    folder, _ = image_tree
    Image.fromarray(np.zeros((8, 5, 3), dtype=np.uint8)).save(folder / "train" / "bee" / "odd.png")
    with pytest.raises(ValueError, match="odd.png is 5x8.*data.options.size"):
        build_data("imagefolder", root=tmp_path / "root", path=str(folder))
    resized = build_data("imagefolder", root=tmp_path / "root", path=str(folder), size=6)
    assert resized.input_shape == (3, 6, 6)


def test_imagefolder_without_a_split_holds_out_a_fixed_stratified_test_set(tmp_path):
    folder = tmp_path / "flat"
    rng = np.random.default_rng(0)
    for class_name, count in (("dog", 10), ("cat", 20)):
        (folder / class_name).mkdir(parents=True)
        for index in range(count):
            Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(
                folder / class_name / f"{index:02d}.png"
            )
    options = dict(root=tmp_path / "root", val_fraction=0.0, path=str(folder), test_fraction=0.3)
    data, again = build_data("imagefolder", **options), build_data("imagefolder", **options, seed=5)
    assert torch.bincount(data.test.labels).tolist() == [6, 3]  # cat then dog: sorted class names
    assert torch.equal(data.test.inputs, again.test.inputs)  # the run seed does not move the test set
    other = build_data("imagefolder", **options, split_seed=1)
    assert not torch.equal(data.test.inputs, other.test.inputs)


def test_imagefolder_test_fraction_is_refused_when_the_folder_has_a_test_split(image_tree, tmp_path):
    folder, _ = image_tree
    with pytest.raises(ValueError, match="test_fraction"):
        build_data("imagefolder", root=tmp_path / "root", path=str(folder), test_fraction=0.2)


def test_imagefolder_path_missing_or_wrong_is_named(tmp_path):
    with pytest.raises(ValueError, match="data.options.path is required"):
        build_data("imagefolder", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="data.options.path=.*not a folder"):
        build_data("imagefolder", root=tmp_path, path=str(tmp_path / "absent"))
    (tmp_path / "only-train" / "train" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no test/ folder"):
        build_data("imagefolder", root=tmp_path, path=str(tmp_path / "only-train"))


@pytest.mark.parametrize(
    "key, value", [("size", 0), ("train_per_class", -1), ("test_per_class", 1.5), ("crop_padding", -1)]
)
def test_imagefolder_bad_option_is_named(image_tree, tmp_path, key, value):
    folder, _ = image_tree
    with pytest.raises(ValueError, match=f"data.options.{key}"):
        build_data("imagefolder", root=tmp_path / "root", path=str(folder), **{key: value})
