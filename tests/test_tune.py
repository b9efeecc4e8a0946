"""Validation tuning: tau, then alpha (KD), then beta (LIT), chosen on validation accuracy
with the test split out of reach; its files; reruns that skip finished trials; and
`method.tuned` carrying the chosen values into a final run's config.yaml."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

import lit.data.base as data_base
import lit.engine.trainer as trainer_module
import lit.evaluate.run as evaluate_module
import lit.tune as tune_module
from conftest import digits_config
from lit.cli import main as cli_main
from lit.config import ConfigError
from lit.engine.runconfig import config_hash
from lit.tune import tune

TRAIN_PHASES = (
    "model.depth=8", "train.precision=fp32",
    "train.phases.train={epochs: 1, lr: 0.05}",
    "train.phases.lit={epochs: 1, lr: 0.05}", "train.phases.finetune={epochs: 1, lr: 0.01}",
)


class SplitGuardTripped(AssertionError):
    pass


class NoTestSplit:
    """The data splits with the test split out of reach: reading it fails the test."""

    def __init__(self, splits):
        self._splits = splits

    def __getattr__(self, name):
        if name == "test":
            raise SplitGuardTripped("the test split was read during tuning")
        return getattr(self._splits, name)


@pytest.fixture
def no_test_split(monkeypatch):
    build_data = data_base.build_data
    monkeypatch.setattr(data_base, "build_data", lambda *args, **kwargs: NoTestSplit(build_data(*args, **kwargs)))

    def no_evaluation(*args, **kwargs):
        raise SplitGuardTripped("a run was evaluated on the test split during tuning")

    monkeypatch.setattr(evaluate_module, "evaluate_run", no_evaluation)


def test_tuning_never_reads_the_test_split_and_writes_its_files(digits_teacher, tmp_path, no_test_split, monkeypatch):
    base = digits_config(*TRAIN_PHASES, "method.hard_weight=0.7", "method.kd_weight=0.6")
    with pytest.raises(SplitGuardTripped):  # the guard holds where the trainer loads its data
        data_base.load_data(base.data).test
    grids = {"temperature": [2.0, 4.0], "kd_weight": [0.5]}  # alpha pinned to the config's 0.7
    out_dir = tmp_path / "tuning"
    tuned = tune(base, digits_teacher, grids, out_dir)

    rows = list(csv.DictReader((out_dir / "tuning.csv").open()))
    assert [(r["stage"], r["method"]) for r in rows] == [("temperature", "kd")] * 2 + [("kd_weight", "lit")]
    assert list(rows[0]) == ["stage", "method", "temperature", "hard_weight", "kd_weight", "val_acc"]
    scores = {float(r["temperature"]): float(r["val_acc"]) for r in rows[:2]}
    assert tuned["temperature"] == max(scores, key=lambda tau: (scores[tau], -tau))  # ties: the first listed
    assert tuned["hard_weight"] == 0.7 and tuned["kd_weight"] == 0.5 and tuned["trials"] == 3
    # later stages run with the earlier choices fixed
    assert float(rows[2]["temperature"]) == tuned["temperature"] and float(rows[2]["hard_weight"]) == 0.7
    assert json.loads((out_dir / "tuned.json").read_text()) == tuned
    assert (out_dir / "tuning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for row in rows:  # each score is the trial's selected checkpoint's validation accuracy
        trial = out_dir / "trials" / f"{row['stage']}-{float(row[row['stage']]):g}"
        assert float(row["val_acc"]) == json.loads((trial / "summary.json").read_text())["best_val_acc"]
        saved = yaml.safe_load((trial / "config.yaml").read_text())["method"]
        assert saved["name"] == row["method"] and saved["temperature"] == float(row["temperature"])

    # a rerun reads the finished trials instead of training them again
    def no_training(*args, **kwargs):
        raise AssertionError("a finished trial was trained again")

    monkeypatch.setattr(trainer_module, "train", no_training)
    assert tune(base, digits_teacher, grids, out_dir) == tuned


def test_each_stage_picks_the_best_validation_score_with_the_earlier_choices_fixed(tmp_path, monkeypatch):
    seen = []

    def fake_trial(cfg, run_dir):
        m = cfg.method
        seen.append((run_dir.name, m.name, m.temperature, m.hard_weight, m.kd_weight))
        return {"temperature-2": 0.5, "temperature-4": 0.9, "temperature-6": 0.9,
                "hard_weight-0.1": 0.8, "hard_weight-0.5": 0.3, "kd_weight-0.25": 0.1, "kd_weight-0.75": 0.2}[run_dir.name]

    monkeypatch.setattr(tune_module, "run_trial", fake_trial)
    base = digits_config(*TRAIN_PHASES, "method.name=kd", "method.teacher=unused")
    grids = {"temperature": [2, 4, 6], "hard_weight": [0.1, 0.5], "kd_weight": [0.25, 0.75]}
    tuned = tune(base, "teacher-dir", grids, tmp_path)
    assert tuned == {"temperature": 4.0, "hard_weight": 0.1, "kd_weight": 0.75, "trials": 7}
    assert seen[3] == ("hard_weight-0.1", "kd", 4.0, 0.1, base.method.kd_weight)
    assert seen[5] == ("kd_weight-0.25", "lit", 4.0, 0.1, 0.25)
    # every grid empty: all pinned, nothing trained
    pinned = tune(base, "teacher-dir", {}, tmp_path / "pinned")
    assert pinned == {"temperature": 6.0, "hard_weight": 0.95, "kd_weight": 0.75, "trials": 0}
    with pytest.raises(ConfigError, match="not tunable"):
        tune(base, "teacher-dir", {"lr": [0.1]}, tmp_path / "bad")


def write_tuned(path, **values):
    path.write_text(json.dumps({"temperature": 3.0, "hard_weight": 0.4, "kd_weight": 0.3, "trials": 5, **values}))
    return path


def test_a_run_with_method_tuned_trains_with_and_records_the_tuned_values(digits_teacher, tmp_path):
    tuned = write_tuned(tmp_path / "tuned.json")
    cfg = digits_config("model.depth=8", "method.name=kd", f"method.teacher={digits_teacher}", f"method.tuned={tuned}",
                        "train.phases.train={epochs: 1, lr: 0.05}")
    assert cfg.method.temperature == 6.0  # resolved only when the run starts
    trainer = trainer_module.Trainer(cfg, tmp_path / "run")
    assert (trainer.method.cfg.temperature, trainer.method.cfg.hard_weight) == (3.0, 0.4)
    trainer.run()
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["method"]
    assert (saved["temperature"], saved["hard_weight"], saved["kd_weight"], saved["tuned"]) == (3.0, 0.4, 0.3, str(tuned))
    # the tuned file is part of the run's identity
    other = digits_config("model.depth=8", "method.name=kd", f"method.teacher={digits_teacher}",
                          "train.phases.train={epochs: 1, lr: 0.05}")
    assert config_hash(cfg) != config_hash(other)


@pytest.mark.parametrize("content", [None, "not json", {"temperature": 3.0}, {"temperature": 3.0, "hard_weight": 2.0, "kd_weight": 0.5}])
def test_a_missing_or_invalid_tuned_file_names_method_tuned(tmp_path, content):
    path = tmp_path / "tuned.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    cfg = digits_config("model.depth=8", "method.name=kd", "method.teacher=unused", f"method.tuned={path}",
                        "train.phases.train={epochs: 1, lr: 0.05}")
    with pytest.raises(ConfigError, match="method.tuned"):
        trainer_module.Trainer(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_tune_verb_pins_absent_grids(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(tune_module, "run_trial", lambda cfg, run_dir: calls.append(run_dir.name) or 0.5)
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump({"data": {"name": "digits"}, "method": {"hard_weight": 0.8},
                                      "train": {"phases": {"train": {"epochs": 1}}}}))
    code = cli_main(["tune", str(config), "method.temperature=5", "--teacher", "t", "--out-dir", str(tmp_path / "out"),
                     "--hard-weights", "0.2", "0.6"])
    assert code == 0, capsys.readouterr().err
    assert calls == ["hard_weight-0.2", "hard_weight-0.6"]
    assert json.loads((tmp_path / "out" / "tuned.json").read_text()) == {
        "temperature": 5.0, "hard_weight": 0.2, "kd_weight": 0.75, "trials": 2}
