"""Shared fixtures: small digits configs and one tiny trained teacher run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit.config import RunConfig
from lit.engine.runconfig import load_run_config

# One intra-op thread: on a shared two-core machine two threads mostly wait for each
# other, and a fixed thread count keeps CPU results reproducible from run to run.
torch.set_num_threads(1)

# Every test run: digits, one thread, no progress bar; tests add their own overrides.
DIGITS_BASE = ("data.name=digits", "train.threads=1", "train.progress=off", "train.batch_size=64")


def digits_config(*overrides: str) -> RunConfig:
    """A validated run config on scikit-learn's digits with `key=value` overrides."""
    return load_run_config(None, [*DIGITS_BASE, *overrides])


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory) -> Path:
    """A ResNet-14 trained from scratch on digits for 3 epochs (fp32); read it, never write it."""
    from lit.engine.trainer import train

    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    cfg = digits_config(
        "model.depth=14", "method.name=scratch", "train.precision=fp32",
        "train.phases.train={epochs: 3, lr: 0.05, milestones: [2]}",
    )
    train(cfg, run_dir)
    return run_dir
