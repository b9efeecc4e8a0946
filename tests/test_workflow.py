"""The Snakemake pipeline on one tiny project: end to end, then what a rerun does (nothing,
only a new depth, only the runs a changed value reaches, a killed job resumed, a tuning
stage, other hardware settings). DVC: tests/test_dvc.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from lit.plan import plan_experiments
from workflow_helpers import (BIN, ROOT, copy_project, env, make_project, planned_jobs, snakemake, tiny_config,
                              write_config)

pytestmark = pytest.mark.slow


COMMITTED = ["table.csv", "metrics.json", "tiny/table.csv", "tiny/tiny-summary.csv", "tiny/tiny-summary.md",
             "tiny/tiny-compression.csv", "tiny/tiny-compression.md", "tiny/tiny-depth-vs-accuracy.png",
             "tiny/tiny-depth-vs-accuracy.pdf"]


def with_fitnets(config: dict) -> dict:
    """The tiny experiment with a FitNets student too (its hint stage one epoch)."""
    students = config["experiments"]["tiny"]["students"]
    students["methods"] = [*students["methods"], "fitnets"]
    students["overrides"] = {**students["overrides"], "train.phases.hint.epochs": 1, "train.phases.hint.milestones": []}
    return config


@pytest.fixture(scope="session")  # built once per worker, which may run other modules in between
def finished_tiny(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """The tiny project (a ResNet-14 teacher; scratch, KD, LIT and FitNets ResNet-8 students) as a
    fresh clone has it, reference tables committed and no runs, then after one pipeline
    run; and the jobs a dry run planned before it. Tests read it, or change a copy."""
    folder = make_project(tmp_path_factory.mktemp("tiny") / "project", with_fitnets(tiny_config()))
    for name in COMMITTED:
        path = folder / "results" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("committed reference\n")
    planned = planned_jobs(folder)
    snakemake(folder, "--cores", "2")
    return folder, planned


@pytest.fixture
def tiny_project(finished_tiny, tmp_path) -> Path:
    """A copy of the finished tiny project, to change."""
    return copy_project(finished_tiny[0], tmp_path / "project")


def test_a_fresh_clone_with_committed_tables_still_trains_every_run(finished_tiny):
    """Reference tables and figures are committed, the runs are not: a fresh clone's run
    must train, evaluate and then remake the tables, not find them up to date."""
    folder, counts = finished_tiny
    assert counts.get("train") == 5 and counts.get("evaluate") == 5, counts  # teacher + 4 students
    assert counts.get("report_experiment") == 1 and counts.get("aggregate_all") == 1, counts
    for name in COMMITTED:
        assert (folder / "results" / name).read_bytes() != b"committed reference\n", f"{name} was not remade"


def test_tiny_dag_end_to_end(finished_tiny):
    results = finished_tiny[0] / "results"
    for name in ["tiny-depth-vs-accuracy.png", "tiny-depth-vs-accuracy.pdf", "tiny-summary.csv", "tiny-summary.md",
                 "tiny-compression.csv", "tiny-compression.md"]:
        assert (results / "tiny" / name).stat().st_size > 0, name
    table = pd.read_csv(results / "table.csv")
    assert sorted(table["method"]) == ["fitnets", "kd", "lit", "scratch", "scratch"]
    assert table["test_acc_selected"].between(0, 1).all()
    metrics = json.loads((results / "metrics.json").read_text())
    assert set(metrics["tiny"]) == {"teacher", "scratch", "kd", "lit", "fitnets"}
    # FitNets ran its two stages: the hint, then KD end to end
    log = next((finished_tiny[0] / "results" / "logs" / "tiny" / "train").glob("fitnets-*.log")).read_text()
    assert "(hint 1)" in log and "(train 1)" in log
    assert "fitnets" in set(pd.read_csv(results / "tiny" / "tiny-summary.csv")["method"])


def test_a_second_run_has_nothing_to_do(tiny_project):
    assert planned_jobs(tiny_project) == {}, "a second run must find nothing to do"


def test_a_new_depth_runs_only_its_runs(tiny_project):
    write_config(tiny_project, tiny_config(depths=(8, 14)))
    counts = planned_jobs(tiny_project)
    assert counts["train"] == 3 and counts["evaluate"] == 3, counts  # one new depth x three methods
    assert "prepare_data" not in counts
    # and every table and figure downstream of the new runs is redone
    assert counts["report_experiment"] == counts["aggregate_all"] == 1, counts


def test_a_changed_value_reruns_only_the_runs_that_read_it(tiny_project):
    write_config(tiny_project, tiny_config(depths=(8,), student_overrides={"method.kd_weight": 0.5}))
    counts = planned_jobs(tiny_project)
    assert counts["train"] == 1 and counts["evaluate"] == 1, f"only LIT reads method.kd_weight: {counts}"


def test_retimed_speed_stage_remakes_the_tables_and_trains_nothing(tiny_project):
    """The speed files are `ancient` inputs of the tables, across which Snakemake does not
    propagate a rerun: other speed settings must still remake the tables that read them."""
    config = with_fitnets(tiny_config())
    config["evaluate"]["speed_rounds"] = 2
    write_config(tiny_project, config)
    counts = planned_jobs(tiny_project)
    assert counts == {"speed": 1, "report_experiment": 1, "aggregate_all": 1, "all": 1}, counts
    snakemake(tiny_project, "--cores", "2")
    folder = tiny_project / "results" / "tiny"
    assert json.loads((folder / "tiny-speed.json").read_text())["rounds"] == 2
    settings = list(folder.glob("tiny-speed-settings-*.txt"))  # this stage's only: the former one removed
    assert len(settings) == 1 and settings[0].read_text().startswith("rounds=2 "), settings
    timings = {a["label"]: a["cpu"]["latency_ms_batch1"]["min"] for a in json.loads((folder / "tiny-speed.json").read_text())["architectures"]}
    summary = pd.read_csv(folder / "tiny-summary.csv")
    assert sorted(summary["latency_ms_cpu"].unique()) == sorted(timings.values())  # the tables read the new stage


def test_a_deleted_speed_settings_file_retimes_the_stage_and_remakes_the_tables(tiny_project):
    """The README's way to time again with the same settings: delete the settings file and
    force the tables (a deleted file that only up-to-date jobs read is not remade)."""
    from test_readme import readme_line

    readme_line("rm results/digits-resnet/digits-resnet-speed-settings-*.txt")
    line = readme_line(".venv/bin/snakemake --workflow-profile workflow/profiles/local --cores 2 --forcerun report_experiment")
    for path in (tiny_project / "results" / "tiny").glob("tiny-speed-settings-*.txt"):
        path.unlink()
    assert planned_jobs(tiny_project) == {}  # the deleted file alone: nothing to do
    counts = planned_jobs(tiny_project, *line.split(" --cores 2 ")[1].split())
    assert counts == {"speed": 1, "report_experiment": 1, "aggregate_all": 1, "all": 1}, counts


def test_a_changed_teacher_schedule_reruns_the_teacher_and_its_learners_at_once(tiny_project):
    """Not the data job (it reads the data section only): with it, Snakemake would rerun the
    data alone and leave the training to a second invocation."""
    config = tiny_config(depths=(8,))
    teacher = config["experiments"]["tiny"]["teacher"]
    teacher["overrides"] = {**teacher["overrides"], "train.phases.train.epochs": 3}
    write_config(tiny_project, config)
    counts = planned_jobs(tiny_project)
    assert "prepare_data" not in counts, counts
    assert counts["train"] == 3 and counts["evaluate"] == 3, f"the teacher, KD and LIT: {counts}"


def test_tuning_stage_feeds_its_choice_into_the_final_runs(tiny_project):
    config = tiny_config()
    config["experiments"]["tiny"]["tune"] = {
        "depth": 8,
        "overrides": {"train.phases.train.epochs": 1, "train.phases.lit.epochs": 1, "train.phases.finetune.epochs": 1},
        "grids": {"temperature": [2.0, 4.0], "kd_weight": [0.25, 0.75]},
    }
    write_config(tiny_project, config)
    counts = planned_jobs(tiny_project)
    assert counts["tune"] == 1 and counts["tuning_report"] == 1, counts
    assert counts["train"] == 2, f"only KD and LIT read the tuned values; the teacher and scratch are kept: {counts}"
    snakemake(tiny_project, "--cores", "2")
    tuned = json.loads(next((tiny_project / "results" / "runs" / "tiny").glob("tuning-*/tuned.json")).read_text())
    assert tuned["temperature"] in (2.0, 4.0) and tuned["kd_weight"] in (0.25, 0.75)
    trials = pd.read_csv(tiny_project / "results" / "tiny" / "tiny-tuning.csv")
    assert len(trials) == 4
    table = pd.read_csv(tiny_project / "results" / "table.csv")
    for method in ("kd", "lit"):
        row = table[table["method"] == method].iloc[0]
        assert row["temperature"] == tuned["temperature"], "the tuned tau must reach the final runs and the table"
    assert table.loc[table["method"] == "lit", "kd_weight"].item() == tuned["kd_weight"]


def test_killed_job_under_device_slots_resumes_without_redoing_finished_jobs(tiny_project, monkeypatch):
    """A job SIGKILLed mid-run (Snakemake with it) is rerun alone and continues from its
    last complete epoch; the finished jobs stay as they are. The run trains under device
    slots (`gpu_slots_per_device`, the gpu profile's; two faked GPUs here): it takes one
    and says which in its log and summary. (That LIT_TRAIN_PROCESSES makes `lit train`
    data-parallel: tests/test_distributed.py.)"""
    monkeypatch.setenv("LIT_FAKE_DEVICE_COUNT", "2")
    monkeypatch.setenv("LIT_DEVICE_SLOT_DIR", str(tiny_project / "slots"))
    # long enough that the kill, a moment after the first epoch's checkpoint, lands mid-phase
    config = tiny_config(student_overrides={"train.phases.lit.epochs": 6, "train.phases.lit.milestones": []})
    config["experiments"]["tiny"]["students"]["methods"] = ["lit"]
    write_config(tiny_project, {**config, "gpu_slots_per_device": 2})
    plan = plan_experiments(config, workdir=tiny_project)
    student = next(run for run in plan.runs if run.method == "lit")
    state = tiny_project / student.run_dir / "checkpoints" / "state.pt"
    command = [str(BIN / "snakemake"), "--snakefile", str(ROOT / "workflow" / "Snakefile"), "--directory",
               str(tiny_project), "--workflow-profile", str(ROOT / "workflow" / "profiles" / "local"), "--cores", "1"]
    process = subprocess.Popen(command, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not state.exists():
            time.sleep(0.2)
        assert state.exists(), "the student never checkpointed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    teacher_summary = tiny_project / plan.runs[0].run_dir / "summary.json"
    teacher_mtime = teacher_summary.stat().st_mtime_ns
    snakemake(tiny_project, "--unlock")
    counts = planned_jobs(tiny_project)
    assert "train" in counts and counts["train"] == 1 and "prepare_data" not in counts, counts
    snakemake(tiny_project, "--cores", "2")
    assert teacher_summary.stat().st_mtime_ns == teacher_mtime, "the finished teacher was trained again"
    log = (tiny_project / "results" / "logs" / "tiny" / "train" / f"{student.run_id}.log").read_text()
    epochs = [int(e) for e in re.findall(r"\] epoch (\d+) ", log)]
    assert epochs[0] > 1, "the killed job must resume from its last complete epoch, not start over"
    assert epochs[-1] == 7 and epochs == list(range(epochs[0], 8))  # 6 LIT epochs, then 1 fine-tuning
    # the resumed session (whose log this is: Snakemake starts a rerun job's log afresh) took a slot
    assert re.search(r"device slot: cuda:[01] slot 0 of 2 \(fake\)", log), log[-2000:]
    assert json.loads((tiny_project / student.run_dir / "summary.json").read_text())["device_slot"]["fake"] is True
    assert planned_jobs(tiny_project) == {}


def test_device_slots_and_processes_rerun_nothing(tiny_project):
    """`gpu_slots_per_device` (the gpu profile's) and `train_processes` change no finished
    run: they reach `lit train` in the shell prefix, not in its command."""
    config = with_fitnets(tiny_config())
    write_config(tiny_project, {**config, "gpu_slots_per_device": 2, "train_processes": 2})
    assert planned_jobs(tiny_project) == {}, "moving a finished sweep onto other hardware must not retrain it"
