"""The `torchvision_vit` family: torchvision's VisionTransformer under the section contract,
plain torchvision checkpoints, torchvision's weights by name (offline) and a tiny LIT run."""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch
import torchvision
from torch import nn

from conftest import digits_config
from lit.models import build_model
from lit.models.io import load_model, model_spec, save_model
from lit.models.torchvision_vit import ARCHITECTURES, from_torchvision_keys, to_torchvision_keys

FAMILY = "torchvision_vit"
TINY = {"image_size": 32, "patch_size": 8, "num_heads": 2, "hidden_dim": 32, "mlp_dim": 64}


def plain_vit(num_layers: int = 4, num_classes: int = 10, image_size: int = 32) -> nn.Module:
    """A plain torchvision VisionTransformer (its classifier is zero-initialised: make it not)."""
    torch.manual_seed(1)
    model = torchvision.models.VisionTransformer(image_size, 8, num_layers, 2, 32, 64, num_classes=num_classes)
    nn.init.normal_(model.heads.head.weight, std=0.1)
    nn.init.normal_(model.heads.head.bias, std=0.1)
    return model.eval()


def test_architecture_table_is_torchvisions(monkeypatch):
    def capture(patch_size, num_layers, num_heads, hidden_dim, mlp_dim, weights, progress, **kwargs):
        return patch_size, num_layers, num_heads, hidden_dim, mlp_dim

    monkeypatch.setattr(torchvision.models.vision_transformer, "_vision_transformer", capture)
    for name, (shape, layers) in ARCHITECTURES.items():
        assert getattr(torchvision.models, name)() == (shape.patch_size, layers, shape.num_heads, shape.hidden_dim, shape.mlp_dim), name


@pytest.mark.parametrize("depth, options, per_section", [
    (8, {}, [2, 2, 2, 2]),
    (6, {}, [2, 2, 1, 1]),
    (6, {"sections": 3}, [2, 2, 2]),
    (5, {"blocks": [1, 3, 1]}, [1, 3, 1]),
])
def test_depth_is_the_encoder_blocks_grouped_into_sections(depth, options, per_section):
    model = build_model(FAMILY, depth, **TINY, **options)
    assert [len(section) for section in model.sections] == per_section


def test_sections_compose_to_torchvisions_forward():
    reference = plain_vit(num_layers=6)
    model = build_model(FAMILY, 6, **TINY, blocks=[1, 2, 3]).eval()
    model.load_state_dict(from_torchvision_keys(reference.state_dict(), [1, 2, 3]))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        feats = model.features(x)
        assert [f.shape for f in feats] == [(3, 17, 32)] * 4
        for i, section in enumerate(model.sections):
            torch.testing.assert_close(section(feats[i]), feats[i + 1], rtol=0, atol=0)
        torch.testing.assert_close(model.head(feats[-1]), model(x), rtol=0, atol=0)
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    assert to_torchvision_keys(model.state_dict(), [1, 2, 3]).keys() == reference.state_dict().keys()


def test_teacher_and_student_sections_meet_at_every_boundary():
    teacher = build_model(FAMILY, 12, **TINY, num_classes=7).eval()
    student = build_model(FAMILY, 4, **TINY, num_classes=7).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        t_feats = teacher.features(x)
        assert [f.shape for f in t_feats] == [f.shape for f in student.features(x)]
        for i, section in enumerate(student.sections):
            assert section(t_feats[i]).shape == t_feats[i + 1].shape
    student.stem.load_state_dict(teacher.stem.state_dict())
    student.head.load_state_dict(teacher.head.state_dict())


def test_flops_count_the_attention():
    """Multiply-adds by hand: per block the q/k/v and output projections, the scores and
    their weighted sum over 17 tokens, and the MLP; plus the patch embedding and classifier.
    (The fused attention kernels count as nothing in PyTorch's counter: `count_flops` avoids them.)"""
    from lit.evaluate.cost import count_flops

    model = build_model(FAMILY, 4, **TINY)
    tokens, d, mlp = 17, 32, 64
    per_block = tokens * d * 3 * d + 2 * tokens * tokens * d + tokens * d * d + 2 * tokens * d * mlp
    macs = 4 * per_block + 16 * (3 * 8 * 8) * d + d * 10
    assert count_flops(model, torch.randn(1, 3, 32, 32)) == 2 * macs
    assert torch.backends.mha.get_fastpath_enabled()  # left as it was


@pytest.mark.parametrize("legacy_mlp_names", [False, True])
def test_a_plain_torchvision_state_dict_gives_identical_logits(tmp_path, legacy_mlp_names):
    reference = plain_vit()
    state = reference.state_dict()
    if legacy_mlp_names:  # checkpoints from before torchvision's MLPBlock version 2
        state = {k.replace("mlp.0.", "mlp.linear_1.").replace("mlp.3.", "mlp.linear_2."): v for k, v in state.items()}
    torch.save(state, tmp_path / "vit.pth")
    model = build_model(FAMILY, 4, **TINY, weights=str(tmp_path / "vit.pth")).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_another_num_classes_replaces_the_head_and_another_image_size_interpolates(tmp_path, caplog):
    from torchvision.models.vision_transformer import interpolate_embeddings

    reference = plain_vit()
    torch.save(reference.state_dict(), tmp_path / "vit.pth")
    with caplog.at_level(logging.WARNING, logger="lit.models.torchvision_weights"):
        model = build_model(FAMILY, 4, **{**TINY, "image_size": 16}, num_classes=3, weights=str(tmp_path / "vit.pth"))
    assert "10-class classifier" in caplog.text and "num_classes=3" in caplog.text and "heads.head.weight" in caplog.text
    assert "4x4 patches" in caplog.text and "interpolate" in caplog.text
    assert model.head.heads.head.weight.shape == (3, 32)
    expected = interpolate_embeddings(16, 8, reference.state_dict())["encoder.pos_embedding"]
    torch.testing.assert_close(model.stem.pos_embedding.detach(), expected, rtol=0, atol=0)
    torch.testing.assert_close(model.sections[0][0].mlp[0].weight.detach(), reference.encoder.layers[0].mlp[0].weight, rtol=0, atol=0)
    assert model.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 3)


def test_save_and_load_round_trip_from_the_spec_without_the_weights_file(tmp_path):
    torch.save(plain_vit().state_dict(), tmp_path / "vit.pth")
    options = {"in_channels": 3, "num_classes": 10, **TINY, "sections": 2, "weights": str(tmp_path / "vit.pth")}
    model = build_model(FAMILY, 4, **options).eval()
    save_model(model, model_spec(FAMILY, 4, options), tmp_path / "model.pt")
    (tmp_path / "vit.pth").unlink()
    loaded, _ = load_model(tmp_path / "model.pt")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x), rtol=0, atol=0)


def test_weights_by_name_ask_torchvision_for_the_archs_weights(monkeypatch):
    from torchvision.models import ViT_B_32_Weights

    from lit.models import torchvision_weights

    asked = []
    monkeypatch.setattr(torchvision_weights, "download", lambda member: asked.append(member) or {})
    with pytest.raises(ValueError, match="missing class_token"):  # the empty state dict
        build_model(FAMILY, 12, arch="vit_b_32", image_size=32, weights="IMAGENET1K_V1")
    assert asked == [ViT_B_32_Weights.IMAGENET1K_V1]


@pytest.mark.parametrize("depth, options, message", [
    (4, {"patch": 8}, "torchvision_vit.*patch"),
    (4, {**TINY, "num_heads": 3}, r"option 'hidden_dim' \(32\) must be a multiple of option 'num_heads' \(3\)"),
    (4, {**TINY, "image_size": 30}, r"option 'image_size' \(30\) must be a multiple of the patch size \(8\)"),
    (4, {**TINY, "sections": 5}, r"depth \(encoder blocks\) must be at least option 'sections' \(5\), got 4"),
    (4, {**TINY, "blocks": [1, 1]}, r"depth must be the number of encoder blocks, sum of blocks \[1, 1\] = 2, got 4"),
    (4, {**TINY, "blocks": [2, 2], "sections": 2}, "option 'blocks' and option 'sections' both give the grouping"),
    (6, {"arch": "vit_b_16"}, "depth must be the number of encoder blocks, 12 for arch vit_b_16, got 6"),
    (12, {"arch": "vit_b_16", "hidden_dim": 32}, r"option 'arch' \(vit_b_16\) fixes .*drop hidden_dim"),
    (12, {"arch": "vit_s_16"}, "option 'arch' must be one of vit_b_16"),
    (4, {**TINY, "dropout": 1.5}, r"option 'dropout' must be a number in \[0, 1\)"),
    (4, {**TINY, "weights": "IMAGENET1K_V1"}, "exist only for torchvision's architectures"),
])
def test_bad_options_raise_naming_the_option(depth, options, message):
    with pytest.raises(ValueError, match=message):
        build_model(FAMILY, depth, **options)


def test_a_wrong_image_size_at_run_time_names_the_option():
    model = build_model(FAMILY, 4, **TINY)
    with pytest.raises(ValueError, match=re.escape("expects 32x32 images (option image_size), got 16x16")):
        model(torch.randn(1, 3, 16, 16))


def test_weights_that_do_not_fit_name_the_layers(tmp_path):
    torch.save(plain_vit(num_layers=4).state_dict(), tmp_path / "vit.pth")
    with pytest.raises(ValueError, match=r"does not fit torchvision_vit-6.*missing encoder.layers.encoder_layer_4"):
        build_model(FAMILY, 6, **TINY, weights=str(tmp_path / "vit.pth"))
    with pytest.raises(ValueError, match=r"unexpected encoder.layers.encoder_layer_2"):
        build_model(FAMILY, 2, **TINY, sections=2, weights=str(tmp_path / "vit.pth"))


def test_lit_trains_a_vit_student_from_a_vit_teacher(tmp_path):
    from lit.engine.trainer import train

    common = ("model.family=torchvision_vit", "train.precision=fp32", "data.options.test_fraction=0.7",
              "model.options={image_size: 8, patch_size: 2, num_heads: 2, hidden_dim: 32, mlp_dim: 64}")
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    train(digits_config(*common, "model.depth=8", "method.name=scratch", "train.phases.train={epochs: 1, lr: 0.05}"), teacher_dir)
    train(digits_config(*common, "model.depth=4", "method.name=lit", f"method.teacher={teacher_dir}",
                        "train.phases.lit={epochs: 1, lr: 0.05}", "train.phases.finetune={epochs: 1, lr: 0.01}"), student_dir)
    student, state = load_model(student_dir, "last")
    assert state["spec"]["family"] == FAMILY and [len(s) for s in student.sections] == [1, 1, 1, 1]
    first = json.loads((student_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert first["phase"] == "lit"
    assert all(torch.isfinite(torch.tensor(first[f"loss_mse_section{i}"])) for i in range(4))
