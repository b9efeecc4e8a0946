"""A streamed image folder (`data.options.stream`): the same splits and evaluation pixels as
the in-memory folder, training batches decoded and augmented in worker processes that are
reproducible whatever the number of workers, the automatic choice by memory budget, clear
errors, bounded resident memory (subprocesses), and a run through the engine."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit.data import Batches, BatchStream, build_data
from lit.data.base import Split
from lit.data.stream import FileSplit

REPO = Path(__file__).resolve().parents[1]


def make_folder(folder: Path, per_class: int = 12, size: int = 16, classes: int = 3, seed: int = 0) -> Path:
    """train/ and test/ with `classes` classes of smooth random JPEGs, size x size."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", max(2, per_class // 3))):
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


MEMORY_PROBE = textwrap.dedent("""
    import json, sys
    import torch
    from lit.data import Batches, build_data

    def rss_mb(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) / 1024

    folder, stream = sys.argv[1], sys.argv[2] == "stream"
    torch.zeros(1).float()  # torch's own start-up allocations before the baseline
    baseline = rss_mb("VmRSS")
    data = build_data("imagefolder", root=sys.argv[3], val_fraction=0.1, path=folder, size=96,
                      stream=stream, workers=2, crop_padding=0)
    seen, settled = 0, None
    for step, (_, labels) in enumerate(Batches(data.train, data, batch_size=64, train=True)):
        seen += len(labels)
        settled = rss_mb("VmRSS") if step == 4 else settled  # the workers' queue is full by now
    print(json.dumps({"grown_mb": rss_mb("VmHWM") - baseline, "epoch_grown_mb": rss_mb("VmRSS") - settled, "seen": seen}))
""")


def test_streaming_keeps_the_training_process_resident_memory_bounded(tmp_path):
    """1,200 training images of 96 x 96 (33 MB decoded, with the test split 44 MB): an
    in-memory load grows the process by more than that; a streamed one by a fraction of what
    the in-memory one takes, and not at all while its epoch streams past (the workers hold
    a few batches each)."""
    images = make_folder(tmp_path / "images", per_class=400, size=96)
    decoded_mb = (1200 + 399) * 3 * 96 * 96 / 2**20

    def probe(mode: str) -> dict:
        command = [sys.executable, "-c", MEMORY_PROBE, str(images), mode, str(tmp_path / mode)]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    streamed, in_memory = probe("stream"), probe("memory")
    assert streamed["seen"] == in_memory["seen"] == 1024  # 90% of the training images, whole batches of 64
    assert in_memory["grown_mb"] > decoded_mb
    assert streamed["grown_mb"] < in_memory["grown_mb"] / 3, (streamed, in_memory)
    assert streamed["epoch_grown_mb"] < 10, streamed  # from the fifth of 16 batches to the last


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
