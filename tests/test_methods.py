"""The objectives: KD against hand-written math, LIT's teacher-fed sections, frozen parts,
and the batch-norm trap of the teacher-fed pass."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import digits_config, randomise_batch_norms
from lit.config import MethodConfig
from lit.models.io import load_model
from lit.methods import METHODS
from lit.methods.losses import kd_loss
from lit.models import build_model

# ---------------------------------------------------------------- KD loss by hand


def random_logits(seed: int = 0, batch: int = 6, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, classes, generator=generator, dtype=torch.float64) * 3
    teacher = torch.randn(batch, classes, generator=generator, dtype=torch.float64) * 3
    labels = torch.randint(0, classes, (batch,), generator=generator)
    return student, teacher, labels


def softmax_by_hand(z: torch.Tensor) -> torch.Tensor:
    e = torch.exp(z - z.max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


def kd_by_hand(s, t, y, tau, alpha):
    """(1 - alpha) * tau^2 * mean_b(-sum_k p_t log p_s) + alpha * mean_b(-log p_s[y]), written out."""
    p_teacher = softmax_by_hand(t / tau)
    log_p_student_soft = torch.log(softmax_by_hand(s / tau))
    soft = -(p_teacher * log_p_student_soft).sum(dim=1).mean()
    log_p_student = torch.log(softmax_by_hand(s))
    hard = -log_p_student[torch.arange(len(y)), y].mean()
    return (1 - alpha) * tau**2 * soft + alpha * hard


def kd_kl_form(s, t, y, tau, alpha):
    """torchdistill's form: KL(softmax(t/tau) || softmax(s/tau)) * tau^2 (batch mean) and CE."""
    kl = F.kl_div(F.log_softmax(s / tau, dim=1), F.log_softmax(t / tau, dim=1), reduction="batchmean", log_target=True)
    return (1 - alpha) * tau**2 * kl + alpha * F.cross_entropy(s, y)


@pytest.mark.parametrize("tau, alpha", [(6.0, 0.95), (4.0, 0.3), (1.0, 0.0)])
def test_kd_loss_equals_the_hand_computation(tau, alpha):
    s, t, y = random_logits()
    torch.testing.assert_close(kd_loss(s, t, y, tau, alpha), kd_by_hand(s, t, y, tau, alpha), rtol=1e-12, atol=1e-12)


def test_kd_loss_weights_the_hard_term_with_alpha():
    s, t, y = random_logits(1)
    other_labels = (y + 1) % s.shape[1]
    # alpha = 0: labels play no part; alpha = 1: teacher plays no part and it is plain CE
    assert kd_loss(s, t, y, 4.0, 0.0) == kd_loss(s, t, other_labels, 4.0, 0.0)
    torch.testing.assert_close(kd_loss(s, t, y, 4.0, 1.0), F.cross_entropy(s, y), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kd_loss(s, -t, y, 4.0, 1.0), F.cross_entropy(s, y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tau, alpha", [(6.0, 0.95), (2.0, 0.5), (4.0, 0.0)])
def test_kd_gradient_equals_the_kl_form(tau, alpha):
    s, t, y = random_logits(2)
    s_ce = s.clone().requires_grad_(True)
    s_kl = s.clone().requires_grad_(True)
    ours, kl_form = kd_loss(s_ce, t, y, tau, alpha), kd_kl_form(s_kl, t, y, tau, alpha)
    ours.backward()
    kl_form.backward()
    torch.testing.assert_close(s_ce.grad, s_kl.grad, rtol=1e-10, atol=1e-12)
    # the values differ by exactly the (weighted) entropy of the teacher's softened distribution
    p = softmax_by_hand(t / tau)
    entropy = -(p * torch.log(p)).sum(dim=1).mean()
    torch.testing.assert_close(ours - kl_form, (1 - alpha) * tau**2 * entropy, rtol=1e-10, atol=1e-12)


def test_kd_loss_under_bf16_autocast_keeps_float32_precision():
    """CPU autocast runs softmax in bf16; KD's soft gradient is the small difference
    p_student - p_teacher, which bf16 rounding would swamp once the student is close."""
    generator = torch.Generator().manual_seed(3)
    student = (torch.randn(64, 10, generator=generator) * 4).bfloat16()
    teacher = (student.float() + 0.05 * torch.randn(64, 10, generator=generator)).bfloat16()
    labels = torch.randint(0, 10, (64,), generator=generator)

    def gradient(logits, autocast):
        logits = logits.detach().float().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            # the logits enter as the bf16 tensors autocast's last linear layer gives
            loss = kd_loss(logits.bfloat16() if autocast else logits, teacher if autocast else teacher.float(), labels, 6.0, 0.0)
        loss.backward()
        return loss.detach().float(), logits.grad

    loss_bf16, grad_bf16 = gradient(student, True)
    loss_fp32, grad_fp32 = gradient(student, False)
    torch.testing.assert_close(loss_bf16, loss_fp32, rtol=1e-5, atol=1e-5)
    assert (grad_bf16 - grad_fp32).norm() / grad_fp32.norm() < 0.01


# ---------------------------------------------------------------- LIT on tiny models


def tiny_pair(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """A ResNet-14 teacher with non-trivial weights and running statistics, a ResNet-8 student."""
    torch.manual_seed(seed)
    teacher = build_model("resnet", 14, in_channels=1, num_classes=10)
    student = build_model("resnet", 8, in_channels=1, num_classes=10)
    randomise_batch_norms(teacher, (1, 8, 8))
    return teacher, student


def batch(seed: int = 1, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(size, 1, 8, 8, generator=generator), torch.randint(0, 10, (size,), generator=generator)


def make_lit(**settings) -> tuple:
    teacher, student = tiny_pair()
    cfg = MethodConfig(name="lit", teacher="unused", hard_weight=0.6, temperature=3.0, kd_weight=0.4, **settings)
    method = METHODS.get("lit")(cfg, student, teacher)
    return method, teacher, student


def record_section_inputs(model: nn.Module) -> tuple[list[list[torch.Tensor]], list]:
    calls: list[list[torch.Tensor]] = [[] for _ in model.sections]
    handles = [
        section.register_forward_pre_hook(lambda module, args, i=i: calls[i].append(args[0].detach().clone()))
        for i, section in enumerate(model.sections)
    ]
    return calls, handles


def precision_context(precision: str):
    """The engine's two paths: plain fp32, or bf16 autocast (the default where the CPU has it)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


def bn_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: buf.clone() for name, buf in module.named_buffers()}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_lit_feeds_each_student_section_the_teachers_previous_section_output(precision):
    method, teacher, student = make_lit()
    method.start_phase("lit")
    method.train_mode()
    x, y = batch()
    with torch.no_grad(), precision_context(precision):
        teacher_feats = teacher.features(x)
        own_feats = copy.deepcopy(student).features(x)  # the student's own path, same modes
    calls, handles = record_section_inputs(student)
    with precision_context(precision):
        method.losses("lit", x, y, 0.0)
    for handle in handles:
        handle.remove()
    for i, inputs in enumerate(calls):
        assert len(inputs) == 2, "each section runs once on its own path and once teacher-fed"
        fed_by_teacher = [inp for inp in inputs if torch.equal(inp, teacher_feats[i])]
        own_path = [inp for inp in inputs if torch.equal(inp, own_feats[i])]
        assert fed_by_teacher, f"student section {i} never received teacher_feats[{i}]"
        assert own_path, f"student section {i} never ran on the student's own features"
        if i > 0:  # the stem is the teacher's (copied, frozen): only later inputs differ
            assert not torch.allclose(teacher_feats[i], own_feats[i], atol=1e-3)
            assert len(fed_by_teacher) == 1 and len(own_path) == 1


def test_lit_objective_is_beta_kd_plus_one_minus_beta_section_mse_over_two():
    method, teacher, student = make_lit()
    method.start_phase("lit")
    method.train_mode()
    x, y = batch()
    reference = copy.deepcopy(student)  # same weights and modes: recompute everything by hand
    logits, terms = method.losses("lit", x, y, 0.0)
    beta, tau, alpha = 0.4, 3.0, 0.6
    with torch.no_grad():
        teacher_feats = teacher.features(x)
        teacher_logits = teacher(x)
        own_logits = reference(x)
        section_mse = [
            F.mse_loss(reference.sections[i](teacher_feats[i]), teacher_feats[i + 1]) for i in range(len(reference.sections))
        ]
    torch.testing.assert_close(logits, own_logits)
    kd = kd_by_hand(own_logits.double(), teacher_logits.double(), y, tau, alpha).float()
    assert set(terms) == {"kd", "mse_section0", "mse_section1", "mse_section2"}
    for i, mse in enumerate(section_mse):
        assert mse > 0
        torch.testing.assert_close(terms[f"mse_section{i}"], (1 - beta) * mse / 2)
    torch.testing.assert_close(terms["kd"], beta * kd / 2)
    torch.testing.assert_close(sum(terms.values()), (beta * kd + (1 - beta) * sum(section_mse)) / 2)


VDCNN_TINY = dict(num_classes=3, embedding_dim=8, widths=[8, 8, 16, 16], fc_width=16, k=4)


def tiny_vdcnn_pair() -> tuple[nn.Module, nn.Module]:
    """A VDCNN-17 teacher with non-trivial batch-norm weights and running statistics, a VDCNN-9 student."""
    torch.manual_seed(0)
    teacher = build_model("vdcnn", 17, **VDCNN_TINY)
    student = build_model("vdcnn", 9, **VDCNN_TINY)
    randomise_batch_norms(teacher, make_input=lambda: torch.randint(0, 69, (8, 64)))
    return teacher, student


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_vdcnn_lit_objective_by_hand_follows_objective_scale(scale):
    """The VDCNN LIT phase-1 loss on a fixed batch, recomputed by hand: the teacher's
    features section by section, each student section fed the teacher's previous output,
    the KD term from its formula. scale 1.0 is the official VDCNN code's
    `(beta * KD).backward()` plus `(1 - beta) * MSE_i` per section; 0.5 the official CIFAR
    code's halved sum."""
    teacher, student = tiny_vdcnn_pair()
    beta, tau, alpha = 0.4, 3.0, 0.6
    cfg = MethodConfig(name="lit", teacher="unused", hard_weight=alpha, temperature=tau, kd_weight=beta,
                       objective_scale=scale)
    method = METHODS.get("lit")(cfg, student, teacher)
    method.start_phase("lit")
    method.train_mode()
    generator = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, 69, (8, 64), generator=generator)
    tokens[:, 50:] = 0  # a padded tail
    labels = torch.randint(0, 3, (8,), generator=generator)
    reference = copy.deepcopy(student)  # same weights (stem and head copied from the teacher) and modes
    logits, terms = method.losses("lit", tokens, labels, 0.0)

    with torch.no_grad():
        teacher.eval()
        feats = [teacher.stem(tokens)]  # teacher features by hand: stem, then section by section
        for section in teacher.sections:
            feats.append(section(feats[-1]))
        teacher_logits = teacher.head(feats[-1]).double()
        student_logits = reference(tokens).double()
        mse = [((reference.sections[i](feats[i]) - feats[i + 1]) ** 2).mean() for i in range(4)]
    # KD as `kd_loss` defines it: (1 - alpha) tau^2 softCE(p_t, p_s) + alpha CE(s, y); the soft
    # cross-entropy is KL(softmax(t/tau) || softmax(s/tau)) plus the teacher's entropy, a constant
    p_t = torch.softmax(teacher_logits / tau, dim=1)
    log_p_s = torch.log_softmax(student_logits / tau, dim=1)
    kl = (p_t * (torch.log(p_t) - log_p_s)).sum(dim=1).mean()
    entropy = -(p_t * torch.log(p_t)).sum(dim=1).mean()
    hard = -torch.log_softmax(student_logits, dim=1)[torch.arange(8), labels].mean()
    kd = ((1 - alpha) * tau**2 * (kl + entropy) + alpha * hard).float()
    torch.testing.assert_close(kd, kd_by_hand(student_logits, teacher_logits, labels, tau, alpha).float())

    torch.testing.assert_close(logits, student_logits.float())
    assert set(terms) == {"kd", "mse_section0", "mse_section1", "mse_section2", "mse_section3"}
    assert all(m > 0 for m in mse)
    torch.testing.assert_close(terms["kd"], scale * beta * kd)
    for i in range(4):
        torch.testing.assert_close(terms[f"mse_section{i}"], scale * (1 - beta) * mse[i])
    torch.testing.assert_close(sum(terms.values()), scale * (beta * kd + (1 - beta) * sum(mse)))


def test_objective_scale_is_validated_and_set_by_every_lit_run_config():
    from pathlib import Path

    from lit.config import ConfigError, load_config

    for bad in ("0", "-0.5", ".nan", ".inf"):
        with pytest.raises(ConfigError, match="method.objective_scale"):
            digits_config(f"method.objective_scale={bad}")
    assert MethodConfig().objective_scale == 0.5  # the default: the official CIFAR code
    official = {"amazon-student": 1.0, "text-student": 1.0,  # the official VDCNN code
                "cifar10-student": 0.5, "cifar10-subset-student": 0.5, "digits-student": 0.5}  # CIFAR
    for name, scale in official.items():
        path = Path(__file__).resolve().parents[1] / "config" / "runs" / f"{name}.yaml"
        assert load_config(path).method.objective_scale == scale, name
    assert "objective_scale" in METHODS.get("lit").uses
    assert all("objective_scale" not in METHODS.get(m).uses for m in ("kd", "fitnets", "scratch"))


def test_lit_linear_beta_schedule_runs_from_beta_to_kd_only():
    method, _, _ = make_lit(kd_weight_schedule="linear")
    assert method.kd_weight(0.0) == pytest.approx(0.4)
    assert method.kd_weight(0.5) == pytest.approx(0.7)
    assert method.kd_weight(1.0) == pytest.approx(1.0)
    x, y = batch()
    method.start_phase("lit")
    method.train_mode()
    _, terms = method.losses("lit", x, y, 1.0)
    assert all(terms[f"mse_section{i}"] == 0 for i in range(3))


def test_teacher_runs_in_eval_mode_without_autograd_and_gets_no_gradient():
    method, teacher, student = make_lit()
    teacher.train()  # even a teacher handed over in training mode must be frozen by the method
    method = METHODS.get("lit")(method.cfg, student, teacher)
    seen = []
    teacher.register_forward_hook(lambda module, args, out: seen.append((module.training, torch.is_grad_enabled())))
    for handle_module in teacher.modules():
        if isinstance(handle_module, nn.BatchNorm2d):
            handle_module.register_forward_hook(lambda module, args, out: seen.append((module.training, torch.is_grad_enabled())))
    teacher_state = bn_buffers(teacher)
    for phase in ("lit", "finetune"):
        method.start_phase(phase)
        method.train_mode()
        x, y = batch()
        _, terms = method.losses(phase, x, y, 0.0)
        sum(terms.values()).backward()
    assert seen and all(mode == (False, False) for mode in seen), "teacher ran in training mode or with autograd on"
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.sections.parameters())
    for name, value in bn_buffers(teacher).items():
        assert torch.equal(value, teacher_state[name]), f"teacher buffer {name} changed"


def test_kd_method_runs_the_teacher_frozen_and_returns_the_kd_term():
    teacher, student = tiny_pair()
    cfg = MethodConfig(name="kd", teacher="unused", hard_weight=0.7, temperature=5.0)
    method = METHODS.get("kd")(cfg, student, teacher)
    method.start_phase("train")
    method.train_mode()
    x, y = batch()
    reference = copy.deepcopy(student)
    logits, terms = method.losses("train", x, y, 0.0)
    terms["kd"].backward()
    with torch.no_grad():
        expected = kd_by_hand(reference(x).double(), teacher(x).double(), y, 5.0, 0.7).float()
    assert set(terms) == {"kd"}
    torch.testing.assert_close(terms["kd"], expected)
    assert not teacher.training and all(p.grad is None for p in teacher.parameters())


def test_scratch_is_cross_entropy_on_the_labels():
    _, student = tiny_pair()
    method = METHODS.get("scratch")(MethodConfig(), student)
    x, y = batch()
    reference = copy.deepcopy(student)
    logits, terms = method.losses("train", x, y, 0.0)
    assert set(terms) == {"ce"}
    torch.testing.assert_close(terms["ce"], F.cross_entropy(reference(x), y))


def test_lit_finetune_returns_only_the_unweighted_kd_term():
    method, teacher, student = make_lit()
    method.start_phase("finetune")
    method.train_mode()
    x, y = batch()
    reference = copy.deepcopy(student)
    calls, handles = record_section_inputs(student)
    _, terms = method.losses("finetune", x, y, 0.3)
    for handle in handles:
        handle.remove()
    with torch.no_grad():
        expected = kd_by_hand(reference(x).double(), teacher(x).double(), y, 3.0, 0.6).float()
    assert set(terms) == {"kd"}
    torch.testing.assert_close(terms["kd"], expected)  # not beta * kd / 2
    assert [len(c) for c in calls] == [1, 1, 1], "finetune must not run the teacher-fed pass"


# ---------------------------------------------------------------- stem and head: copied, frozen


def test_copy_stem_head_copies_parameters_and_buffers_from_the_teacher():
    _, teacher, student = make_lit()
    for part in ("stem", "head"):
        ours, theirs = getattr(student, part).state_dict(), getattr(teacher, part).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert any("running_mean" in k for k in student.stem.state_dict())


def test_without_copy_stem_head_the_student_keeps_its_own_stem_and_head():
    _, teacher, student = make_lit(copy_stem_head=False)
    for part in ("stem", "head"):
        ours, theirs = getattr(student, part).state_dict(), getattr(teacher, part).state_dict()
        assert not all(torch.equal(ours[k], theirs[k]) for k in ours if ours[k].is_floating_point())


def test_phase_parameters_exclude_a_frozen_stem_and_head():
    method, _, student = make_lit(finetune_freeze_stem_head=False)
    frozen = {id(p) for p in [*student.stem.parameters(), *student.head.parameters()]}
    lit_params = {id(p) for p in method.start_phase("lit")}
    assert lit_params == {id(p) for p in student.sections.parameters()}
    finetune_params = {id(p) for p in method.start_phase("finetune")}
    assert frozen <= finetune_params  # unfrozen again for phase 2 when asked
    method.train_mode()
    assert student.stem.training and student.head.training


def test_frozen_stem_and_head_stay_bit_identical_through_lit_training(digits_teacher, tmp_path):
    from lit.engine.trainer import train

    cfg = digits_config(
        "model.depth=8", "method.name=lit", f"method.teacher={digits_teacher}", "train.precision=fp32",
        "train.phases.lit={epochs: 2, lr: 0.05}", "train.phases.finetune={epochs: 1, lr: 0.01}",
    )
    train(cfg, tmp_path / "run")
    teacher, _ = load_model(digits_teacher, "best")
    for which in ("best", "last"):
        student, _ = load_model(tmp_path / "run", which)
        for part in ("stem", "head"):
            ours, theirs = getattr(student, part).state_dict(), getattr(teacher, part).state_dict()
            for key in ours:  # weights, running statistics and the batch counter alike
                assert torch.equal(ours[key], theirs[key]), f"{which}.pt {part}.{key} moved"
        # ... while the sections did train
        torch.manual_seed(0)  # the trainer's seed: the student's initial weights
        fresh = build_model("resnet", 8, in_channels=1, num_classes=10)
        assert not torch.equal(student.sections[0][0].conv1.weight, fresh.sections[0][0].conv1.weight)


# ---------------------------------------------------------------- the batch-norm trap


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_teacher_fed_pass_leaves_the_students_running_statistics_to_its_own_path(precision):
    method, teacher, student = make_lit()
    method.start_phase("lit")
    method.train_mode()
    own_path_only = copy.deepcopy(student)
    before = bn_buffers(student.sections)
    optimiser = torch.optim.SGD(method.start_phase("lit"), lr=0.0)  # a step that leaves weights put
    method.train_mode()
    for seed in (1, 2):  # two steps: the statistics must keep updating after the first
        x, y = batch(seed)
        with precision_context(precision):
            _, terms = method.losses("lit", x, y, 0.0)
        optimiser.zero_grad()
        sum(terms.values()).backward()
        optimiser.step()
        with torch.no_grad(), precision_context(precision):
            own_path_only(x)
    after, expected = bn_buffers(student.sections), bn_buffers(own_path_only.sections)
    for name, value in after.items():
        if "running" in name:
            assert not torch.equal(value, before[name]), f"{name} never updated"
        assert torch.equal(value, expected[name]), f"{name} differs from the student's own path"
    momenta = {m.momentum for m in student.modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta == {0.1}
