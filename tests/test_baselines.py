"""The baselines AT, DKD and ReviewKD: each loss on a fixed batch against its formula as
the paper's official code writes it (spelled out here, not the method's helpers), a
gradient check of each loss function, their keys (checked, read by their method only),
and one epoch of each through the engine with its loss terms logged."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import digits_config, randomise_batch_norms
from lit.config import ConfigError, MethodConfig
from lit.engine.runconfig import config_hash, load_run_config
from lit.methods import METHODS
from lit.methods.base import MethodContext
from lit.models import build_model
from workflow_helpers import ROOT

# ---------------------------------------------------------------- tiny models and a batch


def tiny_models(seed: int = 0, student_widths=(16, 32, 64)) -> tuple[nn.Module, nn.Module]:
    """A ResNet-14 teacher with non-trivial batch-norm statistics (eval mode), a ResNet-8
    student (training mode), 3 x 16 x 16 inputs, 10 classes."""
    torch.manual_seed(seed)
    teacher = build_model("resnet", 14, in_channels=3, num_classes=10)
    student = build_model("resnet", 8, in_channels=3, num_classes=10, widths=list(student_widths))
    randomise_batch_norms(teacher, (3, 16, 16))
    teacher.eval()
    student.train()
    return teacher, student


def fixed_batch(seed: int = 1, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(size, 3, 16, 16, generator=generator), torch.randint(0, 10, (size,), generator=generator)


def make(name: str, context: MethodContext | None = None, student_widths=(16, 32, 64), **keys):
    teacher, student = tiny_models(student_widths=student_widths)
    method = METHODS.get(name)(MethodConfig(name=name, teacher="unused", **keys), student, teacher, context)
    method.start_phase("train")
    method.train_mode()
    return method, teacher, student


def sections_by_hand(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of every section, the stem's left out."""
    hidden, outputs = model.stem(x), []
    for section in model.sections:
        hidden = section(hidden)
        outputs.append(hidden)
    return outputs


# ---------------------------------------------------------------- AT


def official_at(x: torch.Tensor) -> torch.Tensor:
    """attention-transfer/utils.py: `F.normalize(x.pow(2).mean(1).view(x.size(0), -1))`, written out."""
    q = (x.double() ** 2).mean(dim=1).reshape(len(x), -1)
    return q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)


def official_at_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`(at(x) - at(y)).pow(2).mean()`."""
    return ((official_at(s) - official_at(t)) ** 2).mean()


@pytest.mark.parametrize("student_widths", [(16, 32, 64), (8, 16, 32)])
def test_at_loss_is_ce_plus_beta_times_the_summed_attention_losses(student_widths):
    """The official CIFAR code's objective with its `--beta 1e+3` and KD off (`--alpha 0`):
    `CE + beta * sum_groups at_loss`; a narrower student (other channels, same spatial
    sizes) is compared as it is, since the map averages over channels."""
    method, teacher, student = make("at", student_widths=student_widths)
    assert method.cfg.at_beta == 1000.0
    x, y = fixed_batch()
    reference = copy.deepcopy(student)
    logits, terms = method.losses("train", x, y, 0.0)
    with torch.no_grad():
        own, theirs = sections_by_hand(reference, x), sections_by_hand(teacher, x)
        expected_logits = reference.head(own[-1])
    assert [o.shape[1] for o in own] == list(student_widths) and [t.shape[1] for t in theirs] == [16, 32, 64]
    assert set(terms) == {"ce", "at_section0", "at_section1", "at_section2"}
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(terms["ce"], F.cross_entropy(expected_logits, y))
    at_losses = [official_at_loss(s, t) for s, t in zip(own, theirs)]
    assert all(loss > 0 for loss in at_losses)
    for i, loss in enumerate(at_losses):
        torch.testing.assert_close(terms[f"at_section{i}"].double(), 1000.0 * loss, rtol=1e-5, atol=1e-7)
    total = F.cross_entropy(expected_logits.double(), y) + 1000.0 * sum(at_losses)
    torch.testing.assert_close(sum(terms.values()).double(), total, rtol=1e-5, atol=1e-6)
    sum(terms.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.sections.parameters())


def test_at_refuses_pairs_it_cannot_compare():
    teacher, _ = tiny_models()
    two_sections = build_model("resnet", 8, in_channels=3, num_classes=10, widths=[16, 32])
    with pytest.raises(ValueError, match="sections"):
        METHODS.get("at")(MethodConfig(name="at", teacher="unused"), two_sections, teacher)
    from lit.methods.at import attention_loss

    with pytest.raises(ValueError, match="spatial"):
        attention_loss(torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4))


def test_at_maps_are_float32_under_bf16_autocast():
    method, _, _ = make("at")
    x, y = fixed_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, terms = method.losses("train", x, y, 0.0)
    assert all(terms[f"at_section{i}"].dtype == torch.float32 for i in range(3))


def test_at_loss_gradcheck():
    from lit.methods.at import attention_loss

    generator = torch.Generator().manual_seed(0)
    s = torch.randn(2, 3, 4, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 5, 4, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(attention_loss, (s, t))


# ---------------------------------------------------------------- DKD


def official_dkd(s, t, y, alpha, beta, temperature):
    """mdistiller/distillers/DKD.py `dkd_loss`, written out: masks, the binary (target,
    rest) probabilities, `kl_div(size_average=False) * T^2 / N`, and the non-target
    distributions by subtracting 1000 from the target logit. Returns (alpha TCKD, beta NCKD)."""
    s, t = s.double(), t.double()
    gt_mask = torch.zeros_like(s).scatter_(1, y[:, None], 1).bool()
    other_mask = ~gt_mask

    def cat_mask(p):
        return torch.cat([(p * gt_mask).sum(1, keepdim=True), (p * other_mask).sum(1, keepdim=True)], dim=1)

    def kl_sum(log_q, p):  # F.kl_div(log_q, p, reduction="sum"), 0 log 0 = 0
        return torch.where(p > 0, p * (torch.log(p) - log_q), torch.zeros_like(p)).sum()

    pred_student = cat_mask(F.softmax(s / temperature, dim=1))
    pred_teacher = cat_mask(F.softmax(t / temperature, dim=1))
    tckd = kl_sum(torch.log(pred_student), pred_teacher) * temperature**2 / len(y)
    pred_teacher_part2 = F.softmax(t / temperature - 1000.0 * gt_mask, dim=1)
    log_pred_student_part2 = F.log_softmax(s / temperature - 1000.0 * gt_mask, dim=1)
    nckd = kl_sum(log_pred_student_part2, pred_teacher_part2) * temperature**2 / len(y)
    return alpha * tckd, beta * nckd


def dkd_context(epochs: int = 240) -> MethodContext:
    return MethodContext(active_phases=("train",), phase_epochs={"train": epochs})


def test_dkd_defaults_are_the_papers():
    cfg = MethodConfig()
    assert (cfg.dkd_alpha, cfg.dkd_beta, cfg.dkd_temperature, cfg.dkd_warmup_epochs) == (1.0, 8.0, 4.0, 20)


@pytest.mark.parametrize("progress, warmup", [(0.0, 1 / 20), (30.5 / 240, 1.0), (9.99 / 240, 10 / 20)])
def test_dkd_loss_is_ce_plus_warmed_up_alpha_tckd_plus_beta_nckd(progress, warmup):
    method, teacher, student = make("dkd", dkd_context(240))
    x, y = fixed_batch()
    reference = copy.deepcopy(student)
    logits, terms = method.losses("train", x, y, progress)
    with torch.no_grad():
        expected_logits, teacher_logits = reference(x), teacher(x)
    tckd, nckd = official_dkd(expected_logits, teacher_logits, y, 1.0, 8.0, 4.0)
    assert set(terms) == {"ce", "tckd", "nckd"} and tckd > 0 and nckd > 0
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(terms["ce"], F.cross_entropy(expected_logits, y))
    # float32 against float64: TCKD is a small difference of near-equal binary distributions
    torch.testing.assert_close(terms["tckd"].double(), warmup * tckd, rtol=2e-4, atol=1e-7)
    torch.testing.assert_close(terms["nckd"].double(), warmup * nckd, rtol=2e-4, atol=1e-7)
    sum(terms.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("alpha, beta, temperature", [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0), (2.0, 0.0, 7.0)])
def test_dkd_terms_match_the_official_formula_on_extreme_logits(alpha, beta, temperature):
    from lit.methods.dkd import dkd_terms

    generator = torch.Generator().manual_seed(3)
    s = torch.randn(16, 10, generator=generator, dtype=torch.float64) * 6
    t = torch.randn(16, 10, generator=generator, dtype=torch.float64) * 6
    y = torch.randint(0, 10, (16,), generator=generator)
    tckd, nckd = dkd_terms(s, t, y, temperature)
    expected_tckd, expected_nckd = official_dkd(s, t, y, alpha, beta, temperature)
    torch.testing.assert_close(alpha * tckd, expected_tckd, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(beta * nckd, expected_nckd, rtol=1e-10, atol=1e-12)


def test_dkd_decomposes_kd():
    """The paper's eq. 4: KD = TCKD + (1 - p_t^T) NCKD, per sample, with p_t^T the teacher's
    target probability (T^2 on all three); checked on batch size 1."""
    from lit.methods.dkd import dkd_terms

    generator = torch.Generator().manual_seed(4)
    for _ in range(5):
        s = torch.randn(1, 7, generator=generator, dtype=torch.float64) * 3
        t = torch.randn(1, 7, generator=generator, dtype=torch.float64) * 3
        y = torch.randint(0, 7, (1,), generator=generator)
        tckd, nckd = dkd_terms(s, t, y, 2.0)
        p_t, log_p_s = F.softmax(t / 2, dim=1), F.log_softmax(s / 2, dim=1)
        kd = 4 * (p_t * (torch.log(p_t) - log_p_s)).sum()
        torch.testing.assert_close(kd, tckd + (1 - p_t[0, y[0]]) * nckd, rtol=1e-10, atol=1e-12)


def test_dkd_warmup_follows_the_epoch_counted_from_one():
    """The engine's progress of a step is (epoch + step / steps) / epochs; the weight is
    min((epoch + 1) / 20, 1) for every step of an epoch, and 1 without warm-up."""
    method, _, _ = make("dkd", dkd_context(40))
    for steps in (1, 7, 29):
        for epoch in range(40):
            for step in range(steps):
                progress = (epoch + step / steps) / 40
                assert method.warmup("train", progress) == min((epoch + 1) / 20, 1.0), (steps, epoch, step)
    assert make("dkd", dkd_context(40), dkd_warmup_epochs=0)[0].warmup("train", 0.0) == 1.0
    assert make("dkd", dkd_context(3), dkd_warmup_epochs=2)[0].warmup("train", 0.5) == 1.0


def test_dkd_refuses_a_warmup_in_an_iteration_based_phase():
    with pytest.raises(ConfigError, match="method.dkd_warmup_epochs"):
        make("dkd", MethodContext(active_phases=("train",), phase_epochs={}))
    make("dkd", MethodContext(active_phases=("train",), phase_epochs={}), dkd_warmup_epochs=0)


def test_dkd_terms_gradcheck():
    from lit.methods.dkd import dkd_terms

    generator = torch.Generator().manual_seed(5)
    s = torch.randn(3, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 4, 2])
    assert torch.autograd.gradcheck(lambda s, t: dkd_terms(s, t, y, 4.0), (s, t))


# ---------------------------------------------------------------- ReviewKD


def batch_norm_by_hand(x: torch.Tensor, norm: nn.BatchNorm2d) -> torch.Tensor:
    """Training-mode batch norm: the batch's statistics, the biased variance."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight[None, :, None, None] + norm.bias[None, :, None, None]


def official_abf(abf, x, y=None, shape=None, out_shape=None):
    """ReviewKD/CIFAR-100/model/reviewkd.py `ABF.forward`, written out with the module's weights."""
    n, _, h, w = x.shape
    x = batch_norm_by_hand(F.conv2d(x, abf.conv1[0].weight), abf.conv1[1])
    if y is not None:
        y = F.interpolate(y, (shape, shape), mode="nearest")
        z = torch.sigmoid(F.conv2d(torch.cat([x, y], dim=1), abf.att_conv[0].weight, abf.att_conv[0].bias))
        x = x * z[:, 0].view(n, 1, h, w) + y * z[:, 1].view(n, 1, h, w)
    if x.shape[-1] != out_shape:
        x = F.interpolate(x, (out_shape, out_shape), mode="nearest")
    y = batch_norm_by_hand(F.conv2d(x, abf.conv2[0].weight, padding=1), abf.conv2[1])
    return y, x


def official_hcl(fstudent, fteacher):
    """`hcl` of the official code, written out."""
    loss_all = 0.0
    for fs, ft in zip(fstudent, fteacher):
        n, c, h, w = fs.shape
        loss = ((fs - ft) ** 2).mean()
        cnt, tot = 1.0, 1.0
        for l in [4, 2, 1]:
            if l >= h:
                continue
            tmpfs, tmpft = F.adaptive_avg_pool2d(fs, (l, l)), F.adaptive_avg_pool2d(ft, (l, l))
            cnt /= 2.0
            loss = loss + ((tmpfs - tmpft) ** 2).mean() * cnt
            tot += cnt
        loss_all = loss_all + loss / tot
    return loss_all


def teacher_preactivations_by_hand(teacher: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The official teacher features `[f1_pre, f2_pre, f3_pre, f4]` for our ResNet: each
    section's last basic block before its final ReLU, and the pooled post-ReLU last output."""
    hidden, features = teacher.stem(x), []
    for section in teacher.sections:
        inner = section[:-1](hidden)
        last = section[-1]
        preact = last.bn2(last.conv2(F.relu(last.bn1(last.conv1(inner))))) + last.shortcut(inner)
        features.append(preact)
        hidden = F.relu(preact)
    return [*features, F.adaptive_avg_pool2d(hidden, 1)]


def reviewkd_context(epochs: int = 240) -> MethodContext:
    return MethodContext(active_phases=("train",), phase_epochs={"train": epochs})


def test_reviewkd_defaults_are_the_official_codes():
    cfg = MethodConfig()
    assert (cfg.reviewkd_weight, cfg.reviewkd_warmup_epochs) == (1.0, 20)


@pytest.mark.parametrize("student_widths, progress, warmup", [
    ((16, 32, 64), 5.5 / 240, 5 / 20), ((16, 32, 64), 100 / 240, 1.0), ((8, 16, 32), 19.99 / 240, 19 / 20),
])
def test_reviewkd_loss_is_ce_plus_the_warmed_up_hcl_of_the_reviewed_features(student_widths, progress, warmup):
    """The official forward (`ReviewKD.forward` with `shapes = out_shapes` the features'
    sizes), its `hcl` against the teacher's `preact=True` features, and the official loop's
    `min(1, epoch / kd_warm_up)` with epochs from 0; a narrower student too (the ABFs map
    its channels to the teacher's)."""
    method, teacher, student = make("reviewkd", reviewkd_context(), student_widths=student_widths, reviewkd_weight=0.6)
    x, y = fixed_batch()
    reference, abfs = copy.deepcopy(student), copy.deepcopy(method.extra_modules()["abfs"])
    logits, terms = method.losses("train", x, y, progress)
    with torch.no_grad():
        feats = reference.features(x)
        expected_logits = reference.head(feats[-1])
        t_features = teacher_preactivations_by_hand(teacher, x)
        student_features = [*feats[1:], F.adaptive_avg_pool2d(feats[-1], 1)]
        # the official ReviewKD.forward: features deepest first, ABFs deepest first
        shapes = [f.shape[-1] for f in student_features][::-1]  # official order, e.g. [1, 4, 8, 16]
        out_shapes = [f.shape[-1] for f in t_features][::-1]
        xs, official_abfs = student_features[::-1], list(abfs)[::-1]
        results = []
        out_features, res_features = official_abf(official_abfs[0], xs[0], out_shape=out_shapes[0])
        results.append(out_features)
        for features, abf, shape, out_shape in zip(xs[1:], official_abfs[1:], shapes[1:], out_shapes[1:]):
            out_features, res_features = official_abf(abf, features, res_features, shape, out_shape)
            results.insert(0, out_features)
        level_losses = [official_hcl([r.double()], [t.double()]) for r, t in zip(results, t_features)]
    assert min(f.min() for f in t_features[:3]) < 0, "the teacher's features are taken before the ReLU"
    assert set(terms) == {"ce", "hcl_section0", "hcl_section1", "hcl_section2", "hcl_pooled"}
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(terms["ce"], F.cross_entropy(expected_logits, y))
    names = ["hcl_section0", "hcl_section1", "hcl_section2", "hcl_pooled"]
    assert all(loss > 0 for loss in level_losses)
    for name, loss in zip(names, level_losses):
        torch.testing.assert_close(terms[name].double(), 0.6 * warmup * loss, rtol=1e-4, atol=1e-6)
    total = F.cross_entropy(expected_logits.double(), y) + 0.6 * warmup * official_hcl(
        [r.double() for r in results], [t.double() for t in t_features])
    torch.testing.assert_close(sum(terms.values()).double(), total, rtol=1e-4, atol=1e-6)
    sum(terms.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in method.extra_modules().parameters())


def test_reviewkd_first_epoch_is_cross_entropy_alone():
    method, _, _ = make("reviewkd", reviewkd_context(240))
    x, y = fixed_batch()
    _, terms = method.losses("train", x, y, 0.99 / 240)
    assert all(terms[name] == 0 for name in terms if name != "ce")
    assert method.warmup("train", 1 / 240) == 1 / 20
    assert make("reviewkd", reviewkd_context(240), reviewkd_warmup_epochs=0)[0].warmup("train", 0.0) == 1.0


def test_reviewkd_reads_the_pre_activations_of_a_folded_teacher_too():
    from lit.engine.frozen import freeze_for_inference

    method, teacher, _ = make("reviewkd", reviewkd_context())
    x, _ = fixed_batch()
    with torch.no_grad():
        expected = teacher_preactivations_by_hand(teacher, x)
    freeze_for_inference(teacher)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in teacher.sections.modules())
    for got, want in zip(method.teacher_features(x), expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_reviewkd_refuses_what_it_cannot_review():
    from lit.methods.reviewkd import section_with_preactivation

    x = torch.randn(2, 3, 4, 4)
    for section in (nn.Identity(), nn.Conv2d(3, 3, 1), nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(inplace=True))):
        with pytest.raises(ValueError, match="last ReLU"):
            section_with_preactivation(section, x)
    out, preact = section_with_preactivation(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()), x)
    assert torch.equal(out, F.relu(preact)) and preact.min() < 0
    teacher, _ = tiny_models()
    two_sections = build_model("resnet", 8, in_channels=3, num_classes=10, widths=[16, 32])
    with pytest.raises(ValueError, match="sections"):
        METHODS.get("reviewkd")(MethodConfig(name="reviewkd", teacher="unused"), two_sections, teacher)
    with pytest.raises(ConfigError, match="method.reviewkd_warmup_epochs"):
        make("reviewkd", MethodContext(active_phases=("train",), phase_epochs={}))


def test_hcl_and_abf_gradcheck():
    from lit.methods.reviewkd import ABF, hcl_loss

    generator = torch.Generator().manual_seed(6)
    shapes = [(2, 3, 8, 8), (2, 2, 3, 3), (2, 4, 1, 1)]
    s = [torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=True) for shape in shapes]
    t = [torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=True) for shape in shapes]
    assert torch.autograd.gradcheck(lambda *f: hcl_loss(list(f[:3]), list(f[3:])), (*s, *t))
    torch.manual_seed(0)
    abf = ABF(3, 4, 2, fuse=True).double()
    x = torch.randn(3, 3, 4, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    residual = torch.randn(3, 4, 2, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, r: abf(x, r, (4, 4))[0], (x, residual))


# ---------------------------------------------------------------- keys: checked, read by their method only

KEYS = {  # key: (method, a bad value, another good value)
    "at_beta": ("at", "-1", "500"),
    "dkd_alpha": ("dkd", "-0.5", "0.5"),
    "dkd_beta": ("dkd", ".nan", "2.0"),
    "dkd_temperature": ("dkd", "0", "2.0"),
    "dkd_warmup_epochs": ("dkd", "-1", "5"),
    "reviewkd_weight": ("reviewkd", "-1", "0.6"),
    "reviewkd_warmup_epochs": ("reviewkd", "-2", "0"),
}
STUDENT = ROOT / "config" / "runs" / "digits-student.yaml"


@pytest.mark.parametrize("key", sorted(KEYS))
def test_each_key_is_checked_and_read_by_its_method_only(key):
    method, bad, good = KEYS[key]
    with pytest.raises(ConfigError, match=f"method.{key}"):
        digits_config(f"method.{key}={bad}")
    for name in METHODS.names():
        assert (key in METHODS.get(name).uses) == (name == method), name

    def digest(name: str, *overrides: str) -> str:
        return config_hash(load_run_config(STUDENT, [f"method.name={name}", "method.teacher=runs/teacher", *overrides]))

    assert digest(method, f"method.{key}={good}") != digest(method)
    for other in ("kd", "lit", "fitnets", *(m for m in ("at", "dkd", "reviewkd") if m != method)):
        assert digest(other, f"method.{key}={good}") == digest(other), other


# ---------------------------------------------------------------- one epoch through the engine


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """An untrained ResNet-14 for digits, as a model checkpoint file (no training needed)."""
    from lit.models.io import model_spec, save_model

    torch.manual_seed(0)
    options = {"in_channels": 1, "num_classes": 10}
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_model(build_model("resnet", 14, **options), model_spec("resnet", 14, options), path)
    return path


@pytest.mark.parametrize("name, logged, overrides", [
    ("at", {"loss_ce", "loss_at_section0", "loss_at_section1", "loss_at_section2"}, ()),
    ("dkd", {"loss_ce", "loss_tckd", "loss_nckd"}, ()),
    # no warm-up: the official loop's first epoch would weight the HCL 0
    ("reviewkd", {"loss_ce", "loss_hcl_section0", "loss_hcl_section1", "loss_hcl_section2", "loss_hcl_pooled"},
     ("method.reviewkd_warmup_epochs=0",)),
])
def test_one_epoch_through_the_engine_logs_every_term(name, logged, overrides, teacher_file, tmp_path):
    from lit.engine.trainer import train
    from lit.runtime.checkpoint import load_checkpoint
    from lit.runtime.runlog import MetricsLog

    cfg = digits_config("model.depth=8", f"method.name={name}", f"method.teacher={teacher_file}",
                        "train.precision=fp32", "train.phases.train={epochs: 1, lr: 0.05}", *overrides)
    summary = train(cfg, tmp_path / name)
    assert summary["epochs"] == 1 and (tmp_path / name / "checkpoints" / "best.pt").exists()
    (row,) = MetricsLog(tmp_path / name / "metrics.jsonl").records()
    assert logged <= set(row) and not {k for k in row if k.startswith("loss_")} - logged - {"loss"}
    assert all(row[k] > 0 for k in logged)
    extra = load_checkpoint(tmp_path / name / "checkpoints" / "state.pt", kind="train-state")["extra"]
    assert any(key.startswith("abfs.") for key in extra) == (name == "reviewkd")
