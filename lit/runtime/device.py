"""Device, precision and memory layout: the fast path's switches in one place."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from lit.config import TrainConfig


def resolve_device(name: str) -> torch.device:
    """The device `train.device` names; `auto` and `cuda` get the current CUDA device's
    index (the one a device slot or a data-parallel rank chose), so that logs and
    summaries name the card a run used."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but no CUDA device is available")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def cpu_has_bf16() -> bool:
    """True where oneDNN runs bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(train: TrainConfig, device: torch.device) -> torch.dtype:
    if train.precision == "fp32":
        return torch.float32
    if train.precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def autocast(device: torch.device, dtype: torch.dtype) -> ContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def compile_sectioned(model: torch.nn.Module, mode: str | None = None) -> None:
    """`torch.compile` in place: the whole forward, and every part LIT calls on its own
    (stem, each section, head), so teacher-fed sections run compiled too."""
    for part in (model, getattr(model, "stem", None), *getattr(model, "sections", ()), getattr(model, "head", None)):
        if part is not None:
            part.compile(mode=mode)


def compile_mode(device: torch.device) -> str | None:
    """On CUDA, "reduce-overhead" replays CUDA graphs: small CIFAR models are bound by
    kernel launches there. On a CPU the default mode."""
    return "reduce-overhead" if device.type == "cuda" else None
