"""A streamed image folder (`data.options.stream`): the same splits and evaluation pixels as
the in-memory folder, training batches decoded and augmented in worker processes that are
reproducible whatever the number of workers, the automatic choice by memory budget, clear
errors, decoding batch by batch, and a run through the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit.data import Batches, BatchStream, build_data
from lit.data.base import Split
from lit.data.stream import FileSplit


def make_folder(folder: Path, per_class: int = 12, size: int = 16, classes: int = 3, seed: int = 0,
                test_per_class: int | None = None) -> Path:
    """train/ and test/ with `classes` classes of smooth random JPEGs, size x size."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", test_per_class or max(2, per_class // 3))):
        for label in range(classes):
            class_dir = folder / split / f"class{label}"
            class_dir.mkdir(parents=True)
            for index in range(count):
                coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
                image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR)
                image.save(class_dir / f"{index:04d}.jpg", quality=90)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("stream") / "images")


def load(folder: Path, root: Path, **options):
    return build_data("imagefolder", root=root, val_fraction=0.25, seed=3, path=str(folder), **options)


def test_a_streamed_folder_has_the_in_memory_splits_and_evaluation_pixels(folder, tmp_path):
    memory = load(folder, tmp_path, stream=False)
    # crop_fraction 1: evaluation resizes the short side to `size` (these images' own) and
    # crops all of it, so the pixels are the decoded files'
    streamed = load(folder, tmp_path, stream=True, size=16, crop_fraction=1.0, workers=0)
    assert isinstance(streamed.train, FileSplit) and isinstance(memory.train, Split)
    assert streamed.input_shape == memory.input_shape == (3, 16, 16)
    for name in ("train", "val", "test"):
        torch.testing.assert_close(getattr(streamed, name).labels, getattr(memory, name).labels)
    np.testing.assert_allclose(streamed.mean, memory.mean, rtol=1e-9)
    np.testing.assert_allclose(streamed.std, memory.std, rtol=1e-9)
    for split in ("val", "test"):
        ours = list(Batches(getattr(streamed, split), streamed, batch_size=5))
        theirs = list(Batches(getattr(memory, split), memory, batch_size=5))
        assert len(ours) == len(theirs)
        for (x, y), (x_ref, y_ref) in zip(ours, theirs):
            assert torch.equal(y, y_ref)
            torch.testing.assert_close(x, x_ref)
    with pytest.raises(AttributeError, match="streamed split holds no decoded images"):
        streamed.train.inputs


def epoch(data, seed: int, workers: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    split = data.train if workers is None else FileSplit(data.train.paths, data.train.labels, data.train.transform, workers)
    return list(Batches(split, data, batch_size=4, train=True, generator=torch.Generator().manual_seed(seed)).indexed())


def test_training_batches_are_augmented_and_reproducible_whatever_the_workers(folder, tmp_path):
    data = load(folder, tmp_path, stream=True, size=12, workers=2)
    first, again, in_process, other = epoch(data, 1), epoch(data, 1), epoch(data, 1, workers=0), epoch(data, 2)
    assert len(first) == len(data.train) // 4
    for (rows, x, y), (rows2, x2, y2), (rows3, x3, _) in zip(first, again, in_process):
        assert x.shape == (4, 3, 12, 12) and x.dtype == torch.float32
        assert torch.equal(y, data.train.labels[rows])
        assert torch.equal(rows, rows2) and torch.equal(x, x2) and torch.equal(x, x3)
    assert not torch.equal(torch.cat([x for _, x, _ in first]), torch.cat([x for _, x, _ in other]))
    # random crops: a training image differs from its evaluation image (resized, centre-cropped)
    rows, x, _ = first[0]
    evaluation = Batches(data.train.subset(rows), data, batch_size=4).fetch(torch.arange(4))
    assert not torch.allclose(x, evaluation)
    # the next epoch draws new crops for the same rows
    batches = Batches(data.train, data, batch_size=4, train=True, generator=torch.Generator().manual_seed(1))
    one, two = list(batches.indexed()), list(batches.indexed())
    assert not all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(one, two))
    # iteration-based phases read a stream of batches, decoded in this process
    rows, x, y = BatchStream(batches).next()
    assert x.shape == (4, 3, 12, 12) and torch.equal(y, data.train.labels[rows])


def test_auto_streams_a_folder_whose_decoded_images_exceed_the_budget(folder, tmp_path):
    decoded_mb = (36 + 12) * 3 * 16 * 16 / 2**20  # 36 training and 12 test images of 16 x 16
    small = load(folder, tmp_path, size=16, memory_budget_mb=decoded_mb / 2)
    large = load(folder, tmp_path, size=16, memory_budget_mb=decoded_mb * 2)
    assert isinstance(small.train, FileSplit) and isinstance(large.train, Split)
    assert isinstance(load(folder, tmp_path).train, Split)  # the default budget: 4 GiB


@pytest.mark.parametrize("options, message", [
    ({"stream": True}, "data.options.size is required to stream"),
    ({"stream": "yes", "size": 8}, "data.options.stream must be auto, true or false"),
    ({"memory_budget_mb": 0}, "data.options.memory_budget_mb must be a positive number"),
    ({"stream": True, "size": 8, "workers": -1}, "data.options.workers must be an integer >= 0"),
    ({"stream": True, "size": 8, "min_scale": 0}, r"data.options.min_scale must be a number in \(0, 1\]"),
    ({"stream": True, "size": 8, "crop_fraction": 1.5}, r"data.options.crop_fraction must be a number in \(0, 1\]"),
])
def test_bad_streaming_options_are_named(folder, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        load(folder, tmp_path, **options)


def test_an_undecodable_file_is_named(tmp_path):
    images = make_folder(tmp_path / "images", per_class=4)
    data = load(images, tmp_path, stream=True, size=16, workers=2)
    broken = images / "train" / "class1" / "0002.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot decode image .*0002.jpg"):  # in a worker process
        list(Batches(data.train, data, batch_size=len(data.train), train=True))
    with pytest.raises(ValueError, match="cannot decode image .*0002.jpg"):  # the statistics, in this one
        load(images, tmp_path, stream=True, size=16)


def test_a_streamed_epoch_decodes_each_batch_when_it_is_needed(folder, tmp_path, monkeypatch):
    """What bounds a streamed run's memory: the split holds paths, and an epoch decodes the
    images of one batch when that batch is asked for (in this process with 0 workers; with
    workers, a few batches ahead), never the split at once."""
    from lit.data import stream

    data = load(folder, tmp_path, stream=True, size=16, workers=0)
    decoded = []
    original = stream.Images.__getitem__
    monkeypatch.setattr(stream.Images, "__getitem__", lambda self, item: decoded.append(item[0]) or original(self, item))
    batches = Batches(data.train, data, batch_size=4, train=True, generator=torch.Generator().manual_seed(0))
    for step, (rows, _, _) in enumerate(batches.indexed(), start=1):
        assert len(decoded) == 4 * step and decoded[-4:] == rows.tolist()
    assert step == len(data.train) // 4


def test_a_streamed_folder_trains_through_the_engine(folder, tmp_path):
    from lit.engine.runconfig import load_run_config
    from lit.engine.trainer import train

    cfg = load_run_config(None, [
        "data.name=imagefolder", f"data.options={{path: {folder}, stream: true, size: 16, workers: 2}}",
        f"data.root={tmp_path}", "model.family=resnet", "model.depth=8", "method.name=scratch",
        "train.batch_size=8", "train.phases.train={epochs: 2, lr: 0.05}", "train.progress=off",
    ])
    summary = train(cfg, tmp_path / "run")
    assert summary["epochs"] == 2 and (tmp_path / "run" / "checkpoints" / "best.pt").exists()


RESIDENT_PROBE = """
import json, sys
import torch
from lit.data import Batches, build_data

def resident_mb():  # the process's own memory: anonymous pages and shared memory (the workers' batches)
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return sum(int(fields[key].split()[0]) for key in ("RssAnon", "RssShmem")) / 1024

root, folder, stream = sys.argv[1], sys.argv[2], sys.argv[3] == "stream"
torch.set_num_threads(1)
import torchvision.transforms.v2.functional  # what decoding imports (with torch._dynamo): code, not images
before = resident_mb()
data = build_data("imagefolder", root=root, val_fraction=0.0, seed=0, path=folder, size=128, stream=stream, workers=2)
peak = resident_mb()
batches = Batches(data.train, data, batch_size=32, train=True, generator=torch.Generator().manual_seed(0))
steps = 0
for inputs, labels in batches:
    assert inputs.shape == (32, 3, 128, 128)
    inputs.mean().item()
    steps += 1
    peak = max(peak, resident_mb())
print(json.dumps({"grew_mb": peak - before, "steps": steps}))
"""


def test_a_streamed_epoch_holds_a_few_batches_not_the_folder(tmp_path):
    """Resident memory of a training epoch over 3,000 images of 128 x 128 (147 MB decoded), in a
    fresh process: streamed with 2 workers it grows by a fraction of that; held in memory (the
    control, which shows the probe sees a decoded set) by all of it. glibc's malloc is told to
    return freed blocks at once (a fixed mmap threshold): with its default, adaptive one, the
    training process can keep a few hundred MB of freed batch memory whatever the mode, which
    is the allocator's cache, not images held (README, "Data larger than memory")."""
    import json
    import os
    import subprocess
    import sys

    images = make_folder(tmp_path / "images", per_class=300, size=128, classes=10, test_per_class=1)
    decoded_mb = 3000 * 3 * 128 * 128 / 2**20
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}  # lit: the environment's (editable) install
    grew = {}
    for mode in ("stream", "memory"):
        done = subprocess.run([sys.executable, "-c", RESIDENT_PROBE, str(tmp_path), str(images), mode], env=env,
                              capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["steps"] == 3000 // 32
        grew[mode] = result["grew_mb"]
    assert grew["memory"] > 0.9 * decoded_mb, grew
    assert grew["stream"] < 0.25 * decoded_mb, grew
