"""CRD + KD: the loss on a fixed batch against the official code's formulas (spelled out
here: per-example gathers of the banks, NCE as its ContrastLoss writes it, KD as its
DistillKL), the negatives (other classes only, uniform), the banks' momentum update and
fixed Z, both ways of scoring, a gradient check, its keys, and runs through the engine
(terms logged, the banks checkpointed; resume: tests/test_engine.py)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import digits_config
from lit.config import ConfigError, MethodConfig
from lit.methods import METHODS
from lit.methods.base import MethodContext, Step
from test_baselines import fixed_batch, tiny_models

# ---------------------------------------------------------------- the official formulas


def official_nce(x: torch.Tensor, n_data: int) -> torch.Tensor:
    """RepDistiller's ContrastLoss: x is (B, 1 + K), the positive first; noise Pn = 1 / N."""
    bsz, m = x.shape[0], x.shape[1] - 1
    pn, eps = 1.0 / n_data, 1e-7
    p_pos = x[:, 0]
    log_d1 = torch.log(p_pos / (p_pos + m * pn + eps))
    p_neg = x[:, 1:]
    log_d0 = torch.log(torch.full_like(p_neg, m * pn) / (p_neg + m * pn + eps))
    return -(log_d1.sum(0) + log_d0.reshape(-1, 1).sum(0)) / bsz


def official_scores(memory: torch.Tensor, anchor: torch.Tensor, rows: torch.Tensor, t: float) -> torch.Tensor:
    """Its ContrastMemory: the rows gathered per example, a batched product, exp(. / T)."""
    weight = torch.index_select(memory, 0, rows.reshape(-1)).reshape(rows.shape[0], rows.shape[1], -1)
    return torch.exp(torch.bmm(weight, anchor.reshape(anchor.shape[0], -1, 1)).squeeze(2) / t)


def official_kd(y_s: torch.Tensor, y_t: torch.Tensor, t: float) -> torch.Tensor:
    """Its DistillKL: kl_div(log p_s, p_t, sum) * T^2 / batch."""
    p_s, p_t = F.log_softmax(y_s / t, dim=1), F.softmax(y_t / t, dim=1)
    return F.kl_div(p_s, p_t, reduction="sum") * t**2 / y_s.shape[0]


def penultimate(model, x: torch.Tensor) -> torch.Tensor:
    """A CIFAR ResNet's feature before its classifier: the pooled last section output."""
    return F.adaptive_avg_pool2d(model.sections[-1](model.sections[-2](model.sections[-3](model.stem(x)))), 1).flatten(1)


# ---------------------------------------------------------------- helpers

TRAIN_LABELS = torch.arange(40) % 10  # 40 training examples, 4 per class


def crd_context(labels: torch.Tensor = TRAIN_LABELS) -> MethodContext:
    return MethodContext(active_phases=("train",), phase_epochs={"train": 1}, train_labels=labels)


def make_crd(**keys):
    teacher, student = tiny_models()
    method = METHODS.get("crd")(MethodConfig(name="crd", teacher="unused", **keys), student, teacher, crd_context())
    method.start_phase("train")
    method.train_mode()
    return method, teacher, student


def step_of(indices: torch.Tensor, seed: int = 9) -> Step:
    return Step("train", 0, 0.0, torch.Generator().manual_seed(seed), indices)


def run_updates(method, step, x, y, backward: bool = False):
    """One batch as the engine runs it: the update, its backward pass when asked, then the
    rest of the method's step (its banks move), which must yield nothing more."""
    updates = method.updates(step, x, y)
    update = next(updates)
    if backward:
        sum(update.terms.values()).backward()
    assert next(updates, None) is None
    return update


# ---------------------------------------------------------------- tests


def test_crd_defaults_are_the_official_codes():
    cfg = MethodConfig()
    assert (cfg.crd_gamma, cfg.crd_alpha, cfg.crd_beta, cfg.crd_kd_temperature) == (1.0, 1.0, 0.8, 4.0)
    assert (cfg.crd_feat_dim, cfg.crd_nce_k, cfg.crd_nce_t, cfg.crd_nce_m) == (128, 16384, 0.07, 0.5)


@pytest.mark.parametrize("nce_k", [16384, 6])  # more negatives than examples (dense scores), and few (gathered)
def test_crd_loss_is_gamma_ce_plus_alpha_kd_plus_beta_nce_of_both_anchors(nce_k):
    method, teacher, student = make_crd(crd_nce_k=nce_k, crd_feat_dim=16)
    memory = method.extra_modules()["memory"]
    banks = (memory.student_bank.clone(), memory.teacher_bank.clone())
    x, y = fixed_batch(size=8)
    indices = torch.tensor([3, 17, 22, 5, 38, 11, 0, 29])
    y = TRAIN_LABELS[indices]
    reference = copy.deepcopy(student)
    embed_s, embed_t = copy.deepcopy(method.extra_modules()["embed_student"]), copy.deepcopy(method.extra_modules()["embed_teacher"])
    rows = memory.sample(indices, y, torch.Generator().manual_seed(9))  # what the step draws from the same generator
    update = run_updates(method, step_of(indices), x, y, backward=True)
    assert set(update.terms) == {"ce", "kd", "crd"}

    with torch.no_grad():
        teacher_logits, feat_t = teacher(x), penultimate(teacher, x)
    logits, feat_s = reference(x), penultimate(reference, x)
    v_s = F.normalize(embed_s.linear(feat_s), dim=1)  # official Embed: linear, then l2norm
    v_t = F.normalize(embed_t.linear(feat_t), dim=1)
    out_s = official_scores(banks[1], v_s, rows, 0.07)  # the student anchored on the teacher's bank
    out_t = official_scores(banks[0], v_t, rows, 0.07)
    out_s, out_t = out_s / (out_s.mean().item() * 40), out_t / (out_t.mean().item() * 40)  # Z at the first batch
    torch.testing.assert_close(update.logits, logits)
    torch.testing.assert_close(update.terms["ce"], F.cross_entropy(logits, y))
    torch.testing.assert_close(update.terms["kd"], official_kd(logits, teacher_logits, 4.0))
    torch.testing.assert_close(update.terms["crd"], 0.8 * (official_nce(out_s, 40) + official_nce(out_t, 40)).squeeze(),
                               rtol=1e-5, atol=1e-5)
    assert all(p.grad is None for p in teacher.parameters())
    assert method.extra_modules()["embed_student"].linear.weight.grad is not None
    assert method.extra_modules()["embed_teacher"].linear.weight.grad is not None  # trained, as the official code


def test_crd_weights_scale_their_terms():
    x, y = fixed_batch(size=8)
    indices = torch.arange(8) * 5
    y = TRAIN_LABELS[indices]
    base = run_updates(make_crd()[0], step_of(indices), x, y).terms
    scaled = run_updates(make_crd(crd_gamma=0.5, crd_alpha=2.0, crd_beta=0.1)[0], step_of(indices), x, y).terms
    torch.testing.assert_close(scaled["ce"], 0.5 * base["ce"])
    torch.testing.assert_close(scaled["kd"], 2.0 * base["kd"])
    torch.testing.assert_close(scaled["crd"], base["crd"] / 8)


def test_negatives_are_the_example_itself_then_other_classes_drawn_uniformly():
    from lit.methods.crd import ContrastMemory

    labels = torch.tensor([0, 0, 0, 1, 2, 2, 1, 0, 2, 3, 3, 0])  # uneven classes, not sorted
    memory = ContrastMemory(4, labels, negatives=60_000, temperature=0.07, momentum=0.5)
    indices = torch.tensor([0, 3, 4, 9])
    rows = memory.sample(indices, labels[indices], torch.Generator().manual_seed(0))
    assert rows.shape == (4, 60_001) and torch.equal(rows[:, 0], indices)
    for b, example in enumerate(indices.tolist()):
        negatives = rows[b, 1:]
        assert (labels[negatives] != labels[example]).all()
        others = (labels != labels[example]).nonzero().flatten()
        counts = torch.bincount(negatives, minlength=len(labels))[others].double()
        expected = 60_000 / len(others)
        assert counts.min() > 0.95 * expected and counts.max() < 1.05 * expected  # every other example, evenly
    with pytest.raises(ValueError, match="every training example has one class"):
        ContrastMemory(4, torch.zeros(5, dtype=torch.long), 3, 0.07, 0.5)
    with pytest.raises(ValueError, match="one class label per training example"):
        ContrastMemory(4, torch.zeros(5, 3), 3, 0.07, 0.5)


def test_banks_move_towards_the_batch_and_z_stays_fixed_after_the_first_batch():
    method, _, _ = make_crd(crd_feat_dim=16, crd_nce_m=0.25)
    memory = method.extra_modules()["memory"]
    x, _ = fixed_batch(size=8)
    indices = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8])
    y = TRAIN_LABELS[indices]
    before = memory.student_bank.clone(), memory.teacher_bank.clone()
    assert (memory.z < 0).all()
    captured = {}
    original = type(memory).forward

    def spy(self, student, teacher, rows):
        captured["v"] = student.detach().clone(), teacher.detach().clone()
        return original(self, student, teacher, rows)

    type(memory).forward = spy
    try:
        run_updates(method, step_of(indices), x, y)
        z = memory.z.clone()
        assert (z > 0).all()
        run_updates(method, step_of(indices + 10, seed=3), x, TRAIN_LABELS[indices + 10])
    finally:
        type(memory).forward = original
    assert torch.equal(memory.z, z)
    # rows of the first batch moved once (with the first batch's embeddings), rows never seen kept
    v_s, v_t = captured["v"]  # the second batch's; the first batch's rows were not touched by it
    untouched = torch.tensor([0, 9, 20, 39])
    assert torch.equal(memory.student_bank[untouched], before[0][untouched])
    second = indices + 10
    expected = F.normalize(before[0][second] * 0.25 + v_s * 0.75, dim=1)
    torch.testing.assert_close(memory.student_bank[second], expected)
    torch.testing.assert_close(memory.teacher_bank[second], F.normalize(before[1][second] * 0.25 + v_t * 0.75, dim=1))
    assert torch.allclose(memory.student_bank[indices].norm(dim=1), torch.ones(8))
    assert not torch.allclose(memory.student_bank[indices], before[0][indices])
    # the banks and Z are the method's state: checkpointed with its extra modules
    assert {"memory.student_bank", "memory.teacher_bank", "memory.z"} <= set(method.extra_modules().state_dict())


def test_dense_and_gathered_scores_agree_with_the_per_example_product():
    from lit.methods.crd import contrast_scores

    generator = torch.Generator().manual_seed(2)
    anchors = F.normalize(torch.randn(5, 8, generator=generator, dtype=torch.float64), dim=1)
    bank = F.normalize(torch.randn(300, 8, generator=generator, dtype=torch.float64), dim=1)
    for width in (3, 50):  # 300 rows > 32 * 3: gathered; <= 32 * 50: one matrix product
        rows = torch.randint(0, 300, (5, width), generator=generator)
        torch.testing.assert_close(contrast_scores(anchors, bank, rows, 0.07), official_scores(bank, anchors, rows, 0.07))


def test_crd_scores_stay_float32_under_bf16_autocast():
    from lit.methods.crd import contrast_scores

    generator = torch.Generator().manual_seed(6)
    anchors = F.normalize(torch.randn(4, 32, generator=generator), dim=1)
    bank = F.normalize(torch.randn(50, 32, generator=generator), dim=1)
    rows = torch.randint(0, 50, (4, 20), generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = contrast_scores(anchors, bank, rows, 0.07)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, official_scores(bank, anchors, rows, 0.07))


def test_nce_and_scores_gradcheck():
    from lit.methods.crd import contrast_scores, nce_loss

    generator = torch.Generator().manual_seed(7)
    anchors = torch.randn(3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    bank = F.normalize(torch.randn(20, 4, generator=generator, dtype=torch.float64), dim=1)
    rows = torch.randint(0, 20, (3, 6), generator=generator)
    assert torch.autograd.gradcheck(lambda a: nce_loss(contrast_scores(F.normalize(a, dim=1), bank, rows, 0.5) / 7.0, 20), (anchors,))
    scores = torch.rand(3, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(nce_loss(scores, 20), official_nce(scores, 20).squeeze())
    assert torch.autograd.gradcheck(lambda s: nce_loss(s, 20), (scores,))


def test_crd_refuses_what_it_cannot_run():
    teacher, student = tiny_models()
    with pytest.raises(ValueError, match="train_labels"):
        METHODS.get("crd")(MethodConfig(name="crd", teacher="unused"), student, teacher, MethodContext())
    method, _, _ = make_crd()
    x, y = fixed_batch(size=4)
    with pytest.raises(ValueError, match="Step.indices"):
        run_updates(method, Step("train", 0, 0.0, torch.Generator()), x, y)


@pytest.mark.parametrize("key, bad", [("crd_beta", "-1"), ("crd_gamma", ".nan"), ("crd_alpha", "-0.1"),
                                      ("crd_kd_temperature", "0"), ("crd_nce_t", "-0.07"), ("crd_feat_dim", "0"),
                                      ("crd_nce_k", "0"), ("crd_nce_m", "1.0")])
def test_each_crd_key_is_checked_and_read_by_crd_only(key, bad):
    with pytest.raises(ConfigError, match=f"method.{key}"):
        digits_config(f"method.{key}={bad}")
    for name in METHODS.names():
        assert (key in METHODS.get(name).uses) == (name == "crd"), name


def test_crd_trains_on_digits_logging_its_terms_and_checkpointing_its_banks(tmp_path):
    from lit.engine.trainer import train
    from lit.runtime.checkpoint import load_checkpoint
    from lit.runtime.runlog import MetricsLog

    teacher_dir = tmp_path / "teacher"
    train(digits_config("model.depth=8", "method.name=scratch", "train.phases.train={epochs: 1, lr: 0.05}"), teacher_dir)
    cfg = digits_config("model.depth=8", "method.name=crd", f"method.teacher={teacher_dir}",
                        "train.phases.train={epochs: 1, lr: 0.05}")
    summary = train(cfg, tmp_path / "crd")
    assert summary["epochs"] == 1
    (row,) = MetricsLog(tmp_path / "crd" / "metrics.jsonl").records()
    assert {"loss_ce", "loss_kd", "loss_crd"} <= set(row) and all(math.isfinite(row[k]) and row[k] > 0 for k in ("loss_ce", "loss_crd"))
    extra = load_checkpoint(tmp_path / "crd" / "checkpoints" / "state.pt", kind="train-state")["extra"]
    examples = len(load_train_labels(cfg))
    assert extra["memory.student_bank"].shape == extra["memory.teacher_bank"].shape == (examples, 128)
    assert (extra["memory.z"] > 0).all()


def load_train_labels(cfg) -> torch.Tensor:
    from lit.data import load_data

    return load_data(cfg.data).train.labels
