"""CIFAR ResNeXt of depth 9n+2 (the ResNeXt paper, CVPR 2017): three stages of bottleneck blocks
whose 3x3 convolution is grouped into `cardinality` paths of `bottleneck_width` channels
(doubled at every stage). The defaults are small enough to train on a CPU; the paper's
CIFAR ResNeXt-29 (8x64d) is `cardinality=8, bottleneck_width=64, widths=[256, 512, 1024],
stem_width=64`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit.models.base import Sectioned
from lit.models.registry import register_model
from lit.models.resnet import ClassifierHead, blocks_per_stage, conv_bn_relu_stem, init_weights


class BottleneckBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, group_channels: int, cardinality: int, stride: int) -> None:
        super().__init__()
        inner = group_channels * cardinality
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride, 1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


@register_model("resnext")
def cifar_resnext(
    depth: int,
    in_channels: int = 3,
    num_classes: int = 10,
    cardinality: int = 4,
    bottleneck_width: int = 4,
    widths: tuple[int, ...] | list[int] = (64, 128, 256),
    stem_width: int = 32,
) -> Sectioned:
    n = blocks_per_stage(depth, 3, "resnext")
    sections, channels = [], stem_width
    for stage, width in enumerate(widths):
        group_channels = bottleneck_width * 2**stage
        blocks = [
            BottleneckBlock(channels if i == 0 else width, width, group_channels, cardinality,
                            (1 if stage == 0 else 2) if i == 0 else 1)
            for i in range(n)
        ]
        sections.append(nn.Sequential(*blocks))
        channels = width
    model = Sectioned(conv_bn_relu_stem(in_channels, stem_width), sections, ClassifierHead(channels, num_classes))
    init_weights(model)
    return model
