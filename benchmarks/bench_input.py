"""The streamed input pipeline against what training consumes: torchvision ResNet-18 at 224 px.

Makes a folder of ImageNet-sized JPEGs (every source image resized to 500 x 375, ImageNet's
most common size, and saved at quality 90), then measures, one after the other on an
otherwise idle machine:
  decode     images/s of a streamed training epoch (decode, random resized crop to 224, flip,
             standardise) with 0, 1, 2, ... worker processes, nothing training;
  train      images/s of ResNet-18 training steps (scratch, the engine's precision and memory
             format) on batches already in memory;
  together   images/s of the same steps fed by the streamed loader, each worker count:
             what a run gets when decoding and training share the machine.
Results are printed and written as JSON.

    python benchmarks/bench_input.py --source data/cifar10-jpeg/train --output benchmarks/results/input-pipeline.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from bench_step import machine  # benchmarks/ is the script's folder, so on its path


def make_folder(source: Path, target: Path, count: int, width: int, height: int) -> Path:
    """`count` images of `source` (a class-per-folder tree, classes taken in turn) resized to
    width x height and saved as JPEG, in target/train/<class>/ and a small target/test/."""
    classes = sorted(p for p in source.iterdir() if p.is_dir())
    if not classes:
        raise SystemExit(f"{source} holds no class folders (expected <class>/<image>)")
    files = {c.name: sorted(c.iterdir()) for c in classes}
    for index in range(count):
        name = classes[index % len(classes)].name
        for split in ("train",) + (("test",) if index < len(classes) else ()):
            out = target / split / name / f"{index:06d}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(files[name][index // len(classes)]) as image:
                image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC).save(out, quality=90)
    return target


def streamed_data(folder: Path, size: int, workers: int):
    from lit.data import build_data

    return build_data("imagefolder", root=folder.parent / "root", val_fraction=0.0, path=str(folder),
                      size=size, stream=True, workers=workers)


def decode_rate(data, batch: int) -> float:
    from lit.data import Batches

    batches = Batches(data.train, data, batch, train=True, generator=torch.Generator().manual_seed(0))
    start, seen = time.perf_counter(), 0
    for _, labels in batches:
        seen += len(labels)
    return seen / (time.perf_counter() - start)


def training_step(batch: int, size: int, classes: int):
    """A ResNet-18 scratch step as the engine runs it (precision, memory format, SGD)."""
    from lit.config import TrainConfig
    from lit.models import build_model
    from lit.runtime.device import autocast, resolve_precision

    device = torch.device("cpu")
    dtype = resolve_precision(TrainConfig(), device)
    model = build_model("torchvision_resnet", 18, in_channels=3, num_classes=classes, arch="resnet18")
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(inputs: torch.Tensor, labels: torch.Tensor) -> None:
        with autocast(device, dtype):
            loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step, str(dtype)


def train_rate(step, batch: int, size: int, steps: int) -> float:
    inputs = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,))
    step(inputs, labels)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step(inputs, labels)
    return batch * steps / (time.perf_counter() - start)


def together_rate(step, data, batch: int, steps: int) -> float:
    from lit.data import Batches

    batches = iter(Batches(data.train, data, batch, train=True, generator=torch.Generator().manual_seed(1)))
    step(*next(batches))  # warm-up, workers started
    start, seen = time.perf_counter(), 0
    for _ in range(steps):
        inputs, labels = next(batches)
        step(inputs, labels)
        seen += len(labels)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="a class-per-folder image tree to draw images from")
    parser.add_argument("--images", type=int, default=512, help="training images in the generated folder")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    result = {
        "machine": machine(torch.device("cpu")),
        "setup": {"images": args.images, "jpeg": "500x375, quality 90", "size": args.size, "batch": args.batch,
                  "model": "torchvision resnet18, scratch step"},
        "decode_img_per_s": {}, "together_img_per_s": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(args.source, Path(tmp) / "images", args.images, 500, 375)
        for workers in args.workers:
            result["decode_img_per_s"][workers] = round(decode_rate(streamed_data(folder, args.size, workers), args.batch), 1)
            print(f"decode + augment, {workers} workers: {result['decode_img_per_s'][workers]} img/s", flush=True)
        step, precision = training_step(args.batch, args.size, 10)
        result["setup"]["precision"] = precision
        result["train_img_per_s"] = round(train_rate(step, args.batch, args.size, args.steps), 1)
        print(f"ResNet-18 training step ({precision}), in-memory batches: {result['train_img_per_s']} img/s", flush=True)
        for workers in args.workers:
            rate = together_rate(step, streamed_data(folder, args.size, workers), args.batch, args.steps)
            result["together_img_per_s"][workers] = round(rate, 1)
            print(f"training fed by the streamed loader, {workers} workers: {rate:.1f} img/s", flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
