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
