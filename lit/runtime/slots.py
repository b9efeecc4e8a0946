"""Device slots: share the GPUs of one machine among concurrent training processes.

A machine with N GPUs and K slots per GPU has N x K slots, one lock file each,
`<dir>/device-<d>-slot-<s>.lock`. A process takes a slot by holding an exclusive `flock`
on its file and keeps the descriptor open until it exits: the kernel drops the lock when
the process ends, however it ends (`kill -9` included), so no daemon keeps the books and
no stale lock survives. Slots are tried slot-major (slot 0 of every device before slot 1
of any), so a few jobs spread over all devices. The held file names the holder's pid and
run directory, for people looking at a busy machine.

`LIT_FAKE_DEVICE_COUNT` (for tests only) pretends the machine has that many GPUs: the
slots are taken and recorded, but nothing is placed on a device.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SLOT_DIR_VARIABLE = "LIT_DEVICE_SLOT_DIR"
SLOTS_VARIABLE = "LIT_DEVICE_SLOTS"  # slots per device, as --device-slots
FAKE_COUNT_VARIABLE = "LIT_FAKE_DEVICE_COUNT"  # for tests only
POLL_SECONDS = 0.5


class SlotTimeout(RuntimeError):
    """Every slot stayed held for the whole timeout."""


@dataclass(frozen=True)
class DeviceSlot:
    device: int  # the CUDA device index
    slot: int  # the slot on that device, 0 .. slots_per_device - 1
    devices: int  # devices on the machine (faked or real)
    slots_per_device: int
    lock_path: Path
    fake: bool  # the device count came from LIT_FAKE_DEVICE_COUNT: nothing is placed on a device
    descriptor: int = field(default=-1, repr=False, compare=False)  # open for the life of the process

    def describe(self) -> str:
        return f"cuda:{self.device} slot {self.slot} of {self.slots_per_device}" + (" (fake)" if self.fake else "")

    def record(self) -> dict[str, Any]:
        """The slot as summary.json records it."""
        return {"device": self.device, "slot": self.slot, "devices": self.devices,
                "slots_per_device": self.slots_per_device, "lock": str(self.lock_path), "fake": self.fake}


def slot_dir() -> Path:
    """`$LIT_DEVICE_SLOT_DIR`, else one folder per user in the system's temporary folder."""
    configured = os.environ.get(SLOT_DIR_VARIABLE)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"lit-device-slots-{os.getuid()}"


def device_count() -> tuple[int, bool]:
    """(number of CUDA devices, whether it is faked by LIT_FAKE_DEVICE_COUNT)."""
    faked = os.environ.get(FAKE_COUNT_VARIABLE)
    if faked is not None and faked.strip() != "":
        try:
            count = int(faked)
        except ValueError:
            count = -1
        if count < 0:
            raise ValueError(f"{FAKE_COUNT_VARIABLE} must be a whole number >= 0, got {faked!r}")
        return count, True
    import torch  # only here: holders of fake slots start without torch

    return torch.cuda.device_count(), False


def lock_path(directory: Path, device: int, slot: int) -> Path:
    return directory / f"device-{device}-slot-{slot}.lock"


def try_lock(path: Path, note: str) -> int | None:
    """The open descriptor of `path` if this process now holds its lock, else None.
    (Python opens it non-inheritable: a child process never keeps a slot alive.)"""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, note.encode(), 0)
    return descriptor


def acquire_slot(slots_per_device: int, run_dir: str | Path | None = None, timeout: float | None = None,
                 directory: str | Path | None = None, poll_seconds: float = POLL_SECONDS) -> DeviceSlot | None:
    """Take the first free slot in slot-major order, waiting while every slot is held.

    None where the machine has no device (and none is faked). `timeout` (seconds; None:
    wait for ever) raises SlotTimeout naming the slot folder; `directory` replaces
    `slot_dir()`."""
    if isinstance(slots_per_device, bool) or not isinstance(slots_per_device, int) or slots_per_device < 1:
        raise ValueError(f"device slots per device must be a whole number >= 1, got {slots_per_device!r}")
    count, fake = device_count()
    if count == 0:
        return None
    folder = Path(directory) if directory is not None else slot_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    note = f"pid {os.getpid()}\n" + (f"run_dir {run_dir}\n" if run_dir is not None else "")
    order = [(device, slot) for slot in range(slots_per_device) for device in range(count)]
    deadline = None if timeout is None else time.monotonic() + timeout
    announced = False
    while True:
        for device, slot in order:
            path = lock_path(folder, device, slot)
            descriptor = try_lock(path, note)
            if descriptor is not None:
                return DeviceSlot(device, slot, count, slots_per_device, path, fake, descriptor)
        total = f"{count * slots_per_device} ({count} device{'s' if count != 1 else ''} x {slots_per_device} per device)"
        if deadline is not None and time.monotonic() >= deadline:
            raise SlotTimeout(f"no device slot came free within {timeout:g} s: all {total} are held in {folder}")
        if not announced:
            print(f"lit: every device slot is held, all {total} in {folder}; waiting for one to come free",
                  file=sys.stderr, flush=True)
            announced = True
        time.sleep(poll_seconds if deadline is None else max(0.0, min(poll_seconds, deadline - time.monotonic())))


def slots_from_environment() -> int | None:
    """`$LIT_DEVICE_SLOTS` (the workflow sets it under the gpu profile): K, or None when unset."""
    value = os.environ.get(SLOTS_VARIABLE, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{SLOTS_VARIABLE} must be a whole number >= 1, got {value!r}")
    return int(value)


def take_training_slot(slots_per_device: int, configured_device: str, run_dir: str | Path | None = None,
                       timeout: float | None = None) -> dict[str, Any] | None:
    """`lit train --device-slots K`: take a slot and make it the current CUDA device, so
    that `train.device: auto` or `cuda` lands there. The run config is left alone (its
    device enters the run's hash: a run resumed on another slot keeps its id). Returns the
    slot's record for summary.json, or None where the machine has no GPU."""
    from lit.config import ConfigError

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun gives each rank its own GPU
        raise ConfigError("--device-slots is for one process per run; a data-parallel run under torchrun "
                          "places its ranks itself: drop --device-slots")
    if configured_device.startswith("cuda:"):
        raise ConfigError(f"train.device is {configured_device!r}, but --device-slots chooses the device: "
                          "set train.device to auto or cuda, or drop --device-slots")
    slot = acquire_slot(slots_per_device, run_dir, timeout)
    if slot is None:
        print(f"device slot: none, no GPU is present; training on train.device {configured_device!r} as configured",
              flush=True)
        return None
    if not slot.fake:
        import torch

        torch.cuda.set_device(slot.device)
    print(f"device slot: {slot.describe()} (lock {slot.lock_path})", flush=True)
    return slot.record()


def release_slot(slot: DeviceSlot) -> None:
    """Give a slot back before the process ends (the end of the process does it anyway)."""
    os.close(slot.descriptor)
