"""`lit train` scores a classifier run as it ends and `lit evaluate` writes eval.json from
those scores without torch, when they are of the checkpoints in the run directory and of
this revision; otherwise it evaluates afresh (lit.evaluate.scores)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lit.cli import main
from lit.evaluate import scores
from lit.evaluate.run import score_finished_run
from lit.evaluate.scores import reuse_training_scores

REPO = Path(__file__).resolve().parents[1]


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def without_provenance(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != "provenance"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A ResNet-8 digits student trained by `lit train` for one epoch; copy it to change it."""
    run_dir = tmp_path_factory.mktemp("scored") / "run"
    assert main(["train", str(REPO / "config/runs/digits-student.yaml"), "method.name=scratch", "train.precision=fp32",
                 "train.phases.train={epochs: 1, lr: 0.05, milestones: []}", "--run-dir", str(run_dir)]) == 0
    return run_dir


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


def test_lit_train_keeps_the_scores_of_the_checkpoints_it_wrote(trained):
    kept = read(trained / "summary.json")["scores"]
    assert kept["revision"] == scores.SCORES_REVISION
    assert kept["checkpoints"] == scores.checkpoint_digests(trained)
    assert set(kept["checkpoints"]) == {"best", "last"} and all(len(d) == 64 for d in kept["checkpoints"].values())
    assert 0.1 < kept["result"]["test_acc_selected"] <= 1 and kept["result"]["params"] > 0
    assert kept["provenance"]["precision"] == "float32" and kept["provenance"]["device"] == "cpu"


def test_evaluate_writes_what_a_fresh_evaluation_writes(trained, tmp_path):
    run_dir = copy_of(trained, tmp_path)
    assert main(["evaluate", str(run_dir)]) == 0
    reused = read(run_dir / "eval.json")
    assert main(["evaluate", str(run_dir), "--rescore"]) == 0
    fresh = read(run_dir / "eval.json")
    assert without_provenance(reused) == without_provenance(fresh)
    assert "scores" not in reused["train"]  # eval.json carries the summary, not the scores twice


def test_evaluate_reusing_the_scores_never_imports_torch(trained, tmp_path):
    run_dir = copy_of(trained, tmp_path)
    probe = (f"import sys; from lit.cli import main; code = main(['evaluate', {str(run_dir)!r}]); "
             "print(code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.split()[-2:] == ["0", "False"], done.stdout + done.stderr
    assert read(run_dir / "eval.json")["test_acc_selected"] == read(run_dir / "summary.json")["scores"]["result"]["test_acc_selected"]


def test_a_replaced_checkpoint_is_evaluated_afresh(trained, digits_teacher, tmp_path):
    run_dir = copy_of(trained, tmp_path)
    kept = read(run_dir / "summary.json")["scores"]["result"]
    other = copy_of(digits_teacher, tmp_path / "other")
    assert main(["evaluate", str(other)]) == 0
    # the last checkpoint replaced by another run's (a ResNet-14 teacher's): the kept score
    # of `last` is no longer its score
    shutil.copy(other / "checkpoints/last.pt", run_dir / "checkpoints/last.pt")
    assert reuse_training_scores(run_dir) is None and not (run_dir / "eval.json").exists()
    assert main(["evaluate", str(run_dir)]) == 0
    fresh = read(run_dir / "eval.json")
    assert fresh["test_acc_last"] == read(other / "eval.json")["test_acc_last"]
    assert fresh["test_acc_selected"] == kept["test_acc_selected"] and fresh["params"] == kept["params"]


def test_scores_of_another_revision_or_none_are_not_used(trained, tmp_path, monkeypatch):
    run_dir = copy_of(trained, tmp_path)
    monkeypatch.setattr(scores, "SCORES_REVISION", scores.SCORES_REVISION + 1)
    assert reuse_training_scores(run_dir) is None
    monkeypatch.undo()
    assert reuse_training_scores(run_dir) is not None
    summary = read(run_dir / "summary.json")
    del summary["scores"]
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "eval.json").unlink()
    assert reuse_training_scores(run_dir) is None and not (run_dir / "eval.json").exists()


def test_scoring_a_run_trained_elsewhere_gives_the_scores_lit_evaluate_reuses(digits_teacher, tmp_path):
    """A run the engine trained (no scores) is scored as `lit train` scores it; the kept
    scores then produce the eval.json a fresh evaluation produces."""
    run_dir = copy_of(digits_teacher, tmp_path)
    assert reuse_training_scores(run_dir) is None
    scored = score_finished_run(run_dir)
    assert read(run_dir / "summary.json")["scores"]["result"] == scored
    reused = reuse_training_scores(run_dir)
    assert main(["evaluate", str(run_dir), "--rescore"]) == 0
    assert without_provenance(reused) == without_provenance(read(run_dir / "eval.json"))


def test_a_run_that_cannot_be_scored_is_still_trained(tmp_path, monkeypatch, capsys):
    """A scoring failure must not fail `lit train` (a workflow deletes a failed job's
    checkpoints): the run keeps its checkpoints and summary, and `lit evaluate` scores it."""
    import lit.evaluate.run as run_module

    def broken(*args, **kwargs):
        raise RuntimeError("the test split went missing")

    monkeypatch.setattr(run_module, "evaluate_classifier", broken)
    run_dir = tmp_path / "run"
    assert main(["train", str(REPO / "config/runs/digits-student.yaml"), "method.name=scratch", "train.precision=fp32",
                 "train.phases.train={epochs: 1, lr: 0.05, milestones: []}", "--run-dir", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert "trained but was not scored (RuntimeError: the test split went missing)" in err
    assert "scores" not in read(run_dir / "summary.json")
    assert (run_dir / "checkpoints/best.pt").is_file() and (run_dir / "checkpoints/last.pt").is_file()
    assert main(["evaluate", str(run_dir)]) == 1  # `lit evaluate` scores afresh, and reports the failure
    assert "the test split went missing" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["evaluate", str(run_dir)]) == 0 and 0 < read(run_dir / "eval.json")["test_acc_selected"] <= 1
