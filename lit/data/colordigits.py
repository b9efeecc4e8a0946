"""Colour digits: the embedded, offline multi-domain image set for the StarGAN demo and tests.

scikit-learn's bundled 8x8 digits are upscaled (bilinearly) to `image_size` and rendered
in one of several domains. The attributes are a one-hot foreground colour (red, green,
blue) and an `inverted` flag (a white background instead of a black one):

    pixel = background * (1 - ink) + colour * ink,   background = inverted (0 or 1)

so every image belongs to exactly one colour and one background, and translating an image
to other attributes has a deterministic ground truth: the same digit shape (the ink map,
recoverable from any rendering) drawn with the target colour and background. A generator
must keep the shape and change only what the target label asks for, as in CelebA hair
colour or gender translation. `translate_ground_truth` computes that target image.

Domains are assigned to the images by a fixed seed (`split_seed`), which also draws the
stratified test split; labels are float (N, 4) attribute vectors in {0, 1}.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from lit.data.base import Augment, RawData, Split, register_dataset, stratified_holdout

COLOUR_NAMES = ("red", "green", "blue")  # mutually exclusive attributes (one-hot)
ATTRIBUTE_NAMES = (*COLOUR_NAMES, "inverted")
COLOURS = torch.eye(3)  # the foreground colour of each colour attribute, RGB on the 0..1 scale


def render_color_digits(ink: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, S, S) images of ink maps (N, 1, S, S) in [0, 1] drawn in the domains of
    `labels` (N, 4): colour = the one-hot colour attributes, background = `inverted`."""
    colour = (labels[:, : len(COLOUR_NAMES)].float() @ COLOURS)[:, :, None, None]
    background = labels[:, len(COLOUR_NAMES)].float()[:, None, None, None]
    pixels = background * (1.0 - ink) + colour * ink
    return pixels.mul(255.0).round().clamp(0, 255).to(torch.uint8)


def ink_of(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The ink map (N, 1, S, S) of rendered images: the brightest channel on black, one
    minus the darkest channel on white (the non-colour channels carry 1 - ink there)."""
    pixels = images.float() / 255.0
    inverted = labels[:, len(COLOUR_NAMES)].bool()[:, None, None, None]
    on_black = pixels.amax(dim=1, keepdim=True)
    on_white = 1.0 - pixels.amin(dim=1, keepdim=True)
    return torch.where(inverted, on_white, on_black)


def translate_ground_truth(images: torch.Tensor, source_labels: torch.Tensor, target_labels: torch.Tensor) -> torch.Tensor:
    """The exact translation of rendered images from their domains to `target_labels`."""
    return render_color_digits(ink_of(images, source_labels), target_labels)


def random_domains(count: int, seed: int) -> torch.Tensor:
    """Float (count, 4) labels: a uniformly drawn colour (one-hot) and a fair-coin `inverted`."""
    generator = torch.Generator().manual_seed(seed)
    colour = torch.randint(0, len(COLOUR_NAMES), (count,), generator=generator)
    inverted = torch.rand(count, generator=generator) < 0.5
    return torch.cat([F.one_hot(colour, len(COLOUR_NAMES)).float(), inverted.float()[:, None]], dim=1)


@register_dataset("color_digits")
def color_digits(
    root: Path, download: bool = False, image_size: int = 16, test_fraction: float = 0.2, split_seed: int = 0
) -> RawData:
    """Offline anywhere (the digits ship with scikit-learn); `root` and `download` are unused."""
    from lit.data.digits import read_bundled_digits

    if image_size < 8:
        raise ValueError(f"color_digits image_size must be at least the digits' 8 pixels, got {image_size}")
    pixels, target = read_bundled_digits()
    ink = torch.from_numpy(pixels.reshape(-1, 8, 8)).float().div(16.0).unsqueeze(1)  # pixel values are 0..16
    ink = F.interpolate(ink, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
    labels = random_domains(len(ink), split_seed)
    images = render_color_digits(ink, labels)
    # stratify by digit, so both splits hold every digit in its proportion
    train_idx, test_idx = stratified_holdout(torch.from_numpy(target).long(), test_fraction, split_seed)
    return RawData(
        train=Split(images[train_idx], labels[train_idx]),
        test=Split(images[test_idx], labels[test_idx]),
        num_classes=len(ATTRIBUTE_NAMES),
        augment=Augment(crop_padding=0, flip=False),  # a flipped digit is another symbol
        class_names=list(ATTRIBUTE_NAMES),
    )
