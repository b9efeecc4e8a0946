"""VDCNN: very deep convolutional networks for text classification (the VDCNN paper, EACL 2017).

Characters are looked up in a 16-dimensional embedding and convolved to 64 channels (the
stem); four sections of convolutional blocks with 64, 128, 256 and 512 filters follow
(the LIT split points); the head keeps the k = 8 largest activations of every channel and
classifies them with three fully connected layers (512 * 8 = 4096 -> 2048 -> 2048 -> classes).

A block is conv3-BN-ReLU-conv3-BN-ReLU, optionally with a shortcut (a 1x1 projection where
the shape changes). The sequence is halved at the start of sections 2-4, so the halving
lives inside `sections[1..3]` and the stem / sections / head contract holds:
  "maxpool"  max-pooling, kernel 3, stride 2 (the paper's best variant, the default)
  "kmax"     k-max pooling keeping half the positions, in order
  "conv"     the first convolution of the section has stride 2

Input: token ids (N, L), for example from `lit.data.text` (ids 0..68, 0 = padding).

As the official LIT code (stanford-futuredata/lit-code, vdcnn/vdcnn.py): a 69-row
embedding (padding, unknown and the 67 symbols of its alphabet) without `padding_idx`, so
padding has its own learned vector; the stem convolution without bias; every convolution
initialised `kaiming_normal_(mode="fan_in")` (gain sqrt(2)); batch norms at weight 1 and
bias 0; embedding and linear layers at PyTorch's defaults. Kept different (README,
"Deviations from the official code"): the optional shortcut projection has a batch norm
after its 1x1 convolution (the official one has none; shortcuts are off in both by
default), and the "kmax" down-sampling keeps ceil(L / 2) positions (the official floor).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit.models.base import Sectioned
from lit.models.registry import register_model

# blocks per section for each depth: 2 convolutions a block, plus the stem's convolution
BLOCKS_PER_DEPTH = {9: (1, 1, 1, 1), 17: (2, 2, 2, 2), 29: (5, 5, 2, 2), 49: (8, 8, 5, 3)}
DOWNSAMPLING = ("maxpool", "kmax", "conv")
# padding, unknown and the 67 symbols of lit.data.text's ALPHABET (the official code's
# vocab_size=69; models do not import data)
DEFAULT_VOCAB_SIZE = 69


def k_max_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest values of each channel along the sequence, kept in their original order."""
    if x.shape[2] < k:
        raise ValueError(
            f"vdcnn: k-max pooling needs at least k={k} positions, the sequence has {x.shape[2]} here; "
            "use longer inputs (max_length) or a smaller k"
        )
    positions = x.topk(k, dim=2).indices.sort(dim=2).values
    return x.gather(2, positions)


class KMaxPool(nn.Module):
    """k-max pooling; `k=None` keeps half of the positions (rounded up), as a down-sampling."""

    def __init__(self, k: int | None) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return k_max_pool(x, self.k if self.k is not None else (x.shape[2] + 1) // 2)


class CharEmbedding(nn.Module):
    """Token ids (N, L) to embedding channels (N, dim, L). No `padding_idx`, as the official
    code: padding (id 0) is a token like any other, with its own learned vector."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.lookup = nn.Embedding(vocab_size, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lookup(tokens).transpose(1, 2)


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, 3, stride, 1, bias=False)  # BN follows: no bias
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.shortcut: nn.Module | None = None
        if shortcut:
            same_shape = stride == 1 and in_channels == out_channels
            self.shortcut = nn.Identity() if same_shape else nn.Sequential(
                nn.Conv1d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm1d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


class VdcnnHead(nn.Module):
    """k-max pooling and three fully connected layers."""

    def __init__(self, channels: int, k: int, fc_width: int, num_classes: int) -> None:
        super().__init__()
        self.pool = KMaxPool(k)
        self.classifier = nn.Sequential(
            nn.Linear(channels * k, fc_width), nn.ReLU(),
            nn.Linear(fc_width, fc_width), nn.ReLU(),
            nn.Linear(fc_width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(x), 1))


def vdcnn_section(
    in_channels: int, width: int, blocks: int, halve: bool, downsample: str, shortcut: bool
) -> nn.Sequential:
    """`blocks` conv blocks to `width` filters, after halving the sequence when `halve`."""
    layers: list[nn.Module] = []
    first_stride = 1
    if halve and downsample == "maxpool":
        layers.append(nn.MaxPool1d(3, 2, 1))
    elif halve and downsample == "kmax":
        layers.append(KMaxPool(None))
    elif halve:
        first_stride = 2
    for index in range(blocks):
        channels = in_channels if index == 0 else width
        layers.append(ConvBlock(channels, width, first_stride if index == 0 else 1, shortcut))
    return nn.Sequential(*layers)


def check_options(depth: int, widths: list[int], downsample: str, k: int) -> None:
    if depth not in BLOCKS_PER_DEPTH:
        allowed = ", ".join(map(str, BLOCKS_PER_DEPTH))
        raise ValueError(f"vdcnn depth must be one of {allowed} (the VDCNN paper, EACL 2017), got {depth!r}")
    if len(widths) != 4:
        raise ValueError(f"vdcnn widths must list 4 section widths (paper: [64, 128, 256, 512]), got {widths!r}")
    if downsample not in DOWNSAMPLING:
        raise ValueError(f"vdcnn downsample must be one of {', '.join(DOWNSAMPLING)}, got {downsample!r}")
    if k < 1:
        raise ValueError(f"vdcnn k (k-max pooling) must be at least 1, got {k!r}")


def init_weights(model: nn.Module) -> None:
    """He initialisation of the convolutions, as the official code: normal, std
    sqrt(2 / fan_in) (its `kaiming_normal_(mode='fan_in')` has the default leaky_relu gain
    with slope 0, i.e. ReLU's sqrt(2)); biases (none by default) 0; batch norms 1 and 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv1d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


# revision 2: the official code's embedding of 69 ids without padding_idx, stem without bias, fan_in init
@register_model("vdcnn")
def vdcnn(
    depth: int,
    in_channels: int | None = None,
    num_classes: int = 5,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    embedding_dim: int = 16,
    widths: tuple[int, ...] | list[int] = (64, 128, 256, 512),
    k: int = 8,
    fc_width: int = 2048,
    shortcut: bool = False,
    downsample: str = "maxpool",
) -> Sectioned:
    """VDCNN of depth 9, 17, 29 or 49.

    `in_channels` is accepted for the engine's uniform call and ignored: for text data the
    engine passes the sequence length (the data's `input_shape[0]`), which the network does
    not need (it takes any length that leaves at least `k` positions after the three
    halvings, 8 * (k - 1) + 1 = 57 characters for k = 8). The vocabulary is `vocab_size`.
    """
    widths = list(widths)
    check_options(depth, widths, downsample, k)
    stem = nn.Sequential(  # the stem convolution has no bias, as the official code
        CharEmbedding(vocab_size, embedding_dim), nn.Conv1d(embedding_dim, widths[0], 3, padding=1, bias=False)
    )
    sections, channels = [], widths[0]
    for index, (width, blocks) in enumerate(zip(widths, BLOCKS_PER_DEPTH[depth])):
        sections.append(vdcnn_section(channels, width, blocks, index > 0, downsample, shortcut))
        channels = width
    model = Sectioned(stem, sections, VdcnnHead(channels, k, fc_width, num_classes))
    init_weights(model)
    return model
