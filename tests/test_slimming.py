"""Network slimming: the L1 term by hand, global channel selection, pruning that keeps the
function of the kept channels, pruned checkpoints that rebuild from their spec, a run
through the engine and the CLI, selection among pruned models, exact resume across the
pruning, refused families and keys, and per-method depths in the plan."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from conftest import DIGITS_BASE, digits_config
from lit.cli import main
from lit.config import ConfigError, MethodConfig
from lit.engine.trainer import Trainer, train
from lit.evaluate.cost import count_flops, count_parameters
from lit.methods import METHODS
from lit.methods.base import MethodContext
from lit.methods.slimming import channels_to_remove
from lit.models import build_model
from lit.models.io import load_model, model_spec, save_model
from lit.plan import plan_experiments
from lit.runtime.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Distinct signed scales, shifts and running statistics in every batch norm."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                sign = torch.where(torch.rand(n, generator=generator) < 0.3, -1.0, 1.0)
                module.weight.copy_(sign * (0.05 + torch.rand(n, generator=generator)))
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    return model


def slimming(student: nn.Module, family: str = "resnet", **settings) -> object:
    cfg = MethodConfig(name="slimming", **settings)
    return METHODS.get("slimming")(cfg, student, None, MethodContext(family=family))


def resnet(depth: int = 8, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomised(build_model("resnet", depth, in_channels=1, num_classes=10), seed)


def images(size: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(size, 1, 8, 8, generator=generator), torch.randint(0, 10, (size,), generator=generator)


def blocks(model: nn.Module) -> list[nn.Module]:
    return [block for section in model.sections for block in section if hasattr(block, "bn1")]


# ---------------------------------------------------------------- the objective


def test_the_l1_term_is_lambda_times_the_sum_of_the_prunable_scales_only():
    student = resnet()
    method = slimming(student, sparsity=1e-3)
    x, y = images()
    method.start_phase("sparsity")
    method.train_mode()
    reference = copy.deepcopy(student)
    logits, terms = method.losses("sparsity", x, y, 0.0)
    assert set(terms) == {"ce", "l1_bn"}
    by_hand = 1e-3 * sum(float(block.bn1.weight.detach().abs().sum()) for block in blocks(reference))
    assert terms["l1_bn"].item() == pytest.approx(by_hand, rel=1e-6)
    assert torch.allclose(terms["ce"], F.cross_entropy(reference(x), y))
    # the subgradient lambda * sign(gamma) reaches the blocks' bn1 only (not bn2, not the stem)
    terms["l1_bn"].backward()
    for block in blocks(student):
        assert torch.allclose(block.bn1.weight.grad, 1e-3 * block.bn1.weight.sign())
        assert block.bn2.weight.grad is None
    assert student.stem[1].weight.grad is None
    _, finetune_terms = method.losses("finetune", x, y, 0.0)
    assert set(finetune_terms) == {"ce"}


# ---------------------------------------------------------------- which channels go


def test_the_globally_smallest_scales_go_and_every_layer_keeps_one():
    scales = [torch.tensor([0.5, -0.01, 0.3]), torch.tensor([0.02, 0.9]), torch.tensor([-0.2, 0.04, 0.6, 0.05])]
    # 9 channels, 40%: floor(3.6) = 3 smallest |scale|: 0.01, 0.02, 0.04
    assert channels_to_remove(scales, 0.4) == [[1], [0], [1]]
    assert channels_to_remove(scales, 0.0) == [[], [], []]
    # 70%: the 6 smallest are 0.01, 0.02, 0.04, 0.05, 0.2, 0.3 (global, whatever the layer)
    assert channels_to_remove(scales, 0.7) == [[1, 2], [0], [0, 1, 3]]
    # a layer whose every channel is below the threshold keeps its largest
    assert channels_to_remove([torch.tensor([0.01, 0.02]), torch.tensor([5.0, 6.0, 7.0])], 0.6) == [[0], [0]]
    # ties go in network order
    assert channels_to_remove([torch.ones(2), torch.ones(2)], 0.5) == [[0], []]


@pytest.mark.parametrize("ratio", [0.4, 0.7])
def test_pruning_removes_the_smallest_scales_and_keeps_what_the_kept_channels_compute(ratio):
    student = resnet()
    x, _ = images()
    scales = [block.bn1.weight.detach().clone() for block in blocks(student)]
    everything = torch.cat(scales).abs()
    count = int(ratio * everything.numel())
    threshold = everything.sort().values[count - 1]
    removed = [set(torch.nonzero(s.abs() <= threshold).flatten().tolist()) for s in scales]
    assert sum(len(r) for r in removed) == count

    # the unpruned network with the removed channels silenced (gamma = beta = 0): the same function
    silenced = copy.deepcopy(student).eval()
    with torch.no_grad():
        for block, channels in zip(blocks(silenced), removed):
            block.bn1.weight[list(channels)] = 0.0
            block.bn1.bias[list(channels)] = 0.0
    original = copy.deepcopy(student)
    method = slimming(student, prune_ratio=ratio)
    pruned = method.reshape_student("finetune", {"in_channels": 1, "num_classes": 10})["pruned"]

    for index, (block, before, channels) in enumerate(zip(blocks(student), blocks(original), removed)):
        kept = [c for c in range(before.bn1.num_features) if c not in channels]
        assert block.conv1.out_channels == block.bn1.num_features == block.conv2.in_channels == len(kept)
        assert torch.equal(block.conv1.weight, before.conv1.weight[kept])
        assert torch.equal(block.bn1.weight, before.bn1.weight[kept])
        assert torch.equal(block.bn1.running_var, before.bn1.running_var[kept])
        assert torch.equal(block.conv2.weight, before.conv2.weight[:, kept])
        assert torch.equal(block.bn2.weight, before.bn2.weight)  # block outputs are never pruned
    modules = dict(student.named_modules())
    names = [name for name, m in student.named_modules() if hasattr(m, "bn1")]
    assert set(pruned) == {f"{name}.{part}" for name, channels in zip(names, removed) if channels for part in ("conv1", "bn1", "conv2")}
    assert all(getattr(modules[name], key) == value for name, sizes in pruned.items() for key, value in sizes.items())
    student.eval()
    with torch.no_grad():
        assert torch.allclose(student(x), silenced(x), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(student(x), original.eval()(x), atol=1e-3)  # the silenced channels did matter


def test_a_vdcnn_is_pruned_by_the_same_rule_and_keeps_its_function():
    torch.manual_seed(0)
    student = randomised(build_model("vdcnn", 9, num_classes=3, widths=[8, 8, 16, 16], k=2, fc_width=16))
    tokens = torch.randint(0, 69, (4, 40))
    scales = torch.cat([m.bn1.weight.detach().abs() for m in student.modules() if hasattr(m, "bn1")])
    silenced = copy.deepcopy(student).eval()
    threshold = scales.sort().values[int(0.5 * scales.numel()) - 1]
    with torch.no_grad():
        for block in (m for m in silenced.modules() if hasattr(m, "bn1")):
            off = block.bn1.weight.abs() <= threshold
            block.bn1.weight[off] = 0.0
            block.bn1.bias[off] = 0.0
    method = slimming(student, family="vdcnn", prune_ratio=0.5)
    options = method.reshape_student("finetune", {"num_classes": 3, "widths": [8, 8, 16, 16], "k": 2, "fc_width": 16})
    assert sum(block.bn1.num_features for block in (m for m in student.modules() if hasattr(m, "bn1"))) == scales.numel() // 2
    rebuilt = build_model("vdcnn", 9, **options)
    rebuilt.load_state_dict(student.state_dict())
    student.eval(), rebuilt.eval()
    with torch.no_grad():
        assert torch.allclose(student(tokens), silenced(tokens), atol=1e-5, rtol=1e-5)
        assert torch.equal(rebuilt(tokens), student(tokens))


def test_a_family_slimming_cannot_prune_is_refused_naming_it(tmp_path):
    resnext = build_model("resnext", 11, in_channels=1, num_classes=10)
    with pytest.raises(ValueError, match="cannot prune model family 'resnext': .*grouped convolutions"):
        slimming(resnext, family="resnext")
    with pytest.raises(ConfigError, match="method 'slimming': slimming cannot prune model family 'resnext'"):
        Trainer(digits_config("method.name=slimming", "model.family=resnext", "model.depth=11",
                              "train.phases.sparsity={epochs: 1}", "train.phases.finetune={epochs: 1}"), tmp_path / "run")


@pytest.mark.parametrize(
    "override, key",
    [("method.prune_ratio=1.0", "method.prune_ratio"), ("method.prune_ratio=-0.1", "method.prune_ratio"),
     ("method.sparsity=-1e-4", "method.sparsity"), ("train.compile=true", "train.compile")],
)
def test_bad_values_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        digits_config("method.name=slimming", "train.phases.sparsity={epochs: 1}", "train.phases.finetune={epochs: 1}", override)


def test_a_run_without_finetune_epochs_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.phases\.finetune\.epochs"):
        Trainer(digits_config("method.name=slimming", "train.phases.sparsity={epochs: 1}", "train.phases.finetune={epochs: 0}"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- pruned checkpoints


def test_a_pruned_checkpoint_reloads_from_its_spec_with_fewer_parameters_and_flops(tmp_path):
    student = resnet(depth=20)
    options = {"in_channels": 1, "num_classes": 10}
    unpruned = copy.deepcopy(student)
    new_options = slimming(student, prune_ratio=0.7).reshape_student("finetune", options)
    spec = model_spec("resnet", 20, new_options)
    save_model(student, spec, tmp_path / "pruned.pt", epoch=1)
    state = torch.load(tmp_path / "pruned.pt", weights_only=True)  # plain data only
    assert state["spec"]["options"]["pruned"] == new_options["pruned"]
    reloaded, _ = load_model(tmp_path / "pruned.pt")
    x, _ = images()
    student.eval(), reloaded.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(x), student(x))
    assert count_parameters(reloaded) == count_parameters(student) < 0.5 * count_parameters(unpruned)
    assert count_flops(reloaded, x[:1]) < 0.5 * count_flops(unpruned, x[:1])


def test_a_pruned_spec_naming_a_missing_module_is_a_clear_error():
    with pytest.raises(ValueError, match="model option 'pruned': the model has no module named 'sections.9.conv1'"):
        build_model("resnet", 8, pruned={"sections.9.conv1": {"in_channels": 16, "out_channels": 4}})
    with pytest.raises(ValueError, match="model option 'pruned': module 'sections.0.0.bn1'"):
        build_model("resnet", 8, pruned={"sections.0.0.bn1": {"num_features": 0}})


# ---------------------------------------------------------------- runs


def slimming_overrides(sparsity_epochs: int = 1, finetune_epochs: int = 1, finetune_lr: float = 0.05, ratio: float = 0.5) -> tuple[str, ...]:
    return (
        "model.depth=8", "method.name=slimming", "train.precision=fp32", f"method.prune_ratio={ratio}", "method.sparsity=1e-3",
        f"train.phases.sparsity={{epochs: {sparsity_epochs}, lr: 0.05}}",
        f"train.phases.finetune={{epochs: {finetune_epochs}, lr: {finetune_lr}}}",
    )


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_lit_train_then_lit_evaluate_a_slimming_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    config = str(REPO / "config" / "runs" / "digits-student.yaml")
    assert main(["train", config, *DIGITS_BASE, *slimming_overrides(), "--run-dir", str(run_dir)]) == 0
    assert main(["evaluate", str(run_dir), "--latency-runs", "2", "--throughput-batch", "8"]) == 0
    rows = records(run_dir)
    assert [(r["phase"], "loss_l1_bn" in r) for r in rows] == [("sparsity", True), ("finetune", False)]
    result = json.loads((run_dir / "eval.json").read_text())
    unpruned = build_model("resnet", 8, in_channels=1, num_classes=10)
    assert result["params"] < count_parameters(unpruned)
    assert result["flops"] < count_flops(unpruned, torch.zeros(1, 1, 8, 8))
    assert 0.0 <= result["test_acc_selected"] <= 1.0
    assert json.loads((run_dir / "summary.json").read_text())["params"] == result["params"]


def test_best_pt_of_a_slimming_run_is_a_pruned_model(tmp_path):
    # a hard pruning and a tiny fine-tuning lr: the pruned models validate worse than the
    # sparse unpruned ones, which must still never be selected
    run_dir = tmp_path / "run"
    cfg = digits_config(*slimming_overrides(sparsity_epochs=2, finetune_epochs=1, finetune_lr=1e-6, ratio=0.9),
                        "evaluate.test_every_epoch=true")
    trainer = Trainer(cfg, run_dir)
    summary = trainer.run()
    # the pruned modules were moved to the run's memory format (channels-last images)
    convs = [m for m in trainer.student.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    rows = records(run_dir)
    assert rows[2]["val_acc"] < max(r["val_acc"] for r in rows[:2])
    assert summary["best_epoch"] == 3
    # the oracle too counts the pruned model's epochs only, though a sparse epoch tested better
    assert max(r["test_acc"] for r in rows[:2]) > rows[2]["test_acc"]
    assert summary["oracle_epoch"] == 3 and summary["oracle_test_acc"] == rows[2]["test_acc"]
    best, state = load_model(run_dir, "best")
    assert "pruned" in state["spec"]["options"] and state["epoch"] == 3
    assert count_parameters(best) == summary["params"] < count_parameters(build_model("resnet", 8, in_channels=1, num_classes=10))


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def uninterrupted_slimming(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("slimming") / "run"
    train(digits_config(*slimming_overrides(finetune_epochs=2)), run_dir)
    return run_dir


@pytest.mark.parametrize("epoch", [1, 2], ids=["at-the-pruning", "inside-finetune"])
def test_resume_across_the_pruning_equals_an_uninterrupted_run(epoch, uninterrupted_slimming, tmp_path, monkeypatch):
    reference, run_dir = uninterrupted_slimming, tmp_path / "run"
    original = Trainer.end_epoch

    def end_epoch(self, record):
        original(self, record)
        if self.progress.epoch == epoch:
            raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "end_epoch", end_epoch)
        with pytest.raises(Killed):
            train(digits_config(*slimming_overrides(finetune_epochs=2)), run_dir)
    saved = load_checkpoint(run_dir / "checkpoints" / "state.pt")
    assert ("pruned" in saved["spec"]["options"]) == (epoch == 2)

    summary = train(digits_config(*slimming_overrides(finetune_epochs=2)), run_dir, resume=True)
    for which in ("best", "last"):
        ours, theirs = (load_checkpoint(d / "checkpoints" / f"{which}.pt") for d in (run_dir, reference))
        assert ours["spec"] == theirs["spec"] and "pruned" in ours["spec"]["options"]
        assert ours["model"].keys() == theirs["model"].keys()
        assert all(torch.equal(ours["model"][k], theirs["model"][k]) for k in ours["model"])
    ours, theirs = (load_checkpoint(d / "checkpoints" / "state.pt")["optimizers"]["model"]["state"] for d in (run_dir, reference))
    assert all(torch.equal(ours[i]["momentum_buffer"], theirs[i]["momentum_buffer"]) for i in theirs)
    timing = ("seconds", "images_per_s")
    assert [{k: v for k, v in r.items() if k not in timing} for r in records(run_dir)] == \
           [{k: v for k, v in r.items() if k not in timing} for r in records(reference)]
    assert summary["best_epoch"] == json.loads((reference / "summary.json").read_text())["best_epoch"]


# ---------------------------------------------------------------- the plan


def test_slimming_trains_at_its_own_depths_in_the_plan():
    config = yaml.safe_load((REPO / "config" / "cifar10-subset.yaml").read_text())
    plan = plan_experiments(config)
    for name in config["experiments"]:  # the tuned experiment runs no slimming (it reads no tuned weight)
        students = [run for run in plan.experiment_runs(name) if run.role == "student"]
        assert {run.depth for run in students if run.method == "slimming"} == ({20} if "untuned" in name else set())
        assert {run.depth for run in students if run.method != "slimming"} == {8}
        assert all(run.teacher is None and run.tuned is None for run in students if run.method == "slimming")
    bad = copy.deepcopy(config)
    bad["experiments"]["cifar10-subset-untuned"]["students"]["depths_by_method"] = {"fitnet": [20]}
    with pytest.raises(ConfigError, match=r"students\.depths_by_method: 'fitnet' is not one of the students' methods"):
        plan_experiments(bad)
    bad["experiments"]["cifar10-subset-untuned"]["students"]["depths_by_method"] = {"slimming": []}
    with pytest.raises(ConfigError, match=r"depths_by_method\.slimming: expected a non-empty list"):
        plan_experiments(bad)
