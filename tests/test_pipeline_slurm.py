"""The pipeline on a real SLURM cluster (`.ci/run` starts a single-node one): real job ids,
a run's training and evaluation submitted as one grouped job."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from workflow_helpers import ROOT, make_project, snakemake, tiny_config

pytestmark = pytest.mark.slow


def slurm_is_up() -> bool:
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        return False
    return subprocess.run(["sinfo", "--noheader"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not slurm_is_up(), reason="no SLURM cluster answers here (.ci/run starts a local one)")
def test_demo_through_the_slurm_profile_gets_real_job_ids(tmp_path, monkeypatch):
    partition = subprocess.run(["sinfo", "--noheader", "--format=%R"], capture_output=True, text=True).stdout.split()[0]
    for name in ("LIT_SLURM_ACCOUNT", "LIT_SLURM_PARTITION", "LIT_SLURM_GPU_PARTITION"):
        monkeypatch.setenv(name, "ci" if name == "LIT_SLURM_ACCOUNT" else partition)
    config = tiny_config()
    config["experiments"]["tiny"]["students"]["methods"] = ["lit"]  # a teacher and a student that learns from it
    make_project(tmp_path, config)
    # the local node has no GPU and 2 cores: the CI overrides of the cluster profile
    result = snakemake(tmp_path, "--set-threads", "train=1", "evaluate=1", "speed=1",
                       "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2",
                       "--set-resources", "train:gpu=0", "train:mem_mb=2000", "evaluate:mem_mb=2000", "speed:mem_mb=2000",
                       profile=ROOT / "workflow" / "profiles" / "slurm", timeout=900)
    output = result.stdout + result.stderr
    job_ids = [int(j) for j in re.findall(r"submitted with SLURM jobid (\d+)", output)]
    # one job a run (its training and evaluation grouped) and the speed stage (a node of its
    # own); data and report jobs run locally
    assert len(job_ids) == 3, output[-3000:]
    assert len(set(job_ids)) == 3 and min(job_ids) > 0
    groups = re.findall(r"Group job (run-tiny-\S+) ", output)
    assert sorted(group.split("-")[2] for group in groups) == ["lit", "teacher"], output[-3000:]
    for stage in ("train", "evaluate"):  # every job's resource use, kept (benchmark: files)
        assert len(list((tmp_path / "results" / "benchmarks" / "tiny" / stage).glob("*.tsv"))) == 2, stage
    # SLURM knows the jobs (finished ones stay visible for MinJobAge, 300 s by default)
    known = subprocess.run(["scontrol", "show", "job", str(job_ids[-1])], capture_output=True, text=True)
    assert f"JobId={job_ids[-1]}" in known.stdout and "COMPLETED" in known.stdout, known.stdout + known.stderr
    assert len(list((tmp_path / "results" / "runs" / "tiny").glob("*/eval.json"))) == 2
    assert (tmp_path / "results" / "tiny" / "tiny-depth-vs-accuracy.png").stat().st_size > 0
