"""Evaluate a generator run (StarGAN): parameters, FLOPs, CPU latency at batch 1 (the keys
of the classifiers' `eval.json`: `params`, `flops`, `macs`, `speed.cpu.latency_ms_batch1`),
FID by the translation protocol of `lit.evaluate.fid`, and a sample grid (`samples.png`).
The FID subset is seeded independently of the run, so every run of one data set is
scored on the same test images."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lit.config import RunConfig
from lit.data import load_data
from lit.data.celeba import HAIR_COLOURS
from lit.data.colordigits import COLOUR_NAMES
from lit.evaluate.cost import count_flops, count_parameters, time_call
from lit.evaluate.fid import generator_fid, sample_grid
from lit.models.io import load_model
from lit.runtime.device import resolve_device

FID_SUBSET_SEED = 0  # the test images scored by FID: the same for every run
EXCLUSIVE_GROUPS = (HAIR_COLOURS, COLOUR_NAMES)  # attributes of which an image has exactly one


def exclusive_attributes(class_names: list[str] | None) -> list[int]:
    """Indices of the mutually exclusive attribute group (hair colours, digit colours), or none."""
    names = class_names or []
    for group in EXCLUSIVE_GROUPS:
        members = [index for index, name in enumerate(names) if name in group]
        if len(members) >= 2:
            return members
    return []


def generator_cost(generator: nn.Module, image_shape: tuple[int, ...], latency_runs: int) -> dict[str, Any]:
    """Parameters, FLOPs (2 per multiply-add, torch's counter) and CPU latency (ms, the best
    of `latency_runs`, as the classifiers' evaluation) of translating one image."""
    cpu_model = copy.deepcopy(generator).cpu().eval()
    images, labels = torch.zeros(1, *image_shape), torch.zeros(1, generator.c_dim)
    flops = count_flops(cpu_model, (images, labels))
    with torch.inference_mode():
        latency = time_call(lambda: cpu_model(images, labels), torch.device("cpu"), warmup=3, runs=latency_runs, best=True)
    return {
        "params": count_parameters(generator),
        "flops": flops,
        "macs": flops // 2,
        "speed": {"cpu": {"latency_ms_batch1": latency * 1e3}},
    }


def evaluate_generator(
    run_dir: Path, cfg: RunConfig, device: str | None = None, fid_images: int | None = None, grid_images: int = 8,
    latency_runs: int = 30,
) -> dict[str, Any]:
    """The generator run's `eval.json` content (the run's selected model, which for a GAN
    is its last) and its `samples.png`; `device` and `fid_images` override the config."""
    torch_device = resolve_device(device or cfg.train.device)
    generator, saved = load_model(run_dir, "best", torch_device)
    data = load_data(cfg.data)
    exclusive = exclusive_attributes(data.class_names)
    scored = generator_fid(
        generator, data.test, exclusive, fid_images or cfg.evaluate.fid_images, FID_SUBSET_SEED,
        cfg.evaluate.fid_batch_size, str(torch_device), cfg.evaluate.fid_weights,
    )
    shown = slice(0, grid_images)
    sample_grid(generator, data.test.inputs[shown], data.test.labels[shown], run_dir / "samples.png", exclusive, str(torch_device))
    return {
        "family": saved["spec"]["family"],
        "depth": saved["spec"]["depth"],
        "data": cfg.data.name,
        "iteration": saved.get("iteration"),
        **generator_cost(generator, data.input_shape, latency_runs),
        "fid": scored["fid"],
        "fid_real_images": scored["real_images"],
        "fid_fake_images": scored["fake_images"],
        "fid_weights": cfg.evaluate.fid_weights,
        "exclusive_attributes": [data.class_names[i] for i in exclusive] if data.class_names else [],
        "samples": "samples.png",
    }
