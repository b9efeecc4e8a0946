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
