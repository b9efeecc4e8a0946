"""Pruned architectures: a family's model with some layers made narrower.

A method that removes channels (network slimming) records the sizes of every layer it
changed in the model spec, `options["pruned"] = {module_name: sizes}`, for example

    {"sections.0.1.conv1": {"in_channels": 16, "out_channels": 9},
     "sections.0.1.bn1": {"num_features": 9},
     "sections.0.1.conv2": {"in_channels": 9, "out_channels": 16}}

`lit.models.build_model` builds the family as usual and then replaces each listed module
by a fresh one of the same kind and settings with the recorded sizes (`apply_pruned`), so
a pruned checkpoint reloads from its spec alone (`lit.models.io.load_model`, with
`weights_only=True`) and everything that rebuilds models (`lit evaluate`, FLOPs,
parameter counts, speed, teachers) works on it unchanged. Convolutions (not transposed),
batch norms and linear layers can be resized.
"""

from __future__ import annotations

from typing import Any

from torch import nn

# the size attributes of each kind of layer that can be resized, in constructor order
SIZE_ATTRIBUTES: tuple[tuple[type[nn.Module], tuple[str, ...]], ...] = (
    (nn.modules.conv._ConvNd, ("in_channels", "out_channels")),
    (nn.modules.batchnorm._BatchNorm, ("num_features",)),
    (nn.Linear, ("in_features", "out_features")),
)


def size_attributes(module: nn.Module) -> tuple[str, ...] | None:
    """The attributes that size `module`, or None for a kind of layer that cannot be resized."""
    if isinstance(module, nn.modules.conv._ConvNd) and module.transposed:
        return None
    for kind, attributes in SIZE_ATTRIBUTES:
        if isinstance(module, kind):
            return attributes
    return None


def module_sizes(model: nn.Module) -> dict[str, dict[str, int]]:
    """The sizes of every resizable layer of `model`, by module name."""
    sizes = {}
    for name, module in model.named_modules():
        attributes = size_attributes(module)
        if attributes is not None:
            sizes[name] = {attribute: int(getattr(module, attribute)) for attribute in attributes}
    return sizes


def changed_sizes(before: dict[str, dict[str, int]], model: nn.Module) -> dict[str, dict[str, int]]:
    """The full sizes of every layer of `model` whose sizes differ from `before` (`module_sizes`)."""
    return {name: sizes for name, sizes in module_sizes(model).items() if before.get(name) != sizes}


def resized(module: nn.Module, sizes: dict[str, int]) -> nn.Module:
    """A fresh layer of `module`'s kind and settings with `sizes` (its weights are new: a
    checkpoint's weights are loaded into it afterwards)."""
    attributes = size_attributes(module)
    if attributes is None:
        raise ValueError(f"a {type(module).__name__} cannot be resized (convolutions, batch norms and linear layers can)")
    if set(sizes) != set(attributes) or not all(isinstance(sizes[a], int) and sizes[a] >= 1 for a in attributes):
        raise ValueError(f"a {type(module).__name__} needs positive integer sizes for {', '.join(attributes)}, got {sizes}")
    factory: dict[str, Any] = {"device": module.weight.device, "dtype": module.weight.dtype} if getattr(module, "weight", None) is not None else {}
    if isinstance(module, nn.modules.conv._ConvNd):
        if sizes["in_channels"] % module.groups or sizes["out_channels"] % module.groups:
            raise ValueError(f"a convolution of {module.groups} groups needs sizes divisible by {module.groups}, got {sizes}")
        return type(module)(
            sizes["in_channels"], sizes["out_channels"], module.kernel_size, module.stride, module.padding,
            module.dilation, module.groups, module.bias is not None, module.padding_mode, **factory,
        )
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return type(module)(sizes["num_features"], module.eps, module.momentum, module.affine, module.track_running_stats, **factory)
    return type(module)(sizes["in_features"], sizes["out_features"], module.bias is not None, **factory)


def apply_pruned(model: nn.Module, pruned: dict[str, dict[str, int]]) -> nn.Module:
    """`model` with every module named in `pruned` replaced by one of the recorded sizes."""
    if not isinstance(pruned, dict):
        raise ValueError(f"model option 'pruned': expected a mapping of module names to sizes, got {pruned!r}")
    for name, sizes in pruned.items():
        try:
            module = model.get_submodule(name) if name else None
        except AttributeError:
            module = None
        if module is None:
            raise ValueError(f"model option 'pruned': the model has no module named {name!r}")
        if not isinstance(sizes, dict):
            raise ValueError(f"model option 'pruned': module {name!r}: expected a mapping of sizes, got {sizes!r}")
        try:
            replacement = resized(module, sizes)
        except ValueError as err:
            raise ValueError(f"model option 'pruned': module {name!r}: {err}") from None
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, replacement)
    return model
