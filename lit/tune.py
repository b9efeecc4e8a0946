"""Validation tuning of the distillation weights, as the LIT paper: tau first (KD runs with
a small student), then alpha with tau fixed (KD), then beta with both fixed (LIT).

Each trial is an ordinary run directory, `out_dir/trials/<stage>-<value>/`, scored by the
validation accuracy of its selected checkpoint (`best_val_acc` of its summary); the test
split is never evaluated. A trial whose summary exists is read, not rerun, and a killed
trial resumes. A stage with an empty grid keeps the base config's value (pinned). Ties go
to the value listed first. Outputs, each written atomically: `tuning.csv` (one row a
trial), `tuning.png` (validation accuracy against each tuned value) and `tuned.json`
(the chosen values; `method.tuned=<it>` hands them to the final runs).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

from lit.config import ConfigError, RunConfig, from_dict
from lit.runtime.files import atomic_write_bytes, atomic_write_text

# (stage = the tuned key, the method its trials train), in the paper's order
STAGES: tuple[tuple[str, str], ...] = (("temperature", "kd"), ("hard_weight", "kd"), ("kd_weight", "lit"))
CSV_COLUMNS = ("stage", "method", "temperature", "hard_weight", "kd_weight", "val_acc")


def trial_config(base: RunConfig, method: str, teacher: str, values: dict[str, float]) -> RunConfig:
    settings = base.to_dict()
    settings["method"].update(name=method, teacher=str(teacher), tuned=None, **values)
    # a trial is scored on validation alone: it selects on validation and never logs the test split
    settings["train"]["selection"] = "val"
    settings["evaluate"]["test_every_epoch"] = False
    try:
        return from_dict(settings)
    except ConfigError as err:
        raise ConfigError(f"tuning needs a base config that can run {method}: {err}") from None


def run_trial(cfg: RunConfig, run_dir: Path) -> float:
    """The trial's validation accuracy at its selected checkpoint; trains it unless done."""
    from lit.engine.trainer import train

    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
    else:
        summary = train(cfg, run_dir, resume=True)  # resumes a killed trial, starts a new one
    return float(summary["best_val_acc"])


def tune(
    base_config: RunConfig,
    teacher: str | Path,
    grids: dict[str, Sequence[float]],
    out_dir: str | Path,
) -> dict[str, Any]:
    """Tune tau, alpha and beta in turn on validation accuracy; returns tuned.json's content."""
    unknown = sorted(set(grids) - {stage for stage, _ in STAGES})
    if unknown:
        raise ConfigError(f"tuning grid {unknown[0]!r} is not tunable (tunable: {', '.join(s for s, _ in STAGES)})")
    out_dir = Path(out_dir)
    chosen = {stage: getattr(base_config.method, stage) for stage, _ in STAGES}
    trials: list[dict[str, Any]] = []
    for stage, method in STAGES:
        grid = [float(v) for v in grids.get(stage) or ()]
        scores = []
        for value in grid:
            values = {**chosen, stage: value}
            cfg = trial_config(base_config, method, str(teacher), values)
            val_acc = run_trial(cfg, out_dir / "trials" / f"{stage}-{value:g}")
            scores.append(val_acc)
            trials.append({"stage": stage, "method": method, **values, "val_acc": val_acc})
        if grid:
            chosen[stage] = grid[scores.index(max(scores))]
    tuned = {**chosen, "trials": len(trials)}
    write_tuning_csv(trials, out_dir / "tuning.csv")
    atomic_write_bytes(out_dir / "tuning.png", tuning_figure_png(trials, chosen))
    atomic_write_text(out_dir / "tuned.json", json.dumps(tuned, indent=2, sort_keys=True) + "\n")
    return tuned


def write_tuning_csv(trials: list[dict[str, Any]], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: trial[k] for k in CSV_COLUMNS} for trial in trials)
    atomic_write_text(path, buffer.getvalue())


SYMBOLS = {"temperature": "temperature tau (KD)", "hard_weight": "hard-label weight alpha (KD)", "kd_weight": "KD weight beta (LIT)"}


def tuning_figure_png(trials: list[dict[str, Any]], chosen: dict[str, float]) -> bytes:
    """One panel per tuned stage: validation accuracy against the value, the chosen one starred."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from lit.report.figures import figure_bytes

    stages = [stage for stage, _ in STAGES if any(t["stage"] == stage for t in trials)]
    figure = Figure(figsize=(4 * max(len(stages), 1), 3.2), layout="constrained")
    FigureCanvasAgg(figure)
    if not stages:
        axes = figure.add_subplot()
        axes.text(0.5, 0.5, "nothing tuned: every value pinned", ha="center", va="center")
        axes.set_axis_off()
    for index, stage in enumerate(stages):
        axes = figure.add_subplot(1, len(stages), index + 1)
        rows = sorted((t[stage], t["val_acc"]) for t in trials if t["stage"] == stage)
        axes.plot([r[0] for r in rows], [r[1] for r in rows], marker="o")
        best = max(t["val_acc"] for t in trials if t["stage"] == stage and t[stage] == chosen[stage])
        axes.plot([chosen[stage]], [best], marker="*", markersize=16, color="tab:red", linestyle="none",
                  label=f"chosen {chosen[stage]:g}")
        axes.set_xlabel(SYMBOLS[stage])
        axes.set_ylabel("validation accuracy")
        axes.legend(loc="best")
        axes.grid(alpha=0.3)
    return figure_bytes(figure, "png")
