"""The pipeline after a crash and on another machine's settings, each on a tiny project of
its own (a file apart from tests/test_workflow.py, so that a second worker runs it): a
killed training job resumes without redoing finished jobs; turning GPU device slots on
reruns nothing, and a run trained under them takes a slot."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from lit.plan import plan_experiments
from workflow_helpers import BIN, LOCAL_PROFILE, SNAKEFILE, env, make_project, planned_jobs, snakemake, tiny_config, write_config

pytestmark = pytest.mark.slow


def test_killed_job_reruns_without_redoing_finished_jobs(tmp_path):
    # long enough that the kill, a moment after the first epoch's checkpoint, lands mid-phase
    config = tiny_config(student_overrides={"train.phases.lit.epochs": 6, "train.phases.lit.milestones": []})
    config["experiments"]["tiny"]["students"]["methods"] = ["lit"]
    project = make_project(tmp_path / "project", config)
    plan = plan_experiments(config, workdir=project)
    student = next(run for run in plan.runs if run.method == "lit")
    state = project / student.run_dir / "checkpoints" / "state.pt"
    command = [str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "--directory", str(project),
               "--workflow-profile", str(LOCAL_PROFILE), "--cores", "1"]
    process = subprocess.Popen(command, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not state.exists():
            time.sleep(0.2)
        assert state.exists(), "the student never checkpointed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    teacher_summary = project / plan.runs[0].run_dir / "summary.json"
    teacher_mtime = teacher_summary.stat().st_mtime_ns  # the teacher finished before its student started
    snakemake(project, "--unlock")
    counts = planned_jobs(project)
    assert "train" in counts and counts["train"] == 1 and "prepare_data" not in counts, counts
    snakemake(project, "--cores", "2")
    assert teacher_summary.stat().st_mtime_ns == teacher_mtime, "the finished teacher was trained again"
    log = (project / "results" / "logs" / "tiny" / "train" / f"{student.run_id}.log").read_text()
    epochs = [int(e) for e in re.findall(r"\] epoch (\d+) ", log)]
    assert epochs[0] > 1, "the killed job must resume from its last complete epoch, not start over"
    assert epochs[-1] == 7 and epochs == list(range(epochs[0], 8))  # 6 LIT epochs, then 1 fine-tuning
    assert planned_jobs(project) == {}


def test_device_slots_and_processes_rerun_nothing_and_reach_lit_train(tmp_path, monkeypatch):
    """`gpu_slots_per_device` (the gpu profile's) and `train_processes` change no finished
    run; a run trained under slots takes one (two faked GPUs here) and says which in its
    log, a run trained under processes runs over them."""
    config = tiny_config()
    config["experiments"]["tiny"]["students"]["methods"] = ["scratch"]
    project = make_project(tmp_path / "project", config)
    snakemake(project, "--cores", "2")
    monkeypatch.setenv("LIT_FAKE_DEVICE_COUNT", "2")
    monkeypatch.setenv("LIT_DEVICE_SLOT_DIR", str(tmp_path / "slots"))
    write_config(project, {**config, "gpu_slots_per_device": 2})
    assert planned_jobs(project) == {}, "moving a finished sweep onto GPU slots must not retrain it"
    scratch = next(run for run in plan_experiments(config, workdir=project).runs if run.method == "scratch" and run.role == "student")
    shutil.rmtree(project / scratch.run_dir)  # as the README says to retrain a run
    snakemake(project, "--cores", "2")
    log = (project / "results" / "logs" / "tiny" / "train" / f"{scratch.run_id}.log").read_text()
    assert re.search(r"device slot: cuda:[01] slot 0 of 2 \(fake\)", log), log[-2000:]
    assert json.loads((project / scratch.run_dir / "summary.json").read_text())["device_slot"]["fake"] is True
    # the same for data-parallel training (`train_processes`): nothing reruns, a retrained run uses it
    write_config(project, {**config, "train_processes": 2})
    assert planned_jobs(project) == {}, "a finished sweep must not retrain when its runs go data-parallel"
    shutil.rmtree(project / scratch.run_dir)
    snakemake(project, "--cores", "2")
    assert json.loads((project / scratch.run_dir / "summary.json").read_text())["processes"] == 2
