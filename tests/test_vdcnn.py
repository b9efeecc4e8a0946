"""VDCNN: the paper's architecture (parameter counts from its description), the sectioned
contract LIT relies on, and the down-sampling variants."""

from __future__ import annotations

import pytest
import torch

from lit.data.text import VOCAB_SIZE
from lit.models import build_model
from lit.models.vdcnn import DEFAULT_VOCAB_SIZE

SMALL = dict(widths=[16, 32, 64, 128], fc_width=64, embedding_dim=8)


def paper_parameter_count(blocks: tuple[int, ...], classes: int, shortcut: bool = False) -> int:
    """Count by hand from the VDCNN paper (EACL 2017) as the official LIT code builds it:
    69-token embedding of 16 dims; a width-3 convolution 16 -> 64 without bias; per block two
    width-3 convolutions without bias (BN follows), each followed by a batch norm (scale and
    shift); the head's three linear layers 512*8 -> 2048 -> 2048 -> classes with biases."""
    vocab, embed, widths, fc, k = 69, 16, [64, 128, 256, 512], 2048, 8
    total = vocab * embed + embed * widths[0] * 3
    channels = widths[0]
    for width, count in zip(widths, blocks):
        for _ in range(count):
            total += 3 * channels * width + 2 * width + 3 * width * width + 2 * width
            if shortcut and channels != width:  # 1x1 projection and its batch norm
                total += channels * width + 2 * width
            channels = width
    total += (widths[-1] * k) * fc + fc + fc * fc + fc + fc * classes + classes
    return total


PAPER_BLOCKS = [(9, (1, 1, 1, 1)), (17, (2, 2, 2, 2)), (29, (5, 5, 2, 2)), (49, (8, 8, 5, 3))]  # Table 2 of the paper


@pytest.mark.parametrize("depth, blocks", PAPER_BLOCKS)
def test_parameter_count_matches_the_paper_architecture(depth, blocks):
    model = build_model("vdcnn", depth, num_classes=5)
    assert sum(p.numel() for p in model.parameters()) == paper_parameter_count(blocks, 5)
    with_shortcuts = build_model("vdcnn", depth, num_classes=2, shortcut=True)
    assert sum(p.numel() for p in with_shortcuts.parameters()) == paper_parameter_count(blocks, 2, shortcut=True)


def test_depth_counts_convolutions():
    """Depth = the stem's convolution plus two per block."""
    for depth in (9, 17, 29, 49):
        model = build_model("vdcnn", depth, **SMALL)
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
        assert len(convs) == depth


def test_vocabulary_matches_the_text_encoding():
    assert DEFAULT_VOCAB_SIZE == VOCAB_SIZE


@pytest.mark.parametrize("downsample", ["maxpool", "kmax", "conv"])
@pytest.mark.parametrize("shortcut", [False, True])
def test_sections_compose_and_head_gives_forward(downsample, shortcut):
    torch.manual_seed(0)
    model = build_model("vdcnn", 17, num_classes=3, downsample=downsample, shortcut=shortcut, **SMALL).eval()
    tokens = torch.randint(0, VOCAB_SIZE, (4, 128))
    feats = model.features(tokens)
    assert len(feats) == 5
    with torch.no_grad():
        for index, section in enumerate(model.sections):
            torch.testing.assert_close(section(feats[index]), feats[index + 1])
        torch.testing.assert_close(model.head(feats[-1]), model(tokens))


@pytest.mark.parametrize("downsample", ["maxpool", "kmax", "conv"])
def test_shapes_halve_in_sections_two_to_four(downsample):
    model = build_model("vdcnn", 9, num_classes=5, downsample=downsample, **SMALL)
    feats = model.features(torch.randint(0, VOCAB_SIZE, (2, 101)))
    # 101 positions, halved (rounded up) at the start of sections 2, 3 and 4
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 101), (16, 101), (32, 51), (64, 26), (128, 13)]
    assert model(torch.randint(0, VOCAB_SIZE, (2, 101))).shape == (2, 5)


def test_paper_configuration_on_1014_characters():
    model = build_model("vdcnn", 9, in_channels=1014, num_classes=2).eval()
    with torch.no_grad():
        feats = model.features(torch.randint(0, VOCAB_SIZE, (1, 1014)))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 1014), (64, 1014), (128, 507), (256, 254), (512, 127)]
    assert model.head(feats[-1]).shape == (1, 2)


def test_k_max_pooling_keeps_the_largest_values_in_order():
    from lit.models.vdcnn import k_max_pool

    values = torch.tensor([[[3.0, 9.0, 1.0, 7.0, 8.0, 2.0]]])
    assert k_max_pool(values, 3).tolist() == [[[9.0, 7.0, 8.0]]]


def test_padding_has_its_own_learned_embedding_and_the_stem_conv_no_bias_as_the_official_code():
    model = build_model("vdcnn", 9, **SMALL)
    assert model.stem[0].lookup.padding_idx is None
    embedded = model.stem[0](torch.zeros(1, 5, dtype=torch.long))
    assert torch.count_nonzero(embedded) == embedded.numel()  # N(0, 1) like every other row
    assert model.stem[1].bias is None
    assert model.stem[0].lookup.num_embeddings == DEFAULT_VOCAB_SIZE == 69


def test_convolutions_are_he_initialised_on_fan_in_as_the_official_code():
    """kaiming_normal_(mode='fan_in'): std sqrt(2 / (in_channels * kernel)); fan_out would give
    a different std wherever in and out widths differ."""
    torch.manual_seed(0)
    model = build_model("vdcnn", 9)  # the paper's widths: enough weights for a tight estimate
    checked = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Conv1d) and module.weight.numel() >= 10_000:
            fan_in = module.weight.shape[1] * module.weight.shape[2]
            expected = (2.0 / fan_in) ** 0.5
            assert module.weight.std().item() == pytest.approx(expected, rel=0.05), module
            checked += 1
    assert checked >= 4
    stem = model.stem[1]  # 16 -> 64 channels: fan_in 48 and fan_out 192 differ by 4x
    assert stem.weight.std().item() == pytest.approx((2.0 / 48) ** 0.5, rel=0.1)


def test_too_short_input_names_k():
    model = build_model("vdcnn", 9, **SMALL)
    with pytest.raises(ValueError, match="k=8"):
        model(torch.randint(0, VOCAB_SIZE, (2, 40)))


def test_bad_options_are_named():
    with pytest.raises(ValueError, match=r"9, 17, 29, 49.*got 10"):
        build_model("vdcnn", 10)
    with pytest.raises(ValueError, match="downsample"):
        build_model("vdcnn", 9, downsample="avgpool")
    with pytest.raises(ValueError, match="widths"):
        build_model("vdcnn", 9, widths=[16, 32, 64])
    with pytest.raises(ValueError, match="vdcnn"):
        build_model("vdcnn", 9, dropout=0.5)


def test_every_parameter_gets_a_gradient_the_padding_embedding_included():
    torch.manual_seed(0)
    model = build_model("vdcnn", 9, num_classes=2, shortcut=True, **SMALL)
    tokens = torch.randint(1, VOCAB_SIZE, (4, 80))
    tokens[:, 60:] = 0  # padded tail
    torch.nn.functional.cross_entropy(model(tokens), torch.tensor([0, 1, 0, 1])).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    embedding = model.stem[0].lookup.weight.grad
    assert torch.count_nonzero(embedding[0]) > 0  # no padding_idx: padding learns, as the official code
