"""StarGAN (CVPR 2018): a multi-domain image-to-image generator cut at LIT's split
points, and its PatchGAN discriminator with a domain classifier.

Generator: the target-domain label `c` (N, c_dim) is tiled over the image and concatenated
to it; the STEM is conv7x7 + two stride-2 conv4x4 (down to 4 * conv_dim channels), each
followed by instance norm and ReLU; the SECTIONS are `repeat_num` residual blocks split into
`num_sections` consecutive groups (the LIT split points: the bottleneck); the HEAD is two
transposed conv4x4 up, conv7x7 to the image channels and tanh, so images are in [-1, 1].

Instance norm is affine with `track_running_stats=False`: every image is normalised with
its own statistics in train and eval mode alike, so a generator has no hidden mode state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lit.models.base import Sectioned
from lit.models.registry import register_model


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


class ResidualBlock(nn.Module):
    """conv3x3-IN-ReLU-conv3x3-IN, added to the input (no activation after the sum)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            instance_norm(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            instance_norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def encoder(in_channels: int, conv_dim: int) -> nn.Sequential:
    """conv7x7 then two stride-2 conv4x4 doubling the width: H x W -> H/4 x W/4, 4 * conv_dim."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, conv_dim, 7, 1, 3, bias=False),
        instance_norm(conv_dim),
        nn.ReLU(inplace=True),
    ]
    width = conv_dim
    for _ in range(2):
        layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), instance_norm(width * 2), nn.ReLU(inplace=True)]
        width *= 2
    return nn.Sequential(*layers)


def decoder(conv_dim: int, image_channels: int) -> nn.Sequential:
    """Two stride-2 transposed conv4x4 halving the width, conv7x7 to the image, tanh."""
    layers: list[nn.Module] = []
    width = conv_dim * 4
    for _ in range(2):
        layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), instance_norm(width // 2), nn.ReLU(inplace=True)]
        width //= 2
    layers += [nn.Conv2d(width, image_channels, 7, 1, 3, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def split_blocks(blocks: list[nn.Module], num_sections: int) -> list[nn.Sequential]:
    """Consecutive groups of blocks, the first groups one block longer where it does not divide."""
    if not 1 <= num_sections <= len(blocks):
        raise ValueError(f"num_sections must be between 1 and the {len(blocks)} residual blocks, got {num_sections}")
    size, extra = divmod(len(blocks), num_sections)
    sections, start = [], 0
    for index in range(num_sections):
        stop = start + size + (index < extra)
        sections.append(nn.Sequential(*blocks[start:stop]))
        start = stop
    return sections


def tile_label(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Concatenate the label vector, repeated at every pixel, to the image channels."""
    planes = labels.to(images.dtype)[:, :, None, None].expand(-1, -1, images.shape[2], images.shape[3])
    return torch.cat([images, planes], dim=1)


class StarGANGenerator(Sectioned):
    """`forward(x, c)` translates images `x` in [-1, 1] to the domains `c` (N, c_dim)."""

    task = "translate"

    def __init__(
        self, repeat_num: int = 6, conv_dim: int = 64, c_dim: int = 5, image_channels: int = 3, num_sections: int = 1
    ) -> None:
        if repeat_num < 1:
            raise ValueError(f"a StarGAN generator needs at least one residual block (depth), got {repeat_num}")
        blocks = [ResidualBlock(conv_dim * 4) for _ in range(repeat_num)]
        super().__init__(
            encoder(image_channels + c_dim, conv_dim), split_blocks(blocks, num_sections), decoder(conv_dim, image_channels)
        )
        self.c_dim = c_dim
        self.image_channels = image_channels

    def features(self, x: torch.Tensor, c: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        """[stem(cat(x, tiled c)), after section 0, ..., after the last section]."""
        feats = [self.stem(tile_label(x, c))]
        for section in self.sections:
            feats.append(section(feats[-1]))
        return feats

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if c.shape != (x.shape[0], self.c_dim):
            raise ValueError(f"target labels must have shape ({x.shape[0]}, {self.c_dim}), got {tuple(c.shape)}")
        return self.head(self.features(x, c)[-1])


@register_model("stargan")
def stargan_generator(
    depth: int, in_channels: int = 3, num_classes: int = 5, conv_dim: int = 64, num_sections: int = 1
) -> StarGANGenerator:
    """`depth` is the number of residual blocks (repeat_num: 6 in the paper); `num_classes`
    is the label size c_dim; `in_channels` the image channels."""
    return StarGANGenerator(
        repeat_num=depth, conv_dim=conv_dim, c_dim=num_classes, image_channels=in_channels, num_sections=num_sections
    )


def default_discriminator_repeat(image_size: int) -> int:
    """Stride-2 layers down to a 2x2 map: 6 at 128 px as in the paper, 3 at 16 px."""
    repeat = int(math.log2(image_size)) - 1
    if image_size != 2 ** (repeat + 1) or repeat < 1:
        raise ValueError(f"the discriminator needs a power-of-two image size of at least 4, got {image_size}")
    return repeat


class StarGANDiscriminator(nn.Module):
    """PatchGAN: stride-2 conv4x4 + LeakyReLU(0.01) `repeat_num` times, doubling the width;
    then a conv3x3 real/fake map (N, 1, S/2^r, S/2^r) and a domain classifier whose kernel
    covers the whole remaining map, giving logits (N, c_dim)."""

    def __init__(
        self, image_size: int = 128, conv_dim: int = 64, c_dim: int = 5, repeat_num: int | None = None, image_channels: int = 3
    ) -> None:
        super().__init__()
        repeat_num = default_discriminator_repeat(image_size) if repeat_num is None else repeat_num
        final_size = image_size // 2**repeat_num
        if final_size < 1 or final_size * 2**repeat_num != image_size:
            raise ValueError(f"image size {image_size} is not divisible by 2^repeat_num = {2**repeat_num}")
        layers: list[nn.Module] = [nn.Conv2d(image_channels, conv_dim, 4, 2, 1), nn.LeakyReLU(0.01)]
        width = conv_dim
        for _ in range(1, repeat_num):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1), nn.LeakyReLU(0.01)]
            width *= 2
        self.main = nn.Sequential(*layers)
        self.real_fake = nn.Conv2d(width, 1, 3, 1, 1, bias=False)
        self.domain = nn.Conv2d(width, c_dim, final_size, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.main(x)
        return self.real_fake(hidden), self.domain(hidden).flatten(1)
