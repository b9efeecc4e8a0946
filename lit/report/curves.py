"""Learning curves: every run's `metrics.jsonl` in one tidy table (a DVC plot), and one
figure per experiment with the mean and a band of one standard deviation over seeds per
method, the phases of each method marked.

A record is one epoch of a classifier (one `train.log_every` interval of a GAN): every
loss term (`loss_*`), the total `loss`, the learning rate, train and validation accuracy,
and the per-epoch test accuracy where the oracle was on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lit.runtime.files import atomic_write_text

RUN_KEYS = ["experiment", "run_id", "role", "method", "family", "depth", "seed"]
DROPPED = {"seconds", "images_per_s"}  # timing, not learning
PANELS = (("val_acc", "validation accuracy"), ("train_acc", "training accuracy"), ("loss", "training loss (sum of terms)"))


def gather_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per logged record of every run in a run table (runs without a metrics log
    are skipped); `step` is the epoch, or the iteration of an iteration-based phase."""
    rows = []
    for _, run in runs.iterrows():
        path = Path(str(run["run_dir"])) / "metrics.jsonl"
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            record = {k: v for k, v in json.loads(line).items() if k not in DROPPED}
            step = record.get("epoch") if "phase_epoch" in record else record.get("iteration")
            rows.append({**{key: run[key] for key in RUN_KEYS}, "step": step, **record})
    curves = pd.DataFrame(rows)
    if curves.empty:
        return pd.DataFrame(columns=[*RUN_KEYS, "step"])
    loss_terms = sorted(c for c in curves.columns if c.startswith("loss_"))
    first = [*RUN_KEYS, "step", "phase", "epoch", "iteration", "lr", "loss", *loss_terms]
    return curves[[c for c in first if c in curves] + [c for c in curves.columns if c not in first]]


def write_curves(runs: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    curves = gather_curves(runs)
    atomic_write_text(path, curves.to_csv(index=False))
    return curves


def shown_runs(curves: pd.DataFrame) -> pd.DataFrame:
    """The teacher and, per student method, its shallowest depth (the compression target)."""
    students = curves[curves["role"] == "student"]
    shallowest = students.groupby("method")["depth"].transform("min")
    return pd.concat([curves[curves["role"] == "teacher"], students[students["depth"] == shallowest]])


def curves_figure(curves: pd.DataFrame, experiment: str, colours: dict[str, str], labels: dict[str, str]) -> Figure:
    """Panels of the metrics the runs logged, mean ± std over seeds per (role, method,
    depth); a dotted line where a method's phase changes, named after the new phase."""
    shown = shown_runs(curves)
    panels = [(column, title) for column, title in PANELS if column in shown and shown[column].notna().any()]
    figure = Figure(figsize=(5.0 * max(len(panels), 1), 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes_list = figure.subplots(1, max(len(panels), 1), squeeze=False)[0]
    spare = iter(["#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"] * 4)
    palette: dict[tuple, str] = {}
    for (role, method, depth), frame in shown.groupby(["role", "method", "depth"], sort=True):
        colour = "black" if role == "teacher" else colours.get(method) or palette.setdefault((method, depth), next(spare))
        label = f"{'teacher' if role == 'teacher' else labels.get(method, method)} {int(depth)}"
        for axes, (column, _) in zip(axes_list, panels):
            stats = frame.groupby("step")[column].agg(["mean", "std", "count"]).dropna(subset=["mean"])
            axes.plot(stats.index, stats["mean"], color=colour, linewidth=1.6, label=label,
                      linestyle="--" if role == "teacher" else "-")
            band = stats["std"].fillna(0.0)
            axes.fill_between(stats.index, stats["mean"] - band, stats["mean"] + band, color=colour, alpha=0.15, linewidth=0)
            mark_phases(axes, frame, colour)
    unit = "epoch" if shown.get("phase_epoch") is not None and shown["phase_epoch"].notna().any() else "iteration"
    for axes, (column, title) in zip(axes_list, panels):
        axes.set_title(title, fontsize="medium")
        axes.set_xlabel(unit)
        axes.grid(True, alpha=0.3)
        if column == "loss":
            axes.set_yscale("log")
    if not panels:
        axes_list[0].text(0.5, 0.5, "no run of this experiment has a metrics log", ha="center", va="center",
                          transform=axes_list[0].transAxes)
        axes_list[0].set_axis_off()
    else:
        axes_list[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False,
                             title="mean ± std over seeds", title_fontsize="small")
    figure.suptitle(f"{experiment}: learning curves (teacher and each method's shallowest student)", fontsize="medium")
    return figure


def mark_phases(axes, frame: pd.DataFrame, colour: str) -> None:
    """A dotted vertical line at the first step of every phase after the first."""
    first_seed = frame[frame["seed"] == frame["seed"].min()].sort_values("step")
    changes = first_seed[first_seed["phase"].ne(first_seed["phase"].shift()) & first_seed["phase"].shift().notna()]
    for _, row in changes.iterrows():
        start = row["step"] - 0.5 if "phase_epoch" in row and pd.notna(row.get("phase_epoch")) else row["step"]
        axes.axvline(start, color=colour, linestyle=":", linewidth=1.0)
        axes.annotate(str(row["phase"]), (start, 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top",
                      ha="right", fontsize="x-small", color=colour)
