"""The frozen teacher's fast path: batch norm folded into its convolutions, same outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit.engine.frozen import freeze_for_inference
from lit.models import build_model

FAMILIES = [
    ("resnet", 14, {"num_classes": 10}, (4, 3, 16, 16)),
    ("resnext", 11, {"num_classes": 10}, (4, 3, 16, 16)),
    ("vdcnn", 9, {"num_classes": 3, "vocab_size": 20, "widths": [8, 16, 16, 16], "fc_width": 16}, None),
]


def trained_looking(model: nn.Module) -> nn.Module:
    """Batch norms with running statistics and affine weights far from their initial values,
    so that a wrong fold could not hide behind identity statistics."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
    return model.eval().requires_grad_(False)


def sample_inputs(family, shape):
    if family == "vdcnn":
        return torch.randint(0, 20, (4, 120))
    return torch.randn(shape)


@pytest.mark.parametrize("family,depth,options,shape", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_folded_teacher_gives_the_same_features_and_logits_without_batch_norm(family, depth, options, shape):
    torch.manual_seed(0)
    teacher = trained_looking(build_model(family, depth, **options))
    inputs = sample_inputs(family, shape)
    with torch.no_grad():
        expected_feats, expected_logits = teacher.features(inputs), teacher(inputs)
        folded = freeze_for_inference(teacher)
        feats, logits = folded.features(inputs), folded(inputs)

    assert folded is teacher  # folded in place: a method holding the teacher sees the fast path
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    assert len(feats) == len(expected_feats)
    for got, want in zip([*feats, logits], [*expected_feats, expected_logits]):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_only_a_frozen_teacher_can_be_folded():
    model = build_model("resnet", 8, num_classes=10)
    with pytest.raises(ValueError, match="frozen teacher"):
        freeze_for_inference(model.eval())  # parameters still train
    with pytest.raises(ValueError, match="frozen teacher"):
        freeze_for_inference(model.train().requires_grad_(False))  # training mode


def test_the_engine_folds_the_teacher_after_lit_copied_its_stem_and_head(digits_teacher, tmp_path):
    from lit.config import from_dict
    from lit.models.io import load_model
    from lit.engine.trainer import Trainer

    cfg = from_dict({
        "data": {"name": "digits"}, "model": {"family": "resnet", "depth": 8},
        "method": {"name": "lit", "teacher": str(digits_teacher)},
        "train": {"precision": "fp32", "progress": "off", "phases": {"lit": {"epochs": 1}, "finetune": {"epochs": 1}}},
    })
    trainer = Trainer(cfg, tmp_path / "run")
    teacher = trainer.method.teacher
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in teacher.modules())
    original, _ = load_model(digits_teacher)
    # the student's stem and head are the teacher's own (batch norm included), not the folded copies
    student_stem = trainer.student.stem.state_dict()
    assert set(student_stem) == set(original.stem.state_dict())
    for key, value in original.stem.state_dict().items():
        assert torch.equal(student_stem[key], value), key
    inputs, _ = next(iter(trainer.val_batches))
    with torch.no_grad():
        torch.testing.assert_close(teacher(inputs), original.eval()(inputs), rtol=1e-4, atol=1e-4)
