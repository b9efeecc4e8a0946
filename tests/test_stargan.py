"""The StarGAN generator and discriminator, and the multi-domain data sets they train on."""

from __future__ import annotations

import pytest
import torch

from lit.data import build_data
from lit.data.colordigits import ATTRIBUTE_NAMES, translate_ground_truth
from lit.models import build_model
from lit.models.stargan import StarGANDiscriminator, StarGANGenerator, tile_label
from _fixtures_gan import CELEBA_ATTRIBUTES, write_fake_celeba


def small_generator(repeat_num: int = 4, num_sections: int = 2, c_dim: int = 5) -> StarGANGenerator:
    torch.manual_seed(0)
    return StarGANGenerator(repeat_num=repeat_num, conv_dim=8, c_dim=c_dim, num_sections=num_sections)


def random_batch(count: int = 2, size: int = 16, c_dim: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(count, 3, size, size, generator=generator) * 2 - 1
    labels = (torch.rand(count, c_dim, generator=generator) < 0.5).float()
    return images, labels


def test_generator_translates_to_an_image_of_the_same_shape_in_tanh_range():
    generator = small_generator()
    images, labels = random_batch(size=24)
    out = generator(images, labels)
    assert out.shape == images.shape
    assert out.abs().max() <= 1.0 and out.std() > 0


def test_features_compose_sections_and_head():
    generator = small_generator(repeat_num=4, num_sections=2)
    images, labels = random_batch()
    feats = generator.features(images, labels)
    assert len(feats) == 3
    assert feats[0].shape == (2, 32, 4, 4)  # 4 * conv_dim channels at a quarter of the size
    for index, section in enumerate(generator.sections):
        assert torch.equal(section(feats[index]), feats[index + 1])
    assert torch.equal(generator.head(feats[-1]), generator(images, labels))
    assert torch.equal(generator.stem(tile_label(images, labels)), feats[0])


def test_blocks_split_into_consecutive_sections():
    assert [len(s) for s in small_generator(repeat_num=6, num_sections=2).sections] == [3, 3]
    assert [len(s) for s in small_generator(repeat_num=5, num_sections=2).sections] == [3, 2]
    assert [len(s) for s in small_generator(repeat_num=2, num_sections=1).sections] == [2]
    with pytest.raises(ValueError, match="num_sections"):
        small_generator(repeat_num=2, num_sections=3)


def test_label_is_tiled_over_the_image_and_steers_the_output():
    images, labels = random_batch()
    tiled = tile_label(images, labels)
    assert tiled.shape == (2, 8, 16, 16)
    assert torch.equal(tiled[:, :3], images)
    assert torch.equal(tiled[:, 3:], labels[:, :, None, None].expand(-1, -1, 16, 16))
    generator = small_generator()
    assert not torch.allclose(generator(images, labels), generator(images, 1.0 - labels))


def conv_params(c_in: int, c_out: int, kernel: int) -> int:
    return c_in * c_out * kernel * kernel  # every generator conv is bias-free


@pytest.mark.parametrize("repeat_num", [6, 2])
def test_parameter_count_of_the_paper_configuration(repeat_num):
    """conv_dim 64, c_dim 5: counted by hand from the architecture (IN: 2 per channel)."""
    stem = conv_params(3 + 5, 64, 7) + 2 * 64 + conv_params(64, 128, 4) + 2 * 128 + conv_params(128, 256, 4) + 2 * 256
    block = 2 * (conv_params(256, 256, 3) + 2 * 256)
    head = conv_params(256, 128, 4) + 2 * 128 + conv_params(128, 64, 4) + 2 * 64 + conv_params(64, 3, 7)
    expected = stem + repeat_num * block + head
    model = build_model("stargan", repeat_num, in_channels=3, num_classes=5)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert expected == {6: 8_430_528, 2: 3_707_840}[repeat_num]  # StarGAN's well-known 8.43M


def test_registered_family_builds_the_generator_with_its_options():
    model = build_model("stargan", 3, in_channels=1, num_classes=4, conv_dim=8, num_sections=3)
    assert isinstance(model, StarGANGenerator) and model.c_dim == 4 and len(model.sections) == 3
    out = model(torch.zeros(1, 1, 8, 8), torch.ones(1, 4))
    assert out.shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match="stargan"):
        build_model("stargan", 2, widths=(1, 2))


@pytest.mark.parametrize("image_size, repeat_num, final", [(128, None, 2), (16, None, 2), (32, 3, 4)])
def test_discriminator_outputs_a_patch_map_and_domain_logits(image_size, repeat_num, final):
    discriminator = StarGANDiscriminator(image_size=image_size, conv_dim=4, c_dim=5, repeat_num=repeat_num)
    critic, logits = discriminator(torch.zeros(3, 3, image_size, image_size))
    assert critic.shape == (3, 1, final, final)
    assert logits.shape == (3, 5)


def test_discriminator_depth_follows_the_image_size():
    layers = lambda d: sum(isinstance(m, torch.nn.Conv2d) for m in d.main)  # noqa: E731
    assert layers(StarGANDiscriminator(image_size=128, conv_dim=2)) == 6  # the paper's CelebA setting
    assert layers(StarGANDiscriminator(image_size=16, conv_dim=2)) == 3
    with pytest.raises(ValueError, match="power-of-two"):
        StarGANDiscriminator(image_size=24)


# ----------------------------------------------------------------------------- data


def test_color_digits_are_rendered_domains_with_an_exact_translation():
    data = build_data("color_digits", val_fraction=0.0, image_size=16)
    images, labels = data.test.inputs, data.test.labels
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 16, 16)
    assert labels.dtype == torch.float32 and labels.shape[1] == len(ATTRIBUTE_NAMES) == data.num_classes
    assert torch.equal(labels[:, :3].sum(1), torch.ones(len(labels)))  # exactly one colour
    assert 0.3 < labels[:, 3].mean() < 0.7  # both backgrounds are common
    assert torch.equal(translate_ground_truth(images, labels, labels), images)
    black_background = labels[:, 3] == 0
    to_green = labels.clone()
    to_green[:, :3] = torch.tensor([0.0, 1.0, 0.0])
    green = translate_ground_truth(images, labels, to_green)
    assert green[black_background][:, [0, 2]].max() == 0  # only the green channel carries ink
    assert torch.equal(green[black_background][:, 1], images[black_background].amax(1))


def test_celeba_reads_the_official_files_and_caches_decoded_tensors(tmp_path):
    signs = write_fake_celeba(tmp_path, partitions=(0, 0, 0, 1, 2, 2))
    chosen = ["Black_Hair", "Male", "Young"]
    raw = build_data("celeba", root=tmp_path, val_fraction=0.0, attributes=chosen, image_size=32)
    columns = [CELEBA_ATTRIBUTES.index(a) for a in chosen]
    assert raw.train.inputs.shape == (3, 3, 32, 32) and raw.test.inputs.shape == (2, 3, 32, 32)
    assert torch.equal(raw.train.labels, torch.from_numpy(signs[:3, columns] > 0).float())
    assert torch.equal(raw.test.labels, torch.from_numpy(signs[4:, columns] > 0).float())
    assert raw.augment.flip and raw.class_names == chosen
    # the 178 px centre crop drops the 20 dark rows at the top and bottom of the 218 px image
    assert raw.train.inputs[1, :, 0].float().mean() > 30
    assert (tmp_path / "celeba" / "lit_cache").is_dir()
    for image in (tmp_path / "celeba" / "img_align_celeba").iterdir():
        image.unlink()  # the second load must come from the cache
    again = build_data("celeba", root=tmp_path, val_fraction=0.0, attributes=chosen, image_size=32)
    assert torch.equal(again.train.inputs, raw.train.inputs)


def test_celeba_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="CelebA is missing .*list_attr_celeba.txt.*mmlab"):
        build_data("celeba", root=tmp_path)
    write_fake_celeba(tmp_path)
    with pytest.raises(ValueError, match="Purple_Hair"):
        build_data("celeba", root=tmp_path, attributes=["Purple_Hair"], image_size=8)
