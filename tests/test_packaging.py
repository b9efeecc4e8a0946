"""The conda environment and pyproject.toml list the same dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    listed = {normalise(r) for r in pip_lists[0] if not r.startswith("-e")}
    assert listed == wanted, f"only in environment.yml: {listed - wanted}; only in pyproject.toml: {wanted - listed}"


def test_python_floor_agrees():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert project["requires-python"] == ">=3.11"
    assert "python>=3.11" in env["dependencies"]


def test_workflow_conda_env_matches_environment_yml():
    def deps(path):
        env = yaml.safe_load(path.read_text())
        pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)][0]
        return [d for d in env["dependencies"] if isinstance(d, str)], [r for r in pip if not r.startswith("-e")]

    assert deps(ROOT / "workflow" / "envs" / "lit.yaml") == deps(ROOT / "environment.yml")


def test_make_clean_results_removes_runs_and_logs_and_keeps_the_reference_results(tmp_path):
    import shutil
    import subprocess

    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    kept = ["results/digits-resnet/digits-resnet-summary.md", "results/table.csv",
            "results/gan-small/colordigits-stargan/colordigits-stargan-fid.md"]
    removed = ["results/runs/digits-resnet/kd-resnet8-s0-x/eval.json", "results/logs/digits-resnet/train/a.log",
               "results/gan-small/runs/colordigits-stargan/teacher/summary.json", "results/gan-small/logs/x.log",
               "results/benchmarks/digits-resnet/train/a.tsv", "results/gan-small/benchmarks/x/train/b.tsv",
               "results/report.html", ".snakemake/metadata/x"]
    for name in kept + removed:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    subprocess.run(["make", "clean-results"], cwd=tmp_path, check=True, capture_output=True)
    assert all((tmp_path / name).is_file() for name in kept)
    assert not any((tmp_path / name).exists() for name in removed)
