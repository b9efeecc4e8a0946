"""Model registry: `build_model(family, depth, **options)`."""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from lit import catalog
from lit.models.pruned import apply_pruned
from lit.runtime.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry(catalog.MODELS)
register_model = MODELS.register


def build_model(family: str, depth: int, *, initial_weights: bool = True, **options: Any) -> nn.Module:
    """Build a sectioned model; `options` are the family's keyword arguments
    (for image classifiers: `in_channels`, `num_classes` and family-specific ones), except
    `pruned`: the sizes of the layers a pruning method narrowed, applied after the family
    is built (`lit.models.pruned`). `initial_weights=False`: the caller loads the weights
    itself (from a checkpoint), so the options that only choose a family's starting weights
    (its factory's `weight_options`, such as torchvision_resnet's `weights` file or name)
    are left out, and rebuilding a model never reads or downloads them again."""
    factory = MODELS.get(family)
    pruned = options.pop("pruned", None)
    if not initial_weights:
        for name in getattr(factory, "weight_options", ()):
            options.pop(name, None)
    try:
        model = factory(depth=depth, **options)
    except TypeError as err:  # an unknown option: say which family refused it
        raise ValueError(f"model family {family!r}: {err}") from None
    return apply_pruned(model, pruned) if pruned else model
