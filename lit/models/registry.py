"""Model registry: `build_model(family, depth, **options)`."""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from lit.models.pruned import apply_pruned
from lit.runtime.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model family")
register_model = MODELS.register


def build_model(family: str, depth: int, **options: Any) -> nn.Module:
    """Build a sectioned model; `options` are the family's keyword arguments
    (for image classifiers: `in_channels`, `num_classes` and family-specific ones), except
    `pruned`: the sizes of the layers a pruning method narrowed, applied after the family
    is built (`lit.models.pruned`)."""
    factory = MODELS.get(family)
    pruned = options.pop("pruned", None)
    try:
        model = factory(depth=depth, **options)
    except TypeError as err:  # an unknown option: say which family refused it
        raise ValueError(f"model family {family!r}: {err}") from None
    return apply_pruned(model, pruned) if pruned else model
