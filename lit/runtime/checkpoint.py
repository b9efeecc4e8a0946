"""Atomic checkpoints and safe loading.

A checkpoint is written to a temporary file in the same folder, flushed to disk and then
renamed over the old one, so a run killed at any moment leaves either the previous
complete checkpoint or the new one, never half a file. Loading uses `weights_only=True`:
a checkpoint holds tensors, numbers, strings and plain containers only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lit.runtime.errors import CheckpointError
from lit.runtime.files import atomic_write

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`; `kind` checks its `kind` entry."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, pickle of foreign objects, not a torch file at all
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "it is truncated, corrupt or not a lit checkpoint"
        ) from None
    if not isinstance(state, dict) or "format" not in state or state["format"] != "lit-checkpoint/1":
        raise CheckpointError(f"checkpoint {path} is not a lit checkpoint (no 'format: lit-checkpoint/1' entry)")
    if kind is not None and state.get("kind") != kind:
        raise CheckpointError(f"checkpoint {path} holds a {state.get('kind')!r}, expected a {kind!r}")
    return state
