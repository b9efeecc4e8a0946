"""What a pipeline job's process pays before it works: the engine and the evaluation import
neither torchvision (its package import pulls in torch._dynamo) nor torch's compiler, and
seeding still makes torch choose deterministic algorithms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
import torch
import lit.cli, lit.engine.trainer, lit.evaluate.run, lit.data
from lit.runtime.seeding import seed_everything
seed_everything(0, compiles=sys.argv[1] == "compiles")
report = {"deterministic": torch.are_deterministic_algorithms_enabled(),
          "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
          "torchvision": "torchvision" in sys.modules, "inductor": "torch._inductor" in sys.modules}
if report["inductor"]:
    import torch._inductor.config as inductor_config
    report["inductor_deterministic"] = inductor_config.deterministic
print(json.dumps(report))
"""


def probe(mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_job_that_does_not_compile_imports_neither_torchvision_nor_the_compiler():
    assert probe("plain") == {"deterministic": True, "warn_only": True, "torchvision": False, "inductor": False}


def test_a_job_that_compiles_also_makes_the_compiler_deterministic():
    report = probe("compiles")
    assert report["deterministic"] and report["warn_only"] and report["inductor_deterministic"] is True


@pytest.mark.parametrize("compiles", [False, True])
def test_seeding_gives_the_same_numbers(compiles):
    import torch

    from lit.runtime.seeding import seed_everything

    seed_everything(5, compiles=compiles)
    first = torch.randn(4)
    seed_everything(5, compiles=compiles)
    assert torch.equal(first, torch.randn(4)) and torch.are_deterministic_algorithms_enabled()
