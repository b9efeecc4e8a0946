"""Gather evaluated run directories into one tidy table: one row per run.

A run directory holds its resolved config (`config.yaml`), `summary.json` from training
and `eval.json` from evaluation, which keeps the resolved config too. Generator (GAN)
runs report `fid` (lower is better) instead of accuracy, so one table serves both and a
column a run lacks is NaN.

Where a run comes from:
- experiment: an `experiment` file in the run directory, else an `experiment` field of
  eval.json or the config, else the folder two levels up when the run sits in
  `<experiment>/runs/<run-id>/` (the pipeline's layout), else the data set name.
- role: "teacher" for a GAN teacher (`stargan`), for a scratch run whose folder name starts with
  "teacher" (the pipeline's naming) and for any run another run of the experiment names
  as its teacher; every other run is a "student".
- teacher_run: the folder name of the teacher a distilled run learnt from (empty for
  scratch, which uses none even when its config names one).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import yaml

from lit import catalog
from lit.runtime.files import atomic_write_text

COLUMNS = [
    "experiment", "run_id", "role", "method", "family", "depth", "seed", "data",
    "hard_weight", "temperature", "kd_weight", "teacher_run",
    "data_options", "selection", "val_fraction",
    "test_acc_selected", "test_acc_last", "test_acc_oracle", "val_acc_selected", "val_acc_last",
    "selected_epoch", "last_epoch", "oracle_epoch",
    "params", "flops", "macs", "latency_ms_cpu", "throughput_cpu", "latency_ms_cuda", "throughput_cuda",
    "latency_ms_onnx_cpu", "fid", "epochs", "iterations", "train_seconds", "train_cpu_seconds", "train_peak_rss_mb", "commit", "device_name",
    "run_dir",
]
TEXT_COLUMNS = ["experiment", "run_id", "role", "method", "family", "data", "data_options", "selection", "teacher_run",
                "commit", "device_name", "run_dir"]
NUMERIC_COLUMNS = [column for column in COLUMNS if column not in TEXT_COLUMNS]

TEACHER_METHODS = {"stargan"}  # methods that only ever train a teacher
NO_TEACHER_METHODS = {"scratch", "stargan"}  # methods that learn from labels alone
WEIGHT_NAMES = ("hard_weight", "temperature", "kd_weight")


def method_weights(method: str) -> tuple[str, ...]:
    """The KD/LIT weights (hard_weight = alpha, temperature = tau, kd_weight = beta) that
    `method` reads, from its catalogue entry (torch-free); all three for a method the
    catalogue lacks, since which it reads is unknown."""
    if method not in catalog.METHODS:
        return WEIGHT_NAMES
    return tuple(weight for weight in WEIGHT_NAMES if weight in catalog.METHODS.get(method).uses)
# the timings of a speed-stage file: PyTorch per device, ONNX Runtime per execution provider (`lit speed --onnx`)
SPEED_ENGINES = ("cpu", "cuda", "onnxruntime-cpu", "onnxruntime-cuda")


def aggregate_runs(run_dirs: Iterable[str | Path], output: str | Path | None = None, experiment: str | None = None,
                   speed: Iterable[str | Path] = ()) -> pd.DataFrame:
    """One row per run directory (columns: `COLUMNS`), teachers first; written to `output`
    as CSV (atomically) when given. A run directory without eval.json is an error. Speed
    comes from the speed stage's files (`lit speed`, one figure per architecture) where
    they list the run, else from the run's eval.json (a generator's, or an older file)."""
    timings = read_speed_files(speed)
    rows = [read_run(run_dir, timings) for run_dir in run_dirs]
    if experiment is not None:
        for row in rows:
            row["experiment"] = experiment
    assign_roles(rows)
    table = pd.DataFrame(rows, columns=COLUMNS)
    for column in NUMERIC_COLUMNS:
        table[column] = pd.to_numeric(table[column], errors="coerce")
    table = sort_runs(table)
    if output is not None:
        atomic_write_text(output, table.to_csv(index=False))
    return table


def sort_runs(table: pd.DataFrame) -> pd.DataFrame:
    order = table.assign(teacher_first=table["role"] != "teacher")
    order = order.sort_values(["experiment", "teacher_first", "method", "depth", "seed", "run_id"], kind="stable")
    return order.drop(columns="teacher_first").reset_index(drop=True)


def fastest_round(name: str, figure: dict[str, Any]) -> float:
    """The table's value of a speed-stage figure: its fastest round (the lowest latency, the
    highest throughput). On a shared machine a slow spell only adds time: over the stage's
    many short rounds, the fastest batch-1 latency of back-to-back stages agreed within 1 to
    5% where the medians moved by up to 64% (README); the median and every round stay in
    the speed file."""
    return figure["min"] if name.startswith("latency") else figure["max"]


def read_speed_files(paths: Iterable[str | Path]) -> dict[str, dict[str, Any]]:
    """Run directory (resolved) -> its architecture's timings, from speed-stage files."""
    timings: dict[str, dict[str, Any]] = {}
    for path in map(Path, paths):
        for architecture in read_json_file(path).get("architectures", []):
            fastest = {device: {name: fastest_round(name, value) for name, value in figures.items()}
                       for device, figures in architecture.items() if device in SPEED_ENGINES}
            for run in architecture.get("runs", []):
                timings[str(Path(run).resolve())] = fastest
    return timings


def read_run(run_dir: str | Path, timings: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The table row of one run directory (role still unset)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    eval_path = run_dir / "eval.json"
    if not eval_path.is_file():
        raise FileNotFoundError(f"run directory {run_dir} has no eval.json: run `lit evaluate {run_dir}` first")
    evaluation = read_json_file(eval_path)
    config = run_config(run_dir, evaluation)
    summary = evaluation.get("train") or (read_json_file(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else {})
    model, method, data = config.get("model") or {}, config.get("method") or {}, config.get("data") or {}
    method_name = method.get("name")
    row = {
        "experiment": experiment_name(run_dir, evaluation, config),
        "run_id": run_dir.name, "role": None, "method": method_name,
        "family": model.get("family"), "depth": model.get("depth"), "seed": config.get("seed"),
        "data": data.get("name"),
        "data_options": json.dumps(data["options"], sort_keys=True) if data.get("options") else None,
        "selection": None if "fid" in evaluation else evaluation.get("selection") or (config.get("train") or {}).get("selection", "val"),
        "val_fraction": data.get("val_fraction"),
        "teacher_run": None if method_name in NO_TEACHER_METHODS else teacher_folder_name(method.get("teacher")),
        "run_dir": str(run_dir),
    }
    used = method_weights(method_name)
    row.update({name: method.get(name) if name in used else math.nan for name in WEIGHT_NAMES})
    row.update(accuracy_fields(evaluation))
    row.update(cost_fields(evaluation, (timings or {}).get(str(run_dir.resolve()))))
    row["epochs"] = summary.get("epochs") or None  # epoch-based phases (classifiers)
    row["iterations"] = summary.get("iterations") or None  # iteration-based phases (GANs)
    cost = summary.get("training_cost") or {}
    # every session's wall time where recorded (a resumed run's last session only, before)
    row["train_seconds"] = cost.get("wall_seconds", summary.get("seconds_this_session"))
    row["train_cpu_seconds"], row["train_peak_rss_mb"] = cost.get("cpu_seconds"), cost.get("peak_rss_mb")
    row.update(provenance_fields(summary.get("provenance") or {}))
    return row


def provenance_fields(provenance: dict[str, Any]) -> dict[str, Any]:
    """The code and machine that trained a run: its git commit (short, "+dirty" with
    uncommitted changes) and the device's name; None where the run did not record them."""
    commit = provenance.get("git_commit")
    if commit:
        commit = commit[:10] + ("+dirty" if provenance.get("git_dirty") else "")
    return {"commit": commit, "device_name": provenance.get("device_name")}


def read_json_file(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-run the step that writes it") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path} should hold a JSON object, got {type(payload).__name__}")
    return payload


def run_config(run_dir: Path, evaluation: dict[str, Any]) -> dict[str, Any]:
    """The resolved run config: the one inside eval.json, else the run's config.yaml."""
    if isinstance(evaluation.get("config"), dict):
        return evaluation["config"]
    if (run_dir / "config.yaml").is_file():
        return yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    raise FileNotFoundError(f"run directory {run_dir} has no config (config.yaml or a config in eval.json)")


def experiment_name(run_dir: Path, evaluation: dict[str, Any], config: dict[str, Any]) -> str:
    marker = run_dir / "experiment"
    if marker.is_file() and marker.read_text().strip():
        return marker.read_text().strip()
    for source in (evaluation, config):
        if source.get("experiment"):
            return str(source["experiment"])
    parent = run_dir.resolve().parent
    if parent.parent.name == "runs":  # the pipeline's layout: runs/<experiment>/<run-id>/
        return parent.name
    if parent.name == "runs" and parent.parent.name:  # <experiment>/runs/<run-id>/
        return parent.parent.name
    return str((config.get("data") or {}).get("name") or "experiment")


def teacher_folder_name(teacher: str | None) -> str | None:
    """The run folder of a teacher given as a run directory or as a checkpoint inside one
    (`<run>/checkpoints/best.pt`)."""
    if not teacher:
        return None
    path = Path(str(teacher).rstrip("/\\"))
    if path.suffix in (".pt", ".pth"):
        path = path.parent
    if path.name == "checkpoints":
        path = path.parent
    return path.name or None


def accuracy_fields(evaluation: dict[str, Any]) -> dict[str, Any]:
    names = ("test_acc_selected", "test_acc_last", "test_acc_oracle", "val_acc_selected", "val_acc_last",
             "selected_epoch", "last_epoch", "oracle_epoch", "fid")
    return {name: evaluation.get(name) for name in names}


def cost_fields(evaluation: dict[str, Any], timing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parameters and FLOPs from a run's eval.json; speed from its architecture's timing
    where the speed stage measured it, else from eval.json (ONNX Runtime's CPU latency only
    from a speed stage run with `--onnx`)."""
    speed = timing if timing is not None else evaluation.get("speed") or {}
    cpu, cuda, onnx_cpu = speed.get("cpu") or {}, speed.get("cuda") or {}, speed.get("onnxruntime-cpu") or {}
    return {
        "params": evaluation.get("params"),
        "flops": evaluation.get("flops"),
        "macs": evaluation.get("macs"),
        "latency_ms_cpu": cpu.get("latency_ms_batch1"),
        "throughput_cpu": first_matching(cpu, "throughput_per_s"),
        "latency_ms_cuda": cuda.get("latency_ms_batch1"),
        "throughput_cuda": first_matching(cuda, "throughput_per_s"),
        "latency_ms_onnx_cpu": onnx_cpu.get("latency_ms_batch1"),
    }


def first_matching(values: dict[str, Any], prefix: str) -> Any:
    """The value of the first key starting with `prefix` (the batch size is in the key's name)."""
    return next((value for key, value in sorted(values.items()) if key.startswith(prefix)), None)


def assign_roles(rows: list[dict[str, Any]]) -> None:
    named_teachers = {(row["experiment"], row["teacher_run"]) for row in rows if row["teacher_run"]}
    for row in rows:
        row["role"] = "teacher" if is_teacher(row, named_teachers) else "student"


def is_teacher(row: dict[str, Any], named_teachers: set[tuple[str, str]]) -> bool:
    if row["method"] in TEACHER_METHODS:
        return True
    if row["teacher_run"]:  # a run that learnt from a teacher is a student
        return False
    named_by_folder = row["method"] == "scratch" and row["run_id"].startswith("teacher")
    return named_by_folder or (row["experiment"], row["run_id"]) in named_teachers
