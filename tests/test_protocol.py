"""The reporting protocol: the per-epoch test oracle that nothing may select on, training on
the whole training set with `train.selection: last`, and what the tables say of each number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import lit.data.base as data_base
import lit.evaluate.run as evaluate_module
from conftest import digits_config
from lit.config import ConfigError
from lit.engine.runconfig import config_hash
from lit.engine.trainer import train
from lit.evaluate.run import evaluate_run
from lit.runtime.checkpoint import load_checkpoint
from lit.runtime.runlog import MetricsLog
from lit.tune import tune
from test_tune import NoTestSplit

SCRATCH = ("method.name=scratch", "train.precision=fp32", "train.phases.train={epochs: 3, lr: 0.05, milestones: [2]}")
ORACLE_KEYS = {"test_acc", "test_loss"}


def weights(run_dir: Path, which: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / f"{which}.pt", kind="model")["model"]


def records(run_dir: Path) -> list[dict]:
    return MetricsLog(run_dir / "metrics.jsonl").records()


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ORACLE_KEYS | {"images_per_s", "seconds"}} for row in rows]


class ScrambledTest:
    """The data splits with the test labels replaced by a fixed permutation: the oracle then
    ranks epochs differently from validation, so selection reading it would show."""

    def __init__(self, splits):
        self._splits = splits
        generator = torch.Generator().manual_seed(123)
        labels = splits.test.labels
        self.test = type(splits.test)(splits.test.inputs, labels[torch.randperm(len(labels), generator=generator)])

    def __getattr__(self, name):
        return getattr(self._splits, name)


@pytest.fixture(scope="module")
def oracle_runs(tmp_path_factory) -> dict[str, Path]:
    """The same scratch run without the oracle, with it, and with it on scrambled test labels."""
    root = tmp_path_factory.mktemp("oracle")
    runs = {"off": root / "off", "on": root / "on", "scrambled": root / "scrambled"}
    train(digits_config(*SCRATCH), runs["off"])
    train(digits_config(*SCRATCH, "evaluate.test_every_epoch=true"), runs["on"])
    with pytest.MonkeyPatch.context() as patch:
        build_data = data_base.build_data
        patch.setattr(data_base, "build_data", lambda *a, **k: ScrambledTest(build_data(*a, **k)))
        train(digits_config(*SCRATCH, "evaluate.test_every_epoch=true"), runs["scrambled"])
    return runs


def test_the_oracle_logs_test_accuracy_every_epoch_in_its_own_field(oracle_runs):
    rows = records(oracle_runs["on"])
    assert len(rows) == 3 and all(0.0 <= row["test_acc"] <= 1.0 for row in rows)
    assert not any(ORACLE_KEYS & set(row) for row in records(oracle_runs["off"]))
    summary = json.loads((oracle_runs["on"] / "summary.json").read_text())
    best = max(rows, key=lambda row: row["test_acc"])
    assert summary["oracle_test_acc"] == best["test_acc"] and summary["oracle_epoch"] == best["epoch"]


def test_no_selection_reads_the_oracle(oracle_runs):
    """With the oracle off, on, and on with test labels that rank epochs otherwise, the
    selected and last weights, every logged value selection could read, and the chosen
    epoch are identical: the test split cannot steer anything."""
    scrambled = records(oracle_runs["scrambled"])
    assert [r["test_acc"] for r in scrambled] != [r["test_acc"] for r in records(oracle_runs["on"])]
    for name in ("on", "scrambled"):
        for which in ("best", "last"):
            reference, other = weights(oracle_runs["off"], which), weights(oracle_runs[name], which)
            assert all(torch.equal(reference[k], other[k]) for k in reference)
        assert comparable(records(oracle_runs[name])) == comparable(records(oracle_runs["off"]))
        summaries = [json.loads((oracle_runs[n] / "summary.json").read_text()) for n in ("off", name)]
        assert summaries[0]["best_epoch"] == summaries[1]["best_epoch"]
        assert summaries[0]["best_val_acc"] == summaries[1]["best_val_acc"]


def test_the_oracle_enters_eval_json_and_its_last_epoch_equals_the_last_checkpoint(oracle_runs):
    result = evaluate_run(oracle_runs["on"], devices=["cpu"], latency_runs=2, throughput_batch=8)
    last_logged = records(oracle_runs["on"])[-1]["test_acc"]
    assert result["test_acc_last"] == pytest.approx(last_logged, abs=1e-9)
    assert result["test_acc_oracle"] >= max(result["test_acc_last"], result["test_acc_selected"])
    assert result["selection"] == "val" and result["val_fraction"] == pytest.approx(0.1)
    assert "test_acc_oracle" not in evaluate_run(oracle_runs["off"], devices=["cpu"], latency_runs=2, throughput_batch=8)


def test_the_oracle_is_part_of_the_run_id():
    assert config_hash(digits_config(*SCRATCH)) != config_hash(digits_config(*SCRATCH, "evaluate.test_every_epoch=true"))


def test_tuning_trials_never_log_the_test_split(digits_teacher, tmp_path, monkeypatch):
    """A base config with the oracle on: tuning still never touches the test split."""

    build_data = data_base.build_data
    monkeypatch.setattr(data_base, "build_data", lambda *a, **k: NoTestSplit(build_data(*a, **k)))
    monkeypatch.setattr(evaluate_module, "evaluate_run", lambda *a, **k: pytest.fail("evaluated during tuning"))
    base = digits_config("evaluate.test_every_epoch=true", "train.phases.train={epochs: 1, lr: 0.05}",
                         "train.phases.lit={epochs: 1, lr: 0.05}", "train.phases.finetune={epochs: 1, lr: 0.01}")
    chosen = tune(base, digits_teacher, {"temperature": [4.0, 6.0]}, tmp_path / "tuning")
    assert chosen["temperature"] in (4.0, 6.0)
    trials = list((tmp_path / "tuning" / "trials").iterdir())
    assert trials and not any("test_acc" in row for trial in trials for row in records(trial))


def test_no_validation_split_needs_selection_last_and_names_both_keys():
    with pytest.raises(ConfigError) as refused:
        digits_config(*SCRATCH, "data.val_fraction=0")
    assert "data.val_fraction" in str(refused.value) and "train.selection" in str(refused.value)


def test_selection_last_on_the_whole_training_set_reports_the_last_epoch(tmp_path):
    run_dir = tmp_path / "full"
    cfg = digits_config(*SCRATCH, "data.val_fraction=0", "train.selection=last", "evaluate.test_every_epoch=true")
    summary = train(cfg, run_dir)
    rows = records(run_dir)
    assert not any("val_acc" in row for row in rows)  # no validation split, nothing validated
    assert summary["selection"] == "last" and summary["best_val_acc"] is None
    best, last = weights(run_dir, "best"), weights(run_dir, "last")
    assert all(torch.equal(best[k], last[k]) for k in best)
    result = evaluate_run(run_dir, devices=["cpu"], latency_runs=2, throughput_batch=8)
    assert result["test_acc_selected"] == result["test_acc_last"]
    assert result["selection"] == "last" and result["val_fraction"] == 0.0
    # all of the training set trains: more training images than with the 10% hold-out
    default = digits_config(*SCRATCH)
    from lit.data import load_data

    assert len(load_data(cfg.data).train) > len(load_data(default.data).train)
