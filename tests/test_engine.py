"""The training engine on digits: run directories, selection, schedule, determinism,
resume after an interruption (in process and by SIGKILL), divergence and checkpoints."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import lit.engine.trainer as trainer_module
from conftest import digits_config
from lit.cli import main as cli_main
from lit.config import ConfigError, from_dict
from lit.data import Batches, load_data
from lit.runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lit.models.io import load_model
from lit.runtime.runlog import MetricsLog
from lit.engine.trainer import Trainer, TrainingDiverged, train
from lit.evaluate.accuracy import accuracy
from lit.runtime.files import atomic_write



REPO = Path(__file__).resolve().parents[1]
TIMING_KEYS = {"images_per_s", "seconds"}


class Killed(BaseException):
    """Stands for a kill: not an `Exception`, so nothing on the way may swallow it."""


def method_overrides(method: str, teacher: Path | None = None) -> list[str]:
    if method == "scratch":
        return ["method.name=scratch", "train.phases.train={epochs: 4, lr: 0.1, milestones: [1, 3], gamma: 0.5}"]
    if method == "kd":
        return ["method.name=kd", f"method.teacher={teacher}", "train.lr_reference_batch=128",
                "train.phases.train={epochs: 2, lr: 0.05, milestones: [1]}"]
    return ["method.name=lit", f"method.teacher={teacher}",
            "train.phases.lit={epochs: 2, lr: 0.05, milestones: [1]}",
            "train.phases.finetune={epochs: 2, lr: 0.01, milestones: [1]}"]


# learning rate per epoch, read off each config above (lr_reference_batch=128 halves kd's at batch 64)
EXPECTED_LR = {
    "scratch": [0.1, 0.05, 0.05, 0.025],
    "kd": [0.025, 0.0025],
    "lit": [0.05, 0.005, 0.01, 0.001],
}
EXPECTED_TERMS = {
    "scratch": [{"ce"}] * 4,
    "kd": [{"kd"}] * 2,
    "lit": [{"kd", "mse_section0", "mse_section1", "mse_section2"}] * 2 + [{"kd"}] * 2,
}


def model_state(run_dir: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return load_checkpoint(Path(run_dir) / "checkpoints" / f"{which}.pt", kind="model")["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def records(run_dir: Path) -> list[dict]:
    return MetricsLog(Path(run_dir) / "metrics.jsonl").records()


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def leftover_temporaries(run_dir: Path) -> list[Path]:
    return [p for p in Path(run_dir).rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- one run per method


@pytest.mark.parametrize("method", ["scratch", "kd", "lit"])
def test_a_run_directory_holds_config_metrics_checkpoints_and_summary(method, digits_teacher, tmp_path):
    run_dir = tmp_path / "run"
    cfg = digits_config("model.depth=8", "train.precision=fp32", *method_overrides(method, digits_teacher))
    summary = train(cfg, run_dir)

    for name in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints/best.pt", "checkpoints/last.pt", "checkpoints/state.pt"):
        assert (run_dir / name).is_file(), name
    assert leftover_temporaries(run_dir) == []
    assert from_dict(yaml.safe_load((run_dir / "config.yaml").read_text())) == cfg

    rows = records(run_dir)
    epochs = len(EXPECTED_LR[method])
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    for row, terms, lr in zip(rows, EXPECTED_TERMS[method], EXPECTED_LR[method]):
        assert {k[len("loss_"):] for k in row if k.startswith("loss_")} == terms
        assert row["loss"] == pytest.approx(sum(row[f"loss_{t}"] for t in terms))
        assert all(math.isfinite(row[f"loss_{t}"]) for t in terms)
        assert 0.0 <= row["train_acc"] <= 1.0 and 0.0 <= row["val_acc"] <= 1.0
        assert row["images_per_s"] > 0
        assert row["lr"] == pytest.approx(lr, rel=1e-9), f"epoch {row['epoch']}"
    if method == "lit":
        assert [r["phase"] for r in rows] == ["lit", "lit", "finetune", "finetune"]
        assert [r["phase_epoch"] for r in rows] == [1, 2, 1, 2]

    # selection: best.pt is the first epoch with the highest validation accuracy ...
    val = [r["val_acc"] for r in rows]
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt", kind="model")
    assert best["epoch"] == val.index(max(val)) + 1
    assert best["val_acc"] == max(val)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt", kind="model")["epoch"] == epochs
    # ... and really holds that epoch's weights: re-measured, it scores what was logged
    data = load_data(cfg.data)
    model, _ = load_model(run_dir, "best")
    measured, _ = accuracy(model, Batches(data.val, data, 256), torch.device("cpu"))
    assert measured == pytest.approx(max(val), abs=1e-6)

    written = json.loads((run_dir / "summary.json").read_text())
    assert written["best_epoch"] == best["epoch"] == summary["best_epoch"]
    assert written["best_val_acc"] == pytest.approx(max(val))
    assert written["epochs"] == epochs and written["status"] == "complete"


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_same_seed_gives_bit_identical_weights_and_another_seed_does_not(precision, tmp_path):
    def run(seed: int, name: str) -> Path:
        cfg = digits_config("model.depth=8", f"seed={seed}", f"train.precision={precision}",
                            "train.phases.train={epochs: 2, lr: 0.05}")
        train(cfg, tmp_path / name)
        return tmp_path / name

    first, again, other = run(0, "a"), run(0, "b"), run(1, "c")
    assert json.loads((first / "summary.json").read_text())["precision"] == ("float32" if precision == "fp32" else "bfloat16")
    assert_same_weights(model_state(first), model_state(again))
    assert without_timing(records(first)) == without_timing(records(again))
    differing = [k for k, v in model_state(first).items() if not torch.equal(v, model_state(other)[k])]
    assert any(k.endswith("weight") for k in differing)


# ---------------------------------------------------------------- resume


@pytest.fixture(scope="session")  # built once per worker, which may run other modules in between
def uninterrupted(tmp_path_factory, digits_teacher):
    """Reference runs, trained once per configuration and shared by the resume tests."""
    cache: dict[tuple[str, ...], Path] = {}

    def get(overrides: tuple[str, ...]) -> Path:
        if overrides not in cache:
            run_dir = tmp_path_factory.mktemp("reference") / "run"
            train(digits_config(*overrides), run_dir)
            cache[overrides] = run_dir
        return cache[overrides]

    return get


def resume_overrides(method: str, precision: str, teacher: Path) -> tuple[str, ...]:
    if method == "scratch":
        phases = ["method.name=scratch", "train.phases.train={epochs: 3, lr: 0.05, milestones: [2]}"]
    elif method == "crd":  # its memory banks and Z constants are buffers of its extra modules
        phases = ["method.name=crd", f"method.teacher={teacher}", "train.phases.train={epochs: 2, lr: 0.05, milestones: [1]}"]
    else:
        phases = ["method.name=lit", f"method.teacher={teacher}", "train.phases.lit={epochs: 2, lr: 0.05}",
                  "train.phases.finetune={epochs: 1, lr: 0.01}"]
    return ("model.depth=8", f"train.precision={precision}", *phases)


def interrupt_at(monkeypatch, where: str, epoch: int) -> None:
    """Make the run die at `where` in epoch `epoch` (1-based, over all phases; `mid_epoch`:
    during the epoch after it)."""
    if where == "after_epoch":  # everything of the epoch written
        original = Trainer.end_epoch

        def end_epoch(self, record):
            original(self, record)
            if self.progress.epoch == epoch:
                raise Killed

        monkeypatch.setattr(Trainer, "end_epoch", end_epoch)
    elif where == "mid_epoch":  # step 5 of the next epoch: its work is lost
        original_lr = trainer_module.learning_rate
        state = {"trainer": None}
        original_train_epoch = Trainer.train_epoch

        def train_epoch(self, phase, settings):
            state["trainer"] = self
            return original_train_epoch(self, phase, settings)

        def learning_rate(phase, base_lr, epoch_in_phase, step, steps):
            if state["trainer"].progress.epoch == epoch and step == 5:
                raise Killed
            return original_lr(phase, base_lr, epoch_in_phase, step, steps)

        monkeypatch.setattr(Trainer, "train_epoch", train_epoch)
        monkeypatch.setattr(trainer_module, "learning_rate", learning_rate)
    elif where == "before_log":  # checkpoints written, the epoch's record not yet
        original_append = MetricsLog.append

        def append(self, record):
            if record["epoch"] == epoch:
                raise Killed
            original_append(self, record)

        monkeypatch.setattr(MetricsLog, "append", append)
    elif where == "before_state":  # checkpoints and record written, the training state not yet
        original_save = Trainer.save_state

        def save_state(self):
            if self.progress.epoch == epoch:
                raise Killed
            original_save(self)

        monkeypatch.setattr(Trainer, "save_state", save_state)
    else:
        raise AssertionError(where)


@pytest.mark.parametrize(
    "method, precision, where, epoch",
    [
        ("scratch", "fp32", "after_epoch", 1),
        ("scratch", "bf16", "after_epoch", 2),
        ("scratch", "fp32", "mid_epoch", 1),
        ("scratch", "fp32", "before_log", 2),
        ("scratch", "fp32", "before_state", 2),
        ("lit", "fp32", "after_epoch", 2),  # at the boundary of LIT's two phases
        ("lit", "fp32", "mid_epoch", 1),
        ("crd", "fp32", "mid_epoch", 1),
    ],
)
def test_resume_after_an_interruption_equals_an_uninterrupted_run(method, precision, where, epoch, digits_teacher, uninterrupted, tmp_path, monkeypatch):
    overrides = resume_overrides(method, precision, digits_teacher)
    reference = uninterrupted(overrides)
    run_dir = tmp_path / "run"
    cfg = digits_config(*overrides)
    with monkeypatch.context() as patch:
        interrupt_at(patch, where, epoch)
        with pytest.raises(Killed):
            train(cfg, run_dir)
    assert not (run_dir / "summary.json").exists()

    summary = train(digits_config(*overrides), run_dir, resume=True)
    for which in ("last", "best"):
        assert_same_weights(model_state(run_dir, which), model_state(reference, which))
    assert_same_weights(load_checkpoint(run_dir / "checkpoints" / "state.pt")["optimizers"]["model"]["state"][0],
                        load_checkpoint(reference / "checkpoints" / "state.pt")["optimizers"]["model"]["state"][0])
    rows = records(run_dir)
    assert [r["epoch"] for r in rows] == list(range(1, len(records(reference)) + 1))
    assert without_timing(rows) == without_timing(records(reference))
    assert summary["best_epoch"] == json.loads((reference / "summary.json").read_text())["best_epoch"]
    assert leftover_temporaries(run_dir) == []


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lit", *args]


def test_sigkill_mid_run_then_cli_resume_matches_an_uninterrupted_run(tmp_path, capsys):
    """Acceptance: kill -9 a `lit train` mid-run, `--resume` it, and get the same model."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 3, "data": {"name": "digits"}, "model": {"family": "resnet", "depth": 8},
        "method": {"name": "scratch"},  # precision left at its default (bf16 where the CPU has it)
        "train": {"batch_size": 64, "phases": {"train": {"epochs": 6, "lr": 0.05, "milestones": [4]}}},
    }))
    overrides = ["train.threads=1", "train.progress=off"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
    quiet = dict(cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    reference = subprocess.Popen(_cli("train", str(config), *overrides, "--run-dir", str(reference_dir)), **quiet)
    victim = subprocess.Popen(_cli("train", str(config), *overrides, "--run-dir", str(killed_dir)), **quiet)
    try:
        state, metrics = killed_dir / "checkpoints" / "state.pt", killed_dir / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not (state.exists() and metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
            assert victim.poll() is None, f"training ended before it could be killed: {victim.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.005)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait() == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
    assert not (killed_dir / "summary.json").exists()
    assert len(records(killed_dir)) < 6, "the run was not interrupted"
    assert reference.wait() == 0, reference.stderr.read().decode()

    resumed = subprocess.run(_cli("train", str(config), *overrides, "--run-dir", str(killed_dir), "--resume"),
                             cwd=REPO, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(model_state(killed_dir, "last"), model_state(reference_dir, "last"))
    assert_same_weights(model_state(killed_dir, "best"), model_state(reference_dir, "best"))
    assert [r["epoch"] for r in records(killed_dir)] == [1, 2, 3, 4, 5, 6]
    assert without_timing(records(killed_dir)) == without_timing(records(reference_dir))

    results = []
    for run_dir in (killed_dir, reference_dir):
        assert cli_main(["evaluate", str(run_dir), "--latency-runs", "2", "--throughput-batch", "8"]) == 0
        results.append(json.loads((run_dir / "eval.json").read_text()))
    assert results[0]["test_acc_selected"] == results[1]["test_acc_selected"]
    assert results[0]["test_acc_last"] == results[1]["test_acc_last"]
    assert results[0]["test_acc_last"] > 0.5  # it did learn: equality is not of two broken runs


def test_every_step_carries_its_examples_rows_in_the_training_split(tmp_path, monkeypatch):
    """The method contract: `Step.indices` are the batch's rows in the training split, whose
    labels by row are `MethodContext.train_labels` (what CRD's memory bank is indexed by)."""
    from lit.methods import METHODS

    scratch, seen = METHODS.get("scratch"), []
    original = scratch.updates

    def recording(self, step, inputs, labels):
        seen.append((step.indices.clone(), labels.clone(), self.context.train_labels))
        yield from original(self, step, inputs, labels)

    monkeypatch.setattr(scratch, "updates", recording)
    cfg = digits_config("method.name=scratch", "train.phases.train={epochs: 2, lr: 0.05, milestones: []}")
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.run()
    train_labels = trainer.data.train.labels
    steps = len(trainer.train_batches)
    assert len(seen) == 2 * steps
    for rows, labels, context_labels in seen:
        assert context_labels is train_labels and torch.equal(train_labels[rows], labels)
    for epoch in range(2):  # every epoch visits distinct rows, in a new order
        rows = torch.cat([r for r, _, _ in seen[epoch * steps : (epoch + 1) * steps]])
        assert len(rows) == steps * cfg.train.batch_size == len(set(rows.tolist()))
    assert not torch.equal(seen[0][0], seen[steps][0])


def test_resuming_with_a_changed_config_is_refused_naming_the_key(tmp_path):
    cfg = digits_config("model.depth=8", "train.phases.train={epochs: 1, lr: 0.05}")
    train(cfg, tmp_path / "run")
    changed = digits_config("model.depth=8", "train.phases.train={epochs: 1, lr: 0.07}")
    with pytest.raises(ConfigError, match=r"train\.phases\.train\.lr \(0\.05 -> 0\.07\)"):
        train(changed, tmp_path / "run", resume=True)
    assert from_dict(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())) == cfg


def test_training_into_a_run_with_a_state_without_resume_is_refused(tmp_path):
    cfg = digits_config("model.depth=8", "train.phases.train={epochs: 1, lr: 0.05}")
    train(cfg, tmp_path / "run")
    before = (tmp_path / "run" / "metrics.jsonl").read_bytes(), (tmp_path / "run" / "checkpoints" / "state.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a training state.*--resume"):
        train(cfg, tmp_path / "run")
    after = (tmp_path / "run" / "metrics.jsonl").read_bytes(), (tmp_path / "run" / "checkpoints" / "state.pt").read_bytes()
    assert before == after


def test_a_fresh_run_does_not_inherit_a_stale_metrics_log(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_acc": 0.0}) + "\n")  # a run killed before its first state
    train(digits_config("model.depth=8", "train.phases.train={epochs: 1, lr: 0.05}"), run_dir, resume=True)
    assert len(records(run_dir)) == 1 and records(run_dir)[0]["val_acc"] > 0.0


# ---------------------------------------------------------------- divergence


def test_a_nan_loss_stops_the_run_and_keeps_the_last_complete_checkpoint(tmp_path, monkeypatch):
    from lit.methods.scratch import Scratch

    original = Scratch.losses

    def losses(self, phase, inputs, labels, progress):
        logits, terms = original(self, phase, inputs, labels, progress)
        if progress > 1 / 3 + 0.01:  # from step 2 of the second of three epochs on
            terms = {"ce": terms["ce"] * float("nan")}
        return logits, terms

    monkeypatch.setattr(Scratch, "losses", losses)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"loss became nan in phase 'train', epoch 2.*ce=nan.*checkpoint"):
        train(digits_config("model.depth=8", "train.precision=fp32", "train.phases.train={epochs: 3, lr: 0.05}"), run_dir)
    model, state = load_model(run_dir, "last")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    assert load_checkpoint(run_dir / "checkpoints" / "state.pt", kind="train-state")["progress"]["epoch"] == 1
    assert [r["epoch"] for r in records(run_dir)] == [1]
    assert not (run_dir / "summary.json").exists()
    assert leftover_temporaries(run_dir) == []


def test_a_huge_learning_rate_diverges_with_a_clear_message(tmp_path):
    cfg = digits_config("model.depth=8", "train.precision=fp32", "train.phases.train={epochs: 2, lr: 1e30}")
    with pytest.raises(TrainingDiverged, match="Lower the learning rate"):
        train(cfg, tmp_path / "run")


# ---------------------------------------------------------------- checkpoints


def bad_teachers(digits_teacher: Path, root: Path) -> dict[str, tuple[Path, str]]:
    """Teacher run directories whose best.pt is broken, with the message each must give."""
    whole = (digits_teacher / "checkpoints" / "best.pt").read_bytes()
    writers = {
        "truncated": (lambda p: p.write_bytes(whole[: len(whole) // 2]), "cannot be read.*truncated, corrupt or not a lit checkpoint"),
        "plain_tensor": (lambda p: torch.save(torch.zeros(3), p), "is not a lit checkpoint"),
        "random_bytes": (lambda p: p.write_bytes(os.urandom(4096)), "cannot be read.*truncated, corrupt or not a lit checkpoint"),
        "foreign_dict": (lambda p: torch.save({"state_dict": {}}, p), "is not a lit checkpoint"),
        "training_state": (lambda p: p.write_bytes((digits_teacher / "checkpoints" / "state.pt").read_bytes()),
                           "holds a 'train-state', expected a 'model'"),
    }
    teachers = {}
    for name, (write, message) in writers.items():
        path = root / name / "checkpoints" / "best.pt"
        path.parent.mkdir(parents=True)
        write(path)
        teachers[name] = (root / name, message)
    return teachers


def test_broken_teacher_checkpoints_give_a_clear_checkpoint_error(digits_teacher, tmp_path):
    for name, (teacher_dir, message) in bad_teachers(digits_teacher, tmp_path / "teachers").items():
        with pytest.raises(CheckpointError, match=message) as caught:
            load_model(teacher_dir, "best")
        assert str(teacher_dir / "checkpoints" / "best.pt") in str(caught.value), name
        cfg = digits_config("model.depth=8", "method.name=kd", f"method.teacher={teacher_dir}", "train.phases.train={epochs: 1}")
        with pytest.raises(CheckpointError, match=message):
            train(cfg, tmp_path / f"student-{name}")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere", "best")


def test_checkpoint_save_is_atomic(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint({"format": "lit-checkpoint/1", "kind": "model", "weights": torch.arange(4.0)}, path)
    original = path.read_bytes()

    def write_half_then_die(handle):
        handle.write(b"half a checkpoint")
        raise Killed

    with pytest.raises(Killed):
        atomic_write(path, write_half_then_die)
    with pytest.raises(Exception):  # a lambda cannot be pickled: torch.save fails part way
        save_checkpoint({"format": "lit-checkpoint/1", "kind": "model", "bad": lambda: 0}, path)
    assert path.read_bytes() == original
    assert torch.equal(load_checkpoint(path, kind="model")["weights"], torch.arange(4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
