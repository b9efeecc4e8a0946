"""Optional experiment trackers (`train.loggers`): TensorBoard event files and an MLflow run
hold what metrics.jsonl holds, read back with each package's own reader; the loggers leave
run ids alone, resume without duplicated steps, and are never imported unless asked for."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from conftest import DIGITS_BASE
from lit.config import ConfigError, TrainConfig
from lit.engine import trainer as trainer_module
from lit.engine.runconfig import config_hash, load_run_config
from lit.engine.trainer import Trainer, train
from lit.runtime.runlog import MetricsLog
from lit.runtime.trackers import TRACKERS, Trackers, mlflow_tracking_uri

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "config" / "runs" / "digits-student.yaml"
SCRATCH = ("model.depth=8", "method.name=scratch")
BOTH = "train.loggers=[tensorboard, mlflow]"


class Killed(BaseException):
    """Stands for a kill: not an `Exception`, so nothing on the way may swallow it."""


def student(epochs: int, *overrides: str):
    return load_run_config(STUDENT, [*DIGITS_BASE, *SCRATCH, f"train.phases.train={{epochs: {epochs}, lr: 0.05}}", *overrides])


def numeric(record: dict) -> dict[str, float]:
    return {k: v for k, v in record.items() if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def mlflow_runs(uri: str, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r} in {uri}"
    return [(run, client) for run in client.search_runs([found.experiment_id])]


def mlflow_history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def assert_same(logged: list[tuple[int, float]], expected: list[tuple[int, float]], key: str, rel: float) -> None:
    assert [step for step, _ in logged] == [step for step, _ in expected], f"{key}: steps {logged} != {expected}"
    for (step, value), (_, want) in zip(logged, expected):
        assert value == pytest.approx(want, rel=rel, abs=1e-12), f"{key} at step {step}: {value} != {want}"


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    uri = (tmp_path / "mlflow-store").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return uri


def test_tensorboard_and_mlflow_hold_metrics_jsonl_and_the_run_id_is_unchanged(tmp_path, store):
    cfg = student(2, BOTH)
    run_dir = tmp_path / "experiment" / "run"
    train(cfg, run_dir)
    records = MetricsLog(run_dir / "metrics.jsonl").records()
    assert [r["epoch"] for r in records] == [1, 2]
    keys = set(numeric(records[0]))
    assert {"loss", "loss_ce", "train_acc", "val_acc", "val_loss", "lr", "images_per_s"} <= keys
    expected = {key: [(r["epoch"], r[key]) for r in records] for key in keys}

    # TensorBoard: <run_dir>/tensorboard, every numeric key one scalar per epoch (float32)
    scalars = tensorboard_scalars(run_dir / "tensorboard")
    assert set(scalars) == keys
    for key in keys:
        assert_same(scalars[key], expected[key], key, rel=1e-6)

    # MLflow: one finished run named after the run directory, in the experiment of its parent
    ((run, client),) = mlflow_runs(store, "experiment")
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert set(run.data.metrics) == keys
    for key in keys:
        assert_same(mlflow_history(client, run.info.run_id, key), expected[key], key, rel=1e-12)
    assert run.data.params["method.name"] == "scratch" and run.data.params["train.batch_size"] == "64"
    assert json.loads(run.data.params["train.phases.train.milestones"]) == []

    # the loggers change no run id: the hash (run ids, the resume check) is that of the run without them
    assert run.data.tags["lit.run_id"] == config_hash(cfg) == config_hash(student(2))
    assert config_hash(student(2, "train.loggers=[tensorboard]")) == config_hash(student(2))


def test_a_resume_that_adds_a_logger_resumes_and_tensorboard_shows_each_epoch_once(tmp_path, store, monkeypatch):
    """Killed after epoch 2's record was logged but before its state was saved: the resumed
    session redoes epoch 2. TensorBoard then holds epochs 1..3 once each, with metrics.jsonl's
    values; the resumed session (which adds mlflow) is a new MLflow run from epoch 2 on."""
    run_dir = tmp_path / "experiment" / "run"
    original_save = Trainer.save_state

    def save_state(self):
        if self.progress.epoch == 2:
            raise Killed
        original_save(self)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save_state", save_state)
        with pytest.raises(Killed):
            train(student(3, "train.loggers=[tensorboard]"), run_dir)
    assert [s for s, _ in tensorboard_scalars(run_dir / "tensorboard")["loss"]] == [1, 2]  # epoch 2 was logged

    summary = train(student(3, BOTH), run_dir, resume=True)  # differs in train.loggers only
    assert summary["status"] == "complete"
    records = MetricsLog(run_dir / "metrics.jsonl").records()
    assert [r["epoch"] for r in records] == [1, 2, 3]
    scalars = tensorboard_scalars(run_dir / "tensorboard")
    for key in numeric(records[0]):
        # images_per_s and seconds of the redone epoch 2 differ between the sessions: the resumed one's shows
        assert_same(scalars[key], [(r["epoch"], r[key]) for r in records], key, rel=1e-6)

    ((run, client),) = mlflow_runs(store, "experiment")
    assert run.data.tags["lit.resumed_at_step"] == "2" and run.info.status == "FINISHED"
    for key in numeric(records[0]):
        assert_same(mlflow_history(client, run.info.run_id, key), [(r["epoch"], r[key]) for r in records[1:]], key, rel=1e-12)


def test_an_unknown_logger_is_a_config_error_naming_the_key_and_the_known_names(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"train\.loggers.*'tensorboard', 'mlflow'.*'wandb'"):
        student(1, "train.loggers=[tensorboard, wandb]")
    with pytest.raises(ConfigError, match=r"train\.loggers.*at most once"):
        student(1, "train.loggers=[mlflow, mlflow]")
    from lit.cli import main

    code = main(["train", str(STUDENT), *DIGITS_BASE, *SCRATCH, "train.loggers=[wandb]", "--run-dir", str(tmp_path / "run")])
    assert code != 0 and "train.loggers" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    # the config's names are the trackers there are
    (names,) = typing.get_args(typing.get_type_hints(TrainConfig)["loggers"])
    assert set(typing.get_args(names)) == set(TRACKERS)


@pytest.mark.parametrize("logger, module, package", [("tensorboard", "tensorboard", "tensorboard"), ("mlflow", "mlflow", "mlflow-skinny")])
def test_a_missing_tracker_package_stops_the_run_before_any_file_naming_the_extra(logger, module, package, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails as if it were not installed
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=rf"train\.loggers.*{package}.*pip install 'lit-compress\[tracking\]'"):
        train(student(1, f"train.loggers=[{logger}]"), run_dir)
    assert not run_dir.exists()


def test_the_default_run_imports_neither_tracker_package(tmp_path):
    """A fresh interpreter trains with the default `train.loggers: []` through the CLI: neither
    package is imported (and the same check sees them once a tracker is asked for)."""
    script = f"""
import json, sys
from lit.cli import main
assert main({["train", str(STUDENT), *DIGITS_BASE, *SCRATCH, "train.phases.train={epochs: 1, lr: 0.05}", "--run-dir", str(tmp_path / "run")]!r}) == 0
def loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] in ("tensorboard", "mlflow") or m.startswith("torch.utils.tensorboard"))
default = loaded()
from lit.runtime.trackers import check_trackers
check_trackers(["tensorboard", "mlflow"])
print(json.dumps({{"default": default, "asked": loaded()}}))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["default"] == []
    assert "tensorboard" in loaded["asked"] and "mlflow" in loaded["asked"]
    assert (tmp_path / "run" / "summary.json").is_file() and not (tmp_path / "run" / "tensorboard").exists()
    assert not (tmp_path / "mlruns").exists()


def test_without_a_tracking_uri_mlflow_writes_mlruns_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.chdir(tmp_path)
    assert mlflow_tracking_uri() == (tmp_path / "mlruns").as_uri()
    trackers = Trackers(["mlflow"], tmp_path / "runs" / "gan", {"seed": 0}, "abc")
    # an iteration-based record: logged at its iteration; a non-finite value (null in metrics.jsonl) is left out
    trackers.log({"phase": "gan", "iteration": 100, "phase_iteration": 100, "lr": 1e-4, "loss_d": math.nan, "loss_g": 0.5})
    trackers.close()
    ((run, client),) = mlflow_runs((tmp_path / "mlruns").as_uri(), "runs")
    assert set(run.data.metrics) == {"lr", "phase_iteration", "loss_g"}
    assert mlflow_history(client, run.info.run_id, "loss_g") == [(100, 0.5)]
    assert run.data.params == {"seed": "0"}


def test_trackers_close_as_failed_when_the_run_fails(tmp_path, store, monkeypatch):
    original = trainer_module.Trainer.end_epoch

    def end_epoch(self, record):
        original(self, record)
        raise Killed

    monkeypatch.setattr(trainer_module.Trainer, "end_epoch", end_epoch)
    with pytest.raises(Killed):
        train(student(2, "train.loggers=[mlflow]"), tmp_path / "experiment" / "run")
    ((run, client),) = mlflow_runs(store, "experiment")
    assert run.info.status == "FAILED"
    assert mlflow_history(client, run.info.run_id, "loss") and [s for s, _ in mlflow_history(client, run.info.run_id, "loss")] == [1]


def test_a_tracker_that_fails_mid_run_is_switched_off_and_training_goes_on(tmp_path, capsys):
    trackers = Trackers(["tensorboard"], tmp_path / "run", {"seed": 0}, "abc")
    (backend,) = trackers.backends

    def broken(*args, **kwargs):
        raise OSError("disk full")

    backend.writer.add_scalar = broken
    trackers.log({"epoch": 1, "loss": 1.0})  # no exception
    assert trackers.backends == [] and "switched off: disk full" in capsys.readouterr().err
    trackers.log({"epoch": 2, "loss": 0.5})
    trackers.close()
