"""The Snakemake pipeline: lint, format, dry runs, the tiny DAG end to end, reruns."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from workflow_helpers import BIN, ROOT, env, make_project, planned_jobs, snakemake, tiny_config, write_config

pytestmark = pytest.mark.slow


def test_snakemake_lint_is_clean():
    result = subprocess.run([str(BIN / "snakemake"), "--lint", "--snakefile", str(ROOT / "workflow" / "Snakefile")],
                            cwd=ROOT, capture_output=True, text=True, env=env(), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_snakefmt_check_is_clean():
    result = subprocess.run([str(BIN / "snakefmt"), "--check", "workflow"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("config_file", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_every_config_dry_runs(tmp_path, config_file):
    make_project(tmp_path, {"experiments": {}})
    (tmp_path / "config" / "config.yaml").write_text((ROOT / "config" / config_file).read_text())
    counts = planned_jobs(tmp_path)
    assert counts.get("train", 0) >= 2 and counts.get("evaluate", 0) == counts["train"]


def test_slurm_profile_dry_runs(tmp_path):
    make_project(tmp_path, tiny_config())
    result = snakemake(tmp_path, "--dry-run", profile=ROOT / "workflow" / "profiles" / "slurm")
    assert "rule train" in result.stdout + result.stderr


def test_bad_config_is_refused_before_any_job(tmp_path):
    config = tiny_config()
    config["experiments"]["tiny"]["students"]["overrides"]["train.phases.lit.lrr"] = 0.1
    make_project(tmp_path, config)
    result = snakemake(tmp_path, "--cores", "1", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "train.phases.lit.lrr" in output and "experiments.tiny.students" in output
    assert not (tmp_path / "results").exists()
    config = tiny_config()
    config["experiments"]["tiny"]["students"]["depths"] = "eight"
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--cores", "1", check=False)
    assert result.returncode != 0 and "depths" in result.stdout + result.stderr


def test_tiny_dag_end_to_end_then_nothing_then_only_new_depth(tmp_path):
    make_project(tmp_path, tiny_config(depths=(8,)))
    snakemake(tmp_path, "--cores", "2")
    results = tmp_path / "results"
    for name in ["tiny-depth-vs-accuracy.png", "tiny-depth-vs-accuracy.pdf", "tiny-summary.csv", "tiny-summary.md",
                 "tiny-compression.csv", "tiny-compression.md"]:
        assert (results / "tiny" / name).stat().st_size > 0, name
    table = pd.read_csv(results / "table.csv")
    assert sorted(table["method"]) == ["kd", "lit", "scratch", "scratch"]
    assert table["test_acc_selected"].between(0, 1).all()
    metrics = json.loads((results / "metrics.json").read_text())
    assert set(metrics["tiny"]) == {"teacher", "scratch", "kd", "lit"}

    assert planned_jobs(tmp_path) == {}, "a second run must find nothing to do"

    write_config(tmp_path, tiny_config(depths=(8, 14)))
    counts = planned_jobs(tmp_path)
    assert counts["train"] == 3 and counts["evaluate"] == 3, counts  # one new depth x three methods
    assert "prepare_data" not in counts

    changed = tiny_config(depths=(8,), student_overrides={"method.kd_weight": 0.5})
    write_config(tmp_path, changed)
    counts = planned_jobs(tmp_path)
    assert counts["train"] == 1, f"only LIT reads method.kd_weight: {counts}"


def test_killed_job_reruns_without_redoing_finished_jobs(tmp_path):
    config = tiny_config(student_overrides={"train.phases.lit.epochs": 60, "train.phases.lit.milestones": []})
    config["experiments"]["tiny"]["students"]["methods"] = ["lit"]
    make_project(tmp_path, config)
    command = [str(BIN / "snakemake"), "--snakefile", str(ROOT / "workflow" / "Snakefile"), "--directory", str(tmp_path),
               "--workflow-profile", str(ROOT / "workflow" / "profiles" / "local"), "--cores", "1"]
    process = subprocess.Popen(command, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    runs = tmp_path / "results" / "runs" / "tiny"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not list(runs.glob("lit-*/checkpoints/state.pt")):
            time.sleep(0.2)
        assert list(runs.glob("lit-*/checkpoints/state.pt")), "the student never checkpointed"
    finally:
        import os

        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    teacher_summary = next(runs.glob("teacher-*/summary.json"))
    teacher_mtime = teacher_summary.stat().st_mtime_ns
    snakemake(tmp_path, "--unlock")
    counts = planned_jobs(tmp_path)
    assert "train" in counts and counts["train"] == 1 and "prepare_data" not in counts, counts
    snakemake(tmp_path, "--cores", "2")
    assert teacher_summary.stat().st_mtime_ns == teacher_mtime, "the finished teacher was trained again"
    log = next((tmp_path / "results" / "logs" / "tiny" / "train").glob("lit-*.log")).read_text()
    assert "epoch 1 " in log and "epoch 61 " in log
    assert planned_jobs(tmp_path) == {}
