"""Images per second of the project's engine against a plain PyTorch loop, on one machine.

Cases, each measured for the engine and for a reference loop written the usual way
(torchvision DataLoader with per-image PIL transforms, fp32, NCHW, as the official code):
  scratch20   a ResNet-20 training step from scratch
  teacher110  a ResNet-110 forward (eval, no_grad)
  lit110to20  a LIT phase-1 step, ResNet-110 teacher -> ResNet-20 student
  input       the input pipeline alone (crop with padding, flip, normalise)
Every case runs in its own process, so its peak memory is its own. The same command runs
on a GPU when one is present. Results are printed and written as JSON.

    python benchmarks/bench_step.py --output benchmarks/results/cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CASES = ("scratch20", "teacher110", "lit110to20", "input")


# ------------------------------------------------------------------ the reference loop


class UInt8Images(torch.utils.data.Dataset):
    """What torchvision's CIFAR10 does per item: an HWC uint8 array -> PIL -> transforms."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def reference_loader(args, train: bool):
    import torchvision.transforms as T

    generator = torch.Generator().manual_seed(0)
    size = args.batch * (args.steps + args.warmup)
    images = torch.randint(0, 256, (size, 32, 32, 3), generator=generator, dtype=torch.uint8).numpy()
    labels = torch.randint(0, 10, (size,), generator=generator).numpy()
    normalise = T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    transform = T.Compose([*steps, T.ToTensor(), normalise])
    return torch.utils.data.DataLoader(UInt8Images(images, labels, transform), batch_size=args.batch, shuffle=train,
                                       num_workers=args.workers, drop_last=True, pin_memory=args.device.type == "cuda")


def timed_batches(loader, args, step):
    """Run `step(inputs, labels)` over the loader; images/s over the batches after warm-up."""
    seen, started = 0, None
    for index, (inputs, labels) in enumerate(loader):
        if index == args.warmup:
            synchronise(args.device)
            started = time.perf_counter()
        step(inputs.to(args.device, non_blocking=True), labels.to(args.device, non_blocking=True))
        if index >= args.warmup:
            seen += len(labels)
    synchronise(args.device)
    return seen / (time.perf_counter() - started)


def reference(case: str, args) -> float:
    import torch.nn.functional as F

    from lit.methods.losses import kd_loss
    from lit.models import build_model

    if case == "input":
        return timed_batches(reference_loader(args, True), args, lambda x, y: None)
    torch.manual_seed(0)
    if case == "teacher110":
        teacher = build_model("resnet", 110).to(args.device).eval()

        def forward(inputs, labels):
            with torch.no_grad():
                teacher(inputs)

        return timed_batches(reference_loader(args, False), args, forward)
    student = build_model("resnet", 20).to(args.device).train()
    optimiser = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    if case == "scratch20":
        def step(inputs, labels):
            loss = F.cross_entropy(student(inputs), labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

        return timed_batches(reference_loader(args, True), args, step)
    teacher = build_model("resnet", 110).to(args.device).eval()

    def lit_step(inputs, labels):
        with torch.no_grad():
            feats = teacher.features(inputs)
            teacher_logits = teacher.head(feats[-1])
        mse = sum(F.mse_loss(section(feats[i]), feats[i + 1]) for i, section in enumerate(student.sections))
        kd = kd_loss(student(inputs), teacher_logits, labels, 6.0, 0.95)
        loss = (0.75 * kd + 0.25 * mse) / 2
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return timed_batches(reference_loader(args, True), args, lit_step)


# ------------------------------------------------------------------ the engine


def engine_trainer(case: str, args, run_dir: Path):
    from lit.config import from_dict
    from lit.models.io import model_spec, save_model
    from lit.engine.trainer import Trainer
    from lit.models import build_model

    size = args.batch * (args.steps + 2)  # 5% go to the validation split the engine requires
    method = {"name": "scratch"}
    if case == "lit110to20":
        teacher_path = run_dir / "teacher.pt"
        save_model(build_model("resnet", 110), model_spec("resnet", 110, {"in_channels": 3, "num_classes": 10}), teacher_path)
        method = {"name": "lit", "teacher": str(teacher_path)}
    phases = {p: {"epochs": 1, "lr": 0.1} for p in ("train", "lit", "finetune")}
    cfg = from_dict({
        "seed": 0, "data": {"name": "synthetic", "val_fraction": 0.05, "options": {"train_size": size, "test_size": args.batch}},
        "model": {"family": "resnet", "depth": 20}, "method": method,
        "train": {"batch_size": args.batch, "device": str(args.device), "precision": args.precision,
                  "channels_last": not args.no_channels_last, "compile": args.compile, "progress": "off", "phases": phases},
    })
    return Trainer(cfg, run_dir / "run")


def engine(case: str, args) -> float:
    from lit.data import Batches

    with tempfile.TemporaryDirectory() as tmp:
        trainer = engine_trainer("lit110to20" if case in ("lit110to20", "teacher110") else case, args, Path(tmp))
        if case == "input":
            batches = Batches(trainer.data.train, trainer.data, args.batch, args.device, True, memory_format=trainer.memory_format)
            return timed_batches(batches, args, lambda x, y: None)
        if case == "teacher110":
            from lit.runtime.device import autocast

            def forward(inputs, labels):
                with autocast(trainer.device, trainer.dtype):
                    trainer.method.teacher_logits_and_feats(inputs)

            return timed_batches(trainer.train_batches, args, forward)
        phase = trainer.method.phases[0]
        settings = trainer.cfg.train.phases[phase]
        trainer.optimizers = trainer.make_optimizers(settings, trainer.method.param_groups(phase))
        for _ in range(1 + args.warmup_epochs):  # the first epochs warm up (and compile)
            record = trainer.train_epoch(phase, settings)
        return record["images_per_s"]


# ------------------------------------------------------------------ running and reporting


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_one(case: str, variant: str, args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    images_per_s = (engine if variant == "engine" else reference)(case, args)
    return {"case": case, "variant": variant, "images_per_s": images_per_s, "peak_memory_mb": peak_memory_mb(args.device)}


def machine(device: torch.device) -> dict:
    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    from lit.runtime.device import cpu_has_bf16

    # the instruction set torch and oneDNN use: lower than the CPU's where ATEN_CPU_CAPABILITY and
    # ONEDNN_MAX_CPU_ISA cap it (for example avx2, to measure what a CPU without AVX-512 gets)
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "(not capped)"),
            "cpu_bf16": cpu_has_bf16(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed batches per case")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches of the reference loop")
    parser.add_argument("--warmup-epochs", type=int, default=1, help="untimed epochs of the engine")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference loop")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the engine's models")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--output", type=Path, help="JSON file for the results")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                               ("cpu" if args.device == "auto" else args.device))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(run_one(*args.one, args)))
        return
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    if "--output" in passthrough:
        i = passthrough.index("--output")
        del passthrough[i : i + 2]
    results = []
    for case in args.cases:
        for variant in ("reference", "engine"):
            out = subprocess.run([sys.executable, __file__, *passthrough, "--one", case, variant],
                                 capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(f"{case}/{variant} failed:\n{out.stderr[-3000:]}")
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            row = results[-1]
            print(f"{case:>11} {variant:>9}: {row['images_per_s']:9.0f} images/s   peak {row['peak_memory_mb']:7.0f} MB", flush=True)
    ratios = {}
    for case in args.cases:
        by_variant = {r["variant"]: r["images_per_s"] for r in results if r["case"] == case}
        ratios[case] = by_variant["engine"] / by_variant["reference"]
        print(f"{case:>11} engine / reference: {ratios[case]:.2f}x")
    engine_speed = {r["case"]: r["images_per_s"] for r in results if r["variant"] == "engine"}
    if "input" in engine_speed and "lit110to20" in engine_speed:
        ratios["input_vs_lit_step"] = engine_speed["input"] / engine_speed["lit110to20"]
        print(f"input pipeline / LIT step consumption: {ratios['input_vs_lit_step']:.1f}x")
    report = {"machine": machine(args.device), "settings": {k: str(v) for k, v in vars(args).items() if k not in ("one", "output")},
              "results": results, "ratios": ratios}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"-> {args.output}")


if __name__ == "__main__":
    main()
