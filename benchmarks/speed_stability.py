"""Does the speed stage give the same figures twice in a row? Runs `lit speed` on the same
runs several times back to back, each stage in its own process as the pipeline's speed
job, and prints, per architecture, each stage's fastest-round and median batch-1 latency
and throughput, the largest change between consecutive stages, and the spread of the
speed-ups over the teacher (`teacher_label`) across stages. Writes JSON.

    .venv/bin/python benchmarks/speed_stability.py results/runs/digits-resnet --stages 4 \\
        --output benchmarks/results/speed-stability-digits.json

A path without an `eval.json` stands for the evaluated run directories inside it (a
pipeline's `results/runs/<experiment>`). Options after `--` go to every `lit speed`
(for example `-- --rounds 5 --min-time 0.2`, the former design).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from lit.plan import TEACHER  # a teacher's run id starts with it
from lit.report.aggregate import fastest_round  # the tables' figure of a speed-stage file

KINDS = ("latency", "throughput")


def run_directories(paths: list[Path]) -> list[Path]:
    """`paths`, each folder without an eval.json replaced by its evaluated run directories."""
    runs: list[Path] = []
    for path in paths:
        if (path / "eval.json").is_file():
            runs.append(path)
            continue
        inside = sorted(child for child in path.glob("*") if (child / "eval.json").is_file()) if path.is_dir() else []
        if not inside:
            raise SystemExit(f"{path} is neither an evaluated run directory nor a folder of them")
        runs.extend(inside)
    return runs


def figure_name(engine: dict[str, Any], kind: str) -> str:
    if kind == "latency":
        return "latency_ms_batch1"
    return next(name for name in engine if name.startswith("throughput_per_s"))


def stage_figures(stage: dict[str, Any], engine: str = "cpu") -> dict[str, dict[str, dict[str, float]]]:
    """label -> kind -> {"fastest": ..., "median": ...} of one `lit speed` result."""
    figures = {}
    for architecture in stage["architectures"]:
        timings = architecture[engine]
        figures[architecture["label"]] = {}
        for kind in KINDS:
            name = figure_name(timings, kind)
            figures[architecture["label"]][kind] = {"fastest": fastest_round(name, timings[name]),
                                                    "median": timings[name]["median"]}
    return figures


def teacher_label(stage: dict[str, Any]) -> str:
    """The teacher's architecture: the one with a run named `teacher-...` (the pipeline's
    name for it), else the deepest, an unpruned network before a pruned one of its depth
    (network slimming prunes a network as deep as the teacher)."""
    for architecture in stage["architectures"]:
        if any(Path(run).name.startswith(f"{TEACHER}-") for run in architecture.get("runs", ())):
            return architecture["label"]
    return max(stage["architectures"], key=lambda a: (a["spec"].get("depth") or 0,
                                                      not a["spec"].get("options", {}).get("pruned"), a["label"]))["label"]


def compare_stages(stages: list[dict[str, Any]], engine: str = "cpu") -> dict[str, Any]:
    """Per architecture, kind and statistic: every stage's value, the largest relative change
    between consecutive stages, and the speed-up over the teacher (`teacher_label`:
    latency teacher / student, throughput student / teacher) per stage with
    its spread (max / min - 1)."""
    if len(stages) < 2:
        raise ValueError("comparing stages needs two of them at least")
    per_stage = [stage_figures(stage, engine) for stage in stages]
    teacher = teacher_label(stages[0])
    summary: dict[str, Any] = {"teacher": teacher, "architectures": {}}
    for label in per_stage[0]:
        entry: dict[str, Any] = {}
        for kind in KINDS:
            for statistic in ("fastest", "median"):
                values = [figures[label][kind][statistic] for figures in per_stage]
                teachers = [figures[teacher][kind][statistic] for figures in per_stage]
                speedups = [t / v if kind == "latency" else v / t for t, v in zip(teachers, values)]
                entry[f"{kind}_{statistic}"] = {
                    "per_stage": values,
                    "largest_consecutive_change": max(abs(b / a - 1) for a, b in zip(values, values[1:])),
                    "speedup_per_stage": speedups,
                    "speedup_spread": max(speedups) / min(speedups) - 1,
                }
        summary["architectures"][label] = entry
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    print(f"speed-ups over {summary['teacher']}; changes between consecutive stages (largest)")
    for label, entry in summary["architectures"].items():
        for name, figures in entry.items():
            values = " ".join(f"{v:.4g}" for v in figures["per_stage"])
            speedup = "" if label == summary["teacher"] else (
                f"  speed-up {min(figures['speedup_per_stage']):.2f}x-{max(figures['speedup_per_stage']):.2f}x"
                f" (spread {100 * figures['speedup_spread']:.0f}%)")
            print(f"  {label:>10} {name:>18}: {values}  change {100 * figures['largest_consecutive_change']:.0f}%{speedup}")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="evaluated run directories, or folders of them")
    parser.add_argument("--stages", type=int, default=4, help="back-to-back `lit speed` stages (default 4)")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.stages < 2:
        parser.error("--stages must be 2 or more")
    runs = run_directories(args.runs)
    stages = []
    with tempfile.TemporaryDirectory(prefix="lit-speed-stability-") as folder:
        for index in range(args.stages):
            output = Path(folder) / f"stage{index}.json"
            subprocess.run([sys.executable, "-m", "lit", "speed", *map(str, runs), "--output", str(output), *passthrough],
                           check=True, stdout=subprocess.DEVNULL)
            stage = json.loads(output.read_text())
            stages.append({"architectures": stage["architectures"], "started": stage["provenance"].get("started")})
            print(f"stage {index + 1}/{args.stages} done", flush=True)
    summary = compare_stages(stages)
    print_summary(summary)
    from lit.runtime.provenance import provenance

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    result = {"stages": args.stages, "lit_speed_options": passthrough, "runs": [str(run) for run in runs],
              "cpu_avx512_bf16": " avx512_bf16" in flags, "summary": summary,
              "stage_results": stages, "provenance": provenance("cpu")}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
