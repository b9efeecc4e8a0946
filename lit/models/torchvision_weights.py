"""Starting weights for the torchvision families (`torchvision_resnet`, `torchvision_vit`):
a plain torchvision state dict in a file, or torchvision's published weights by name.

A family maps the checkpoint's torchvision keys onto its stem/sections/head names, then
`load_fitting` checks every key and shape and loads. A classifier with another number
of classes than the model's is left out (the model keeps its fresh one) with a logged
warning; any other difference is a ValueError naming the layers, under torchvision's
names (the names the user's file has).

torchvision is imported on first use (see `lit.data.cifar10`: about two seconds).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

log = logging.getLogger(__name__)


def option_error(family: str, option: str, message: str) -> ValueError:
    return ValueError(f"{family} option {option!r} {message}")


def positive_int(family: str, option: str, value: Any) -> int:
    """`value` if it is a positive integer (not a bool), else an error naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise option_error(family, option, f"must be a positive integer, got {value!r}")
    return value


def is_weights_file(weights: str) -> bool:
    """A `.pth`/`.pt` name or any path is a file; anything else names torchvision weights."""
    return weights.endswith((".pth", ".pt")) or "/" in weights or "\\" in weights


def read_weights_file(family: str, path: str) -> dict[str, torch.Tensor]:
    """A plain state dict saved with `torch.save(model.state_dict(), path)`, read with
    `weights_only=True` (tensors only: a file cannot run code when it is read)."""
    file = Path(path)
    if not file.is_file():
        raise option_error(family, "weights", f"names the file {path}, which does not exist")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle with more than tensors, or not a torch file at all
        raise option_error(family, "weights", f"file {path} cannot be read as a state dict with weights_only=True: {err}") from None
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = list(state)[:5] if isinstance(state, Mapping) else type(state).__name__
        raise option_error(
            family, "weights", f"file {path} must hold a plain state dict (torch.save(model.state_dict(), path)), found {keys}"
        )
    return dict(state)


def torchvision_weights(family: str, arch: str | None, weights: str, known: list[str]) -> Any:
    """torchvision's weights enum member named `weights` (`IMAGENET1K_V1`, `DEFAULT` or
    `ResNet34_Weights.IMAGENET1K_V1`) for architecture `arch` (None: an architecture
    torchvision has no name, so no weights, for; `known` are the names it has)."""
    from torchvision.models import get_model_weights, get_weight

    if arch is None:
        raise option_error(
            family, "weights",
            f"{weights!r} names torchvision weights, which exist only for torchvision's architectures "
            f"({', '.join(known)}); this architecture is none of them: give a .pth file",
        )
    enum = get_model_weights(arch)
    if "." in weights:
        try:
            member = get_weight(weights)
        except (ValueError, KeyError, AttributeError):
            member = None
        if member is None or type(member) is not enum:
            raise option_error(family, "weights", f"{weights!r} is not one of {arch}'s weights ({', '.join(enum.__members__)})")
        return member
    if weights not in enum.__members__:
        raise option_error(
            family, "weights", f"{weights!r} is neither a .pth file nor one of {arch}'s weights ({', '.join(enum.__members__)})"
        )
    return enum[weights]


def download(member: Any) -> dict[str, torch.Tensor]:
    """The state dict of a torchvision weights enum member, through torchvision's own API:
    downloaded into torch's hub cache (`$TORCH_HOME/hub/checkpoints`), its SHA-256 prefix
    checked, loaded with `weights_only=True`; a cached file is read without the network."""
    log.info("loading torchvision weights %s from %s", member, member.url)
    return member.get_state_dict(progress=False, check_hash=True, weights_only=True)


def read_weights(family: str, weights: str, arch: str | None, known: list[str]) -> tuple[str, dict[str, torch.Tensor]]:
    """(a description of the source, its state dict) for the option `weights`."""
    if is_weights_file(weights):
        return f"file {weights}", read_weights_file(family, weights)
    member = torchvision_weights(family, arch, weights, known)
    return f"torchvision weights {member}", download(member)


def load_fitting(
    model: nn.Module,
    mapped: Mapping[str, torch.Tensor],
    *,
    family: str,
    source: str,
    describe: str,
    classifier: tuple[str, str],
    num_classes: int,
    source_key: Callable[[str], str],
    optional: Callable[[str], bool] = lambda key: False,
) -> None:
    """Load `mapped` (the checkpoint under the model's names) into `model`, strictly but for
    the classifier (`classifier`: its weight and bias keys), which a checkpoint with another
    number of classes leaves fresh, with a warning. `source_key` names a key as the
    checkpoint has it, for messages; `optional` keys may be missing (the model keeps its own)."""
    mapped = dict(mapped)
    own = model.state_dict()
    weight_key = classifier[0]
    checkpoint_classes = mapped[weight_key].shape[0] if weight_key in mapped else None
    if checkpoint_classes is not None and checkpoint_classes != num_classes:
        log.warning(
            "%s: the weights (%s) have a %d-class classifier, the model num_classes=%d: its classifier (%s) is "
            "left out and the model keeps a freshly initialised %d-class one (train it before use)",
            family, source, checkpoint_classes, num_classes, source_key(weight_key), num_classes,
        )
        for key in classifier:
            if key in mapped:
                mapped[key] = own[key]
    problems = []
    mismatched = [k for k in mapped if k in own and mapped[k].shape != own[k].shape]
    problems += [f"{source_key(k)} is {list(mapped[k].shape)} there, {list(own[k].shape)} here" for k in mismatched[:3]]
    missing = [k for k in own if k not in mapped and not optional(k)]
    unexpected = [k for k in mapped if k not in own]
    for word, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            problems.append(f"{word} {', '.join(source_key(k) for k in keys[:3])}{' ...' if len(keys) > 3 else ''}")
    if problems:
        raise option_error(family, "weights", f"({source}) does not fit {describe}: {'; '.join(problems)}")
    for key in own:
        if key not in mapped:  # optional and absent: keep the model's own
            mapped[key] = own[key]
    model.load_state_dict(mapped)
