"""Speed per architecture, measured once per experiment in one process.

Timing each run inside its own evaluation measures whatever else the machine is doing at
that moment: three students of one architecture came out 4.9x, 7.6x and 5.8x faster than
their teacher in one pipeline run. Here every distinct architecture of an experiment (the
teacher and each student architecture, whatever method trained it; a pruned network is
its own architecture) is timed once, in one process that the workflow runs alone, with a
warm-up and then interleaved rounds (teacher, student A, student B, teacher, ...), so that
a slow spell of the machine hits every architecture alike. Each figure is kept as the
median over rounds with the range (min, max) and every round's value: batch-1 latency (ms,
the median of the calls of a round) and throughput at `throughput_batch` (items/s), at a
fixed thread count, on the CPU and, where present, the GPU. The tables take the fastest
round (`lit.report.aggregate.fastest_round`). Runs of one architecture share one figure by
construction.

Rounds are many and short: 40 of them by default, each figure timed for at least
`min_time_s` (0.02 s) a round, so that a round of every architecture takes a fraction of a
second. The warm-up round calls every architecture once untimed (the first call of a
network sets up its kernels and memory: it took several times a later one, and a batch
time taken from it gave the throughput figure too few calls) and then measures its pace,
so that it gets enough calls per round (`latency_runs` and `batch_runs` at the least, the
same number in every round) to fill that time. On a shared virtual machine whose speed changes every few seconds, 5
rounds of 0.2 s a figure gave speed-ups that moved by 26 to 38% across four back-to-back
stages; 40 rounds of 0.02 s, in about the same time, gave fastest-round speed-ups within 3
to 5% across six stages (README). A fixed count of calls made a sub-millisecond
network's round a few milliseconds long, and its median moved by 14% between two stages
where the larger networks' moved by 7%.

The C allocator keeps the memory a call frees (`keep_freed_memory`): by default it gave a
batch's large blocks back to the system after each call and faulted them in again on the
next, which took a third of a batch call's time and moved with the host.

With `onnx=True` each architecture is also exported to ONNX (`lit.evaluate.export`) and
timed in ONNX Runtime in the same interleaved rounds, right after its PyTorch timing on
the same device and at the same thread count (`intra_op_num_threads`): the CPU execution
provider under `onnxruntime-cpu`, the CUDA one under `onnxruntime-cuda` where ONNX Runtime
has it and the GPU is timed (inputs and outputs bound on the GPU, as PyTorch's are).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from lit.evaluate.cost import synchronise
from lit.models.io import load_model
from lit.runtime.provenance import now, provenance
from lit.runtime.runlog import read_json, write_json


def architecture_key(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True)


def architecture_label(spec: dict[str, Any]) -> str:
    """A name per architecture: family and depth, and for a pruned network a digest of what
    was pruned (each seed of a pruning method prunes its own channels, so two pruned
    networks of one depth are two architectures; a count of pruned layers named them alike)."""
    pruned = spec.get("options", {}).get("pruned")
    if not pruned:
        return f"{spec['family']}{spec['depth']}"
    digest = hashlib.sha1(json.dumps(pruned, sort_keys=True).encode()).hexdigest()[:6]
    return f"{spec['family']}{spec['depth']}-pruned-{digest}"


def example_batch(input_shape: list[int], kind: str, batch: int) -> torch.Tensor:
    """Normalised noise for images, token ids for text: timing does not depend on values."""
    generator = torch.Generator().manual_seed(0)
    if kind == "image":
        return torch.randn(batch, *input_shape, generator=generator)
    return torch.randint(0, 2, (batch, *input_shape), generator=generator)


def group_runs(run_dirs: list[str | Path]) -> dict[str, dict[str, Any]]:
    """The distinct architectures of `run_dirs`: their spec, input and runs (each run's
    selected checkpoint and the input shape its evaluation recorded)."""
    groups: dict[str, dict[str, Any]] = {}
    for run_dir in map(Path, run_dirs):
        eval_path = run_dir / "eval.json"
        if not eval_path.is_file():
            raise FileNotFoundError(f"{run_dir} has no eval.json: run `lit evaluate {run_dir}` first")
        evaluation = read_json(eval_path)
        if "input_shape" not in evaluation:
            raise ValueError(f"{eval_path} records no input shape (an older lit wrote it): run `lit evaluate {run_dir}` again")
        model, state = load_model(run_dir, "best")
        key = architecture_key(state["spec"])
        group = groups.setdefault(key, {"spec": state["spec"], "model": model, "runs": [],
                                        "input_shape": evaluation["input_shape"], "input_kind": evaluation["input_kind"]})
        group["runs"].append(str(run_dir))
    return groups


def time_round(model: nn.Module, single: torch.Tensor, batch: torch.Tensor, device: torch.device,
               latency_runs: int, batch_runs: int) -> tuple[float, float]:
    """(median batch-1 latency in seconds, median batch time in seconds) of one round."""
    latencies, batch_times = [], []
    for _ in range(latency_runs):
        start = time.perf_counter()
        model(single)
        synchronise(device)
        latencies.append(time.perf_counter() - start)
    for _ in range(batch_runs):
        start = time.perf_counter()
        model(batch)
        synchronise(device)
        batch_times.append(time.perf_counter() - start)
    return statistics.median(latencies), statistics.median(batch_times)


def time_calls(single: Callable[[], object], batch: Callable[[], object], latency_runs: int,
               batch_runs: int) -> tuple[float, float]:
    """`time_round` for a runtime that returns when its work is done (ONNX Runtime)."""
    latencies, batch_times = [], []
    for _ in range(latency_runs):
        start = time.perf_counter()
        single()
        latencies.append(time.perf_counter() - start)
    for _ in range(batch_runs):
        start = time.perf_counter()
        batch()
        batch_times.append(time.perf_counter() - start)
    return statistics.median(latencies), statistics.median(batch_times)


def export_architectures(groups: dict[str, dict[str, Any]], folder: Path) -> dict[str, dict[str, Any]]:
    """Each architecture's model (on the CPU) exported to ONNX in `folder`: key -> its file
    and the largest output difference from PyTorch on the export's comparison batch
    (recorded, not checked: timing does not depend on it)."""
    from lit.evaluate.export import check_onnx, comparison_batch, export_onnx, onnx_session

    exported = {}
    for index, (key, group) in enumerate(groups.items()):
        model = group["model"].cpu().eval()
        batch = comparison_batch(model, group["input_shape"], group["input_kind"])
        path = folder / f"architecture{index}.onnx"
        export_onnx(model, batch, path)
        exported[key] = {"path": path, **check_onnx(model, onnx_session(path), batch, tolerance=float("inf"))}
    return exported


def onnx_runner(path: Path, device: torch.device, threads: int, single: torch.Tensor,
                batch: torch.Tensor) -> tuple[Callable[[], object], Callable[[], object]] | None:
    """(batch-1 call, batch call) of an ONNX Runtime session for `device`; None where ONNX
    Runtime has no execution provider for it."""
    import onnxruntime as ort

    from lit.evaluate.export import INPUT_NAME, OUTPUT_NAME, onnx_session

    if device.type == "cpu":
        session = onnx_session(path, threads)
        inputs = [{INPUT_NAME: x.cpu().numpy()} for x in (single, batch)]
        return tuple(lambda feed=feed: session.run([OUTPUT_NAME], feed) for feed in inputs)  # type: ignore[return-value]
    if device.type != "cuda" or "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    session = onnx_session(path, threads, "CUDAExecutionProvider", {"device_id": index})
    calls = []
    for x in (single, batch):
        binding = session.io_binding()  # input and output stay on the GPU, as PyTorch's do
        binding.bind_ortvalue_input(INPUT_NAME, ort.OrtValue.ortvalue_from_numpy(x.cpu().numpy(), "cuda", index))
        binding.bind_output(OUTPUT_NAME, "cuda", index)
        calls.append(lambda binding=binding: session.run_with_iobinding(binding))
    return calls[0], calls[1]


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> str:
    """Ask the C allocator to keep the memory that a timed call frees, for the rest of the
    process, and say what was done (recorded in the speed file).

    By default glibc's malloc serves a large block (an activation of a batch of 256) from
    its own mmap and returns it to the system when freed, so every batch call faults its
    memory back in, page by page: on 2 cores of an AMD EPYC (a KVM guest), a ResNet-32
    forward at batch 256 of 8x8 digits made about 6,000 page faults a call and took 45 ms in
    its fastest round, a CIFAR ResNet-20 about 75,000 and 465 ms; kept, no faults, 30 ms
    and 295 ms, and the rounds far steadier. Those faults time the allocator and the host's
    memory, not the architecture. With `mmap` off and trimming at 2 GiB, freed memory stays
    in the process and the next call reuses it (what jemalloc or tcmalloc, often preloaded
    for CPU inference, do on their own). Batch-1 calls are small and faulted nothing
    either way. Elsewhere than glibc: nothing is changed, and the record says so."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return "default: no mallopt in this C library"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_MAX, 0) != 1 or mallopt(M_TRIM_THRESHOLD, 2**31 - 1) != 1:
        return "default: mallopt refused"
    return "kept: malloc with M_MMAP_MAX=0, M_TRIM_THRESHOLD=2^31-1 (freed memory stays in the process)"


MAX_CALLS = 100_000  # per figure per round, whatever `min_time_s` asks for
ROUNDS = 40  # timed rounds a stage, by default
MIN_TIME_S = 0.02  # seconds a figure a round, at the least, by default


def calls_for(seconds_per_call: float, at_least: int, min_time_s: float) -> int:
    """Calls that take `min_time_s` at `seconds_per_call`, `at_least` of them."""
    wanted = math.ceil(min_time_s / seconds_per_call) if seconds_per_call > 0 else MAX_CALLS
    return max(at_least, min(MAX_CALLS, wanted))


def summarise(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "per_round": values}


def measure_architectures(run_dirs: list[str | Path], devices: list[str] | None = None, rounds: int = ROUNDS,
                          latency_runs: int = 20, throughput_batch: int = 256, batch_runs: int = 1,
                          threads: int = 1, onnx: bool = False, min_time_s: float = MIN_TIME_S,
                          keep_memory: bool = True) -> dict[str, Any]:
    """Time every distinct architecture of `run_dirs` (see the module docstring). With
    `keep_memory` (the default) the allocator keeps freed memory for the rest of the
    process (`keep_freed_memory`); without it, the allocator's default."""
    if rounds < 1 or latency_runs < 1 or throughput_batch < 1 or batch_runs < 1:
        raise ValueError("rounds, latency_runs, throughput_batch and batch_runs must be positive")
    if not min_time_s >= 0:
        raise ValueError(f"min_time_s must be a number of seconds >= 0, got {min_time_s!r}")
    torch.set_num_threads(threads)
    allocator = keep_freed_memory() if keep_memory else "default: asked for"
    started = now()
    groups = group_runs(run_dirs)
    devices = devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    timings: dict[str, dict[str, Any]] = {key: {} for key in groups}
    with contextlib.ExitStack() as stack, torch.no_grad():
        exported = {}
        if onnx:  # files that live while they are timed
            exported = export_architectures(groups, Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lit-onnx-"))))
        for name in devices:
            device = torch.device(name)
            # per architecture, per engine ("cpu": PyTorch, "onnxruntime-cpu", ...): one round's timing
            runners: dict[str, dict[str, Callable[..., tuple[float, float]]]] = {}
            for key, group in groups.items():
                model = group["model"].to(device).eval()
                single = example_batch(group["input_shape"], group["input_kind"], 1).to(device)
                batch = example_batch(group["input_shape"], group["input_kind"], throughput_batch).to(device)
                runners[key] = {device.type: functools.partial(time_round, model, single, batch, device)}
                calls = onnx_runner(exported[key]["path"], device, threads, single, batch) if key in exported else None
                if calls is not None:
                    runners[key][f"onnxruntime-{device.type}"] = functools.partial(time_calls, *calls)
            measured: dict[str, dict[str, tuple[list[float], list[float]]]] = {
                key: {label: ([], []) for label in engines} for key, engines in runners.items()}
            counts: dict[str, dict[str, dict[str, int]]] = {key: {} for key in runners}  # per round, from the warm-up
            for repeat in range(rounds + 1):  # a warm-up round, then the timed ones
                for key, engines in runners.items():  # interleaved: every architecture in every round
                    for label, timed_round in engines.items():
                        if not repeat:  # a first, untimed call of each (one-time set-up), then the pace
                            timed_round(latency_runs=1, batch_runs=1)
                            latency, batch_time = timed_round(latency_runs=5, batch_runs=1)
                            counts[key][label] = {"latency_runs": calls_for(latency, latency_runs, min_time_s),
                                                 "batch_runs": calls_for(batch_time, batch_runs, min_time_s)}
                            continue
                        latency, batch_time = timed_round(**counts[key][label])
                        measured[key][label][0].append(latency * 1e3)
                        measured[key][label][1].append(throughput_batch / batch_time)
            for key, engines in measured.items():
                for label, (latencies, throughputs) in engines.items():
                    timings[key][label] = {"latency_ms_batch1": summarise(latencies),
                                           f"throughput_per_s_batch{throughput_batch}": summarise(throughputs)}
                timings[key].setdefault("calls_per_round", {}).update(counts[key])
    result = {
        "rounds": rounds, "latency_runs": latency_runs, "batch_runs": batch_runs, "min_time_s": min_time_s,
        "throughput_batch": throughput_batch, "threads": threads, "freed_memory": allocator,
        "architectures": [
            {"label": architecture_label(group["spec"]), "spec": group["spec"], "runs": group["runs"], **timings[key],
             **({"onnx_max_abs_diff": exported[key]["max_abs_diff"]} if key in exported else {})}
            for key, group in groups.items()
        ],
        "provenance": provenance(devices[-1], started=started, finished=now()),
    }
    if onnx:
        from lit.evaluate.export import EXPORTER, OPSET, versions

        result["onnx"] = {"opset": OPSET, "exporter": EXPORTER, "intra_op_num_threads": threads, **versions()}
    return result


BUSY_MEDIAN_ABOVE_FASTEST = 0.10  # a stage whose medians sit further above the fastest round ran on a busy machine


def busy_figures(result: dict[str, Any], tolerance: float = BUSY_MEDIAN_ABOVE_FASTEST) -> list[str]:
    """The batch-1 latencies of a `measure_architectures` result whose median is more than
    `tolerance` above its fastest round, named with the gap: the machine was busy or
    changed speed during the stage, so medians from it will not repeat (the tables take the
    fastest round; time again on a quieter machine for medians)."""
    busy = []
    for architecture in result["architectures"]:
        for engine, figures in architecture.items():
            latency = figures.get("latency_ms_batch1") if isinstance(figures, dict) else None
            if latency and latency["median"] > latency["min"] * (1 + tolerance):
                busy.append(f"{architecture['label']} ({engine}): median {latency['median']:.3f} ms, "
                            f"{100 * (latency['median'] / latency['min'] - 1):.0f}% above the fastest round's {latency['min']:.3f}")
    return busy


def write_speed(run_dirs: list[str | Path], output: str | Path, **options: Any) -> dict[str, Any]:
    result = measure_architectures(run_dirs, **options)
    write_json(output, result)
    return result
