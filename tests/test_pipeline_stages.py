"""The Snakemake side on its own: lint and format, dry runs through the cluster profile,
a bad config refused before any job, and the tuning and FitNets stages end to end."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest

from workflow_helpers import BIN, ROOT, env, make_project, planned_jobs, snakemake, tiny_config, tiny_gan_config, write_config

pytestmark = pytest.mark.slow


def test_snakemake_lint_is_clean():
    result = subprocess.run([str(BIN / "snakemake"), "--lint", "--snakefile", str(ROOT / "workflow" / "Snakefile")],
                            cwd=ROOT, capture_output=True, text=True, env=env(), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_snakefmt_check_is_clean():
    result = subprocess.run([str(BIN / "snakefmt"), "--check", "workflow"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_slurm_profile_dry_runs_classifier_and_gan_experiments(tmp_path):
    """One dry run through the cluster profile plans both kinds of experiment: the one
    `train` rule for every run, and each kind's evaluation and report."""
    config = tiny_config()
    config["experiments"].update(tiny_gan_config()["experiments"])
    make_project(tmp_path, config)
    counts = planned_jobs(tmp_path, profile=ROOT / "workflow" / "profiles" / "slurm")
    assert counts["train"] == 4 + 2 and counts["prepare_data"] == 2, counts
    assert counts["evaluate"] == 4 and counts["evaluate_generator"] == 2, counts
    assert counts["report_experiment"] == 1 and counts["report_gan_experiment"] == 1, counts


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


def test_tuning_stage_feeds_its_choice_into_the_final_runs(tmp_path):
    config = tiny_config()
    config["experiments"]["tiny"]["students"]["methods"] = ["kd", "lit"]
    config["experiments"]["tiny"]["tune"] = {
        "depth": 8,
        "overrides": {"train.phases.train.epochs": 1, "train.phases.lit.epochs": 1, "train.phases.finetune.epochs": 1},
        "grids": {"temperature": [2.0, 4.0], "kd_weight": [0.25, 0.75]},
    }
    tiny_project = make_project(tmp_path, config)
    counts = planned_jobs(tiny_project)
    assert counts["tune"] == 1 and counts["tuning_report"] == 1 and counts["train"] == 3, counts
    snakemake(tiny_project, "--cores", "2")
    tuned = json.loads(next((tiny_project / "results" / "runs" / "tiny").glob("tuning-*/tuned.json")).read_text())
    assert tuned["temperature"] in (2.0, 4.0) and tuned["kd_weight"] in (0.25, 0.75)
    trials = pd.read_csv(tiny_project / "results" / "tiny" / "tiny-tuning.csv")
    assert len(trials) == 4
    table = pd.read_csv(tiny_project / "results" / "table.csv")
    for method in ("kd", "lit"):
        row = table[table["method"] == method].iloc[0]
        assert row["temperature"] == tuned["temperature"], "the tuned tau must reach the final runs and the table"
    assert table.loc[table["method"] == "lit", "kd_weight"].item() == tuned["kd_weight"]


def test_fitnets_runs_in_the_pipeline_and_its_tables(tmp_path):
    config = tiny_config(student_overrides={"train.phases.hint.epochs": 1, "train.phases.hint.milestones": []})
    config["experiments"]["tiny"]["students"]["methods"] = ["fitnets"]
    tiny_project = make_project(tmp_path, config)
    snakemake(tiny_project, "--cores", "2")
    summary = pd.read_csv(tiny_project / "results" / "tiny" / "tiny-summary.csv")
    assert "fitnets" in set(summary["method"])
    log = next((tiny_project / "results" / "logs" / "tiny" / "train").glob("fitnets-*.log")).read_text()
    assert "(hint 1)" in log and "(train 1)" in log
