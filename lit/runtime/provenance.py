"""Where a result comes from: the code (version, git commit, uncommitted changes), the
software (Python and the key packages), the machine (the CPU model or GPU card, threads),
the command line and the time. Written into every run's `summary.json` and `eval.json`,
so a number in a table can be traced to what made it."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from lit import __version__

KEY_PACKAGES = ("torch", "torchvision", "numpy", "scikit-learn", "torch-pruning", "onnx", "onnxruntime", "snakemake")
SOURCE = Path(__file__).resolve().parents[2]  # the checkout `lit` is imported from
OUTPUTS = ("results", "dvc.lock")  # what running the pipeline writes into the checkout (not code)


def now() -> str:
    """The time in UTC, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """The commit of the checkout `lit` runs from and whether tracked files other than the
    pipeline's outputs differ from it; None for both outside a git checkout (an installed
    wheel) or without git. The committed reference results (`results/`) are outputs: a
    pipeline rewrites them as it runs (the tuning table before the students train), which
    must not mark its own later runs as made from uncommitted code."""
    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", "-C", str(SOURCE), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){path}" for path in OUTPUTS))
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU model as the OS names it (/proc/cpuinfo on Linux), else the platform's word."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def provenance(device: torch.device | str = "cpu", **extra: Any) -> dict[str, Any]:
    """Everything above for a process computing on `device`; `extra` adds fields (the
    precision used, start and end times)."""
    return {
        "lit_version": __version__,
        **git_state(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "device": str(torch.device(device)),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else None,
        **extra,
    }
