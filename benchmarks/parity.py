"""Accuracy parity of the fast path: bf16 autocast + channels-last against fp32 NCHW.

Trains the same short runs (a teacher, then scratch, KD and LIT students) with both
settings over several seeds and prints test accuracy mean and standard deviation, so the
difference can be judged against seed noise. Writes the numbers as JSON.

    python benchmarks/parity.py --output benchmarks/results/parity-digits.json
    python benchmarks/parity.py data.name=imagefolder data.options.path=<cifar10-jpeg> \
        data.options.train_per_class=1000 --teacher-depth 20 --student-depth 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

FAST = ["train.precision=bf16", "train.channels_last=true"]
PLAIN = ["train.precision=fp32", "train.channels_last=false"]


def train_and_test(config: Path, overrides: list[str], run_dir: Path) -> float:
    from lit.engine.runconfig import load_run_config
    from lit.engine.trainer import train
    from lit.evaluate.run import evaluate_run

    train(load_run_config(config, overrides), run_dir)
    return evaluate_run(run_dir, devices=["cpu"], latency_runs=1, throughput_batch=8)["test_acc_selected"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run (data set, epochs, ...)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher-depth", type=int, default=20)
    parser.add_argument("--student-depth", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=["scratch", "kd", "lit"])
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1] / "config" / "runs"
    common = ["train.progress=off", *args.overrides]
    results: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, setting in (("fp32", PLAIN), ("bf16", FAST)):
            teacher = Path(tmp) / f"teacher-{name}"
            train_and_test(root / "digits-teacher.yaml", [*common, *setting, f"model.depth={args.teacher_depth}"], teacher)
            for method in args.methods:
                for seed in args.seeds:
                    overrides = [*common, *setting, f"method.name={method}", f"method.teacher={teacher}",
                                 f"model.depth={args.student_depth}", f"seed={seed}"]
                    accuracy = train_and_test(root / "digits-student.yaml", overrides, Path(tmp) / f"{name}-{method}-{seed}")
                    results.setdefault(method, {}).setdefault(name, []).append(accuracy)
                    print(f"{method:>8} {name} seed {seed}: test accuracy {accuracy:.4f}", flush=True)
    summary = {}
    for method, by_setting in results.items():
        summary[method] = {name: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "runs": v}
                           for name, v in by_setting.items()}
        fp32, bf16 = summary[method]["fp32"], summary[method]["bf16"]
        print(f"{method:>8}: fp32 {fp32['mean']:.4f} +- {fp32['std']:.4f}   bf16 {bf16['mean']:.4f} +- {bf16['std']:.4f}")
    report = {"overrides": args.overrides, "seeds": args.seeds, "teacher_depth": args.teacher_depth,
              "student_depth": args.student_depth, "seconds": time.perf_counter() - started, "results": summary}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
