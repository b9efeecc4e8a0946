"""Markdown renderings of the report tables: the CSV keeps raw numbers (accuracies as
fractions), the markdown is for reading (percentages, `mean ± std`, `2.41x`)."""

from __future__ import annotations

import math
from typing import Callable

import pandas as pd

from lit.report.experiment_tables import COMPRESSION_COLUMNS, FID_COLUMNS, SUMMARY_COLUMNS


def _number(pattern: str, scale: float = 1.0) -> Callable[[object], str]:
    def render(value: object) -> str:
        if isinstance(value, str):
            return value
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return pattern.format(value * scale)

    return render


def _mean_std(mean: float, std: float, scale: float) -> str:
    if mean is None or math.isnan(mean):
        return ""
    text = f"{mean * scale:.2f}"
    return text if std is None or math.isnan(std) else f"{text} ± {std * scale:.2f}"


POINTS = _number("{:.2f}", 100.0)  # accuracies as percentages, without the sign: the header has it
COUNT = _number("{:,.0f}")
RATIO = _number("{:.2f}x")
PLAIN = _number("{:g}")
FORMATS = {
    "depth": PLAIN, "student_depth": PLAIN, "teacher_depth": PLAIN, "n_seeds": PLAIN,
    "test_acc_last_mean": POINTS, "teacher_test_acc": POINTS, "test_acc_mean": POINTS, "test_acc_oracle_mean": POINTS,
    "val_acc_mean": POINTS,
    "accuracy_drop": _number("{:+.2f}", 100.0), "tolerance": POINTS,
    "params": COUNT, "flops_m": _number("{:.2f}"), "latency_ms_cpu": _number("{:.3f}"), "latency_ms_cuda": _number("{:.3f}"),
    "latency_ms_onnx_cpu": _number("{:.3f}"),
    "throughput_cpu": COUNT, "throughput_cuda": COUNT,
    "speedup_vs_teacher": RATIO, "compression_by_depth": RATIO, "compression_by_params": RATIO, "compression_by_flops": RATIO,
    "train_minutes": _number("{:.2f}"), "train_cpu_minutes": _number("{:.2f}"), "train_cost_vs_kd": RATIO,
    "train_peak_rss_mb": COUNT,
    "hard_weight": PLAIN, "temperature": PLAIN, "kd_weight": PLAIN, "fid_mean": _number("{:.2f}"),
}
HEADERS = {
    "n_seeds": "seeds", "test_acc_mean": "test % selected (mean ± std)", "test_acc_last_mean": "test % last epoch",
    "test_acc_oracle_mean": "test % best test epoch (oracle, the paper's protocol)", "published": "published test % (source: protocol)",
    "protocol": "protocol", "compression_by_flops": "compression (FLOPs)",
    "train_minutes": "training (min per run)", "train_cpu_minutes": "training (CPU-min per run)",
    "train_cost_vs_kd": "training CPU vs KD", "train_peak_rss_mb": "peak memory (MB)",
    "val_acc_mean": "val acc % (mean ± std)",
    "fid_mean": "FID (mean ± std)", "params": "parameters", "flops_m": "FLOPs (M)",
    "latency_ms_cpu": "CPU latency (ms, batch 1)", "throughput_cpu": "CPU throughput (/s)",
    "latency_ms_cuda": "GPU latency (ms, batch 1)", "throughput_cuda": "GPU throughput (/s)",
    "latency_ms_onnx_cpu": "ONNX Runtime latency (ms, batch 1)",
    "speedup_vs_teacher": "speed-up", "compression_by_depth": "compression (depth)",
    "compression_by_params": "compression (params)", "hard_weight": "hard_weight (α)",
    "temperature": "temperature (τ)", "kd_weight": "kd_weight (β)", "student_depth": "smallest student (depth)",
    "teacher_test_acc": "teacher acc %", "accuracy_drop": "drop vs teacher (points)", "teacher_depth": "teacher depth",
    "tolerance": "tolerance (points)",
}


PROTOCOL_NOTE = (
    "Test accuracy of three checkpoints, each labelled: *selected* is the one the run reports by its selection "
    "rule (the protocol column: the best validation epoch, or the last epoch where a run trains on all of its "
    "training set), *last epoch* the final one, and *best test epoch* the best test accuracy over all epochs, an "
    "oracle that reads the test set (the LIT paper's protocol; nothing selects on it). Published values match "
    "data set, model and teacher, and say their own protocol (docs/protocol.md)."
)


def points_text(tolerance: float) -> str:
    """An absolute accuracy difference in percentage points: 0.01 -> "1 point"."""
    points = round(tolerance * 100, 6)
    return f"{points:g} point" + ("" if points == 1 else "s")


def render_table(table: pd.DataFrame, columns: list[str]) -> str:
    """`table[columns]` as a markdown table: means paired with their stds, empty columns dropped."""
    shown, align = pd.DataFrame(index=table.index), []
    for column in columns:
        if column.endswith("_std") or column not in table or table[column].isna().all():
            continue
        std_column = column.replace("_mean", "_std")
        if column.endswith("_mean") and std_column in table:
            scale = 100.0 if column.startswith(("test_acc", "val_acc")) else 1.0
            shown[HEADERS.get(column, column)] = [_mean_std(m, s, scale) for m, s in zip(table[column], table[std_column])]
        else:
            shown[HEADERS.get(column, column)] = table[column].map(FORMATS.get(column, _number("{}")))
        numeric = pd.api.types.is_numeric_dtype(table[column]) or column == "student_depth"
        align.append("right" if numeric else "left")
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align)


def summary_markdown(experiment: str, summary: pd.DataFrame, warnings: list[str] | None = None) -> str:
    intro = (f"# {experiment}: every configuration\n\n{PROTOCOL_NOTE} Mean ± sample std over seeds; speed-up "
             "and compression are against the teacher.\n\n")
    notes = "".join(f"> **Warning:** {warning}\n\n" for warning in warnings or [])
    return intro + notes + render_table(summary, SUMMARY_COLUMNS) + "\n"


def fid_markdown(experiment: str, fid: pd.DataFrame) -> str:
    intro = (f"# {experiment}: FID by generator depth\n\nDepth = residual blocks of the generator; FID mean ± sample std "
             "over seeds (lower is better); speed-up and compression are against the teacher.\n\n")
    return intro + render_table(fid, FID_COLUMNS) + "\n"


def compression_markdown(experiment: str, compression: pd.DataFrame, teacher_label: str | None, tolerance: float) -> str:
    if teacher_label is None:
        intro = f"# {experiment}: compression\n\nNo teacher run in this experiment, so no student can be compared with one.\n\n"
    else:
        intro = (f"# {experiment}: compression without loss\n\nPer method, the smallest student (fewest parameters) whose "
                 f"mean selected test accuracy is at least the teacher's ({teacher_label}) minus {points_text(tolerance)} "
                 "(absolute); \"none\" where no student qualifies. Methods compare by parameters, FLOPs and measured "
                 "speed-up; compression by depth only where the depth differs.\n\n")
    return intro + render_table(compression, COMPRESSION_COLUMNS) + "\n"
