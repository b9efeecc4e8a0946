"""Figures and tables of every experiment in an aggregated run table.

`write_report` writes, per experiment and prefixed by its name: the depth-vs-accuracy
figure (PNG and PDF), the summary of every configuration and the compression table (CSV
and markdown); a GAN experiment (runs with an FID) gets a depth-vs-FID figure and an FID
table instead. Figures are drawn on matplotlib's Agg canvas without pyplot, so no display
or global backend is involved, and every file is written atomically.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import PercentFormatter

from lit.report.aggregate import COLUMNS, WEIGHT_NAMES
from lit.report.curves import curves_figure, gather_curves
from lit.report.experiment_tables import (
    ExperimentTables, compression_table, fid_table, method_order, provenance_warnings, summary_table,
    tabulate_experiment,
)
from lit.runtime.files import atomic_write_bytes, atomic_write_text
from lit.report.files import file_stem
from lit.report.markdown import compression_markdown, fid_markdown, points_text, summary_markdown
from lit.report.published import read_published

REQUIRED_COLUMNS = ["experiment", "run_id", "role", "method", "depth"]
METHOD_LABELS = {"scratch": "scratch", "kd": "KD", "lit": "LIT", "fitnets": "FitNets", "stargan": "teacher", "gan_lit": "LIT",
                 "at": "AT", "dkd": "DKD", "reviewkd": "ReviewKD", "crd": "CRD", "slimming": "slimming"}
METHOD_COLOURS = {"scratch": "#7f7f7f", "kd": "#1f77b4", "lit": "#d62728", "fitnets": "#2ca02c", "at": "#9467bd",
                  "dkd": "#ff7f0e", "reviewkd": "#8c564b", "crd": "#e377c2", "slimming": "#17becf"}
SPARE_COLOURS = ["#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]
FAMILY_LABELS = {"resnet": "ResNet", "resnext": "ResNeXt", "vdcnn": "VDCNN", "stargan": "StarGAN"}
WEIGHT_SYMBOLS = {"hard_weight": "α", "temperature": "τ", "kd_weight": "β"}


@dataclass(frozen=True)
class Metric:
    """What the y axis shows: a column of the configurations and how to read it."""

    name: str
    mean: str
    std: str
    axis_label: str
    title: str
    percent: bool
    x_label: str = "student depth (layers)"


ACCURACY = Metric("test accuracy", "test_acc_mean", "test_acc_std", "test accuracy (selected checkpoint)", "test accuracy by student depth", True)
FID = Metric("FID", "fid_mean", "fid_std", "FID (lower is better)", "FID by generator depth", False, "student residual blocks")


def model_label(family: str, depth: float) -> str:
    return f"{FAMILY_LABELS.get(family, family)}-{int(depth)}"


def student_series(students: pd.DataFrame) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """(label, method, configurations by depth) per plotted line: one per method, or one per
    family and weight setting of a method run with several, labelled by what differs."""
    keys = ["family", *WEIGHT_NAMES]
    for method in method_order(students["method"]):
        settings = list(students[students["method"] == method].groupby(keys, dropna=False, sort=True))
        differing = [k for i, k in enumerate(keys) if len({str(setting[i]) for setting, _ in settings}) > 1]
        for setting, frame in settings:
            values = dict(zip(keys, setting))
            details = [str(values[k]) if k == "family" else f"{WEIGHT_SYMBOLS[k]}={values[k]:g}" for k in differing]
            label = METHOD_LABELS.get(method, method) + (f" ({', '.join(details)})" if details else "")
            yield label, method, frame.sort_values("depth")


def dodge_width(depths: pd.Series, lines: int) -> float:
    """Horizontal offset between lines, so error bars at one depth do not hide each other."""
    if lines < 2:
        return 0.0
    distinct = sorted(set(depths))
    spacing = min((b - a for a, b in zip(distinct, distinct[1:])), default=max(distinct[0], 1))
    return 0.2 * spacing / lines


def series_colours(series: list[tuple[str, str, pd.DataFrame]]) -> list[str]:
    """One colour per plotted series: the method's own, else the next spare one."""
    spare = iter(SPARE_COLOURS * 4)
    return [METHOD_COLOURS.get(method) or next(spare) for _, method, _ in series]


def depth_figure(tables: ExperimentTables, experiment: str, metric: Metric = ACCURACY, tolerance: float | None = None) -> Figure:
    """Mean metric against student depth, one line per method with sample-std error bars; the
    teacher as a dashed horizontal line (and, for accuracy, the band within `tolerance` of it).
    An experiment whose every series has one depth (a comparison of methods at one student
    size) gets `method_figure` instead: lines of one point each would pile up at one depth."""
    series = list(student_series(tables.students))
    if len(series) > 1 and all(len(frame) == 1 for _, _, frame in series):
        return method_figure(tables, experiment, series, metric, tolerance)
    figure = Figure(figsize=(9.0, 4.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = dodge_width(tables.students["depth"], len(series))
    for index, ((label, method, frame), colour) in enumerate(zip(series, series_colours(series))):
        offset = (index - (len(series) - 1) / 2) * width
        axes.errorbar(frame["depth"] + offset, frame[metric.mean], yerr=frame[metric.std].fillna(0.0), label=label,
                      color=colour, marker="o", markersize=5, linewidth=1.8, capsize=4, elinewidth=1.2)
        if metric.percent and frame["test_acc_oracle_mean"].notna().any():
            axes.plot(frame["depth"] + offset, frame["test_acc_oracle_mean"], linestyle="none", marker="^", markersize=6,
                      markerfacecolor="none", color=colour, label=f"{label}: best test epoch (oracle)")
    draw_published(axes, tables.students, metric)
    if tables.teacher is not None:
        draw_teacher(axes, tables.teacher, metric, tolerance)
    label_depths(axes, tables.students, metric)
    axes.set_ylabel(metric.axis_label)
    if metric.percent:
        axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=1))
    figure.suptitle(f"{experiment}: {metric.title}")  # over the figure: the axes are narrowed by the legend
    axes.margins(x=0.08)
    axes.grid(True, alpha=0.3)
    place_legend(axes, tables, metric)
    return figure


def method_figure(tables: ExperimentTables, experiment: str, series: list[tuple[str, str, pd.DataFrame]],
                  metric: Metric, tolerance: float | None) -> Figure:
    """One row per student configuration, best at the top: the mean with its sample-std bar
    (and the best test epoch, an oracle, as a hollow triangle), the teacher as a dashed
    vertical line with the band within `tolerance` of it. Readable with any number of methods."""
    better_high = metric.percent  # accuracy: higher is better; FID: lower
    rows = sorted(zip(series, series_colours(series)), key=lambda item: item[0][2][metric.mean].iloc[0] * (1 if better_high else -1))
    figure = Figure(figsize=(9.0, 1.6 + 0.42 * len(rows)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    ticks = []
    for y, ((label, method, frame), colour) in enumerate(rows):
        row = frame.iloc[0]
        axes.errorbar([row[metric.mean]], [y], xerr=[0.0 if pd.isna(row[metric.std]) else row[metric.std]], color=colour,
                      marker="o", markersize=6, linestyle="none", capsize=4, elinewidth=1.4, label="selected checkpoint")
        if metric.percent and pd.notna(row.get("test_acc_oracle_mean")):
            axes.plot([row["test_acc_oracle_mean"]], [y], linestyle="none", marker="^", markersize=7, markerfacecolor="none",
                      color=colour, label="best test epoch (oracle)")
        for value, source in row.get("published_values") or []:
            axes.scatter([value], [y], marker="*", s=90, zorder=3, color=colour, edgecolors="black", linewidths=0.6,
                         label=f"published ({source}), own protocol")
        axes.text(1.01, y, f"{row[metric.mean]:.1%}" if metric.percent else f"{row[metric.mean]:.2f}",
                  transform=axes.get_yaxis_transform(), va="center", fontsize="small", color=colour)
        params = f", {row['params'] / 1e3:,.0f}k params" if row.get("params", 0) > 0 else ""
        ticks.append(f"{label} {model_label(row['family'], row['depth'])}{params}")
    axes.set_yticks(range(len(rows)), ticks)
    axes.set_ylim(-0.7, len(rows) - 0.3)
    if tables.teacher is not None:
        draw_teacher(axes, tables.teacher, metric, tolerance, across=True)
    axes.set_xlabel(metric.axis_label)
    if metric.percent:
        axes.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=1))
    figure.suptitle(f"{experiment}: {metric.name} by method")
    axes.grid(True, axis="x", alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    first = {}  # one entry per kind of mark, drawn in black (each row's colour is its tick label's)
    neutral = {"selected checkpoint": Line2D([], [], color="black", marker="o", linestyle="none"),
               "best test epoch (oracle)": Line2D([], [], color="black", marker="^", markerfacecolor="none", linestyle="none")}
    for handle, label in zip(handles, labels):
        first.setdefault(label, neutral.get(label, handle))
    axes.legend(list(first.values()), list(first), loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.5 / len(rows)),
                ncols=2, fontsize="small", frameon=False, title=legend_title(tables, metric), title_fontsize="small")
    return figure


def place_legend(axes, tables: ExperimentTables, metric: Metric) -> None:
    """The legend outside the axes, so it never hides a point; the students first, the teacher below them."""
    handles, labels = axes.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (labels[i].startswith(("teacher", "within")), i))
    axes.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper left", bbox_to_anchor=(1.02, 1.0),
                fontsize="small", frameon=False, title=legend_title(tables, metric), title_fontsize="small")


def legend_title(tables: ExperimentTables, metric: Metric) -> str:
    """What the lines are, with the protocol of the students' numbers."""
    title = "mean ± std over seeds"
    protocols = sorted(set(tables.students["protocol"].dropna())) if metric.percent else []
    return title + "".join(f"\n{text}" for text in protocols)


def draw_published(axes, students: pd.DataFrame, metric: Metric) -> None:
    """Published values of matching configurations as stars, one legend entry per source."""
    points: dict[str, list[tuple[float, float, str]]] = {}
    for _, row in students.iterrows():
        for value, source in row.get("published_values") or []:
            points.setdefault(source, []).append((row["depth"], value, row["method"]))
    for source, entries in points.items():
        axes.scatter([d for d, _, _ in entries], [v for _, v, _ in entries], marker="*", s=90, zorder=3,
                     color=[METHOD_COLOURS.get(m, "#444444") for _, _, m in entries], edgecolors="black", linewidths=0.6,
                     label=f"published ({source}), own protocol")


def label_depths(axes, students: pd.DataFrame, metric: Metric) -> None:
    """Ticks at the student depths, each with the student's parameter count beneath it."""
    depths = sorted(set(students["depth"]))
    params = students.groupby("depth")["params"].median()
    labels = [f"{depth:g}" + (f"\n{params[depth] / 1e3:,.0f}k params" if params.get(depth, 0) > 0 else "") for depth in depths]
    axes.set_xticks(depths, labels)
    axes.set_xlabel(metric.x_label)


def draw_teacher(axes, teacher: pd.Series, metric: Metric, tolerance: float | None, across: bool = False) -> None:
    """The teacher's value as a dashed line (and the band within `tolerance` of it):
    horizontal over a depth axis, vertical (`across`) where the metric is the x axis."""
    value = teacher[metric.mean]
    shown = f"{value:.1%}" if metric.percent else f"{metric.name} {value:.2f}"
    line, span = (axes.axvline, axes.axvspan) if across else (axes.axhline, axes.axhspan)
    line(value, color="black", linestyle="--", linewidth=1.3, label=f"teacher {model_label(teacher['family'], teacher['depth'])}: {shown}")
    if metric.percent and tolerance:
        span(value - tolerance, value, color="black", alpha=0.07, linewidth=0, label=f"within {points_text(tolerance)} of the teacher")


def figure_bytes(figure: Figure, file_format: str) -> bytes:
    buffer = io.BytesIO()
    metadata = {"CreationDate": None} if file_format == "pdf" else None  # the same table gives the same bytes
    figure.savefig(buffer, format=file_format, dpi=150, metadata=metadata)
    return buffer.getvalue()


def named(prefix: Path, suffix: str) -> Path:
    """`<output_dir>/<experiment>-<suffix>` from `prefix` = `<output_dir>/<experiment>`."""
    return prefix.with_name(f"{prefix.name}-{suffix}")


def write_figure(figure: Figure, prefix: Path, name: str) -> list[Path]:
    return [atomic_write_bytes(named(prefix, f"{name}.{kind}"), figure_bytes(figure, kind)) for kind in ("png", "pdf")]


def read_run_table(table_csv: str | Path) -> pd.DataFrame:
    table_csv = Path(table_csv)
    if not table_csv.is_file():
        raise FileNotFoundError(f"run table {table_csv} does not exist: make it with `lit aggregate`")
    runs = pd.read_csv(table_csv)
    missing = [column for column in REQUIRED_COLUMNS if column not in runs]
    if missing:
        raise ValueError(f"run table {table_csv} lacks the columns {', '.join(missing)}: make it with `lit aggregate`")
    if runs.empty:
        raise ValueError(f"run table {table_csv} holds no runs")
    for column in COLUMNS:
        if column not in runs:
            runs[column] = float("nan")
    return runs


def write_report(table_csv: str | Path, output_dir: str | Path, tolerance: float = 0.01,
                 published: str | Path | None = None) -> list[Path]:
    """Figures and tables of every experiment in `table_csv` into `output_dir`, with the
    matching values of the `published` results file beside ours; returns the paths."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be a non-negative accuracy difference (0.01 = 1 point), got {tolerance}")
    runs = read_run_table(table_csv)
    entries = read_published(published) if published is not None else []
    paths: list[Path] = []
    for experiment, experiment_runs in runs.groupby("experiment", sort=True):
        tables = tabulate_experiment(experiment_runs, entries)
        prefix = Path(output_dir) / file_stem(str(experiment))
        warnings = provenance_warnings(experiment_runs)
        for warning in warnings:
            print(f"lit report: {experiment}: warning: {warning}", file=sys.stderr)
        if tables.is_gan:
            paths += write_fid_report(tables, str(experiment), prefix)
        else:
            paths += write_accuracy_report(tables, str(experiment), prefix, tolerance, warnings)
        figure = curves_figure(gather_curves(experiment_runs), str(experiment), METHOD_COLOURS, METHOD_LABELS)
        paths.append(atomic_write_bytes(named(prefix, "learning-curves.png"), figure_bytes(figure, "png")))
    return paths


def write_accuracy_report(tables: ExperimentTables, experiment: str, prefix: Path, tolerance: float,
                          warnings: list[str] | None = None) -> list[Path]:
    paths = write_figure(depth_figure(tables, experiment, ACCURACY, tolerance), prefix, "depth-vs-accuracy")
    summary = summary_table(tables)
    compression = compression_table(tables, tolerance)
    teacher = tables.teacher
    teacher_label = None if teacher is None else f"{model_label(teacher['family'], teacher['depth'])}, {teacher['test_acc_mean']:.2%}"
    return paths + [
        atomic_write_text(named(prefix, "summary.csv"), summary.to_csv(index=False)),
        atomic_write_text(named(prefix, "summary.md"), summary_markdown(experiment, summary, warnings)),
        atomic_write_text(named(prefix, "compression.csv"), compression.to_csv(index=False)),
        atomic_write_text(named(prefix, "compression.md"), compression_markdown(experiment, compression, teacher_label, tolerance)),
    ]


def write_fid_report(tables: ExperimentTables, experiment: str, prefix: Path) -> list[Path]:
    paths = write_figure(depth_figure(tables, experiment, FID), prefix, "depth-vs-fid")
    fid = fid_table(tables)
    return paths + [
        atomic_write_text(named(prefix, "fid.csv"), fid.to_csv(index=False)),
        atomic_write_text(named(prefix, "fid.md"), fid_markdown(experiment, fid)),
    ]
