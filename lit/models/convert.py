"""Checkpoints of other code bases, converted into a family of ours (`lit import-checkpoint`).

A source format (`FORMATS`, the `--from` of the command) maps a foreign state dict onto one
of our families and returns the model with its spec; `import_checkpoint` then writes a run
directory that `method.teacher=RUN_DIR` (and `lit tune --teacher`) accepts: the model as
`checkpoints/best.pt` and `last.pt` (`save_model`, with the spec) and `import.json`, which
says where the weights came from (the file, its SHA-256, the format, the layout found).

`lit-code`: the CIFAR ResNet of the official LIT code (its `cifar10/resnet.py`, the CIFAR
variant: `ResNet(BasicBlock, [n, n, n])`). It is our `resnet` family with other module names:

    official                              ours (family resnet, depth 6n+2)
    conv1, bn1                            stem.0, stem.1
    layer{s}.{i}.conv1/bn1/conv2/bn2      sections.{s-1}.{i}.conv1/bn1/conv2/bn2   (s = 1..3)
    linear                                head.fc

Its shortcuts are option A as ours (stride-2 subsampling, the new channels zero-padded,
half on each side) and hold no weights; a first-stage width w gives the widths w, 2w, 4w.
The depth comes from the number of blocks per stage, the input channels from `conv1` and the
classes from `linear`. A file may hold the state dict itself (the official code's
`torch.save(model.state_dict(), f)`) or wrap it (`{'state_dict': ..., 'epoch': ...}`, or
under `net`, `model`, `model_state_dict`), with or without the `module.` prefix of
`nn.DataParallel`. Every key and every shape is checked before anything is written; the
first key that has no place, is missing or has the wrong shape is named in the error.
Files are read with `torch.load(..., weights_only=True)`: tensors and plain containers only.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from lit.models.io import model_spec, save_model
from lit.models.registry import build_model
from lit.runtime.checkpoint import CheckpointError
from lit.runtime.provenance import now, provenance
from lit.runtime.runlog import write_json

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")  # where a wrapping dict keeps the weights
PREFIX = "module."  # nn.DataParallel / DistributedDataParallel
DEFAULT_WIDTHS = (16, 32, 64)


class ConversionError(CheckpointError):
    """A foreign checkpoint that cannot be read, or does not fit the layout it claims."""


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    )


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict in `path` (unwrapped, `module.` stripped) and how it was stored."""
    file = Path(path)
    if not file.is_file():
        raise ConversionError(f"checkpoint {file} does not exist")
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated file, not a torch file, or a pickle of more than tensors
        raise ConversionError(
            f"checkpoint {file} cannot be read with torch.load(weights_only=True) "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}): it is truncated, not a "
            "torch file, or holds objects beyond tensors and plain containers (re-save just its state dict)"
        ) from None
    wrapper = None
    if is_state_dict(loaded):
        state = dict(loaded)
    else:
        found = [key for key in WRAPPER_KEYS if isinstance(loaded, Mapping) and is_state_dict(loaded.get(key))]
        if not found:
            what = f"a dict with keys {sorted(map(str, loaded))[:8]}" if isinstance(loaded, Mapping) else type(loaded).__name__
            raise ConversionError(
                f"checkpoint {file} holds {what}: neither a state dict (names -> tensors) nor a dict "
                f"wrapping one under {', '.join(repr(k) for k in WRAPPER_KEYS)}"
            )
        wrapper = found[0]
        state = dict(loaded[wrapper])
    prefixed = all(key.startswith(PREFIX) for key in state)
    if prefixed:
        state = {key[len(PREFIX):]: value for key, value in state.items()}
    return state, {"wrapper_key": wrapper, "module_prefix": prefixed}


# --- lit-code: the official LIT code's CIFAR ResNet -------------------------------------------------

LITCODE_STEM = {"conv1": "stem.0", "bn1": "stem.1"}
LITCODE_KEY = re.compile(r"(?:(conv1|bn1)|layer([1-3])\.(\d+)\.(conv1|bn1|conv2|bn2)|(linear))\.(\w+)")
OUR_KEY = re.compile(r"(?:stem\.([01])|sections\.([0-2])\.(\d+)\.(conv1|bn1|conv2|bn2)|head\.(fc))\.(\w+)")


def litcode_to_ours(key: str) -> str | None:
    """Our name for an official key, or None for a key the CIFAR ResNet does not have."""
    match = LITCODE_KEY.fullmatch(key)
    if match is None:
        return None
    stem, stage, block, layer, linear, leaf = match.groups()
    if stem:
        return f"{LITCODE_STEM[stem]}.{leaf}"
    if linear:
        return f"head.fc.{leaf}"
    return f"sections.{int(stage) - 1}.{block}.{layer}.{leaf}"


def ours_to_litcode(key: str) -> str:
    """The official name of one of our keys (for messages about a missing key)."""
    match = OUR_KEY.fullmatch(key)
    if match is None:
        return key
    stem, section, block, layer, fc, leaf = match.groups()
    if stem is not None:
        return f"{'conv1' if stem == '0' else 'bn1'}.{leaf}"
    if fc:
        return f"linear.{leaf}"
    return f"layer{int(section) + 1}.{block}.{layer}.{leaf}"


def optional_key(key: str) -> bool:
    """A batch norm's step counter: absent from files of PyTorch before 0.4.1, unused in eval."""
    return key.endswith(".num_batches_tracked")


def litcode_layout(state: Mapping[str, torch.Tensor], file: Path) -> tuple[int, int, int, tuple[int, int, int]]:
    """(depth, input channels, classes, widths) of an official-layout CIFAR ResNet."""
    if any(key.startswith("layer4.") for key in state):
        raise ConversionError(
            f"checkpoint {file} has 'layer4' ({next(k for k in state if k.startswith('layer4.'))}): the official "
            "code's ImageNet ResNet, not its CIFAR ResNet (layer1..layer3 of basic blocks)"
        )
    stem = state.get("conv1.weight")
    if stem is None:
        raise ConversionError(
            f"checkpoint {file} has no 'conv1.weight': not the official code's CIFAR ResNet "
            f"(its first keys: {', '.join(list(state)[:4])})"
        )
    if stem.ndim != 4:
        raise ConversionError(f"'conv1.weight' of {file} is {list(stem.shape)}: not a convolution")
    blocks = []
    for stage in (1, 2, 3):
        found = [int(m.group(1)) for k in state if (m := re.match(rf"layer{stage}\.(\d+)\.", k))]
        if not found:
            raise ConversionError(f"checkpoint {file} has no 'layer{stage}' blocks (missing 'layer{stage}.0.conv1.weight')")
        blocks.append(max(found) + 1)
    if len(set(blocks)) != 1:
        raise ConversionError(
            f"checkpoint {file} has {blocks[0]}, {blocks[1]} and {blocks[2]} blocks in layer1..layer3: the CIFAR "
            "ResNet (depth 6n+2) has the same number in every stage"
        )
    linear = state.get("linear.weight")
    if linear is None:
        raise ConversionError(f"checkpoint {file} has no 'linear.weight' (the classifier)")
    width = int(stem.shape[0])
    if width % 2:  # option A pads (2w - w) channels half on each side: the official code needs w even
        raise ConversionError(f"'conv1.weight' of {file} has {width} channels: the official option-A shortcuts need an even width")
    return 6 * blocks[0] + 2, int(stem.shape[1]), int(linear.shape[0]), (width, 2 * width, 4 * width)


def convert_litcode(state: Mapping[str, torch.Tensor], file: Path, num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Our `resnet` model holding the official-layout CIFAR ResNet weights `state`, its spec,
    and a description of the layout found."""
    depth, in_channels, classes, widths = litcode_layout(state, file)
    if num_classes is not None and num_classes != classes:
        raise ConversionError(
            f"checkpoint {file} has a {classes}-class classifier ('linear.weight' is {list(state['linear.weight'].shape)}), "
            f"--num-classes asked for {num_classes}"
        )
    options: dict[str, Any] = {"in_channels": in_channels, "num_classes": classes}
    if widths != DEFAULT_WIDTHS:
        options["widths"] = list(widths)
    spec = model_spec("resnet", depth, options)
    model = build_model("resnet", depth, **options)
    own = model.state_dict()
    name = f"resnet-{depth} (widths {list(widths)}, {in_channels} input channels, {classes} classes)"

    def problem(message: str, count: int) -> ConversionError:
        more = f" (and {count - 1} more like it)" if count > 1 else ""
        return ConversionError(f"checkpoint {file} does not fit the official CIFAR ResNet as a {name}: {message}{more}")

    mapped: dict[str, torch.Tensor] = {}
    unmatched = []
    for key, value in state.items():
        ours = litcode_to_ours(key)
        if ours is None or ours not in own:
            unmatched.append(key)
        else:
            mapped[ours] = value
    if unmatched:
        key = unmatched[0]
        hint = (": a projection (option B) shortcut, but the official CIFAR ResNet and ours use option A (no weights)"
                if ".shortcut." in key else "")
        raise problem(f"its key {key!r} has no place in it{hint}", len(unmatched))
    missing = [key for key in own if key not in mapped and not optional_key(key)]
    if missing:
        raise problem(f"it has no {ours_to_litcode(missing[0])!r}", len(missing))
    wrong = [key for key in mapped if mapped[key].shape != own[key].shape]
    if wrong:
        key = wrong[0]
        raise problem(
            f"its {ours_to_litcode(key)!r} is {list(mapped[key].shape)}, expected {list(own[key].shape)}", len(wrong)
        )
    filled = [key for key in own if key not in mapped]  # optional step counters: keep ours (zero)
    model.load_state_dict({**own, **mapped})
    layout = {
        "family": "resnet", "depth": depth, "blocks_per_stage": (depth - 2) // 6, "widths": list(widths),
        "in_channels": in_channels, "num_classes": classes, "tensors": len(state),
        "filled_num_batches_tracked": len(filled),
    }
    return model.eval(), spec, layout


# a format's converter: (state dict, file, --num-classes or None) -> (model, spec, layout found)
Converter = Callable[..., tuple[nn.Module, dict[str, Any], dict[str, Any]]]

FORMATS: dict[str, tuple[Converter, str]] = {
    "lit-code": (convert_litcode, "the official LIT code's CIFAR ResNet (cifar10/resnet.py: conv1, bn1, layer1..3, linear)"),
}


def convert_checkpoint(file: str | Path, source: str, num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Read `file` as format `source` into our model: (model, spec, what was found)."""
    if source not in FORMATS:
        raise ConversionError(f"unknown checkpoint format {source!r} (known: {', '.join(FORMATS)})")
    file = Path(file)
    state, stored = read_state_dict(file)
    model, spec, layout = FORMATS[source][0](state, file, num_classes)
    return model, spec, {**stored, **layout}


def import_checkpoint(file: str | Path, out: str | Path, source: str = "lit-code", num_classes: int | None = None) -> dict[str, Any]:
    """Convert `file` and write the run directory `out` (which must not exist) in one step:
    everything goes to a hidden folder beside it, renamed into place when complete, so an
    error leaves nothing behind. Returns the record written to `out/import.json`."""
    file, out = Path(file), Path(out)
    if out.exists():
        raise ConversionError(f"{out} exists: an imported checkpoint gets a new run directory (remove it or choose another)")
    started = now()
    model, spec, found = convert_checkpoint(file, source, num_classes)
    origin = {"format": source, "file": file.name, "sha256": sha256(file)}
    record = {
        "imported_from": {**origin, "path": str(file), "description": FORMATS[source][1]},
        "layout": found,
        "spec": spec,
        "checkpoints": ["checkpoints/best.pt", "checkpoints/last.pt"],
        "provenance": provenance("cpu", started=started, finished=now()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp"
    try:
        for which in ("best", "last"):
            save_model(model, spec, staging / "checkpoints" / f"{which}.pt", imported_from=origin)
        write_json(staging / "import.json", record)
        if out.exists():
            raise ConversionError(f"{out} appeared while importing: left as it is")
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return record
