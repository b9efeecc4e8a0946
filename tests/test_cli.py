"""The `lit` command line: verbs, the installed entry point, errors for people, evaluate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import digits_config
from lit.cli import main
from lit.data import Batches, load_data
from lit.models.io import load_model

REPO = Path(__file__).resolve().parents[1]
VERBS = ("train", "evaluate", "prepare-data", "show-config", "aggregate", "report")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(*args: str, executable: list[str] | None = None) -> subprocess.CompletedProcess:
    command = (executable or [sys.executable, "-m", "lit"]) + list(args)
    return subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)


def test_help_lists_every_verb():
    result = run_cli("--help")
    assert result.returncode == 0
    for verb in VERBS:
        assert verb in result.stdout


def test_the_installed_entry_point_runs_the_same_cli():
    entry_point = Path(sys.executable).parent / "lit"
    assert entry_point.is_file(), "the `lit` console script is not installed in the environment"
    result = run_cli("--help", executable=[str(entry_point)])
    assert result.returncode == 0
    assert all(verb in result.stdout for verb in VERBS)


def test_a_bad_config_key_exits_with_one_line_naming_it_before_any_run_dir_exists(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", str(REPO / "config/runs/digits-teacher.yaml"), "model.dept=8", "--run-dir", str(run_dir))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "model.dept" in lines[0] and "Traceback" not in result.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["show-config", "{config}", "method.hard_weight=1.5"], "method.hard_weight"),
        (["train", "{config}", "model.depth=21", "--run-dir", "{run_dir}"], "6n+2"),
        (["train", "{config}", "method.name=kd", "--run-dir", "{run_dir}"], "method.teacher"),
        (["train", "{config}", "method.name=kd", "method.teacher={missing}", "--run-dir", "{run_dir}"], "does not exist"),
        (["evaluate", "{missing}"], "not a run directory"),
    ],
)
def test_errors_are_one_line_for_people(args, message, tmp_path, capsys):
    names = {"config": str(REPO / "config/runs/digits-teacher.yaml"), "run_dir": str(tmp_path / "run"), "missing": str(tmp_path / "missing")}
    code = main([arg.format(**names) for arg in args])
    captured = capsys.readouterr()
    assert code != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lit: ") and message in lines[0], captured.err


def test_show_config_prints_the_resolved_config(capsys):
    assert main(["show-config", str(REPO / "config/runs/digits-teacher.yaml"), "model.depth=20"]) == 0
    out = capsys.readouterr().out
    assert "depth: 20" in out and "hard_weight: 0.95" in out  # the override and a default


def resnet_macs(depth: int, size: int, in_channels: int, num_classes: int) -> int:
    """Convolution and classifier multiply-adds of a CIFAR ResNet, written out."""
    n, macs, previous = (depth - 2) // 6, size * size * 9 * in_channels * 16, 16
    for stage, width in enumerate((16, 32, 64)):
        size = size if stage == 0 else (size + 1) // 2
        macs += sum(size * size * 9 * ((previous if b == 0 else width) * width + width * width) for b in range(n))
        previous = width
    return macs + 64 * num_classes


def test_evaluate_writes_test_accuracy_and_cost_but_no_speed(digits_teacher, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(digits_teacher, run_dir)
    assert main(["evaluate", str(run_dir)]) == 0
    result = json.loads((run_dir / "eval.json").read_text())

    cfg = digits_config("model.depth=14", "train.phases.train.epochs=1")
    data = load_data(cfg.data)
    for which, key in (("best", "test_acc_selected"), ("last", "test_acc_last")):
        model, state = load_model(run_dir, which)
        with torch.no_grad():  # accuracy on the held-out test images, counted here
            predictions = torch.cat([model.eval()(x).argmax(1) for x, _ in Batches(data.test, data, 97)])
        assert result[key] == pytest.approx((predictions == data.test.labels).double().mean().item(), abs=1e-6)
    assert result["selected_epoch"] == json.loads((run_dir / "summary.json").read_text())["best_epoch"]
    assert abs(len(data.test) - 0.2 * 1797) < 5  # the digits' fixed 20% test split, not validation

    # ResNet-14 on 1-channel 8x8 digits, by hand: stem, 2 blocks per stage of two 3x3 conv + BN, classifier
    conv_bn = lambda cin, cout: 9 * cin * cout + 2 * cout  # noqa: E731
    params = conv_bn(1, 16) + 4 * conv_bn(16, 16) + conv_bn(16, 32) + 3 * conv_bn(32, 32) \
        + conv_bn(32, 64) + 3 * conv_bn(64, 64) + 64 * 10 + 10
    assert result["params"] == params
    assert result["flops"] == 2 * result["macs"] == 2 * resnet_macs(14, 8, 1, 10)
    assert "speed" not in result  # the machine's load would be in it: the speed stage times architectures
    assert result["input_shape"] == [1, 8, 8] and result["input_kind"] == "image"
    assert "test_acc selected" in capsys.readouterr().out
