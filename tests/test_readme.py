"""The README's commands, run verbatim as a new user would after `make run`'s set-up: the
quick start of the command line, then the pipeline section's `lit plan` and `lit speed`, and
its data-parallel `torchrun` line, and the host-noise check of the speed section.
(The DVC block has its own test, tests/test_dvc.py; `make run` and `make test` are what CI
runs; the SLURM and GPU commands need their machines.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from workflow_helpers import ROOT, env

pytestmark = pytest.mark.slow


def bash_block(heading: str) -> list[str]:
    """The command lines of the first bash block under a README heading, comments dropped."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(f"\n## {heading}\n"):]
    block = section[section.index("```bash") + len("```bash"):]
    lines = [line.split("  #")[0].strip() for line in block[: block.index("```")].splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def readme_line(command: str) -> str:
    """`command`, checked to be a command line of the README (its comment dropped)."""
    lines = [line.split("  #")[0].strip() for line in (ROOT / "README.md").read_text().splitlines()]
    assert command in lines, f"the README no longer shows `{command}`"
    return command


def run(line: str, cwd: Path) -> str:
    result = subprocess.run(["bash", "-c", line], cwd=cwd, capture_output=True, text=True, env=env(), timeout=900)
    assert result.returncode == 0, f"README line failed: {line}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def test_the_quick_start_then_lit_plan_and_lit_speed_work_verbatim(tmp_path):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    commands = bash_block("Quick start with the library's command line")
    assert commands[0] == "source .venv/bin/activate" and any(c.startswith("lit train") for c in commands), commands
    for line in commands[1:]:  # the set-up's environment is this test's PATH
        run(line, tmp_path)
    for run_dir in ("runs/teacher", "runs/lit8"):
        evaluation = json.loads((tmp_path / run_dir / "eval.json").read_text())
        assert 0.0 <= evaluation["test_acc_selected"] <= 1.0
    assert (tmp_path / "runs" / "kd8" / "checkpoints" / "best.pt").is_file()
    planned = run(readme_line("lit plan config/config.yaml"), tmp_path)
    assert "digits-resnet" in planned and "teacher-resnet32" in planned
    run(readme_line("lit speed runs/teacher runs/lit8 --output speed.json"), tmp_path)
    speed = json.loads((tmp_path / "speed.json").read_text())
    assert sorted(a["label"] for a in speed["architectures"]) == ["resnet20", "resnet8"]
    run(readme_line("torchrun --standalone --nproc-per-node 2 --no-python lit train config/runs/digits-student.yaml "
                    "method.name=scratch train.phases.train.epochs=2 train.phases.train.milestones=[] --run-dir runs/scratch8-ddp"),
        tmp_path)
    summary = json.loads((tmp_path / "runs" / "scratch8-ddp" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["epochs"] == 2


def test_the_host_noise_check_runs_verbatim():
    """The README's 30-second check of a machine before timing on it."""
    printed = run(readme_line(".venv/bin/python benchmarks/host_noise.py --seconds 30"), ROOT)
    assert "windows of 0.1 s: fastest" in printed and "% of windows slow" in printed, printed
