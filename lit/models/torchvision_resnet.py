"""torchvision's own ResNet, ResNeXt and Wide ResNet as a sectioned family, `torchvision_resnet`.

The network is `torchvision.models.ResNet` with its `BasicBlock` or `Bottleneck`, cut at
its natural split points: stem = conv1, bn1, relu, maxpool; sections = layer1 .. layer4;
head = avgpool, flatten, fc. Its modules are torchvision's, so a plain torchvision state
dict maps onto it key by key (`from_torchvision_keys`, and back: `to_torchvision_keys`).

The architecture (`model.options`):

- `arch`: a torchvision name (`resnet18`, `resnet34`, `resnet50`, `resnet101`,
  `resnet152`, `resnext50_32x4d`, `resnext101_32x8d`, `resnext101_64x4d`,
  `wide_resnet50_2`, `wide_resnet101_2`), which fixes the block, the blocks per stage,
  `groups` and `width_per_group`; or
- `blocks`: blocks per stage (four positive integers), with `block: basic | bottleneck`
  (basic by default), `groups` and `width_per_group` (ResNeXt: groups 32, width 4; Wide
  ResNet: width 128; both need bottleneck blocks); or
- neither: `model.depth` alone picks torchvision's stages for 18, 34, 50, 101 and 152.

`model.depth` is always the network's layer count, 1 (conv1) + 2 or 3 per basic or
bottleneck block + 1 (fc), as in the names: 18 for [2, 2, 2, 2] basic blocks, 50 for
[3, 4, 6, 3] bottleneck blocks. It is checked against `arch` or `blocks`, never ignored:
depth names runs and is the depth axis of every report, so it must be the real one.

`stem: cifar` replaces the 7x7 stride-2 conv1 by a 3x3 stride-1 one and drops the max
pool (the usual adaptation to 32x32 images: the ImageNet stem divides the resolution by
4 before layer1, the whole network by 32, leaving 1x1 maps from layer3 on for CIFAR).

`weights` starts the model from trained weights: a `.pth`/`.pt` file (or any path with a
`/`) holding a plain torchvision state dict (`torch.save(model.state_dict(), path)`,
loaded with `weights_only=True`), or the name of one of torchvision's weights for the
architecture (`IMAGENET1K_V1`, `DEFAULT`, or in full `ResNet34_Weights.IMAGENET1K_V1`),
downloaded and hash-checked by torchvision into its cache (`$TORCH_HOME`). A classifier
with another number of classes than `num_classes` is left out and the model keeps its
fresh `fc`, with a logged warning; any other difference is an error. `weights` only
chooses the starting point: a model rebuilt from a lit checkpoint takes its weights
from the checkpoint (`build_model(..., initial_weights=False)`), never from `weights`.

torchvision is imported on first use, as in `lit.data.cifar10`: importing it costs about
two seconds, which every `lit` process would pay (`lit.models` imports every family).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

import lit.models.torchvision_weights as torchvision_weights
from lit.models.base import Sectioned
from lit.models.registry import register_model

FAMILY = "torchvision_resnet"
STAGES = 4
BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "cifar")
LAYERS_PER_BLOCK = {"basic": 2, "bottleneck": 3}


@dataclass(frozen=True)
class Architecture:
    block: str  # basic | bottleneck
    blocks: tuple[int, ...]  # blocks per stage
    groups: int = 1
    width_per_group: int = 64

    @property
    def depth(self) -> int:
        """The layer count: conv1, the block's convolutions, fc (shortcut projections not counted)."""
        return 1 + LAYERS_PER_BLOCK[self.block] * sum(self.blocks) + 1

    def describe(self) -> str:
        text = f"{self.block} blocks {list(self.blocks)}"
        if (self.groups, self.width_per_group) != (1, 64):
            text += f", groups {self.groups}, width_per_group {self.width_per_group}"
        return text


# torchvision's builders, `torchvision.models.<name>()` (tests check this table against them)
ARCHITECTURES: dict[str, Architecture] = {
    "resnet18": Architecture("basic", (2, 2, 2, 2)),
    "resnet34": Architecture("basic", (3, 4, 6, 3)),
    "resnet50": Architecture("bottleneck", (3, 4, 6, 3)),
    "resnet101": Architecture("bottleneck", (3, 4, 23, 3)),
    "resnet152": Architecture("bottleneck", (3, 8, 36, 3)),
    "resnext50_32x4d": Architecture("bottleneck", (3, 4, 6, 3), 32, 4),
    "resnext101_32x8d": Architecture("bottleneck", (3, 4, 23, 3), 32, 8),
    "resnext101_64x4d": Architecture("bottleneck", (3, 4, 23, 3), 64, 4),
    "wide_resnet50_2": Architecture("bottleneck", (3, 4, 6, 3), 1, 128),
    "wide_resnet101_2": Architecture("bottleneck", (3, 4, 23, 3), 1, 128),
}
# model.depth alone: torchvision's plain ResNets
BY_DEPTH = {ARCHITECTURES[name].depth: name for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")}


def option_error(option: str, message: str) -> ValueError:
    return torchvision_weights.option_error(FAMILY, option, message)


def positive_int(option: str, value: Any) -> int:
    return torchvision_weights.positive_int(FAMILY, option, value)


def resolve_architecture(
    depth: int,
    arch: str | None,
    block: str | None,
    blocks: list[int] | tuple[int, ...] | None,
    groups: int | None,
    width_per_group: int | None,
) -> tuple[Architecture, str | None]:
    """The architecture the options describe and its torchvision name (None if it has none);
    a ValueError names the option that is wrong."""
    if arch is not None:
        if arch not in ARCHITECTURES:
            raise option_error("arch", f"must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
        given = [name for name, value in (("block", block), ("blocks", blocks), ("groups", groups),
                                          ("width_per_group", width_per_group)) if value is not None]
        if given:
            raise option_error("arch", f"({arch}) fixes block, blocks, groups and width_per_group; drop {', '.join(given)}")
        architecture = ARCHITECTURES[arch]
        if depth != architecture.depth:
            raise ValueError(
                f"{FAMILY} depth must be the network's layer count, {architecture.depth} for arch {arch} "
                f"({architecture.describe()}), got {depth}"
            )
        return architecture, arch
    if block is not None and block not in BLOCKS:
        raise option_error("block", f"must be one of {', '.join(BLOCKS)}, got {block!r}")
    groups = 1 if groups is None else positive_int("groups", groups)
    width_per_group = 64 if width_per_group is None else positive_int("width_per_group", width_per_group)
    if blocks is None:
        if depth not in BY_DEPTH:
            raise ValueError(
                f"{FAMILY} depth alone must be one of {', '.join(map(str, sorted(BY_DEPTH)))} (torchvision's ResNets), "
                f"got {depth}; for another depth give option 'blocks' (blocks per stage) or 'arch'"
            )
        standard = ARCHITECTURES[BY_DEPTH[depth]]
        if block is not None and block != standard.block:
            raise option_error("block", f"is {block!r}, but depth {depth} alone means torchvision's "
                                        f"{BY_DEPTH[depth]} ({standard.block} blocks); give option 'blocks' too")
        architecture = Architecture(standard.block, standard.blocks, groups, width_per_group)
    else:
        if not isinstance(blocks, (list, tuple)) or len(blocks) != STAGES:
            raise option_error("blocks", f"must be a list of {STAGES} positive integers (blocks per stage), got {blocks!r}")
        for count in blocks:
            positive_int("blocks", count)
        architecture = Architecture(block or "basic", tuple(blocks), groups, width_per_group)
        if depth != architecture.depth:
            per_block = LAYERS_PER_BLOCK[architecture.block]
            raise ValueError(
                f"{FAMILY} depth must be the network's layer count, 1 + {per_block} x {sum(architecture.blocks)} "
                f"{architecture.block} blocks + 1 = {architecture.depth} for blocks {list(architecture.blocks)}, got {depth}"
            )
    if architecture.block == "basic" and (groups, width_per_group) != (1, 64):
        raise option_error("groups" if groups != 1 else "width_per_group",
                           "needs bottleneck blocks (torchvision's BasicBlock has groups 1 and width 64 only)")
    name = next((name for name, known in ARCHITECTURES.items() if known == architecture), None)
    return architecture, name


# ---------------------------------------------------------------- keys: torchvision <-> sectioned

STEM_MODULES = ("conv1", "bn1")
LAYER_KEY = re.compile(r"layer([1-9])\.(.*)")
SECTION_KEY = re.compile(r"sections\.([0-9]+)\.(.*)")


def from_torchvision_keys(state: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """A torchvision ResNet state dict under this family's names: conv1/bn1 -> stem.*,
    layerK -> sections.K-1, fc -> head.fc. Keys of no ResNet module keep their names (the
    load then reports them as unexpected)."""
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        module = key.split(".", 1)[0]
        layer = LAYER_KEY.fullmatch(key)
        if module in STEM_MODULES:
            key = f"stem.{key}"
        elif layer:
            key = f"sections.{int(layer.group(1)) - 1}.{layer.group(2)}"
        elif module == "fc":
            key = f"head.{key}"
        mapped[key] = value
    return mapped


def to_torchvision_keys(state: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """This family's state dict under torchvision's names: loads into a plain
    `torchvision.models.ResNet` of the same architecture (with the ImageNet stem)."""
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        section = SECTION_KEY.fullmatch(key)
        if key.startswith("stem."):
            key = key[len("stem."):]
        elif section:
            key = f"layer{int(section.group(1)) + 1}.{section.group(2)}"
        elif key.startswith("head."):
            key = key[len("head."):]
        mapped[key] = value
    return mapped


# ---------------------------------------------------------------- weights


def load_initial_weights(model: Sectioned, weights: str, arch_name: str | None, num_classes: int, describe: str) -> None:
    source, state = torchvision_weights.read_weights(FAMILY, weights, arch_name, list(ARCHITECTURES))
    torchvision_weights.load_fitting(
        model, from_torchvision_keys(state), family=FAMILY, source=source, describe=describe,
        classifier=("head.fc.weight", "head.fc.bias"), num_classes=num_classes, source_key=to_tv,
        # batch norms of old checkpoints (torchvision's ImageNet files among them) have no counter
        optional=lambda key: key.endswith("num_batches_tracked"),
    )


def to_tv(key: str) -> str:
    """A key under torchvision's name, for messages about a torchvision checkpoint."""
    return next(iter(to_torchvision_keys({key: torch.empty(0)})))


# ---------------------------------------------------------------- the family


@register_model(FAMILY)
def torchvision_resnet(
    depth: int,
    in_channels: int = 3,
    num_classes: int = 10,
    arch: str | None = None,
    block: str | None = None,
    blocks: list[int] | tuple[int, ...] | None = None,
    groups: int | None = None,
    width_per_group: int | None = None,
    stem: str = "imagenet",
    weights: str | None = None,
) -> Sectioned:
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    architecture, arch_name = resolve_architecture(depth, arch, block, blocks, groups, width_per_group)
    if stem not in STEMS:
        raise option_error("stem", f"must be one of {', '.join(STEMS)}, got {stem!r}")
    positive_int("num_classes", num_classes)
    positive_int("in_channels", in_channels)
    if weights is not None and (not isinstance(weights, str) or not weights):
        raise option_error("weights", f"must be a .pth file or a torchvision weights name, got {weights!r}")
    network = ResNet(
        BasicBlock if architecture.block == "basic" else Bottleneck, list(architecture.blocks),
        num_classes=num_classes, groups=architecture.groups, width_per_group=architecture.width_per_group,
    )
    if stem == "cifar" or in_channels != 3:
        kernel, stride, padding = (3, 1, 1) if stem == "cifar" else (7, 2, 3)
        network.conv1 = nn.Conv2d(in_channels, network.conv1.out_channels, kernel, stride, padding, bias=False)
        nn.init.kaiming_normal_(network.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's
    if stem == "cifar":
        network.maxpool = nn.Identity()
    model = Sectioned(
        nn.Sequential(OrderedDict(conv1=network.conv1, bn1=network.bn1, relu=network.relu, maxpool=network.maxpool)),
        [network.layer1, network.layer2, network.layer3, network.layer4],
        nn.Sequential(OrderedDict(avgpool=network.avgpool, flatten=nn.Flatten(1), fc=network.fc)),
    )
    if weights is not None:
        describe = f"{FAMILY}-{depth} ({arch_name or architecture.describe()}, stem {stem}, in_channels {in_channels})"
        load_initial_weights(model, weights, arch_name, num_classes, describe)
    return model


# options that only choose the starting weights: left out when a checkpoint supplies them
torchvision_resnet.weight_options = ("weights",)
