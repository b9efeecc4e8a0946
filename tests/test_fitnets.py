"""FitNets: the hint loss by recomputation, what stage 1 trains and freezes, stage 2's KD,
and a short run through the engine with the regressor checkpointed and resumed."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lit.engine.trainer as trainer_module
from conftest import digits_config
from lit.config import ConfigError, MethodConfig
from lit.runtime.checkpoint import load_checkpoint
from lit.runtime.runlog import MetricsLog
from lit.methods import METHODS
from lit.methods.fitnets import default_hint_section
from lit.methods.losses import kd_loss
from test_methods import batch, tiny_pair


def make_fitnets(**settings):
    teacher, student = tiny_pair()
    cfg = MethodConfig(name="fitnets", teacher="unused", hard_weight=0.6, temperature=3.0, **settings)
    return METHODS.get("fitnets")(cfg, student, teacher), teacher, student


def params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def test_the_hint_section_is_the_middle_one_unless_configured():
    assert [default_hint_section(n) for n in (1, 2, 3, 4, 5)] == [0, 0, 1, 1, 2]
    assert make_fitnets()[0].hint_section == 1
    assert make_fitnets(hint_section=0)[0].hint_section == 0
    with pytest.raises(ConfigError, match="method.hint_section"):
        make_fitnets(hint_section=3)
    with pytest.raises(ConfigError, match="method.hint_section"):
        digits_config("method.hint_section=-1")


@pytest.mark.parametrize("hint", [None, 0, 2])
def test_hint_loss_is_the_mse_of_the_regressed_guided_layer_against_the_teachers_hint(hint):
    method, teacher, student = make_fitnets(hint_section=hint)
    h = method.hint_section
    method.start_phase("hint")
    method.train_mode()
    x, y = batch()
    reference, regressor = copy.deepcopy(student), copy.deepcopy(method.extra_modules()["regressor"])
    logits, terms = method.losses("hint", x, y, 0.0)
    assert set(terms) == {"hint"}
    with torch.no_grad():
        expected = F.mse_loss(regressor(reference.features(x)[h + 1]), teacher.features(x)[h + 1])
        reference.eval()
        for part in [*reference.sections[h + 1 :], reference.head]:
            part.eval()
        reference.stem.train()
        for section in reference.sections[: h + 1]:
            section.train()
        expected_logits = reference(x)
    torch.testing.assert_close(terms["hint"], expected)
    torch.testing.assert_close(logits, expected_logits)
    assert not logits.requires_grad, "stage 1's logits are for accuracy only"


def test_stage_one_trains_the_early_sections_and_regressor_and_leaves_the_rest_bit_identical():
    method, teacher, student = make_fitnets()
    trainable = method.start_phase("hint")
    optimizer = torch.optim.SGD(trainable, lr=0.1, momentum=0.9, weight_decay=1e-4)
    frozen_before = [params(part) for part in method.later_parts()]
    early_before = params(student.sections[0]), params(student.stem)
    regressor_before = params(method.extra_modules())
    teacher_before = params(teacher)
    trainable_ids = {id(p) for p in trainable}
    assert all(id(p) not in trainable_ids for part in method.later_parts() for p in part.parameters())
    for step in range(3):
        method.train_mode()
        x, y = batch(seed=step)
        _, terms = method.losses("hint", x, y, step / 3)
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        for part in method.later_parts():
            assert all(p.grad is None for p in part.parameters()), "a frozen part received a gradient"
        optimizer.step()
    for part, before in zip(method.later_parts(), frozen_before):
        after = params(part)
        assert all(torch.equal(before[k], after[k]) for k in before), "a frozen part (weights or BN statistics) changed"
    for module, before in ((student.sections[0], early_before[0]), (student.stem, early_before[1])):
        assert any(not torch.equal(before[k], v) for k, v in params(module).items())
    assert any(not torch.equal(regressor_before[k], v) for k, v in params(method.extra_modules()).items())
    assert all(torch.equal(teacher_before[k], v) for k, v in params(teacher).items())


def test_stage_two_is_kd_alone_on_the_whole_student():
    method, teacher, student = make_fitnets()
    trainable = method.start_phase("train")
    assert {id(p) for p in trainable} == {id(p) for p in student.parameters()}
    method.train_mode()
    x, y = batch()
    reference = copy.deepcopy(student)
    logits, terms = method.losses("train", x, y, 0.5)
    assert set(terms) == {"kd"}
    with torch.no_grad():
        expected = kd_loss(reference(x), teacher(x), y, 3.0, 0.6)
    torch.testing.assert_close(terms["kd"], expected)
    assert logits.requires_grad


@pytest.mark.parametrize("activation", ["relu", "none"])
def test_the_regressor_applies_the_hints_relu_unless_none(activation):
    """Every family's section output (the hint) is post-ReLU, so by default the regressor ends
    in ReLU too (Romero et al.: the regressor has the hint's non-linearity); `none` keeps it
    linear, conv and batch norm only."""
    method, teacher, student = make_fitnets(**({} if activation == "relu" else {"regressor_activation": activation}))
    assert method.cfg.regressor_activation == activation
    method.start_phase("hint")
    method.train_mode()
    x, y = batch()
    regressor = method.extra_modules()["regressor"]
    assert isinstance(regressor[-1], nn.ReLU) == (activation == "relu") and len(regressor) == (3 if activation == "relu" else 2)
    regressed = regressor(method.guided_features(x))
    hint = method.hint_features(x)
    assert hint.min() >= 0  # the hint, a section output, is post-ReLU
    if activation == "relu":
        assert regressed.min() >= 0
        assert (regressed == 0).any() and (regressed > 0).any()
    else:
        assert regressed.min() < 0  # batch norm alone centres each channel: negatives remain
    _, terms = method.losses("hint", x, y, 0.0)
    torch.testing.assert_close(terms["hint"], F.mse_loss(regressed, hint))
    # the activation has no parameters: checkpoints of either setting have the same keys
    assert set(regressor.state_dict()) == {"0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                           "1.num_batches_tracked"}


@pytest.mark.parametrize("family, depth, options, inputs", [
    ("resnet", 8, {"in_channels": 1, "num_classes": 4}, lambda g: torch.randn(4, 1, 8, 8, generator=g)),
    ("resnext", 11, {"in_channels": 1, "num_classes": 4, "cardinality": 2, "bottleneck_width": 2,
                     "widths": [8, 16, 32], "stem_width": 8}, lambda g: torch.randn(4, 1, 8, 8, generator=g)),
    ("vdcnn", 9, {"num_classes": 4, "embedding_dim": 8, "widths": [8, 8, 16, 16], "fc_width": 16, "k": 4},
     lambda g: torch.randint(0, 69, (4, 64), generator=g)),
    ("vdcnn", 9, {"num_classes": 4, "embedding_dim": 8, "widths": [8, 8, 16, 16], "fc_width": 16, "k": 4,
                  "shortcut": True, "downsample": "kmax"}, lambda g: torch.randint(0, 69, (4, 64), generator=g)),
])
def test_every_classifier_familys_section_outputs_are_post_relu(family, depth, options, inputs):
    """What the default `regressor_activation: relu` rests on: each section ends in ReLU, so
    its output has no negative value, and has zeros (the ReLU cut something)."""
    from lit.models import build_model

    torch.manual_seed(0)
    model = build_model(family, depth, **options)
    with torch.no_grad():
        for mode in (model.train, model.eval):
            mode()
            feats = model.features(inputs(torch.Generator().manual_seed(1)))
            for i, out in enumerate(feats[1:]):
                assert out.min() >= 0 and (out == 0).any(), f"{family} section {i}"


def test_regressor_activation_is_read_by_fitnets_only_and_checked():
    assert "regressor_activation" in METHODS.get("fitnets").uses
    assert all("regressor_activation" not in METHODS.get(m).uses for m in ("kd", "lit", "scratch"))
    with pytest.raises(ConfigError, match="method.regressor_activation"):
        digits_config("method.regressor_activation=tanh")


def fitnets_config(teacher, epochs: int = 1):
    return digits_config(
        "model.depth=8", "method.name=fitnets", f"method.teacher={teacher}", "train.precision=fp32",
        f"train.phases.hint={{epochs: {epochs}, lr: 0.05}}", f"train.phases.train={{epochs: {epochs}, lr: 0.05}}",
    )


def test_fitnets_runs_through_the_engine_and_checkpoints_its_regressor(digits_teacher, tmp_path):
    run_dir = tmp_path / "fitnets"
    summary = trainer_module.train(fitnets_config(digits_teacher), run_dir)
    assert summary["epochs"] == 2 and (run_dir / "checkpoints" / "best.pt").exists()
    rows = MetricsLog(run_dir / "metrics.jsonl").records()
    assert [r["phase"] for r in rows] == ["hint", "train"]
    assert "loss_hint" in rows[0] and "loss_kd" not in rows[0]
    assert "loss_kd" in rows[1] and "loss_hint" not in rows[1]
    state = load_checkpoint(run_dir / "checkpoints" / "state.pt", kind="train-state")
    assert any(key.startswith("regressor.") for key in state["extra"])


class Killed(BaseException):
    pass


def test_a_killed_fitnets_run_resumes_to_the_same_weights(digits_teacher, tmp_path, monkeypatch):
    cfg = fitnets_config(digits_teacher)
    trainer_module.train(cfg, tmp_path / "whole")
    original_end_epoch = trainer_module.Trainer.end_epoch

    def end_epoch_then_die(self, record):
        original_end_epoch(self, record)
        if self.progress.epoch == 1:
            raise Killed

    monkeypatch.setattr(trainer_module.Trainer, "end_epoch", end_epoch_then_die)
    with pytest.raises(Killed):
        trainer_module.train(cfg, tmp_path / "resumed")
    monkeypatch.setattr(trainer_module.Trainer, "end_epoch", original_end_epoch)
    regressor_saved = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "state.pt", kind="train-state")["extra"]
    trainer = trainer_module.Trainer(cfg, tmp_path / "resumed", resume=True)
    trainer.restore_state()
    for key, value in trainer.method.extra_modules().state_dict().items():
        assert torch.equal(value, regressor_saved[key])
    trainer_module.train(cfg, tmp_path / "resumed", resume=True)
    whole = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt", kind="model")["model"]
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt", kind="model")["model"]
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
