"""What a pipeline job's process imports before it works: the engine, the evaluation and the
data sets do not import torchvision (the streamed image folder imports it when it decodes,
the other users of it when they are called)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys
import lit.cli, lit.data, lit.engine.trainer, lit.evaluate.run, lit.evaluate.speed, lit.models
print("torchvision" in sys.modules)
"""


def test_the_engine_and_evaluation_do_not_import_torchvision():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False"]
