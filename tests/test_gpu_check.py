"""The one-shot GPU check (`bash benchmarks/gpu_check.sh`), run CPU-only in its quick mode:
the CUDA parts are skipped with their reason, the CPU-capable parts run and are recorded."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
from pathlib import Path

import torch

from lit.runtime.device import cpu_has_bf16

ROOT = Path(__file__).resolve().parents[1]
CUDA_PARTS = ("step_benchmark_eager", "step_benchmark_compile", "peak_gpu_memory")


def test_quick_check_without_cuda_runs_the_cpu_parts_and_names_the_skipped_ones(tmp_path):
    output, temporary = tmp_path / "check.json", tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "TMPDIR": str(temporary)}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--quick", "--output", str(output)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    check = json.loads(output.read_text())
    parts, printed = check["parts"], done.stdout.splitlines()
    assert check["mode"] == "quick" and check["environment"]["cuda_available"] is False
    assert check["failed"] == [] and check["work_dir"] == "temporary (removed)"
    # the runs went to a temporary folder, removed afterwards (torch may leave its own cache beside it)
    assert not [path for path in temporary.iterdir() if path.name.startswith("lit-gpu-check-")]

    # the CUDA parts: skipped, with the reason, in the JSON and in the printed summary
    bf16_skipped = not cpu_has_bf16()
    assert sorted(check["skipped"]) == sorted([*CUDA_PARTS, *(["lit_bf16", "bf16_vs_fp32"] if bf16_skipped else [])])
    for name in CUDA_PARTS:
        assert parts[name]["status"] == "skipped" and parts[name]["reason"].startswith("no CUDA device")
        assert any(line.split()[:2] == [name, "skipped:"] and parts[name]["reason"] in line for line in printed), name
    assert f"skipped: {', '.join(check['skipped'])}," in printed[-1]

    # the fp32 LIT run: both phases ran on the CPU in float32, with finite final losses
    fp32 = parts["lit_fp32"]
    assert fp32["status"] == "ok" and fp32["device"] == "cpu" and fp32["precision"] == "float32" and fp32["epochs"] == 2
    assert sorted(fp32["final_losses"]) == ["finetune", "lit"]
    assert all(math.isfinite(loss) and loss > 0 for loss in fp32["final_losses"].values())
    assert parts["teacher"]["status"] == "ok" and math.isfinite(parts["teacher"]["final_losses"]["train"])

    # bf16 ran exactly where the CPU has native bf16, and was compared with fp32
    if bf16_skipped:
        assert parts["lit_bf16"]["status"] == "skipped" and "bf16" in parts["lit_bf16"]["reason"]
    else:
        bf16, comparison = parts["lit_bf16"], parts["bf16_vs_fp32"]
        assert bf16["status"] == "ok" and bf16["precision"] == "bfloat16"
        expected = {phase: abs(bf16["final_losses"][phase] - loss) / abs(loss) for phase, loss in fp32["final_losses"].items()}
        assert comparison["relative_difference"] == expected
        assert comparison["diverged"] == (max(expected.values()) > comparison["tolerance"])

    # the speed stage: batch-1 latency of the teacher's and the student's architecture
    speed = parts["speed"]
    assert speed["status"] == "ok" and speed["devices"] == ["cpu"]
    labels = {role: a["label"] for a in speed["architectures"] for role in a["roles"]}
    assert labels["teacher"] == "resnet14" and labels["student_fp32"] == "resnet8"
    for role in ("teacher", "student_fp32"):
        assert speed["latency_ms_batch1"][role]["cpu"] > 0
        assert any(line.split()[:1] == ["speed"] and f"{role} cpu" in line for line in printed)


def test_a_part_that_fails_sets_the_exit_status_and_skips_what_depends_on_it(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def broken(config, overrides, run_dir, cuda):
        raise RuntimeError("the teacher broke")

    monkeypatch.setattr(gpu_check, "train_run", broken)
    output = tmp_path / "check.json"
    assert gpu_check.main(["--quick", "--output", str(output), "--work-dir", str(tmp_path / "work")]) == 1
    check = json.loads(output.read_text())
    assert check["failed"] == ["teacher"] and "the teacher broke" in check["parts"]["teacher"]["error"]
    assert check["parts"]["lit_fp32"] == {"status": "skipped", "reason": "the teacher run failed"}
    assert check["parts"]["speed"]["status"] == "skipped"
    assert "FAILED: RuntimeError: the teacher broke" in capsys.readouterr().out
