"""FID: our features and distance against pytorch-fid's path on the same weights.

Inception runs at 299 px whatever the input size (about 0.1 s an image on 2 CPU cores),
so the sets are small and every feature set is computed once per module.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lit.evaluate.fid import fid, fid_features, frechet_distance_of_features, target_labels, to_unit_range
from _fixtures_gan_fid import reference_distance, reference_features_of, reference_inception



COUNT, SIZE = 8, 32


def smooth_images(seed: int) -> torch.Tensor:
    """uint8 images of smooth random colour fields (upsampled 4x4 noise): photo-like statistics."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(COUNT, 3, 4, 4, generator=generator)
    return (
        F.interpolate(coarse, size=(SIZE, SIZE), mode="bicubic", align_corners=False).clamp(0, 1).mul(255).round().to(torch.uint8)
    )


@pytest.fixture(scope="session")  # built once per worker, which may run other modules in between
def real_images() -> torch.Tensor:
    return smooth_images(0)


@pytest.fixture(scope="session")  # built once per worker, which may run other modules in between
def fake_images(real_images) -> torch.Tensor:
    """Generator-range floats in [-1, 1]: the real images, noisier and slightly brighter."""
    generator = torch.Generator().manual_seed(1)
    noisy = real_images.float() / 127.5 - 1.0 + 0.15 + 0.2 * torch.randn(real_images.shape, generator=generator)
    return noisy.clamp(-1.2, 1.2)  # past the tanh range on purpose: clamping is part of the mapping


@pytest.fixture(scope="session")  # built once per worker, which may run other modules in between
def real_features(real_images) -> np.ndarray:
    return fid_features(real_images, batch_size=COUNT)


def test_fid_of_a_set_with_itself_is_zero(real_features):
    assert real_features.shape == (COUNT, 2048) and real_features.dtype == np.float64
    assert abs(frechet_distance_of_features(real_features, real_features)) < 1e-3


@pytest.fixture(scope="session")  # built once per worker, which may run other modules in between
def reference_features(real_images, fake_images) -> tuple[np.ndarray, np.ndarray]:
    """pytorch-fid's InceptionV3 (its graph, resize and input scaling) with the shipped
    network's weights transplanted into it, on the same images on the 0..1 scale."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        network = reference_inception(monkeypatch)
    return reference_features_of(network, real_images.float() / 255.0), reference_features_of(
        network, ((fake_images + 1) / 2).clamp(0, 1)
    )


def test_fid_matches_pytorch_fid_on_the_same_weights(real_images, fake_images, real_features, reference_features):
    reference_real, reference_fake = reference_features
    assert np.abs(real_features - reference_real).max() < 1e-3 * np.abs(reference_real).max()
    ours = fid(real_images, fake_images, batch_size=COUNT)
    reference = reference_distance(reference_real, reference_fake)
    assert ours > 1.0
    assert abs(ours - reference) / reference < 1e-3


def test_joint_span_distance_equals_pytorch_fid_full_distance():
    """The fast path for small sets against pytorch-fid's statistics and distance in full
    dimension (here 300-d; with the features equal to pytorch-fid's, above, this is its
    whole path without a 2048-d matrix square root, which took 30 s of the suite)."""
    rng = np.random.default_rng(0)
    real, fake = rng.normal(1.0, 2.0, (COUNT, 300)), rng.normal(0.0, 1.5, (COUNT + 3, 300))
    full = reference_distance(real, fake, full_dimension=True)
    assert abs(frechet_distance_of_features(real, fake) - full) / full < 1e-6


def test_generator_range_maps_minus_one_to_black_not_clipped():
    generated = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, -1.5, 1.5])
    assert torch.allclose(to_unit_range(generated), torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 0.0, 1.0]))
    assert torch.equal(to_unit_range(torch.tensor([0, 255], dtype=torch.uint8)), torch.tensor([0.0, 1.0]))
    black_floats = torch.full((2, 3, 8, 8), -1.0)
    dark_grey_floats = torch.full((2, 3, 8, 8), -0.5)  # a wrong clip to [0, 1] would make this black too
    black_uint8 = torch.zeros((2, 3, 8, 8), dtype=torch.uint8)
    features = fid_features(torch.cat([black_floats, dark_grey_floats]), batch_size=4)
    assert np.array_equal(features[:2], fid_features(black_uint8, batch_size=2))
    assert not np.allclose(features[:2], features[2:])


def test_clearly_different_sets_are_far_apart(real_features):
    generator = torch.Generator().manual_seed(2)
    checkerboards = torch.zeros(COUNT, 3, SIZE, SIZE, dtype=torch.uint8)
    checkerboards[:, :, ::2, ::2] = checkerboards[:, :, 1::2, 1::2] = 255
    checkerboards[:, 0] = torch.randint(0, 256, (COUNT, 1, 1), generator=generator, dtype=torch.uint8)
    different = frechet_distance_of_features(real_features, fid_features(checkerboards, batch_size=COUNT))
    assert different > 100.0


def test_targets_follow_stargan_rule_one_hot_group_and_flips():
    labels = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0]])  # black hair, male, old
    targets = target_labels(labels, exclusive=[0, 1, 2])
    expected = [[1, 0, 0, 1, 0], [0, 1, 0, 1, 0], [0, 0, 1, 1, 0], [1, 0, 0, 0, 0], [1, 0, 0, 1, 1]]
    assert torch.equal(torch.cat(targets), torch.tensor(expected, dtype=torch.float32))
    assert torch.equal(
        torch.cat(target_labels(labels)),
        torch.tensor([[0, 0, 0, 1, 0], [1, 1, 0, 1, 0], [1, 0, 1, 1, 0], [1, 0, 0, 0, 0], [1, 0, 0, 1, 1]], dtype=torch.float32),
    )
