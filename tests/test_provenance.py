"""Every run's summary.json and eval.json say what made them; tables carry the commit and
device per run and warn when one table mixes them."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import torch

import lit.runtime.provenance as provenance_module
from conftest import digits_config
from lit.engine.trainer import train
from lit.evaluate.run import evaluate_run
from lit.report.aggregate import aggregate_runs
from lit.report.figures import write_report
from test_report import write_experiment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("provenance") / "run"
    train(digits_config("method.name=scratch", "model.depth=8", "train.phases.train={epochs: 1, lr: 0.05}"), run_dir)
    evaluate_run(run_dir, devices=["cpu"], latency_runs=2, throughput_batch=8)
    return run_dir


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("file", ["summary.json", "eval.json"])
def test_summary_and_eval_say_what_made_them(evaluated_run, file):
    record = json.loads((evaluated_run / file).read_text())["provenance"]
    if (ROOT / ".git").exists():
        assert record["git_commit"] == git("rev-parse", "HEAD")
        assert record["git_dirty"] == bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                                ":(exclude)results", ":(exclude)dvc.lock"))
    assert record["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert record["python"] == ".".join(map(str, sys.version_info[:3]))
    assert record["device"] == "cpu" and record["device_name"] and isinstance(record["threads"], int)
    assert record["precision"] in ("float32", "bfloat16")
    assert datetime.fromisoformat(record["started"]) <= datetime.fromisoformat(record["finished"])
    assert record["command"]  # the command line of the process


def test_the_training_precision_is_the_one_used(evaluated_run):
    summary = json.loads((evaluated_run / "summary.json").read_text())
    assert summary["provenance"]["precision"] == summary["precision"]


def test_outside_a_git_checkout_the_commit_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance_module, "SOURCE", tmp_path)
    provenance_module.git_state.cache_clear()
    try:
        assert provenance_module.git_state() == {"git_commit": None, "git_dirty": None}
    finally:
        provenance_module.git_state.cache_clear()


def test_the_table_carries_commit_and_device_and_the_report_warns_when_they_mix(tmp_path, capsys):
    dirs = write_experiment(tmp_path / "results")
    for index, run_dir in enumerate(dirs):
        evaluation = json.loads((run_dir / "eval.json").read_text())
        commit = "a" * 40 if index % 2 else "b" * 40
        evaluation["train"]["provenance"] = {"git_commit": commit, "git_dirty": index == 1, "device_name": "CPU X"}
        (run_dir / "eval.json").write_text(json.dumps(evaluation))
    table = aggregate_runs(dirs, tmp_path / "table.csv")
    assert set(table["commit"]) == {"aaaaaaaaaa", "bbbbbbbbbb", "aaaaaaaaaa+dirty"}
    assert set(table["device_name"]) == {"CPU X"}
    paths = write_report(tmp_path / "table.csv", tmp_path / "out")
    summary = next(p for p in paths if p.name.endswith("summary.md")).read_text()
    assert "come from 3 git commits" in summary and "uncommitted changes" in summary
    assert "devices" not in summary  # one device: no warning about it
    assert "warning" in capsys.readouterr().err


def test_a_table_of_one_commit_and_device_has_no_warning(tmp_path):
    dirs = write_experiment(tmp_path / "results")
    for run_dir in dirs:
        evaluation = json.loads((run_dir / "eval.json").read_text())
        evaluation["train"]["provenance"] = {"git_commit": "c" * 40, "git_dirty": False, "device_name": "CPU X"}
        (run_dir / "eval.json").write_text(json.dumps(evaluation))
    aggregate_runs(dirs, tmp_path / "table.csv")
    paths = write_report(tmp_path / "table.csv", tmp_path / "out")
    assert "Warning" not in next(p for p in paths if p.name.endswith("summary.md")).read_text()


def test_rewritten_results_are_not_uncommitted_code_but_a_changed_module_is(tmp_path, monkeypatch):
    """A pipeline rewrites the committed reference tables as it runs (the tuning table
    before the students train): its later runs must not say they come from dirty code."""
    def run_git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
                       check=True, capture_output=True)

    (tmp_path / "lit").mkdir()
    (tmp_path / "lit" / "module.py").write_text("x = 1\n")
    (tmp_path / "results" / "exp").mkdir(parents=True)
    (tmp_path / "results" / "exp" / "table.csv").write_text("a\n1\n")
    run_git("init", "-q")
    run_git("add", ".")
    run_git("commit", "-qm", "reference")
    monkeypatch.setattr(provenance_module, "SOURCE", tmp_path)

    def dirty() -> bool:
        provenance_module.git_state.cache_clear()
        return provenance_module.git_state()["git_dirty"]

    try:
        assert dirty() is False
        (tmp_path / "results" / "exp" / "table.csv").write_text("a\n2\n")
        assert dirty() is False, "a rewritten reference table is an output, not a code change"
        (tmp_path / "lit" / "module.py").write_text("x = 2\n")
        assert dirty() is True
    finally:
        provenance_module.git_state.cache_clear()
