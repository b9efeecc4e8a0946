"""What a model costs: parameters, FLOPs (PyTorch's own counter) and measured speed."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, example: torch.Tensor | tuple) -> int:
    """Forward FLOPs for one example batch, counting a multiply-add as 2 FLOPs.

    Attention is counted through its unfused form: the fused kernels (nn.MultiheadAttention's
    inference fast path, flash attention on the CPU) have no FLOP formula in PyTorch's
    counter and would count as nothing, so while counting the fast path is off and
    scaled dot-product attention runs its math backend (the same matmuls, each counted)."""
    inputs = example if isinstance(example, tuple) else (example,)
    was_training = model.training
    fastpath = torch.backends.mha.get_fastpath_enabled()
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        model.train(was_training)
    return int(counter.get_total_flops())


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(call: Callable[[], Any], device: torch.device, warmup: int, runs: int, best: bool = False) -> float:
    """Median (or, with `best`, minimum) seconds of `call` over `runs` after `warmup` calls."""
    for _ in range(warmup):
        call()
    synchronise(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        synchronise(device)
        times.append(time.perf_counter() - start)
    return min(times) if best else statistics.median(times)


def measure_speed(
    model: nn.Module, make_input: Callable[[int], torch.Tensor], device: torch.device,
    latency_runs: int = 30, throughput_batch: int = 256, throughput_runs: int = 5,
) -> dict[str, float]:
    """Inference latency at batch 1 (ms, the best of `latency_runs`, as timeit: other
    processes can only add time) and throughput at `throughput_batch` (items/s, median)."""
    model = model.to(device).eval()
    single, batch = make_input(1).to(device), make_input(throughput_batch).to(device)
    with torch.no_grad():
        latency = time_call(lambda: model(single), device, warmup=3, runs=latency_runs, best=True)
        batch_time = time_call(lambda: model(batch), device, warmup=1, runs=throughput_runs)
    return {"latency_ms_batch1": latency * 1e3, f"throughput_per_s_batch{throughput_batch}": throughput_batch / batch_time}
