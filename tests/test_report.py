"""Aggregation, tables and figures, on run directories written here with known numbers."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lit.report.aggregate import aggregate_runs
from lit.report.experiment_tables import compression_table, summary_table, tabulate_experiment
from lit.report.figures import ACCURACY, depth_figure, write_report

EXPERIMENT = "toy-cifar"
TEACHER_ID = "teacher-resnet56-s0"
TEACHER = {"depth": 56, "acc": 0.93, "params": 850_000, "flops": 250e6, "latency": 4.0}
COST = {8: (78_000, 24e6, 0.5), 14: (175_000, 40e6, 1.0), 20: (272_000, 80e6, 1.6)}  # params, flops, latency
# (method, depth) -> test accuracy of seeds 0 and 1
ACCURACIES = {
    ("scratch", 8): (0.86, 0.88), ("scratch", 14): (0.90, 0.91), ("scratch", 20): (0.91, 0.915),
    ("kd", 8): (0.90, 0.92), ("kd", 14): (0.91, 0.93), ("kd", 20): (0.93, 0.93),
    ("lit", 8): (0.92, 0.93), ("lit", 14): (0.93, 0.94), ("lit", 20): (0.94, 0.94),
}


def write_run(run_dir: Path, method: str, depth: int, seed: int, test_acc: float, params: int, flops: float,
              latency: float, teacher: str | None = None, cuda: dict | None = None, **method_options) -> Path:
    """A finished, evaluated classifier run directory with the given numbers."""
    run_dir.mkdir(parents=True)
    config = {
        "seed": seed, "data": {"name": "cifar10", "root": "data"}, "model": {"family": "resnet", "depth": depth},
        "method": {"name": method, "teacher": teacher, "hard_weight": 0.95, "temperature": 6.0, "kd_weight": 0.75, **method_options},
        "train": {"batch_size": 128},
    }
    summary = {"status": "complete", "method": method, "depth": depth, "seed": seed, "epochs": 12, "seconds_this_session": 30.0 + seed}
    speed = {"cpu": {"latency_ms_batch1": latency, "throughput_per_s_batch256": 1000.0 / latency}}
    if cuda:
        speed["cuda"] = cuda
    evaluation = {
        "config": config, "train": summary, "test_acc_selected": test_acc, "test_acc_last": test_acc - 0.005,
        "val_acc_selected": test_acc + 0.01, "val_acc_last": test_acc, "selected_epoch": 10, "last_epoch": 12,
        "params": params, "flops": flops, "macs": flops / 2, "speed": speed,
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "eval.json").write_text(json.dumps(evaluation))
    return run_dir


def write_experiment(root: Path, accuracies=ACCURACIES, experiment: str = EXPERIMENT) -> list[Path]:
    runs = root / experiment / "runs"
    teacher_dir = runs / TEACHER_ID
    dirs = [write_run(teacher_dir, "scratch", TEACHER["depth"], 0, TEACHER["acc"], TEACHER["params"], TEACHER["flops"],
                      TEACHER["latency"], cuda={"latency_ms_batch1": 0.8, "throughput_per_s_batch256": 90_000.0})]
    for (method, depth), seed_accs in accuracies.items():
        params, flops, latency = COST[depth]
        teacher = None if method == "scratch" else str(teacher_dir)
        for seed, acc in enumerate(seed_accs):
            dirs.append(write_run(runs / f"{method}-resnet{depth}-s{seed}", method, depth, seed, acc, params, flops,
                                  latency + 0.1 * seed, teacher=teacher))
    return dirs


@pytest.fixture
def runs(tmp_path) -> pd.DataFrame:
    return aggregate_runs(write_experiment(tmp_path / "results"), tmp_path / "table.csv")


def config_row(table: pd.DataFrame, method: str, depth: int, role: str = "student") -> pd.Series:
    rows = table[(table["method"] == method) & (table["depth"] == depth) & (table["role"] == role)]
    assert len(rows) == 1
    return rows.iloc[0]


# ----------------------------------------------------------------------------- aggregation


def test_aggregate_reads_every_run_into_one_row(runs, tmp_path):
    assert len(runs) == 1 + 2 * len(ACCURACIES)
    assert set(runs["experiment"]) == {EXPERIMENT}
    teacher = runs.iloc[0]
    assert (teacher["run_id"], teacher["role"], teacher["method"], teacher["depth"]) == (TEACHER_ID, "teacher", "scratch", 56)
    assert teacher["latency_ms_cuda"] == 0.8 and teacher["throughput_cuda"] == 90_000.0
    assert (runs["role"] == "teacher").sum() == 1

    lit = runs[runs["run_id"] == "lit-resnet14-s1"].iloc[0]
    assert (lit["method"], lit["family"], lit["depth"], lit["seed"], lit["data"]) == ("lit", "resnet", 14, 1, "cifar10")
    assert lit["teacher_run"] == TEACHER_ID and lit["role"] == "student"
    assert lit["test_acc_selected"] == 0.94 and lit["test_acc_last"] == pytest.approx(0.935)
    assert lit["val_acc_selected"] == pytest.approx(0.95)
    assert (lit["params"], lit["flops"], lit["macs"]) == (175_000, 40e6, 20e6)
    assert lit["latency_ms_cpu"] == pytest.approx(1.1) and lit["throughput_cpu"] == pytest.approx(1000 / 1.1)
    assert (lit["hard_weight"], lit["temperature"], lit["kd_weight"]) == (0.95, 6.0, 0.75)
    assert lit["train_seconds"] == 31.0 and lit["epochs"] == 12
    assert math.isnan(lit["latency_ms_cuda"]) and math.isnan(lit["throughput_cuda"]) and math.isnan(lit["fid"])

    kd = runs[runs["run_id"] == "kd-resnet8-s0"].iloc[0]
    assert (kd["hard_weight"], kd["temperature"]) == (0.95, 6.0) and math.isnan(kd["kd_weight"])  # beta is LIT's alone
    scratch = runs[runs["run_id"] == "scratch-resnet8-s0"].iloc[0]
    assert all(math.isnan(scratch[name]) for name in ("hard_weight", "temperature", "kd_weight"))
    assert pd.isna(scratch["teacher_run"])

    written = pd.read_csv(tmp_path / "table.csv")
    assert list(written.columns) == list(runs.columns) and len(written) == len(runs)
    assert written.loc[written["run_id"] == "lit-resnet14-s1", "test_acc_selected"].item() == 0.94
    assert not list(tmp_path.glob(".*.tmp"))


def test_experiment_and_teacher_outside_the_pipeline_layout(tmp_path):
    teacher = write_run(tmp_path / "t20", "scratch", 20, 0, 0.95, 270_000, 5e6, 1.0)
    student = write_run(tmp_path / "s-lit-0", "lit", 8, 0, 0.94, 75_000, 1.5e6, 0.3, teacher=str(teacher / "checkpoints" / "best.pt"))
    named = write_run(tmp_path / "elsewhere", "kd", 8, 0, 0.93, 75_000, 1.5e6, 0.3, teacher="t20")
    (named / "experiment").write_text("my-sweep\n")
    table = aggregate_runs([student, teacher, named], tmp_path / "table.csv").set_index("run_id")
    assert table.loc["t20", "role"] == "teacher"  # named as a teacher by a student of its experiment
    assert table.loc["s-lit-0", "teacher_run"] == "t20" and table.loc["s-lit-0", "experiment"] == "cifar10"
    assert table.loc["elsewhere", "experiment"] == "my-sweep"


def test_missing_eval_json_names_the_run_directory(tmp_path):
    good = write_run(tmp_path / "good", "scratch", 8, 0, 0.9, 1, 1, 1.0)
    unevaluated = tmp_path / "results" / "exp" / "runs" / "kd-resnet8-s0"
    unevaluated.mkdir(parents=True)
    (unevaluated / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(FileNotFoundError, match=r"kd-resnet8-s0 has no eval\.json"):
        aggregate_runs([good, unevaluated], tmp_path / "table.csv")
    assert not (tmp_path / "table.csv").exists()


def test_cli_reports_a_missing_eval_json_as_an_error(tmp_path, capsys):
    from lit.cli import main

    assert main(["aggregate", str(tmp_path / "nowhere"), "--output", str(tmp_path / "t.csv")]) == 1
    assert "nowhere does not exist" in capsys.readouterr().err


# ----------------------------------------------------------------------------- tables


def test_summary_means_stds_and_ratios(runs):
    tables = tabulate_experiment(runs)
    summary = summary_table(tables)
    assert list(summary["role"]).count("teacher") == 1 and summary.iloc[0]["role"] == "teacher"
    assert list(summary["method"][1:].drop_duplicates()) == ["scratch", "kd", "lit"]
    kd8 = config_row(summary, "kd", 8)
    assert kd8["n_seeds"] == 2
    assert kd8["test_acc_mean"] == pytest.approx(0.91)
    assert kd8["test_acc_std"] == pytest.approx(math.sqrt(2 * 0.01**2 / 1))  # sample std of 0.90 and 0.92
    assert kd8["test_acc_last_mean"] == pytest.approx(0.905)
    assert kd8["val_acc_mean"] == pytest.approx(0.92)  # validation accuracy of the selected checkpoints, 0.91 and 0.93
    assert kd8["val_acc_std"] == pytest.approx(kd8["test_acc_std"])
    assert kd8["flops_m"] == pytest.approx(24.0) and kd8["params"] == 78_000
    assert kd8["latency_ms_cpu"] == pytest.approx(0.55)  # median of 0.5 and 0.6
    assert kd8["speedup_vs_teacher"] == pytest.approx(4.0 / 0.55)
    assert kd8["compression_by_depth"] == pytest.approx(7.0)
    assert kd8["compression_by_params"] == pytest.approx(850_000 / 78_000)
    assert (kd8["hard_weight"], kd8["temperature"]) == (0.95, 6.0)
    teacher = config_row(summary, "scratch", 56, role="teacher")
    assert (teacher["n_seeds"], teacher["test_acc_mean"], teacher["speedup_vs_teacher"]) == (1, 0.93, 1.0)
    assert math.isnan(teacher["test_acc_std"])  # one seed: no spread to report
    assert teacher["latency_ms_cuda"] == 0.8


def test_compression_picks_the_shallowest_student_within_tolerance(runs):
    compression = compression_table(tabulate_experiment(runs), tolerance=0.01).set_index("method")
    assert list(compression.index) == ["scratch", "kd", "lit"]
    # lit: depth 8 averages 0.925 >= 0.93 - 0.01
    assert compression.loc["lit", "student_depth"] == 8
    assert compression.loc["lit", "compression_by_depth"] == pytest.approx(56 / 8)
    assert compression.loc["lit", "compression_by_params"] == pytest.approx(850_000 / 78_000)
    assert compression.loc["lit", "speedup_vs_teacher"] == pytest.approx(4.0 / 0.55)
    assert compression.loc["lit", "accuracy_drop"] == pytest.approx(0.005)
    # kd: depth 8 averages 0.91 (out); depth 14 averages exactly 0.92 = teacher - tolerance (in)
    assert compression.loc["kd", "student_depth"] == 14
    assert compression.loc["kd", "compression_by_depth"] == pytest.approx(4.0)
    # scratch never comes within a point of the teacher
    assert compression.loc["scratch", "student_depth"] == "none"
    assert math.isnan(compression.loc["scratch", "compression_by_depth"])


def test_compression_says_none_when_no_student_qualifies(runs):
    compression = compression_table(tabulate_experiment(runs), tolerance=0.0).set_index("method")
    assert compression.loc["lit", "student_depth"] == 14  # 0.935 >= 0.93; depth 8's 0.925 is not
    assert compression.loc["kd", "student_depth"] == 20
    assert compression.loc["scratch", "student_depth"] == "none"


def test_compression_counts_a_tie_at_the_tolerance_despite_float_rounding(runs):
    assert 0.93 - 0.06 > 0.87  # in floating point: a naive comparison would exclude scratch at depth 8 (0.87)
    compression = compression_table(tabulate_experiment(runs), tolerance=0.06).set_index("method")
    assert compression.loc["scratch", "student_depth"] == 8


# ----------------------------------------------------------------------------- figures and files


def test_figure_has_one_line_per_method_with_seed_error_bars(runs):
    figure = depth_figure(tabulate_experiment(runs), EXPERIMENT, ACCURACY, tolerance=0.01)
    axes = figure.axes[0]
    assert EXPERIMENT in figure.get_suptitle()
    lines = {container.get_label(): container for container in axes.containers}
    assert list(lines) == ["scratch", "KD", "LIT"]
    for method, label in (("scratch", "scratch"), ("kd", "KD"), ("lit", "LIT")):
        data_line, _, (bars,) = lines[label].lines
        means = [sum(ACCURACIES[(method, depth)]) / 2 for depth in (8, 14, 20)]
        assert list(data_line.get_ydata()) == pytest.approx(means)
        heights = [segment[1][1] - segment[0][1] for segment in bars.get_segments()]
        stds = [pd.Series(ACCURACIES[(method, depth)]).std() for depth in (8, 14, 20)]
        assert heights == pytest.approx([2 * std for std in stds])
        assert [round(x) for x in data_line.get_xdata()] == [8, 14, 20]  # dodged a little, never off its depth
    teacher_lines = [line for line in axes.get_lines() if line.get_label().startswith("teacher")]
    assert len(teacher_lines) == 1 and teacher_lines[0].get_linestyle() == "--"
    assert list(teacher_lines[0].get_ydata()) == [0.93, 0.93] and "ResNet-56" in teacher_lines[0].get_label()


def test_a_method_run_with_two_weight_settings_gets_two_labelled_lines(tmp_path):
    dirs = write_experiment(tmp_path, {("kd", 8): (0.9, 0.91)})
    runs_dir = tmp_path / EXPERIMENT / "runs"
    for seed in (0, 1):
        dirs.append(write_run(runs_dir / f"kd-t4-s{seed}", "kd", 8, seed, 0.92, *COST[8], teacher=str(dirs[0]), temperature=4.0))
    figure = depth_figure(tabulate_experiment(aggregate_runs(dirs)), EXPERIMENT)
    # one depth per series: a row each (ordered by mean), labelled by the weight that differs
    assert [tick.get_text() for tick in figure.axes[0].get_yticklabels()] == ["KD (τ=6) ResNet-8, 78k params",
                                                                             "KD (τ=4) ResNet-8, 78k params"]
    dirs.append(write_run(runs_dir / "kd-t4-d14", "kd", 14, 0, 0.93, *COST[14], teacher=str(dirs[0]), temperature=4.0))
    figure = depth_figure(tabulate_experiment(aggregate_runs(dirs)), EXPERIMENT)
    assert [container.get_label() for container in figure.axes[0].containers] == ["KD (τ=4)", "KD (τ=6)"]


def test_methods_at_one_depth_get_one_row_each_best_at_the_top(tmp_path):
    """Eight methods at one student depth: lines of one point would pile up at that depth, so
    the figure has a row per method, ordered by mean, each with its std bar and its colour."""
    accuracies = {("scratch", 8): (0.86, 0.88), ("kd", 8): (0.90, 0.92), ("fitnets", 8): (0.89, 0.90),
                  ("at", 8): (0.88, 0.91), ("dkd", 8): (0.905, 0.915), ("reviewkd", 8): (0.87, 0.87),
                  ("crd", 8): (0.91, 0.925), ("lit", 8): (0.92, 0.93)}
    figure = depth_figure(tabulate_experiment(aggregate_runs(write_experiment(tmp_path, accuracies))), EXPERIMENT,
                          ACCURACY, tolerance=0.01)
    axes = figure.axes[0]
    assert EXPERIMENT in figure.get_suptitle()
    means = {method: sum(accs) / 2 for (method, _), accs in accuracies.items()}
    ranked = sorted(means, key=means.get)  # bottom (y = 0) to top
    labels = {"scratch": "scratch", "kd": "KD", "fitnets": "FitNets", "at": "AT", "dkd": "DKD", "reviewkd": "ReviewKD",
              "crd": "CRD", "lit": "LIT"}
    assert [tick.get_text() for tick in axes.get_yticklabels()] == [f"{labels[m]} ResNet-8, 78k params" for m in ranked]
    rows = [c for c in axes.containers if c.get_label() == "selected checkpoint"]
    assert len(rows) == 8
    colours = set()
    for y, (method, container) in enumerate(zip(ranked, rows)):
        data_line, _, (bars,) = container.lines
        assert list(data_line.get_xdata()) == pytest.approx([means[method]]) and list(data_line.get_ydata()) == [y]
        (segment,) = bars.get_segments()
        assert segment[1][0] - segment[0][0] == pytest.approx(2 * pd.Series(accuracies[(method, 8)]).std())
        colours.add(data_line.get_color())
    assert len(colours) == 8  # every method its own colour
    teacher = [line for line in axes.get_lines() if line.get_label().startswith("teacher")]
    assert len(teacher) == 1 and list(teacher[0].get_xdata()) == [0.93, 0.93]
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert len(legend) == len(set(legend))  # one entry per kind of mark, not per row


def test_write_report_writes_valid_figures_and_tables(runs, tmp_path):
    out = tmp_path / "report"
    paths = write_report(tmp_path / "table.csv", out, tolerance=0.01)
    names = {path.name for path in paths}
    kinds = ["depth-vs-accuracy.png", "depth-vs-accuracy.pdf", "summary.csv", "summary.md", "compression.csv", "compression.md",
             "learning-curves.png"]
    assert names == {f"{EXPERIMENT}-{kind}" for kind in kinds}
    assert all(path.is_file() and path.parent == out for path in paths)
    assert (out / f"{EXPERIMENT}-depth-vs-accuracy.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    pdf = (out / f"{EXPERIMENT}-depth-vs-accuracy.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    compression = pd.read_csv(out / f"{EXPERIMENT}-compression.csv").set_index("method")
    assert compression.loc["lit", "student_depth"] == "8" and compression.loc["scratch", "student_depth"] == "none"
    markdown = (out / f"{EXPERIMENT}-summary.md").read_text()
    assert "| teacher" in markdown and "91.00 ± 1.41" in markdown  # kd depth 8 in percent
    kd8_row = next(line for line in markdown.splitlines() if "| kd " in line and "91.00 ± 1.41" in line)
    assert "92.00 ± 1.41" in kd8_row  # its validation accuracy, in percent too
    assert "7.00x" in (out / f"{EXPERIMENT}-compression.md").read_text()
    assert not list(out.glob(".*"))  # no temporary file left behind


def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    from lit.runtime import files

    target = files.atomic_write_text(tmp_path / "summary.csv", "old\n")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # the usual mode, not a private temporary's 0600

    def interrupted(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["summary.csv"]


def test_write_report_rejects_a_negative_tolerance(runs, tmp_path):
    with pytest.raises(ValueError, match="tolerance"):
        write_report(tmp_path / "table.csv", tmp_path / "report", tolerance=-0.01)


# ----------------------------------------------------------------------------- GAN runs


def write_gan_run(run_dir: Path, method: str, depth: int, seed: int, fid: float, teacher: str | None = None) -> Path:
    """A StarGAN run with an FID in place of accuracy (depth = residual blocks)."""
    run_dir.mkdir(parents=True)
    config = {"seed": seed, "data": {"name": "celeba"}, "model": {"family": "stargan", "depth": depth},
              "method": {"name": method, "teacher": teacher}}
    evaluation = {"config": config, "fid": fid, "params": 1000 * depth, "flops": 1e9 * depth,
                  "speed": {"cpu": {"latency_ms_batch1": 10.0 * depth}}}
    (run_dir / "eval.json").write_text(json.dumps(evaluation))
    return run_dir


def write_gan_run_directory(run_dir: Path, depth: int, seed: int, fid: float, teacher: Path) -> Path:
    """A gan_lit run as the engine leaves it: config.yaml and summary.json beside an eval.json
    without a config (read from config.yaml), iterations instead of epochs."""
    run_dir.mkdir(parents=True)
    config = {"seed": seed, "data": {"name": "celeba"}, "model": {"family": "stargan", "depth": depth},
              "method": {"name": "gan_lit", "teacher": str(teacher), "kd_weight": 0.75}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "summary.json").write_text(json.dumps({"epochs": 0, "iterations": 500, "seconds_this_session": 3.0}))
    evaluation = {"fid": fid, "params": 1000 * depth, "flops": 1e9 * depth, "speed": {"cpu": {"latency_ms_batch1": 10.0 * depth}}}
    (run_dir / "eval.json").write_text(json.dumps(evaluation))
    return run_dir


def test_gan_experiment_gets_an_fid_table(tmp_path):
    runs_dir = tmp_path / "stargan" / "runs"
    teacher = write_gan_run(runs_dir / "teacher-stargan6-s0", "stargan", 6, 0, 20.0)
    dirs = [teacher, write_gan_run(runs_dir / "gan_lit-stargan3-s0", "gan_lit", 3, 0, 22.0, teacher=str(teacher)),
            write_gan_run_directory(runs_dir / "gan_lit-stargan3-s1", 3, 1, 26.0, teacher)]
    table = aggregate_runs(dirs, tmp_path / "table.csv")
    run = table[table["run_id"] == "gan_lit-stargan3-s1"].iloc[0]
    assert (run["method"], run["depth"], run["seed"], run["teacher_run"]) == ("gan_lit", 3, 1, "teacher-stargan6-s0")
    assert (run["params"], run["latency_ms_cpu"], run["fid"], run["iterations"]) == (3000, 30.0, 26.0, 500)
    assert math.isnan(run["epochs"]) and math.isnan(run["kd_weight"]), "a GAN run has no epochs and reads no beta"
    assert list(table["role"]) == ["teacher", "student", "student"]

    paths = write_report(tmp_path / "table.csv", tmp_path / "report")
    assert {path.name for path in paths} == {"stargan-depth-vs-fid.png", "stargan-depth-vs-fid.pdf", "stargan-fid.csv", "stargan-fid.md",
                                           "stargan-learning-curves.png"}
    fid = pd.read_csv(tmp_path / "report" / "stargan-fid.csv")
    student = config_row(fid, "gan_lit", 3)
    assert (student["n_seeds"], student["fid_mean"]) == (2, 24.0)
    assert student["fid_std"] == pytest.approx(math.sqrt(8.0))  # sample std of 22 and 26
    assert student["compression_by_depth"] == 2.0 and student["speedup_vs_teacher"] == 2.0
    assert "24.00 ± 2.83" in (tmp_path / "report" / "stargan-fid.md").read_text()


def test_one_table_with_two_experiments_gives_each_its_own_files(tmp_path):
    classifier_dirs = write_experiment(tmp_path, {("lit", 8): (0.92, 0.93)})
    gan_teacher = write_gan_run(tmp_path / "stargan" / "runs" / "teacher-stargan6-s0", "stargan", 6, 0, 20.0)
    aggregate_runs([*classifier_dirs, gan_teacher], tmp_path / "table.csv")
    names = {path.name for path in write_report(tmp_path / "table.csv", tmp_path / "report")}
    assert f"{EXPERIMENT}-compression.csv" in names and "stargan-fid.csv" in names
    assert "stargan-compression.csv" not in names and f"{EXPERIMENT}-fid.csv" not in names


def test_the_weights_a_table_shows_are_the_ones_each_method_reads():
    """The report reads files only (no torch): the KD/LIT weights it shows for a method must
    be the ones the method's class reads, so that a table never shows a weight a run ignored."""
    from lit.methods import METHODS
    from lit.report.aggregate import WEIGHT_NAMES, method_weights

    for name in METHODS.names():
        reads = tuple(weight for weight in WEIGHT_NAMES if weight in METHODS.get(name).uses)
        assert method_weights(name) == reads, name
    assert method_weights("kd") == ("hard_weight", "temperature") and method_weights("lit") == WEIGHT_NAMES
    assert method_weights("a-method-of-another-version") == WEIGHT_NAMES
