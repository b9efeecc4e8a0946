"""Sectioned model families: sizes from the papers, the section contract LIT relies on."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from lit.evaluate.cost import count_flops, count_parameters
from lit.models import build_model


def resnet_parameters_by_hand(depth: int, in_channels: int = 3, num_classes: int = 10) -> int:
    """The ResNet paper's CIFAR ResNet (option-A shortcuts: no parameters), counted layer by layer."""
    n = (depth - 2) // 6
    conv = lambda cin, cout: 9 * cin * cout  # noqa: E731  (3x3, no bias)
    bn = lambda c: 2 * c  # noqa: E731
    total = conv(in_channels, 16) + bn(16)
    previous = 16
    for width in (16, 32, 64):
        for block in range(n):
            cin = previous if block == 0 else width
            total += conv(cin, width) + bn(width) + conv(width, width) + bn(width)
        previous = width
    return total + 64 * num_classes + num_classes


def resnet_macs_by_hand(depth: int, size: int, in_channels: int = 3, num_classes: int = 10) -> int:
    """Multiply-adds of the convolutions and the classifier on a size x size input."""
    n = (depth - 2) // 6
    macs = size * size * 9 * in_channels * 16
    previous = 16
    for stage, width in enumerate((16, 32, 64)):
        size = size if stage == 0 else (size + 1) // 2
        for block in range(n):
            cin = previous if block == 0 else width
            macs += size * size * 9 * (cin * width + width * width)
        previous = width
    return macs + 64 * num_classes


# ---------------------------------------------------------------- sizes from the ResNet paper (CVPR 2016)


@pytest.mark.parametrize("depth, published_millions, digits", [(20, 0.27, 2), (32, 0.46, 2), (56, 0.85, 2), (110, 1.7, 1)])
def test_resnet_parameter_counts_match_he_et_al(depth, published_millions, digits):
    params = count_parameters(build_model("resnet", depth))
    assert round(params / 1e6, digits) == pytest.approx(published_millions)
    assert params == resnet_parameters_by_hand(depth)


def test_resnet20_forward_flops_are_40_55m_multiply_adds():
    model = build_model("resnet", 20)
    flops = count_flops(model, torch.randn(1, 3, 32, 32))
    assert flops / 2 == pytest.approx(40.55e6, rel=0.005)
    assert flops == 2 * resnet_macs_by_hand(20, 32)


def test_count_flops_counts_a_multiply_add_as_two():
    layer = nn.Linear(10, 5, bias=False)
    assert count_flops(layer, torch.randn(3, 10)) == 2 * 3 * 10 * 5


def test_count_flops_leaves_the_training_mode_as_it_was():
    model = build_model("resnet", 8).train()
    count_flops(model, torch.randn(1, 3, 32, 32))
    assert model.training


# ---------------------------------------------------------------- the section contract

FAMILIES = [("resnet", 8, {}), ("resnet", 14, {}), ("resnext", 11, {}), ("resnext", 20, {"cardinality": 2}),
            ("torchvision_resnet", 10, {"blocks": [1, 1, 1, 1]}), ("torchvision_resnet", 10, {"blocks": [1, 1, 1, 1], "stem": "cifar"}),
            ("torchvision_vit", 4, {"image_size": 16, "patch_size": 4, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32})]


@pytest.mark.parametrize("family, depth, options", FAMILIES)
def test_sections_compose_to_the_forward_pass(family, depth, options):
    torch.manual_seed(0)
    model = build_model(family, depth, in_channels=3, num_classes=7, **options)
    # non-trivial running statistics, so eval mode really differs from fresh batch norms
    with torch.no_grad():
        for _ in range(2):
            model.train()(torch.randn(8, 3, 16, 16) * 2 + 1)
    model.eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
        assert len(feats) == len(model.sections) + 1
        torch.testing.assert_close(feats[0], model.stem(x), rtol=0, atol=0)
        for i, section in enumerate(model.sections):
            torch.testing.assert_close(section(feats[i]), feats[i + 1], rtol=0, atol=0)
        torch.testing.assert_close(model.head(feats[-1]), logits, rtol=0, atol=0)
    assert logits.shape == (4, 7)


@pytest.mark.parametrize("family, teacher_depth, student_depth", [("resnet", 56, 8), ("resnet", 110, 20), ("resnext", 29, 11)])
def test_teacher_and_student_of_one_family_share_sections_and_widths(family, teacher_depth, student_depth):
    teacher, student = build_model(family, teacher_depth), build_model(family, student_depth)
    assert len(teacher.sections) == len(student.sections) == 3
    assert len(teacher.sections[0]) > len(student.sections[0])  # deeper sections, same split points
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        shapes_t = [f.shape for f in teacher.eval().features(x)]
        shapes_s = [f.shape for f in student.eval().features(x)]
    assert shapes_t == shapes_s
    # the student's stem and head can take the teacher's weights (LIT copies them)
    student.stem.load_state_dict(teacher.stem.state_dict())
    student.head.load_state_dict(teacher.head.state_dict())


@pytest.mark.parametrize("family, depth, rule", [("resnet", 21, "6n+2"), ("resnet", 2, "6n+2"), ("resnext", 21, "9n+2"), ("resnext", 14, "9n+2")])
def test_bad_depths_raise_naming_the_rule(family, depth, rule):
    with pytest.raises(ValueError, match=re.escape(f"{family} depth must be {rule}") + f".*got {depth}"):
        build_model(family, depth)


@pytest.mark.parametrize("family, depth, blocks", [("resnet", 8, 1), ("resnet", 20, 3), ("resnext", 11, 1), ("resnext", 29, 3)])
def test_good_depths_give_n_blocks_per_section(family, depth, blocks):
    assert [len(section) for section in build_model(family, depth).sections] == [blocks] * 3


def test_unknown_model_option_names_the_family():
    with pytest.raises(ValueError, match="resnet"):
        build_model("resnet", 8, cardinality=4)


@pytest.mark.parametrize("cardinality", [2, 8])
def test_resnext_has_grouped_convolutions_with_the_configured_cardinality(cardinality):
    depth, bottleneck_width = 20, 4
    model = build_model("resnext", depth, cardinality=cardinality, bottleneck_width=bottleneck_width)
    grouped = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    blocks_per_stage = (depth - 2) // 9
    assert len(grouped) == 3 * blocks_per_stage  # one grouped 3x3 convolution per bottleneck block
    assert all(conv.groups == cardinality and conv.kernel_size == (3, 3) for conv in grouped)
    for stage, section in enumerate(model.sections):
        inner = cardinality * bottleneck_width * 2**stage  # bottleneck width doubles every stage
        for block in section:
            assert block.conv2.groups == cardinality
            assert block.conv2.weight.shape == (inner, inner // cardinality, 3, 3)


def test_resnet_downsampling_shortcuts_have_no_parameters():
    model = build_model("resnet", 8)
    for section in model.sections:
        for block in section:
            assert count_parameters(block.shortcut) == 0
