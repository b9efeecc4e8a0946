"""Model checkpoints: the weights plus the spec that rebuilds the architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lit.runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lit.models import build_model


def model_spec(family: str, depth: int, options: dict[str, Any]) -> dict[str, Any]:
    return {"family": family, "depth": depth, "options": dict(options)}


def save_model(model: nn.Module, spec: dict[str, Any], path: Path, **info: Any) -> None:
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    save_checkpoint({"format": "lit-checkpoint/1", "kind": "model", "spec": spec, "model": state, **info}, path)


def resolve_model_path(path: str | Path, which: str = "best") -> Path:
    """A run directory stands for its selected (`best`) or `last` model checkpoint."""
    path = Path(path)
    return path / "checkpoints" / f"{which}.pt" if path.is_dir() else path


def load_model(path: str | Path, which: str = "best", device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from its checkpoint (loaded with `weights_only=True`)."""
    file = resolve_model_path(path, which)
    state = load_checkpoint(file, kind="model")
    spec = state["spec"]
    # the weights come from the checkpoint, never from a family's initial-weights option
    model = build_model(spec["family"], spec["depth"], initial_weights=False, **spec["options"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {file} does not fit its own architecture spec {spec}: {err}") from None
    return model.to(device), state


def unwrap(model: nn.Module) -> nn.Module:
    """The module under a `torch.compile` wrapper (its state dict has clean keys)."""
    return getattr(model, "_orig_mod", model)
