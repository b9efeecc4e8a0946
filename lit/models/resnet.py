"""CIFAR ResNet of depth 6n+2 (the ResNet paper, CVPR 2016, section 4.2): basic blocks, widths
16/32/64, option-A shortcuts (stride-2 subsampling and zero-padded channels)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit.models.base import Sectioned
from lit.models.registry import register_model


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by `stride` and pad the new channels with zeros (no parameters)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = (
            ZeroPadShortcut(in_channels, out_channels, stride) if needs_projection else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ClassifierHead(nn.Module):
    """Global average pooling and a linear classifier."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def conv_bn_relu_stem(in_channels: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
    )


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions (the PReLU paper, ICCV 2015), as the reference CIFAR code."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def blocks_per_stage(depth: int, layers_per_block: int, family: str) -> int:
    """Blocks per stage for a depth of `layers_per_block * 3 * n + 2`."""
    per_stage, rest = divmod(depth - 2, 3 * layers_per_block)
    if rest or per_stage < 1:
        raise ValueError(
            f"{family} depth must be {3 * layers_per_block}n+2 with n >= 1 "
            f"(for example {3 * layers_per_block + 2} or {6 * layers_per_block + 2}), got {depth}"
        )
    return per_stage


@register_model("resnet")
def cifar_resnet(
    depth: int,
    in_channels: int = 3,
    num_classes: int = 10,
    widths: tuple[int, ...] | list[int] = (16, 32, 64),
) -> Sectioned:
    n = blocks_per_stage(depth, 2, "resnet")
    sections, channels = [], widths[0]
    for stage, width in enumerate(widths):
        stride = 1 if stage == 0 else 2
        blocks = [BasicBlock(channels if i == 0 else width, width, stride if i == 0 else 1) for i in range(n)]
        sections.append(nn.Sequential(*blocks))
        channels = width
    model = Sectioned(conv_bn_relu_stem(in_channels, widths[0]), sections, ClassifierHead(channels, num_classes))
    init_weights(model)
    return model
