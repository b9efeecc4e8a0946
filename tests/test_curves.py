"""Learning curves: every run's per-epoch records in one table, and the per-experiment figure."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lit.report.aggregate import aggregate_runs
from lit.report.curves import curves_figure, gather_curves, shown_runs, write_curves
from lit.report.figures import METHOD_COLOURS, METHOD_LABELS, write_report
from test_report import write_experiment


def write_metrics(run_dir: Path, method: str, seed: int) -> list[dict]:
    """Four epochs; LIT switches from its `lit` phase to `finetune` at epoch 3."""
    phases = ["lit", "lit", "finetune", "finetune"] if method == "lit" else ["train"] * 4
    records = []
    for epoch, phase in enumerate(phases, start=1):
        record = {"loss_kd": 1.0 / epoch, "phase": phase, "lr": 0.1, "train_acc": 0.5 + 0.05 * epoch,
                  "images_per_s": 100.0, "seconds": 1.0, "loss": 1.0 / epoch, "phase_epoch": 1, "epoch": epoch,
                  "val_acc": 0.4 + 0.1 * epoch + 0.01 * seed, "val_loss": 1.0}
        if method == "lit" and phase == "lit":
            record["loss_mse_section0"] = 0.5 / epoch
        records.append(record)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


@pytest.fixture
def runs(tmp_path) -> pd.DataFrame:
    dirs = write_experiment(tmp_path / "results")
    for run_dir in dirs:
        method = run_dir.name.split("-")[0]
        seed = int(run_dir.name.rsplit("-s", 1)[1]) if "-s" in run_dir.name else 0
        write_metrics(run_dir, "scratch" if method == "teacher" else method, seed)
    return aggregate_runs(dirs, tmp_path / "table.csv")


def test_every_record_of_every_run_is_a_row_with_its_run_and_every_loss_term(runs, tmp_path):
    curves = write_curves(runs, tmp_path / "curves.csv")
    assert len(curves) == 4 * len(runs)
    assert list(curves.columns[:8]) == ["experiment", "run_id", "role", "method", "family", "depth", "seed", "step"]
    lit = curves[curves["method"] == "lit"]
    assert lit["loss_mse_section0"].notna().sum() == 2 * len(runs[runs["method"] == "lit"])
    assert "seconds" not in curves and "images_per_s" not in curves  # timing is not learning
    again = pd.read_csv(tmp_path / "curves.csv")
    assert again.shape == curves.shape


def test_the_figure_shows_mean_and_band_per_method_and_marks_phases(runs):
    curves = gather_curves(runs)
    shown = shown_runs(curves)
    assert set(shown.loc[shown["role"] == "student", "depth"]) == {8}  # each method's shallowest student
    figure = curves_figure(curves, "toy", METHOD_COLOURS, METHOD_LABELS)
    val_axes = figure.axes[0]
    labels = val_axes.get_legend_handles_labels()[1]
    assert labels == ["KD 8", "LIT 8", "scratch 8", "teacher 56"]
    lit_line = val_axes.get_lines()[[i for i, l in enumerate(labels) if l == "LIT 8"][0]]
    assert list(lit_line.get_ydata()) == pytest.approx([0.505, 0.605, 0.705, 0.805])  # mean of seeds 0 and 1
    phase_marks = [t.get_text() for t in val_axes.texts]
    assert phase_marks == ["finetune"]  # only LIT changes phase, at epoch 3


def test_write_report_draws_the_curves_of_each_experiment(runs, tmp_path):
    paths = write_report(tmp_path / "table.csv", tmp_path / "out")
    curves_png = [p for p in paths if p.name.endswith("learning-curves.png")]
    assert len(curves_png) == 1 and curves_png[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runs_without_metrics_still_get_a_figure_that_says_so(tmp_path):
    dirs = write_experiment(tmp_path / "results")
    aggregate_runs(dirs, tmp_path / "table.csv")
    paths = write_report(tmp_path / "table.csv", tmp_path / "out")
    assert any(p.name.endswith("learning-curves.png") for p in paths)
