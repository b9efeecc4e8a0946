"""A GAN experiment through the pipeline: StarGAN teacher, gan_lit student, FID tables and samples."""

from __future__ import annotations

import pandas as pd
import pytest

from workflow_helpers import make_project, planned_jobs, snakemake, tiny_gan_config

pytestmark = pytest.mark.slow


def test_tiny_gan_experiment_end_to_end(tmp_path):
    make_project(tmp_path, tiny_gan_config())
    snakemake(tmp_path, "--cores", "2")
    out = tmp_path / "results" / "tinygan"
    for name in ["depth-vs-fid.png", "depth-vs-fid.pdf", "fid.csv", "fid.md", "samples-teacher.png", "samples-student.png"]:
        assert (out / f"tinygan-{name}").stat().st_size > 0, name
    fid = pd.read_csv(out / "tinygan-fid.csv")
    assert sorted(fid["depth"]) == [1, 3] and fid["fid_mean"].notna().all()
    assert fid.loc[fid["depth"] == 1, "params"].item() < fid.loc[fid["depth"] == 3, "params"].item()
    assert planned_jobs(tmp_path) == {}
