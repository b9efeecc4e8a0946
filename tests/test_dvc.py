"""DVC as the README shows it, on a fresh clone of this repository."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from workflow_helpers import BIN, ROOT, env, tiny_config, write_config

pytestmark = pytest.mark.slow


def run_checked(command: list[str], cwd: Path, timeout: int = 600) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env(), timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def readme_dvc_blocks() -> list[list[str]]:
    """The command lines of each code block of the README's DVC section, comments dropped."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### DVC"):]
    section = section[: section.index("\n## ")]
    blocks = [part.split("```")[0] for part in section.split("```bash")[1:]]
    lines = [[line.split("  #")[0].split("# ")[0].strip() for line in block.splitlines()] for block in blocks]
    return [[line for line in block if line] for block in lines]


def test_the_readme_dvc_block_works_verbatim_on_a_fresh_clone(tmp_path):
    """Exactly the README's DVC commands, on a `git clone` of this repository (DVC as
    committed: `.dvc/` and `dvc.yaml`) whose pipeline config is the tiny one: `dvc repro`
    runs the pipeline, push to a local remote, clone again elsewhere, pull, and Snakemake
    has nothing to do."""
    commands, experiment = readme_dvc_blocks()
    assert len(commands) == 3 and commands[0].startswith("dvc remote add -d store /path/to/remote"), commands
    assert "<url>" in commands[2] and "<folder>" in commands[2], commands
    clone, remote, elsewhere = tmp_path / "clone", tmp_path / "remote", tmp_path / "elsewhere"
    run_checked(["git", "clone", "-q", str(ROOT), str(clone)], tmp_path)
    assert (clone / ".dvc" / "config").is_file(), "DVC must be initialised in the repository itself"
    config = tiny_config()
    config["experiments"]["tiny"]["students"]["methods"] = ["lit"]  # a teacher and one student: what DVC sees is the same
    write_config(clone, config)
    identity = {"GIT_AUTHOR_NAME": "lit-tests", "GIT_AUTHOR_EMAIL": "tests@lit.invalid",
                "GIT_COMMITTER_NAME": "lit-tests", "GIT_COMMITTER_EMAIL": "tests@lit.invalid"}
    environment = {**env(), **identity}
    subprocess.run(["git", "commit", "-qam", "the tiny pipeline config"], cwd=clone, check=True, env=environment)

    def bash(line: str, cwd: Path) -> str:
        result = subprocess.run(["bash", "-c", line], cwd=cwd, capture_output=True, text=True, env=environment, timeout=900)
        assert result.returncode == 0, f"README line failed: {line}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout + result.stderr

    bash(commands[0].replace("/path/to/remote", str(remote)), clone)
    bash(commands[1], clone)
    assert "results/runs" not in run_checked(["git", "ls-files"], clone), "checkpoints belong to DVC, not git"
    output = bash(commands[2].replace("<url>", str(clone)).replace("<folder>", str(elsewhere)), tmp_path)
    assert "Nothing to be done" in output, output[-3000:]
    assert list((elsewhere / "results" / "runs" / "tiny").glob("lit-*/checkpoints/best.pt"))
    assert "up to date" in run_checked([str(BIN / "dvc"), "status"], elsewhere).lower()

    # DVC experiments: one value changed reruns the stage, in which Snakemake redoes only
    # what reads the value (the tables), no training run; `dvc exp show` lists it
    assert len(experiment) == 2 and experiment[0].startswith("dvc exp run -S 'config/config.yaml:report.tolerance="), experiment
    trained = {path: path.stat().st_mtime_ns for path in (clone / "results" / "runs").rglob("summary.json")}
    assert trained, "the first repro trained nothing"
    tolerance = float(experiment[0].split("=")[1].rstrip("'"))
    bash(experiment[0], clone)
    assert {path: path.stat().st_mtime_ns for path in (clone / "results" / "runs").rglob("summary.json")} == trained
    compression = (clone / "results" / "tiny" / "tiny-compression.csv").read_text()
    assert f"{tolerance}" in compression, "the tables were not remade with the new tolerance"
    shown = bash(experiment[1], clone)
    assert "report.tolerance" in shown and f"{tolerance}" in shown, shown
    (workspace, *experiments) = json.loads(run_checked([str(BIN / "dvc"), "exp", "show", "--json"], clone))
    runs = [rev for entry in experiments for rev in entry.get("experiments") or []]
    assert len(runs) == 1, experiments
    data = runs[0]["revs"][0]["data"]
    assert data["params"]["config/config.yaml"]["data"]["report"]["tolerance"] == tolerance
    assert 0 <= data["metrics"]["results/metrics.json"]["data"]["tiny"]["lit"]["depth8"]["test_acc_selected"] <= 1

