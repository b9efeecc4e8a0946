"""One-shot check of a machine with one GPU: the fast path, precision and speed on CUDA.

    bash benchmarks/gpu_check.sh                 # about 5 minutes on one GPU (estimated; see README)
    bash benchmarks/gpu_check.sh --quick         # tiny sizes: seconds, what the test runs
    bash benchmarks/gpu_check.sh --output check.json --work-dir /tmp/check

Parts, each recorded in one JSON file (default benchmarks/results/gpu-check.json) with its
status ("ok", "skipped" with the reason, or "failed" with the error) and printed as a
summary:
  step_benchmark_eager    benchmarks/bench_step.py on CUDA: the engine against the reference
                          loop, images/s and peak memory per case (its own CLI, in subprocesses)
  step_benchmark_compile  the same with `train.compile` (torch.compile; CUDA graphs on CUDA)
  teacher                 a short scratch run of a ResNet teacher on CIFAR-shaped synthetic data
  lit_fp32, lit_bf16      a 2-epoch LIT run of a student of it (one epoch of section matching,
                          one of KD fine-tuning) with train.precision=fp32 and =bf16
  bf16_vs_fp32            the relative difference of their final losses (per phase), flagged
                          beyond --tolerance
  speed                   the speed stage (`lit speed`) on the teacher and the students
  peak_gpu_memory         torch.cuda.max_memory_allocated of every run and benchmark case
The machine (GPU name, torch, CUDA and cuDNN versions, CPU) comes first in the file.

Without a CUDA device the CPU-capable parts run: the LIT runs in fp32, and in bf16 where
the CPU has native bf16 (AVX512-BF16/AMX), and the speed stage on the CPU; the step
benchmark runs on the CPU only with --cpu-step-bench (slow), and never compiled there.
Runs go into --work-dir (default: a temporary folder, removed afterwards), never into
results/. The exit status is non-zero only when a part that ran failed; a bf16 divergence
beyond the tolerance is flagged, not failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

import bench_step  # noqa: E402

# Sizes per mode. Full: what one GPU runs in about 5 minutes; quick: the smallest that
# exercises every part (the test's).
MODES: dict[str, dict[str, Any]] = {
    "full": {
        "train_size": 10000, "test_size": 1000, "batch": 128, "teacher_depth": 56, "student_depth": 20,
        "teacher_epochs": 2,
        "bench_eager": [],  # bench_step.py's defaults: every case, batch 128, 20 timed steps
        "bench_compile": ["--cases", "scratch20", "lit110to20"],
        "bench_cpu": ["--batch", "64", "--steps", "5", "--cases", "scratch20", "lit110to20"],
        "bench_timeout_s": 300,
        "speed": ["--rounds", "3"],
    },
    "quick": {
        "train_size": 256, "test_size": 64, "batch": 64, "teacher_depth": 14, "student_depth": 8,
        "teacher_epochs": 1,
        "bench_eager": ["--batch", "32", "--steps", "3", "--warmup", "1", "--workers", "0",
                        "--cases", "scratch20", "lit110to20"],
        "bench_compile": ["--batch", "32", "--steps", "3", "--warmup", "1", "--workers", "0", "--cases", "scratch20"],
        "bench_cpu": ["--batch", "16", "--steps", "2", "--warmup", "1", "--workers", "0", "--cases", "scratch20"],
        "bench_timeout_s": 300,
        "speed": ["--rounds", "2", "--latency-runs", "3", "--throughput-batch", "8"],
    },
}
NO_CUDA = "no CUDA device"


# ------------------------------------------------------------------ parts


def skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason}


def attempt(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one part: its record with status "ok" and its seconds, or "failed" with the error."""
    started = time.perf_counter()
    try:
        record = {"status": "ok", **work()}
    except Exception as error:  # noqa: BLE001 - every failure of a part is recorded, the others still run
        record = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                  "traceback": traceback.format_exc()[-3000:]}
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record


def step_benchmark(extra: list[str], device: str, work_dir: Path, name: str, timeout_s: int) -> dict[str, Any]:
    """benchmarks/bench_step.py, its own CLI (each case in its own process), on `device`."""
    output = work_dir / f"{name}.json"
    command = [sys.executable, str(HERE / "bench_step.py"), "--device", device, *extra, "--output", str(output)]
    # its own process group, so that a timeout ends the cases it started too
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise RuntimeError(f"bench_step.py ran past {timeout_s} s") from error
    if process.returncode != 0:
        raise RuntimeError(f"bench_step.py exited {process.returncode}: {(stderr or stdout)[-2000:]}")
    report = json.loads(output.read_text())
    return {"device": device, "arguments": extra, "results": report["results"], "ratios": report["ratios"],
            "settings": report["settings"]}


def run_config(name: str) -> Path:
    return ROOT / "config" / "runs" / name


def data_overrides(sizes: dict[str, Any], work_dir: Path) -> list[str]:
    """CIFAR-shaped (3x32x32, 10 classes) synthetic images: no download, no files."""
    return ["data.name=synthetic", f"data.root={work_dir / 'data'}",
            f"data.options={{train_size: {sizes['train_size']}, test_size: {sizes['test_size']}}}",
            f"train.batch_size={sizes['batch']}", "train.progress=off", "evaluate.test_every_epoch=false"]


def final_losses(run_dir: Path) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """The loss of the last record of every phase, and its terms (the log writes a
    non-finite value as null: read back as NaN)."""
    losses: dict[str, float] = {}
    terms: dict[str, dict[str, float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            record = {k: float("nan") if v is None else v for k, v in json.loads(line).items()}
            losses[record["phase"]] = float(record["loss"])
            terms[record["phase"]] = {k: float(v) for k, v in record.items() if k.startswith("loss_")}
    return losses, terms


def train_run(config: Path, overrides: list[str], run_dir: Path, cuda: bool) -> dict[str, Any]:
    """One training run in this process, then `lit evaluate`'s scoring of it."""
    from lit.engine.runconfig import load_run_config
    from lit.engine.trainer import train
    from lit.evaluate.run import evaluate_run

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    summary = train(load_run_config(config, overrides), run_dir)
    evaluation = evaluate_run(run_dir)
    cost = summary["training_cost"]
    losses, terms = final_losses(run_dir)
    record = {
        "run": run_dir.name, "config": str(config.relative_to(ROOT)), "overrides": overrides,
        "device": summary["device"], "precision": summary["precision"], "epochs": summary["epochs"],
        "final_losses": losses, "final_loss_terms": terms, "test_acc": evaluation.get("test_acc_selected"),
        "mean_images_per_s": summary["mean_images_per_s"], "wall_seconds": cost["wall_seconds"],
        "peak_rss_mb": cost["peak_rss_mb"],
    }
    if cuda:
        record["peak_gpu_mb"] = cost.get("peak_gpu_mb", torch.cuda.max_memory_allocated() / 2**20)
    return record


def compare_losses(fp32: dict[str, float], bf16: dict[str, float], tolerance: float) -> dict[str, Any]:
    relative = {phase: abs(bf16[phase] - fp32[phase]) / max(abs(fp32[phase]), 1e-12) for phase in fp32 if phase in bf16}
    if not relative:
        raise ValueError(f"no phase in common: fp32 {sorted(fp32)}, bf16 {sorted(bf16)}")
    largest = max(relative.values())
    diverged = not math.isfinite(largest) or largest > tolerance
    return {"relative_difference": relative, "largest": largest, "tolerance": tolerance, "diverged": diverged}


def speed_stage(run_dirs: dict[str, Path], extra: list[str], work_dir: Path) -> dict[str, Any]:
    """`lit speed` (its CLI) on the runs; the figures of every architecture, by role."""
    output = work_dir / "speed.json"
    command = [sys.executable, "-m", "lit", "speed", *map(str, run_dirs.values()), "--output", str(output), *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"lit speed exited {done.returncode}: {(done.stderr or done.stdout)[-2000:]}")
    result = json.loads(output.read_text())
    roles = {str(path): role for role, path in run_dirs.items()}
    architectures = []
    for architecture in result["architectures"]:
        timings = {key: value for key, value in architecture.items() if isinstance(value, dict) and "latency_ms_batch1" in value}
        architectures.append({"label": architecture["label"], "roles": [roles[run] for run in architecture["runs"]], **timings})
    by_role = {role: next(a for a in architectures if role in a["roles"]) for role in run_dirs}
    return {"command": "lit speed " + " ".join(command[4:]).replace(str(work_dir) + os.sep, ""),
            "rounds": result["rounds"], "latency_runs": result["latency_runs"], "throughput_batch": result["throughput_batch"],
            "threads": result["threads"], "devices": sorted({d for a in architectures for d in a if d not in ("label", "roles")}),
            "architectures": architectures,
            "latency_ms_batch1": {role: {device: a[device]["latency_ms_batch1"]["median"]
                                         for device in a if device not in ("label", "roles")}
                                  for role, a in by_role.items()}}


# ------------------------------------------------------------------ the machine


def environment(cuda: bool) -> dict[str, Any]:
    info = bench_step.machine(torch.device("cuda" if cuda else "cpu"))
    info.update(python=platform.python_version(), cuda_available=cuda, cuda_runtime=torch.version.cuda,
                cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    if cuda:
        properties = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                    gpu_memory_gb=round(properties.total_memory / 2**30, 1),
                    compute_capability=f"{properties.major}.{properties.minor}",
                    gpu_bf16=torch.cuda.is_bf16_supported(), cudnn=torch.backends.cudnn.version())
    return info


# ------------------------------------------------------------------ the check


def check(args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    from lit.runtime.device import cpu_has_bf16

    sizes = MODES["quick" if args.quick else "full"]
    cuda = torch.cuda.is_available()
    parts: dict[str, dict[str, Any]] = {}

    def report(name: str, record: dict[str, Any]) -> None:
        parts[name] = record
        print(f"  {name:<23} {describe(name, record)}", flush=True)

    # 1. the step benchmark, eager and compiled
    if cuda:
        report("step_benchmark_eager", attempt(lambda: step_benchmark(
            sizes["bench_eager"], "cuda", work_dir, "step-eager", sizes["bench_timeout_s"])))
        report("step_benchmark_compile", attempt(lambda: step_benchmark(
            [*sizes["bench_compile"], "--compile"], "cuda", work_dir, "step-compile", sizes["bench_timeout_s"])))
    else:
        if args.cpu_step_bench:
            report("step_benchmark_eager", attempt(lambda: step_benchmark(
                sizes["bench_cpu"], "cpu", work_dir, "step-eager", sizes["bench_timeout_s"] * 4)))
        else:
            report("step_benchmark_eager", skipped(f"{NO_CUDA} (--cpu-step-bench runs it on the CPU, slowly)"))
        report("step_benchmark_compile", skipped(f"{NO_CUDA} (compiled with CUDA graphs on CUDA only; "
                                                 "on the CPU compilation costs minutes)"))

    # 2. a teacher, then LIT students in fp32 and bf16
    common = data_overrides(sizes, work_dir)
    teacher_dir = work_dir / "teacher"
    report("teacher", attempt(lambda: train_run(run_config("cifar10-teacher.yaml"), [
        *common, f"model.depth={sizes['teacher_depth']}", "train.precision=fp32",
        f"train.phases.train={{epochs: {sizes['teacher_epochs']}, lr: 0.1, milestones: []}}"], teacher_dir, cuda)))
    students = {}
    for precision in ("fp32", "bf16"):
        name = f"lit_{precision}"
        if parts["teacher"]["status"] != "ok":
            report(name, skipped("the teacher run failed"))
            continue
        if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
            report(name, skipped("the GPU has no bf16"))
            continue
        if precision == "bf16" and not cuda and not cpu_has_bf16():
            report(name, skipped(f"{NO_CUDA} and this CPU has no native bf16 (AVX512-BF16 or AMX); emulated bf16 is slow"))
            continue
        students[precision] = work_dir / f"lit-{precision}"
        report(name, attempt(lambda: train_run(run_config("cifar10-student.yaml"), [
            *common, "method.name=lit", f"method.teacher={teacher_dir}", f"model.depth={sizes['student_depth']}",
            f"train.precision={precision}", "train.phases.lit={epochs: 1, lr: 0.1, milestones: []}",
            "train.phases.finetune={epochs: 1, lr: 0.01, milestones: []}"], students[precision], cuda)))
    ran = [f"lit_{p}" for p in ("fp32", "bf16") if parts[f"lit_{p}"]["status"] == "ok"]
    if len(ran) == 2:
        report("bf16_vs_fp32", attempt(lambda: compare_losses(
            parts["lit_fp32"]["final_losses"], parts["lit_bf16"]["final_losses"], args.tolerance)))
    else:
        report("bf16_vs_fp32", skipped("needs both LIT runs; " + ", ".join(
            f"{name} {parts[name]['status']}" for name in ("lit_fp32", "lit_bf16"))))

    # 3. the speed stage on the runs that trained
    timed = {"teacher": teacher_dir} if parts["teacher"]["status"] == "ok" else {}
    timed.update({f"student_{p}": students[p] for p in students if parts[f"lit_{p}"]["status"] == "ok"})
    if len(timed) > 1:
        report("speed", attempt(lambda: speed_stage(timed, sizes["speed"], work_dir)))
    else:
        report("speed", skipped("needs the teacher and a student run"))

    # 4. peak GPU memory
    if cuda:
        def peaks() -> dict[str, Any]:
            found = {name: parts[name]["peak_gpu_mb"] for name in ("teacher", "lit_fp32", "lit_bf16")
                     if "peak_gpu_mb" in parts[name]}
            for name in ("step_benchmark_eager", "step_benchmark_compile"):
                for row in parts[name].get("results", []):
                    found[f"{name}/{row['case']}/{row['variant']}"] = row["peak_memory_mb"]
            if not found:
                raise RuntimeError("no run or benchmark case recorded a peak")
            return {"peak_gpu_mb": found}

        report("peak_gpu_memory", attempt(peaks))
    else:
        report("peak_gpu_memory", skipped(NO_CUDA))
    return parts


def describe(name: str, record: dict[str, Any]) -> str:
    """One line of the summary for a part."""
    if record["status"] == "skipped":
        return f"skipped: {record['reason']}"
    if record["status"] == "failed":
        return f"FAILED: {record['error'].splitlines()[0][:300]}"
    took = f" ({record['seconds']:.0f} s)"
    if name.startswith("step_benchmark"):
        ratios = ", ".join(f"{case} {ratio:.2f}x" for case, ratio in record["ratios"].items())
        return f"ok on {record['device']}: engine / reference {ratios}" + took
    if name in ("teacher", "lit_fp32", "lit_bf16"):
        losses = ", ".join(f"{phase} {loss:.4f}" for phase, loss in record["final_losses"].items())
        memory = f"peak GPU {record['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in record else f"peak RSS {record['peak_rss_mb']:.0f} MB"
        return f"ok on {record['device']} ({record['precision']}): final loss {losses}; {memory}" + took
    if name == "bf16_vs_fp32":
        flag = "FLAG: bf16 diverges from fp32" if record["diverged"] else "ok"
        return f"{flag}: largest relative difference of the final losses {record['largest']:.2%} (tolerance {record['tolerance']:.0%})"
    if name == "speed":
        return "ok: batch-1 latency " + "; ".join(
            f"{role} " + ", ".join(f"{device} {ms:.3f} ms" for device, ms in by_device.items())
            for role, by_device in record["latency_ms_batch1"].items()) + took
    if name == "peak_gpu_memory":
        return "ok: " + ", ".join(f"{key} {mb:.0f} MB" for key, mb in record["peak_gpu_mb"].items())
    return "ok" + took


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a few hundred images, ResNet-14 -> ResNet-8, one epoch a phase")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "gpu-check.json", help="the JSON file to write")
    parser.add_argument("--work-dir", type=Path, help="where the runs go, kept afterwards (default: a temporary folder, removed)")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="largest relative difference of the bf16 run's final losses from fp32's not flagged (default 0.05)")
    parser.add_argument("--cpu-step-bench", action="store_true", help="without CUDA, run the step benchmark on the CPU (slow)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = (ROOT / "results").resolve()
    if args.work_dir is not None and args.work_dir.resolve().is_relative_to(results):
        print(f"gpu_check: --work-dir must lie outside {results}: the check never writes runs there", file=sys.stderr)
        return 2
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="lit-gpu-check-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    started = time.perf_counter()
    machine = environment(cuda)
    mode = "quick" if args.quick else "full"
    where = f"GPU {machine['gpu']}" if cuda else f"CPU only ({machine['cpu']})"
    print(f"gpu check, {mode} mode, on {where}; torch {machine['torch']}, CUDA {machine['cuda_runtime'] or 'none'}", flush=True)
    try:
        parts = check(args, work_dir)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    failed = [name for name, part in parts.items() if part["status"] == "failed"]
    report = {
        "mode": mode, "sizes": {k: v for k, v in MODES[mode].items() if not k.startswith(("bench", "speed"))},
        "environment": machine, "work_dir": str(args.work_dir) if args.work_dir else "temporary (removed)",
        "seconds": round(time.perf_counter() - started, 1), "parts": parts,
        "skipped": [name for name, part in parts.items() if part["status"] == "skipped"], "failed": failed,
        "flagged": ["bf16_vs_fp32"] if parts["bf16_vs_fp32"].get("diverged") else [],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"{len(parts) - len(failed) - len(report['skipped'])} parts ok, skipped: {', '.join(report['skipped']) or 'none'}, "
          f"failed: {', '.join(failed) or 'none'} ({report['seconds']:.0f} s) -> {args.output}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
