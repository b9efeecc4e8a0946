"""Is this machine quiet enough for medians? Times one fixed network (a stack of 30 3x3
convolutions of 16 channels on 8x8 maps with batch norm and ReLU: about the digits
teacher's batch-1 call, one thread) in back-to-back windows of `--window` seconds for
`--seconds`, and prints the median call time of the fastest window and of the median one,
the share of windows more than `--slow-above` (15%) slower than the fastest, the slow
spells (consecutive slow windows) and the steal time /proc/stat charged meanwhile (a
hypervisor that takes the CPU away shows there; a neighbour that slows a shared core does
not). Writes JSON with every window.

    .venv/bin/python benchmarks/host_noise.py --seconds 30 --output benchmarks/results/host-noise.json

Where the median window sits within a few percent of the fastest, the speed stage's
medians repeat from one stage to the next (README, "twice in a row"); where slow spells
cover a share of the windows that changes from minute to minute, they do not, and the
tables' fastest round is the figure that repeats. `lit speed` warns about the same
thing after the fact (`lit.evaluate.speed.busy_figures`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn


def steal_ticks() -> int | None:
    """The guest's steal time so far, in clock ticks (/proc/stat's aggregate cpu line),
    None where the kernel does not report it."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    return int(fields[8]) if fields[0] == "cpu" and len(fields) > 8 else None


def probe_network() -> tuple[nn.Module, torch.Tensor]:
    layers = [nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()) for _ in range(30)]
    return nn.Sequential(*layers).eval(), torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))


def time_windows(seconds: float, window: float) -> list[dict[str, Any]]:
    """Per window: the median call time (ms), the calls and the steal ticks it saw."""
    model, x = probe_network()
    windows = []
    with torch.no_grad():
        for _ in range(50):  # warm-up: kernels and memory set up
            model(x)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            steal_before, start, calls = steal_ticks(), time.perf_counter(), []
            while time.perf_counter() - start < window:
                call_start = time.perf_counter()
                model(x)
                calls.append(time.perf_counter() - call_start)
            steal_after = steal_ticks()
            stolen = None if steal_before is None or steal_after is None else steal_after - steal_before
            windows.append({"median_ms": 1e3 * statistics.median(calls), "calls": len(calls), "steal_ticks": stolen})
    return windows


def summarise(windows: list[dict[str, Any]], window: float, slow_above: float = 0.15,
              ticks_per_s: float = 100.0) -> dict[str, Any]:
    """The fastest and median windows, how far the median sits above the fastest, the share
    of slow windows (more than `slow_above` above the fastest), the number and the longest
    of the slow spells (runs of consecutive slow windows, in seconds), and the steal time."""
    if not windows:
        raise ValueError("no windows to summarise: give --seconds a positive value")
    times = [w["median_ms"] for w in windows]
    fastest, median = min(times), statistics.median(times)
    slow = [t > fastest * (1 + slow_above) for t in times]
    spells, run, longest = 0, 0, 0
    for is_slow in slow:
        run = run + 1 if is_slow else 0
        if run == 1:  # a spell starts
            spells += 1
        longest = max(longest, run)
    steals = [w["steal_ticks"] for w in windows]
    return {"windows": len(windows), "window_s": window, "fastest_ms": fastest, "median_ms": median,
            "median_above_fastest": median / fastest - 1, "slow_above": slow_above,
            "slow_share": sum(slow) / len(slow), "slow_spells": spells, "longest_slow_spell_s": longest * window,
            "steal_s": None if None in steals else sum(steals) / ticks_per_s}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to time (default 30)")
    parser.add_argument("--window", type=float, default=0.1, help="seconds a window (default 0.1)")
    parser.add_argument("--slow-above", type=float, default=0.15,
                        help="a window this much slower than the fastest is slow (default 0.15)")
    parser.add_argument("--output", type=Path, help="JSON with the summary and every window")
    args = parser.parse_args(argv)
    if not args.seconds > 0 or not args.window > 0:
        parser.error("--seconds and --window must be positive")
    torch.set_num_threads(1)
    windows = time_windows(args.seconds, args.window)
    summary = summarise(windows, args.window, args.slow_above, float(os.sysconf("SC_CLK_TCK")))
    steal = "not reported" if summary["steal_s"] is None else f"{summary['steal_s']:.2f} s"
    print(f"{summary['windows']} windows of {args.window} s: fastest {summary['fastest_ms']:.3f} ms, median "
          f"{summary['median_ms']:.3f} ms ({100 * summary['median_above_fastest']:.0f}% above); "
          f"{100 * summary['slow_share']:.0f}% of windows slow (> {100 * args.slow_above:.0f}% above the fastest) in "
          f"{summary['slow_spells']} spells, the longest {summary['longest_slow_spell_s']:.1f} s; steal time {steal}")
    if args.output:
        from lit.runtime.provenance import provenance

        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"summary": summary, "windows": windows, "provenance": provenance("cpu")},
                                          indent=2) + "\n")
        print(f"-> {args.output}")


if __name__ == "__main__":
    main(sys.argv[1:])
