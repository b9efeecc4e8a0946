"""Shared fixtures: small digits configs and one tiny trained teacher run."""

from __future__ import annotations

import os

# One thread for every math library, set before numpy and torch load them: the suite runs
# on two workers (pytest-xdist) on two cores, and threads beyond one only wait for each
# other (FID's 2048-d matrix square root took 60 s oversubscribed, 17 s alone).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from lit.config import RunConfig  # noqa: E402
from lit.engine.runconfig import load_run_config  # noqa: E402

# One intra-op thread: on a shared two-core machine two threads mostly wait for each
# other, and a fixed thread count keeps CPU results reproducible from run to run.
torch.set_num_threads(1)

# Every test run: digits, one thread, no progress bar; tests add their own overrides.
DIGITS_BASE = ("data.name=digits", "train.threads=1", "train.progress=off", "train.batch_size=64")


# among the slow files, these first: the SLURM test mostly waits for the cluster's status
# checks (a worker's wait is the other's CPU), the tiny-project file is the longest chain,
# and the README's quick start, started late, ran alone at the end (75 s on one core)
FIRST_FILES = ("test_pipeline_slurm.py", "test_workflow.py", "test_readme.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow end-to-end tests first: with two workers (`make test`), the long files start
    early and the short ones fill in around them instead of trailing after."""
    def order(item: pytest.Item) -> tuple[bool, int]:
        name = item.path.name
        return item.get_closest_marker("slow") is None, FIRST_FILES.index(name) if name in FIRST_FILES else len(FIRST_FILES)

    items.sort(key=order)


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


def randomise_batch_norms(model, input_shape: tuple[int, ...] = (), make_input=None) -> None:
    """Non-trivial batch-norm scales, shifts and running statistics (a few training-mode
    forwards of shifted noise, or of `make_input()` batches), so that tests see more than
    the initial identity norms."""
    from torch import nn

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        model.train()
        for _ in range(3):
            model(make_input() if make_input is not None else torch.randn(16, *input_shape) * 1.5 + 0.3)
