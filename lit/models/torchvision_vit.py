"""torchvision's Vision Transformer as a sectioned family, `torchvision_vit`.

The network is `torchvision.models.VisionTransformer`'s modules, cut so: stem = patch
embedding (conv_proj), class token and position embedding (plus its dropout); sections =
consecutive groups of encoder blocks; head = the encoder's final layer norm, the class
token and the classifier (`heads`). Every boundary is a (batch, 1 + patches, hidden_dim)
token sequence, so a teacher and a student of the same width meet at equal shapes.

`model.depth` is the number of encoder blocks (torchvision's `num_layers`: 12 for
ViT-B/16). The grouping is a model option: `sections: N` (4 by default) splits the blocks
as evenly as possible, earlier sections taking the extra ones (depth 6 in 4 sections is
[2, 2, 1, 1]), or `blocks: [3, 3, 3, 3]` gives each section's count (summing to depth).
LIT needs teacher and student with the same number of sections.

The architecture: `arch` (`vit_b_16`, `vit_b_32`, `vit_l_16`, `vit_l_32`, `vit_h_14`) fixes
patch_size, num_heads, hidden_dim, mlp_dim and the depth (checked); without it they are
options, ViT-B/16's by default, so a ViT-B/16 student of depth 6 is `depth: 6` alone.
`image_size` (224 by default) must be the data's: the position embedding has one entry
per patch. `dropout`, `attention_dropout` as torchvision's.

`weights`: as `torchvision_resnet` (`lit.models.torchvision_weights`): a `.pth` file with
a plain torchvision VisionTransformer state dict, or torchvision's weights by name for an
`arch` (the architecture must be that arch's, depth included). A checkpoint made for
another image size has its position embedding interpolated by torchvision's
`interpolate_embeddings` (logged); old checkpoints' MLP names (`mlp.linear_1`) are read as
torchvision reads them.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

import lit.models.torchvision_weights as torchvision_weights
from lit.models.base import Sectioned
from lit.models.registry import register_model

FAMILY = "torchvision_vit"


@dataclass(frozen=True)
class Shape:
    patch_size: int
    num_heads: int
    hidden_dim: int
    mlp_dim: int


# torchvision's builders (`torchvision.models.<name>()`): (shape, num_layers); tests check this table
ARCHITECTURES: dict[str, tuple[Shape, int]] = {
    "vit_b_16": (Shape(16, 12, 768, 3072), 12),
    "vit_b_32": (Shape(32, 12, 768, 3072), 12),
    "vit_l_16": (Shape(16, 16, 1024, 4096), 24),
    "vit_l_32": (Shape(32, 16, 1024, 4096), 24),
    "vit_h_14": (Shape(14, 16, 1280, 5120), 32),
}
DEFAULT_SHAPE = ARCHITECTURES["vit_b_16"][0]
DEFAULT_SECTIONS = 4


def option_error(option: str, message: str) -> ValueError:
    return torchvision_weights.option_error(FAMILY, option, message)


def positive_int(option: str, value: Any) -> int:
    return torchvision_weights.positive_int(FAMILY, option, value)


def probability(option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise option_error(option, f"must be a number in [0, 1), got {value!r}")
    return float(value)


def section_blocks(depth: int, sections: int | None, blocks: list[int] | tuple[int, ...] | None) -> list[int]:
    """Encoder blocks per section."""
    if blocks is not None:
        if sections is not None:
            raise option_error("blocks", "and option 'sections' both give the grouping; give one")
        if not isinstance(blocks, (list, tuple)) or not blocks:
            raise option_error("blocks", f"must be a list of positive integers (encoder blocks per section), got {blocks!r}")
        for count in blocks:
            positive_int("blocks", count)
        if sum(blocks) != depth:
            raise ValueError(f"{FAMILY} depth must be the number of encoder blocks, sum of blocks {list(blocks)} = {sum(blocks)}, got {depth}")
        return list(blocks)
    sections = DEFAULT_SECTIONS if sections is None else positive_int("sections", sections)
    if depth < sections:
        raise ValueError(f"{FAMILY} depth (encoder blocks) must be at least option 'sections' ({sections}), got {depth}")
    base, extra = divmod(depth, sections)
    return [base + 1] * extra + [base] * (sections - extra)


def resolve_shape(depth: int, arch: str | None, dims: dict[str, int | None]) -> tuple[Shape, str | None]:
    """The encoder's shape and its torchvision name (None if it has none)."""
    if arch is not None:
        if arch not in ARCHITECTURES:
            raise option_error("arch", f"must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
        given = [name for name, value in dims.items() if value is not None]
        if given:
            raise option_error("arch", f"({arch}) fixes {', '.join(dims)}; drop {', '.join(given)}")
        shape, layers = ARCHITECTURES[arch]
        if depth != layers:
            raise ValueError(f"{FAMILY} depth must be the number of encoder blocks, {layers} for arch {arch}, got {depth}")
        return shape, arch
    values = {name: positive_int(name, value) if value is not None else getattr(DEFAULT_SHAPE, name) for name, value in dims.items()}
    shape = Shape(**values)
    if shape.hidden_dim % shape.num_heads:
        raise option_error("hidden_dim", f"({shape.hidden_dim}) must be a multiple of option 'num_heads' ({shape.num_heads})")
    name = next((name for name, (known, layers) in ARCHITECTURES.items() if (known, layers) == (shape, depth)), None)
    return shape, name


# ---------------------------------------------------------------- the parts


class PatchEmbedding(nn.Module):
    """torchvision's `_process_input`, class token and position embedding (with its dropout)."""

    def __init__(self, conv_proj: nn.Module, class_token: nn.Parameter, pos_embedding: nn.Parameter,
                 dropout: nn.Module, image_size: int, hidden_dim: int) -> None:
        super().__init__()
        self.conv_proj = conv_proj
        self.class_token = class_token
        self.pos_embedding = pos_embedding
        self.dropout = dropout
        self.image_size = image_size
        self.hidden_dim = hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"{FAMILY} expects {self.image_size}x{self.image_size} images (option image_size), got {h}x{w}")
        x = self.conv_proj(x).reshape(n, self.hidden_dim, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.dropout(x + self.pos_embedding)


class ClassTokenHead(nn.Module):
    """The encoder's final layer norm, then the classifier on the class token."""

    def __init__(self, ln: nn.Module, heads: nn.Module) -> None:
        super().__init__()
        self.ln = ln
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.ln(x)[:, 0])


# ---------------------------------------------------------------- keys: torchvision <-> sectioned

BLOCK_KEY = re.compile(r"encoder\.layers\.encoder_layer_([0-9]+)\.(.*)")
SECTION_KEY = re.compile(r"sections\.([0-9]+)\.([0-9]+)\.(.*)")
STEM_KEYS = {"class_token": "stem.class_token", "encoder.pos_embedding": "stem.pos_embedding"}
LEGACY_MLP = {"mlp.linear_1.": "mlp.0.", "mlp.linear_2.": "mlp.3."}  # torchvision's MLPBlock before its version 2


def block_positions(blocks: list[int]) -> list[tuple[int, int]]:
    """(section, index in section) of every encoder block."""
    return [(section, i) for section, count in enumerate(blocks) for i in range(count)]


def from_torchvision_keys(state: Mapping[str, torch.Tensor], blocks: list[int]) -> OrderedDict[str, torch.Tensor]:
    """A torchvision VisionTransformer state dict under this family's names, for a model
    grouped as `blocks`; keys of blocks beyond them keep their names (reported as unexpected)."""
    positions = block_positions(blocks)
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        block = BLOCK_KEY.fullmatch(key)
        if key in STEM_KEYS:
            key = STEM_KEYS[key]
        elif key.startswith("conv_proj."):
            key = f"stem.{key}"
        elif block and int(block.group(1)) < len(positions):
            section, index = positions[int(block.group(1))]
            rest = block.group(2)
            for old, new in LEGACY_MLP.items():
                rest = rest.replace(old, new) if rest.startswith(old) else rest
            key = f"sections.{section}.{index}.{rest}"
        elif key.startswith("encoder.ln."):
            key = f"head.ln.{key[len('encoder.ln.'):]}"
        elif key.startswith("heads."):
            key = f"head.{key}"
        mapped[key] = value
    return mapped


def to_torchvision_keys(state: Mapping[str, torch.Tensor], blocks: list[int]) -> OrderedDict[str, torch.Tensor]:
    """This family's state dict under torchvision's names (loads into a plain VisionTransformer)."""
    first = [sum(blocks[:section]) for section in range(len(blocks))]
    stem = {ours: theirs for theirs, ours in STEM_KEYS.items()}
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        section = SECTION_KEY.fullmatch(key)
        if key in stem:
            key = stem[key]
        elif key.startswith("stem."):
            key = key[len("stem."):]
        elif section:
            key = f"encoder.layers.encoder_layer_{first[int(section.group(1))] + int(section.group(2))}.{section.group(3)}"
        elif key.startswith("head.ln."):
            key = f"encoder.ln.{key[len('head.ln.'):]}"
        elif key.startswith("head.heads."):
            key = key[len("head."):]
        mapped[key] = value
    return mapped


def fit_image_size(state: dict[str, torch.Tensor], image_size: int, patch_size: int, source: str) -> dict[str, torch.Tensor]:
    """`state` with its position embedding interpolated to `image_size` by torchvision, where
    it was made for another one."""
    from torchvision.models.vision_transformer import interpolate_embeddings

    pos = state.get("encoder.pos_embedding")
    patches = (image_size // patch_size) ** 2
    if pos is None or pos.dim() != 3 or pos.shape[1] == patches + 1:
        return state
    side = math.isqrt(pos.shape[1] - 1)
    torchvision_weights.log.warning(
        "%s: the weights (%s) are for %dx%d patches, the model image_size %d gives %dx%d: the position embedding "
        "is interpolated (torchvision's interpolate_embeddings)",
        FAMILY, source, side, side, image_size, image_size // patch_size, image_size // patch_size,
    )
    return dict(interpolate_embeddings(image_size, patch_size, OrderedDict(state)))


# ---------------------------------------------------------------- the family


@register_model(FAMILY)
def torchvision_vit(
    depth: int,
    in_channels: int = 3,
    num_classes: int = 10,
    image_size: int = 224,
    arch: str | None = None,
    patch_size: int | None = None,
    num_heads: int | None = None,
    hidden_dim: int | None = None,
    mlp_dim: int | None = None,
    sections: int | None = None,
    blocks: list[int] | tuple[int, ...] | None = None,
    dropout: float = 0.0,
    attention_dropout: float = 0.0,
    weights: str | None = None,
) -> Sectioned:
    from torchvision.models.vision_transformer import VisionTransformer

    dims = {"patch_size": patch_size, "num_heads": num_heads, "hidden_dim": hidden_dim, "mlp_dim": mlp_dim}
    shape, arch_name = resolve_shape(depth, arch, dims)
    grouping = section_blocks(depth, sections, blocks)
    positive_int("num_classes", num_classes)
    positive_int("in_channels", in_channels)
    positive_int("image_size", image_size)
    if image_size % shape.patch_size:
        raise option_error("image_size", f"({image_size}) must be a multiple of the patch size ({shape.patch_size})")
    dropout = probability("dropout", dropout)
    attention_dropout = probability("attention_dropout", attention_dropout)
    if weights is not None and (not isinstance(weights, str) or not weights):
        raise option_error("weights", f"must be a .pth file or a torchvision weights name, got {weights!r}")
    network = VisionTransformer(
        image_size=image_size, patch_size=shape.patch_size, num_layers=depth, num_heads=shape.num_heads,
        hidden_dim=shape.hidden_dim, mlp_dim=shape.mlp_dim, dropout=dropout, attention_dropout=attention_dropout,
        num_classes=num_classes,
    )
    if in_channels != 3:
        conv = nn.Conv2d(in_channels, shape.hidden_dim, shape.patch_size, shape.patch_size)
        nn.init.trunc_normal_(conv.weight, std=math.sqrt(1 / (in_channels * shape.patch_size**2)))  # as torchvision's
        nn.init.zeros_(conv.bias)
        network.conv_proj = conv
    encoder_blocks = list(network.encoder.layers)
    starts = [sum(grouping[:i]) for i in range(len(grouping))]
    model = Sectioned(
        PatchEmbedding(network.conv_proj, network.class_token, network.encoder.pos_embedding, network.encoder.dropout,
                       image_size, shape.hidden_dim),
        [nn.Sequential(*encoder_blocks[start:start + count]) for start, count in zip(starts, grouping)],
        ClassTokenHead(network.encoder.ln, network.heads),
    )
    if weights is not None:
        source, state = torchvision_weights.read_weights(FAMILY, weights, arch_name, list(ARCHITECTURES))
        state = fit_image_size(state, image_size, shape.patch_size, source)
        describe = (f"{FAMILY}-{depth} ({arch_name or shape}, image_size {image_size}, in_channels {in_channels})")
        torchvision_weights.load_fitting(
            model, from_torchvision_keys(state, grouping), family=FAMILY, source=source, describe=describe,
            classifier=("head.heads.head.weight", "head.heads.head.bias"), num_classes=num_classes,
            source_key=lambda key: next(iter(to_torchvision_keys({key: torch.empty(0)}, grouping))),
        )
    return model


# options that only choose the starting weights: left out when a checkpoint supplies them
torchvision_vit.weight_options = ("weights",)
