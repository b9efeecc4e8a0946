"""The Snakemake side on its own: lint and format, a dry run through the cluster profile,
and a bad config refused before any job."""

from __future__ import annotations

import subprocess

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
