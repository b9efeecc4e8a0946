"""Device slots (`lit/runtime/slots.py`, `lit train --device-slots`, the gpu profile):
concurrent processes share a machine's GPUs through lock files, without a daemon."""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lit.cli import main
from lit.config import ConfigError
from lit.runtime.slots import acquire_slot, release_slot, slots_from_environment, take_training_slot
from test_readme import readme_line
from workflow_helpers import BIN, ROOT, SNAKEFILE, env, make_project, tiny_config

DIGITS_ONE_EPOCH = ("data.name=digits", "train.threads=1", "train.progress=off", "model.depth=8", "method.name=scratch",
                    "train.phases.train.epochs=1", "train.phases.train.milestones=[]")

# holds one slot (2 per device) until the release file appears; prints "device slot"
HOLDER = """
import sys, time
from pathlib import Path
from lit.runtime.slots import acquire_slot
slot = acquire_slot(2, timeout=None if sys.argv[1] == "none" else float(sys.argv[1]))
print(slot.device, slot.slot, flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.05)
"""


@pytest.fixture
def fake_machine(tmp_path, monkeypatch):
    """Two faked GPUs and a slot folder of this test's own."""
    folder = tmp_path / "slots"
    monkeypatch.setenv("LIT_DEVICE_SLOT_DIR", str(folder))
    monkeypatch.setenv("LIT_FAKE_DEVICE_COUNT", "2")
    return folder


def start_holder(timeout: str, release: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, timeout, str(release)], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def held_slot(holder: subprocess.Popen, seconds: float = 30) -> tuple[int, int]:
    ready, _, _ = select.select([holder.stdout], [], [], seconds)
    assert ready, f"no slot within {seconds} s"
    device, slot = holder.stdout.readline().split()
    return int(device), int(slot)


def test_concurrent_processes_get_distinct_slots_and_a_killed_holder_frees_its_own(fake_machine, tmp_path):
    release = tmp_path / "release"
    holders = [start_holder("none", release) for _ in range(4)]
    try:
        taken = {held_slot(holder): holder for holder in holders}
        assert set(taken) == {(0, 0), (1, 0), (0, 1), (1, 1)}  # four distinct slots over both devices
        for (device, slot), holder in taken.items():  # the held file names its holder
            assert f"pid {holder.pid}" in (fake_machine / f"device-{device}-slot-{slot}.lock").read_text()

        fifth = subprocess.run([sys.executable, "-c", HOLDER, "1", str(release)], cwd=ROOT, env=dict(os.environ),
                               capture_output=True, text=True, timeout=60)
        assert fifth.returncode != 0 and fifth.stdout == ""
        assert "every device slot is held, all 4 (2 devices x 2 per device)" in fifth.stderr
        assert f"no device slot came free within 1 s: all 4 (2 devices x 2 per device) are held in {fake_machine}" in fifth.stderr

        victim = taken[(1, 0)]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        newcomer = start_holder("30", release)
        holders.append(newcomer)
        assert held_slot(newcomer) == (1, 0)  # exactly the freed slot, the others stay held
    finally:
        release.touch()
        for holder in holders:
            holder.wait(timeout=30)
            holder.stdout.close()
            holder.stderr.close()


def test_slots_fill_slot_major_and_a_released_slot_is_taken_again(fake_machine):
    first, second, third = (acquire_slot(2, run_dir="runs/x") for _ in range(3))
    assert [(s.device, s.slot) for s in (first, second, third)] == [(0, 0), (1, 0), (0, 1)]  # spread first
    assert first.fake and first.devices == 2 and first.lock_path == fake_machine / "device-0-slot-0.lock"
    assert "run_dir runs/x" in first.lock_path.read_text()
    release_slot(second)
    again = acquire_slot(2)
    assert (again.device, again.slot) == (1, 0)
    for slot in (first, third, again):
        release_slot(slot)


def test_bad_input_and_a_machine_without_gpu(fake_machine, monkeypatch, capsys):
    with pytest.raises(ValueError, match="device slots per device must be a whole number >= 1, got 0"):
        acquire_slot(0)
    monkeypatch.setenv("LIT_FAKE_DEVICE_COUNT", "two")
    with pytest.raises(ValueError, match="LIT_FAKE_DEVICE_COUNT must be a whole number >= 0, got 'two'"):
        acquire_slot(2)
    monkeypatch.delenv("LIT_FAKE_DEVICE_COUNT")
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    assert take_training_slot(2, "auto") is None
    assert "no GPU is present; training on train.device 'auto' as configured" in capsys.readouterr().out
    assert not fake_machine.exists()  # nothing was taken


def test_a_real_slot_becomes_the_current_cuda_device(fake_machine, monkeypatch, capsys):
    """Without faking: the slot's device is made current (so `auto` and `cuda` land there),
    while an explicit `cuda:N` or a torchrun rank is refused before any slot is taken."""
    monkeypatch.delenv("LIT_FAKE_DEVICE_COUNT")
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    chosen = []
    monkeypatch.setattr("torch.cuda.set_device", chosen.append)
    with pytest.raises(ConfigError, match="train.device is 'cuda:0', but --device-slots chooses the device"):
        take_training_slot(2, "cuda:0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="torchrun"):
        take_training_slot(2, "auto")
    monkeypatch.delenv("WORLD_SIZE")
    assert not fake_machine.exists()  # refused before any slot was taken
    held = acquire_slot(2)  # (0, 0): another job's
    record = take_training_slot(2, "cuda", "runs/y")
    assert chosen == [1]
    assert record["device"] == 1 and record["slot"] == 0 and record["fake"] is False
    assert "device slot: cuda:1 slot 0 of 2 (lock" in capsys.readouterr().out
    release_slot(held)


def test_lit_train_records_its_slot_and_keeps_the_run_config(fake_machine, tmp_path, capsys):
    held = acquire_slot(2)  # slot 0 of device 0 is another job's: this run must take device 1
    run_dir = tmp_path / "run"
    code = main(["train", str(ROOT / "config" / "runs" / "digits-student.yaml"), *DIGITS_ONE_EPOCH,
                 "--run-dir", str(run_dir), "--device-slots", "2"])
    release_slot(held)
    assert code == 0
    assert "device slot: cuda:1 slot 0 of 2 (fake)" in capsys.readouterr().out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["device_slot"] == {"device": 1, "slot": 0, "devices": 2, "slots_per_device": 2,
                                      "lock": str(fake_machine / "device-1-slot-0.lock"), "fake": True}
    assert summary["device"] == "cpu"  # a faked slot trains where the config says
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["device"] == "auto"  # the run id is kept

    code = main(["train", str(ROOT / "config" / "runs" / "digits-student.yaml"), "method.name=scratch", "train.device=cuda:1",
                 "--run-dir", str(tmp_path / "other"), "--device-slots", "2"])
    assert code == 2
    assert "lit: config error: train.device is 'cuda:1', but --device-slots chooses the device" in capsys.readouterr().err


def train_commands(result: subprocess.CompletedProcess) -> list[str]:
    return sorted(line for line in result.stdout.splitlines() if line.startswith("Shell command:") and " lit train " in line)


def test_the_gpu_profile_loads_and_gives_each_training_job_a_gpu_unit_and_a_slot(tmp_path):
    """The README's command line, verbatim, dry-run on a tiny project."""
    line = readme_line("snakemake --workflow-profile workflow/profiles/gpu --resources gpu=8 data_preparation=1")
    project = make_project(tmp_path, tiny_config())
    command = [str(BIN / "snakemake"), *shlex.split(line)[1:], "--snakefile", str(SNAKEFILE), "--directory", str(project),
               "--dry-run", "--printshellcmds"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env(), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Using workflow specific profile workflow/profiles/gpu" in result.stdout + result.stderr
    assert len(train_commands(result)) == 4
    train_jobs = result.stdout.split("rule train:")[1:]
    assert len(train_jobs) == 4 and all("gpu=1" in job.split("Shell command:")[0] for job in train_jobs)
    settings = yaml.safe_load((ROOT / "workflow" / "profiles" / "gpu" / "config.yaml").read_text())
    assert "gpu=2" in settings["resources"] and settings["set-resources"]["train"]["gpu"] == 1
    assert "gpu_slots_per_device=2" in settings["config"]  # the slots per GPU it hands the workflow (tests/test_workflow.py)


def test_lit_train_reads_its_slots_from_the_environment(fake_machine, tmp_path, capsys, monkeypatch):
    """The workflow hands `lit train` its slots in LIT_DEVICE_SLOTS (common.smk's shell prefix)."""
    monkeypatch.setenv("LIT_DEVICE_SLOTS", "1")
    main(["train", str(ROOT / "config" / "runs" / "digits-student.yaml"), *DIGITS_ONE_EPOCH, "--run-dir", str(tmp_path / "run")])
    assert "device slot: cuda:0 slot 0 of 1 (fake)" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["device_slot"]["slots_per_device"] == 1
    monkeypatch.setenv("LIT_DEVICE_SLOTS", "two")
    with pytest.raises(ValueError, match="LIT_DEVICE_SLOTS must be a whole number >= 1, got 'two'"):
        slots_from_environment()
