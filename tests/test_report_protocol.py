"""What the tables say of each number: the protocol column, the oracle, published values
beside ours (only where data set, model and teacher match) and compression by size."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lit.report.aggregate import aggregate_runs
from lit.report.experiment_tables import compression_table, summary_table, tabulate_experiment
from lit.report.figures import ACCURACY, depth_figure, write_report
from lit.report.published import read_published
from test_report import TEACHER_ID, config_row, write_experiment, write_run

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "config" / "reference" / "published.yaml"


def edit_eval(run_dir: Path, **fields) -> None:
    path = run_dir / "eval.json"
    evaluation = json.loads(path.read_text())
    for key, value in fields.items():
        if key == "data":
            evaluation["config"]["data"].update(value)
        else:
            evaluation[key] = value
    path.write_text(json.dumps(evaluation))


@pytest.fixture
def run_dirs(tmp_path) -> list[Path]:
    dirs = write_experiment(tmp_path / "results")
    for run_dir in dirs:
        edit_eval(run_dir, selection="val", data={"val_fraction": 0.1})
    return dirs


def test_the_protocol_and_the_oracle_reach_the_summary(run_dirs, tmp_path):
    for index, run_dir in enumerate(d for d in run_dirs if d.name.startswith("lit-resnet8")):
        edit_eval(run_dir, test_acc_oracle=0.95 + 0.01 * index, oracle_epoch=7)
    tables = tabulate_experiment(aggregate_runs(run_dirs))
    summary = summary_table(tables)
    lit8 = config_row(summary, "lit", 8)
    assert lit8["test_acc_oracle_mean"] == pytest.approx(0.955) and lit8["test_acc_oracle_std"] > 0
    assert lit8["protocol"] == "selected: best validation epoch (10% of train held out for validation, oracle logged)"
    assert config_row(summary, "kd", 8)["protocol"] == "selected: best validation epoch (10% of train held out for validation)"
    assert pd.isna(config_row(summary, "kd", 8)["test_acc_oracle_mean"])
    paths = write_report(_table(run_dirs, tmp_path), tmp_path / "out")
    markdown = next(p for p in paths if p.name.endswith("summary.md")).read_text()
    for label in ("test % selected", "test % last epoch", "best test epoch (oracle, the paper's protocol)", "protocol"):
        assert label in markdown


def _table(run_dirs: list[Path], tmp_path: Path) -> Path:
    aggregate_runs(run_dirs, tmp_path / "table.csv")
    return tmp_path / "table.csv"


def test_a_run_on_all_of_train_says_it_selected_the_last_epoch(tmp_path):
    run_dir = write_run(tmp_path / "r" / "runs" / "scratch-resnet8-s0", "scratch", 8, 0, 0.9, 78_000, 24e6, 0.5)
    edit_eval(run_dir, selection="last", data={"val_fraction": 0.0})
    summary = summary_table(tabulate_experiment(aggregate_runs([run_dir])))
    assert summary["protocol"].iloc[0] == "selected: last epoch (all of train trains)"


def test_published_values_show_only_where_data_model_and_teacher_match(run_dirs, tmp_path):
    published = read_published(PUBLISHED)
    tables = tabulate_experiment(aggregate_runs(run_dirs), published)
    summary = summary_table(tables)
    # the toy experiment is CIFAR-10 with a ResNet-56 teacher
    assert config_row(summary, "scratch", 56, "teacher")["published"] == "93.03 (resnet-paper: final model, single run)"
    scratch20 = config_row(summary, "scratch", 20)["published"]
    assert "91.25 (resnet-paper" in scratch20 and "92.37 (kd-zoo" in scratch20
    assert pd.isna(config_row(summary, "kd", 20)["published"])  # KD-Zoo's KD learnt from a ResNet-110
    assert pd.isna(config_row(summary, "lit", 20)["published"])  # LIT's checkpoints too
    assert pd.isna(config_row(summary, "scratch", 8)["published"])  # nobody published a ResNet-8
    figure = depth_figure(tables, "toy", ACCURACY, 0.01)
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert "published (resnet-paper), own protocol" in labels and "published (kd-zoo), own protocol" in labels


def test_a_subset_of_a_data_set_matches_no_published_value(run_dirs):
    for run_dir in run_dirs:
        edit_eval(run_dir, data={"options": {"subset_per_class": 1000}})
    summary = summary_table(tabulate_experiment(aggregate_runs(run_dirs), read_published(PUBLISHED)))
    assert summary["published"].isna().all()


def test_the_teacher_of_a_published_distillation_must_match(tmp_path):
    dirs = write_experiment(tmp_path / "results", accuracies={("lit", 20): (0.9, 0.91)})
    tables = tabulate_experiment(aggregate_runs(dirs), read_published(PUBLISHED))
    assert pd.isna(config_row(summary_table(tables), "lit", 20)["published"])
    teacher = tables.teacher.copy()
    teacher["depth"] = 110
    from lit.report.published import matching

    found = matching(read_published(PUBLISHED), config_row(tables.configs, "lit", 20), "cifar10", None, teacher)
    assert sorted(entry.value for entry in found) == pytest.approx([0.9185, 0.9309])


@pytest.mark.parametrize("entry, message", [
    ("{data: cifar10, family: resnet, depth: 20, method: kd, teacher: resnet110, protocol: last, source: s}",
     "expected exactly one of accuracy, fid"),
    ("{data: cifar10, family: resnet, depth: 20, method: kd, teacher: resnet110, accuracy: 90, protocol: nope, source: s}",
     "protocol 'nope' is not listed"),
    ("{data: cifar10, family: resnet, depth: 20, method: kd, teacher: big, accuracy: 90, protocol: last, source: s}",
     "teacher must be <family><depth>"),
    ("{data: cifar10, depth: 20, method: kd, teacher: null, accuracy: 90, protocol: last, source: s}", "missing family"),
])
def test_a_malformed_published_entry_is_named(entry, message, tmp_path):
    path = tmp_path / "published.yaml"
    path.write_text(f"sources: {{s: somewhere}}\nprotocols: {{last: last epoch}}\nresults:\n  - {entry}\n")
    with pytest.raises(ValueError, match=r"results\[0\]") as refused:
        read_published(path)
    assert message in str(refused.value)


def test_compression_compares_a_thinned_network_by_size_not_depth(run_dirs, tmp_path):
    teacher_dir = next(d for d in run_dirs if d.name == TEACHER_ID)
    slim = [write_run(teacher_dir.parent / f"slimming-resnet56-s{seed}", "slimming", 56, seed, 0.93, 60_000, 20e6, 0.4)
            for seed in (0, 1)]
    tables = tabulate_experiment(aggregate_runs(run_dirs + slim))
    row = config_row(tables.configs, "slimming", 56)
    assert pd.isna(row["compression_by_depth"])  # same depth as the teacher: depth says nothing
    assert row["compression_by_params"] == pytest.approx(850_000 / 60_000)
    assert row["compression_by_flops"] == pytest.approx(250 / 20)
    assert config_row(tables.configs, "scratch", 56, "teacher")["compression_by_depth"] == 1.0
    compression = compression_table(tables, 0.0)
    chosen = compression[compression["method"] == "slimming"].iloc[0]
    assert chosen["student_depth"] == 56 and chosen["params"] == 60_000


def test_training_cost_per_method_and_against_kd(tmp_path):
    dirs = write_experiment(tmp_path / "results")
    for run_dir in dirs:
        evaluation = json.loads((run_dir / "eval.json").read_text())
        method = evaluation["config"]["method"]["name"]
        cpu = {"kd": 60.0, "lit": 90.0}.get(method, 30.0) * (1 + evaluation["config"]["seed"])
        evaluation["train"]["training_cost"] = {"wall_seconds": cpu / 2, "cpu_seconds": cpu, "peak_rss_mb": 500.0}
        (run_dir / "eval.json").write_text(json.dumps(evaluation))
    summary = summary_table(tabulate_experiment(aggregate_runs(dirs)))
    lit8 = config_row(summary, "lit", 8)
    assert lit8["train_cpu_minutes"] == pytest.approx((90 + 180) / 2 / 60)
    assert lit8["train_cost_vs_kd"] == pytest.approx(1.5)  # LIT's teacher-fed passes over plain KD
    assert config_row(summary, "kd", 8)["train_cost_vs_kd"] == pytest.approx(1.0)
    assert pd.isna(config_row(summary, "scratch", 56, "teacher")["train_cost_vs_kd"])
    assert lit8["train_minutes"] == pytest.approx((45 + 90) / 2 / 60)
