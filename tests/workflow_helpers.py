"""Run the Snakemake pipeline on a tiny config in a scratch folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEFILE = ROOT / "workflow" / "Snakefile"
LOCAL_PROFILE = ROOT / "workflow" / "profiles" / "local"

TEACHER_EPOCHS = {"train.phases.train.epochs": 2, "train.phases.train.milestones": []}
STUDENT_EPOCHS = {
    "train.phases.train.epochs": 2, "train.phases.train.milestones": [],
    "train.phases.lit.epochs": 1, "train.phases.lit.milestones": [],
    "train.phases.finetune.epochs": 1, "train.phases.finetune.milestones": [],
}


def pipeline_config(experiments: dict) -> dict:
    """A pipeline config around `experiments`, with quick evaluation settings."""
    return {
        "results": "results",
        "data_root": "data",
        "evaluate": {"latency_runs": 2, "speed_rounds": 1},
        "report": {"tolerance": 0.05},
        "experiments": experiments,
    }


def tiny_config(depths=(8,), seeds=(0,), student_overrides=None) -> dict:
    return pipeline_config(
        {
            "tiny": {
                "overrides": {"train.progress": "off"},
                "teacher": {"config": "config/runs/digits-teacher.yaml", "depth": 14, "overrides": TEACHER_EPOCHS},
                "students": {
                    "config": "config/runs/digits-student.yaml",
                    "methods": ["scratch", "kd", "lit"],
                    "depths": list(depths),
                    "seeds": list(seeds),
                    "overrides": {**STUDENT_EPOCHS, **(student_overrides or {})},
                },
            }
        }
    )


def make_project(folder: Path, config: dict) -> Path:
    """A working folder with the run configs and the given pipeline config."""
    (folder / "config").mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "config" / "runs", folder / "config" / "runs", dirs_exist_ok=True)
    write_config(folder, config)
    return folder


def copy_project(source: Path, folder: Path) -> Path:
    """A copy of a project folder, finished runs and Snakemake's records (.snakemake/)
    included, with the file times kept: Snakemake sees it as it saw the original."""
    shutil.copytree(source, folder, symlinks=True, dirs_exist_ok=True)
    return folder


def write_config(folder: Path, config: dict) -> None:
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def env() -> dict[str, str]:
    environment = dict(os.environ)
    environment["PATH"] = f"{BIN}{os.pathsep}{environment.get('PATH', '')}"
    environment.pop("SNAKEMAKE_PROFILE", None)
    return environment


def snakemake(folder: Path, *args: str, profile: Path = LOCAL_PROFILE, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    command = [str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "--directory", str(folder),
               "--workflow-profile", str(profile), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env())
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def planned_jobs(folder: Path, *args: str, profile: Path = LOCAL_PROFILE) -> dict[str, int]:
    """Job counts per rule of a dry run ({} when there is nothing to do)."""
    result = snakemake(folder, "--dry-run", "--quiet", "rules", *args, profile=profile)
    counts: dict[str, int] = {}
    in_stats = False
    for line in (result.stdout + result.stderr).splitlines():
        if line.startswith("Job stats:"):
            in_stats = True
            continue
        parts = line.split()
        if in_stats and len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
        elif in_stats and parts and parts[0] == "total":
            break
    return counts


def tiny_gan_config() -> dict:
    """A StarGAN teacher with 3 residual blocks and a 1-block LIT student, a few iterations."""
    fast = {
        "train.phases.gan.iterations": 6, "train.phases.lit.iterations": 6, "train.checkpoint_every": 3,
        "train.log_every": 3, "evaluate.fid_images": 8, "model.options.conv_dim": 8, "method.d_conv_dim": 8,
        "data.options.image_size": 16, "train.progress": "off",
    }
    return pipeline_config({
        "tinygan": {
            "kind": "gan",
            "overrides": fast,
            "teacher": {"config": "config/runs/colordigits-gan.yaml", "method": "stargan", "depth": 3},
            "students": {"config": "config/runs/colordigits-gan.yaml", "methods": ["gan_lit"], "depths": [1], "seeds": [0]},
        }
    })
