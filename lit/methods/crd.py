"""Contrastive representation distillation (CRD; Tian, Krishnan and Isola, ICLR 2020), with
KD as the paper recommends ("CRD+KD"), after its official code (RepDistiller: `crd/`,
`distiller_zoo/KD.py`, the `exact` sampling mode of its CIFAR instance-sample data set).

The student's and the teacher's penultimate features (the input of each head's last linear
layer: after the global pooling of a ResNet) are embedded by a linear layer each to
`crd_feat_dim` (128) dimensions and L2-normalised. A memory bank holds one embedding of
each training example per network. For every example of a batch, its own row (the
positive) and `crd_nce_k` (16,384) rows of examples of other classes (the negatives) are
read from the OTHER network's bank; each score is `exp(<v, m> / crd_nce_t)` (0.07),
divided by a constant Z fixed at the first batch (the mean score times the number of
training examples). The NCE loss of the scores, with noise probability 1 / N for each of
the K negatives, is
    -1/B sum_b [ log(P_pos / (P_pos + K/N + eps)) + sum_k log((K/N) / (P_neg,k + K/N + eps)) ]
(eps 1e-7), and CRD's term is the student-anchored loss plus the teacher-anchored one. The
banks are then moved towards the batch's embeddings (`m <- normalise(crd_nce_m * m +
(1 - crd_nce_m) * v)`, momentum 0.5), once the engine has applied the step's update. The
objective is
    crd_gamma * CE + crd_alpha * KD + crd_beta * CRD
with the official values for CRD+KD: gamma 1, alpha 1 (KD: T^2 KL(p_t || p_s), batch
mean, at `crd_kd_temperature` 4, the official `--kd_T`), beta 0.8.

Negatives are drawn for each example from the examples of other classes, uniformly with
replacement, from the run's data generator (so a resumed run draws the same ones); the
official code draws without replacement when a class's negatives outnumber K (on full
CIFAR-100, not on a subset smaller than K). The banks start uniform in +-1/sqrt(dim / 3),
as the official code; they and the two Z constants are buffers of the method's module,
checkpointed with it, and both embedding layers train with the student (as the official
code's `trainable_list`). Scores are computed in float32 with autocast off: exp(s / 0.07)
of a bf16 dot product would be off by several per cent.

A run reads each example's row in the training split from the step (`Step.indices`) and the
labels by row from the context (`MethodContext.train_labels`). One bank per process: a
data-parallel run is refused (each rank would update its own copy).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from lit.methods.base import MODEL_GROUP, Method, Step, Update, register_method

NCE_EPS = 1e-7  # the official ContrastLoss's eps


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The last linear layer of a model's head: its input is the penultimate feature."""
    linears = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"CRD embeds the input of the classifier, but the head of {type(model).__name__} has no linear layer")
    return linears[-1]


@contextmanager
def classifier_input(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Records the input of the model's classifier layer in the yielded list while open."""
    seen: list[torch.Tensor] = []
    handle = classifier_layer(model).register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        yield seen
    finally:
        handle.remove()


class Embed(nn.Module):
    """A linear layer to the contrast dimension, then L2 normalisation (in float32)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x.flatten(1)).float(), dim=1)


def nce_loss(scores: torch.Tensor, examples: int) -> torch.Tensor:
    """NCE of (B, 1 + K) normalised scores, the positive first, with noise 1 / `examples`."""
    noise = (scores.shape[1] - 1) / examples  # K * Pn
    positive, negatives = scores[:, 0], scores[:, 1:]
    log_d1 = torch.log(positive / (positive + noise + NCE_EPS))
    log_d0 = torch.log(noise / (negatives + noise + NCE_EPS))
    return -(log_d1.sum() + log_d0.sum()) / len(scores)


def contrast_scores(anchors: torch.Tensor, bank: torch.Tensor, rows: torch.Tensor, temperature: float) -> torch.Tensor:
    """exp(<anchor_b, bank[rows[b, j]]> / T), (B, 1 + K), in float32. With a bank of at most
    32 (1 + K) rows every dot product is taken (one matrix product, then a gather: less
    memory than gathering B (1 + K) rows of the bank); a larger bank is gathered."""
    with torch.autocast(anchors.device.type, enabled=False):
        dtype = torch.promote_types(anchors.dtype, torch.float32)
        anchors, bank = anchors.to(dtype), bank.to(dtype)
        if len(bank) <= 32 * rows.shape[1]:
            dots = (anchors @ bank.T).gather(1, rows)
        else:
            dots = torch.einsum("bkd,bd->bk", bank[rows], anchors)
        return torch.exp(dots / temperature)


class ContrastMemory(nn.Module):
    """The two memory banks (student's, teacher's embedding of every training example),
    their normalising constants Z and the per-class index that negatives are drawn from."""

    def __init__(self, dim: int, train_labels: torch.Tensor, negatives: int, temperature: float, momentum: float) -> None:
        super().__init__()
        if train_labels.dim() != 1:
            raise ValueError("CRD draws negatives from other classes: it needs one class label per training example")
        examples = len(train_labels)
        self.negatives, self.temperature, self.momentum = negatives, temperature, momentum
        bound = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("student_bank", torch.rand(examples, dim) * 2 * bound - bound)
        self.register_buffer("teacher_bank", torch.rand(examples, dim) * 2 * bound - bound)
        self.register_buffer("z", torch.full((2,), -1.0))  # (Z of student anchors, Z of teacher anchors); < 0: unset
        # derived from the labels, so not checkpointed: rows sorted by class, each class's first position and count
        by_class = torch.sort(train_labels.long(), stable=True)
        counts = torch.bincount(by_class.values, minlength=int(train_labels.max()) + 1)
        if (counts == examples).any():
            raise ValueError("CRD draws negatives from other classes, but every training example has one class")
        self.register_buffer("by_class", by_class.indices, persistent=False)
        self.register_buffer("class_count", counts, persistent=False)
        self.register_buffer("class_start", torch.cumsum(counts, 0) - counts, persistent=False)

    @property
    def examples(self) -> int:
        return len(self.student_bank)

    def sample(self, indices: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, 1 + K) rows: each example's own, then K of examples of other classes."""
        count, start = self.class_count[labels], self.class_start[labels]
        uniform = torch.rand(len(labels), self.negatives, generator=generator, device=generator.device).to(count.device)
        position = (uniform * (self.examples - count)[:, None]).long()  # among the N - n_y others, in class order
        position = position + (position >= start[:, None]) * count[:, None]  # skip the example's own class
        return torch.cat([indices[:, None], self.by_class[position]], dim=1)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised scores: the student's anchors on the teacher's bank, the teacher's on the student's."""
        scores = []
        for which, (anchors, bank) in enumerate(((student, self.teacher_bank), (teacher, self.student_bank))):
            score = contrast_scores(anchors, bank, rows, self.temperature)
            if self.z[which] < 0:  # fixed at the first batch, as the official code
                self.z[which] = score.detach().mean() * self.examples
            scores.append(score / self.z[which].clone())  # a copy: setting the other Z must not touch this graph
        return scores[0], scores[1]

    @torch.no_grad()
    def update(self, student: torch.Tensor, teacher: torch.Tensor, indices: torch.Tensor) -> None:
        """Move the banks' rows of this batch towards its embeddings (after the backward pass,
        which reads the banks as they were)."""
        for bank, embedding in ((self.student_bank, student), (self.teacher_bank, teacher)):
            moved = bank[indices] * self.momentum + embedding.detach().float() * (1.0 - self.momentum)
            bank.index_copy_(0, indices, F.normalize(moved, dim=1))


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 KL(softmax(t / T) || softmax(s / T)), batch mean, in float32 at least."""
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    log_s = F.log_softmax(student_logits.to(dtype) / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits.to(dtype) / temperature, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * temperature**2


@register_method("crd")
class ContrastiveRepresentationDistillation(Method):
    def __init__(self, cfg, student, teacher=None, context=None):
        super().__init__(cfg, student, teacher, context)
        if self.context.train_labels is None:
            raise ValueError("CRD keeps a memory bank over the training examples: its context has no train_labels")
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            raise ValueError("CRD keeps one memory bank per process; data-parallel training would update a copy per rank")
        self.modules_ = nn.ModuleDict({
            "embed_student": Embed(classifier_layer(student).in_features, cfg.crd_feat_dim),
            "embed_teacher": Embed(classifier_layer(teacher).in_features, cfg.crd_feat_dim),
            "memory": ContrastMemory(cfg.crd_feat_dim, self.context.train_labels, cfg.crd_nce_k, cfg.crd_nce_t, cfg.crd_nce_m),
        })

    def extra_modules(self) -> nn.ModuleDict:
        return self.modules_

    def updates(self, step: Step, inputs: torch.Tensor, labels: torch.Tensor) -> Iterator[Update]:
        if step.indices is None:
            raise ValueError("CRD needs each example's row in the training split (Step.indices)")
        with torch.no_grad(), classifier_input(self.teacher) as teacher_input:
            teacher_logits = self.teacher(inputs)
        with classifier_input(self.student) as student_input:
            logits = self.student(inputs)
        memory = self.modules_["memory"]
        rows = memory.sample(step.indices, labels, step.rng)
        student_embedding = self.modules_["embed_student"](student_input[-1])
        teacher_embedding = self.modules_["embed_teacher"](teacher_input[-1])
        student_scores, teacher_scores = memory(student_embedding, teacher_embedding, rows)
        cfg = self.cfg
        yield Update(MODEL_GROUP, {
            "ce": cfg.crd_gamma * F.cross_entropy(logits, labels),
            "kd": cfg.crd_alpha * kd_kl(logits, teacher_logits, cfg.crd_kd_temperature),
            "crd": cfg.crd_beta * (nce_loss(student_scores, memory.examples) + nce_loss(teacher_scores, memory.examples)),
        }, logits)
        # the engine has applied the update: the banks move now (the official code moves them
        # in its forward, after copying out the rows the loss reads; the values are the same)
        memory.update(student_embedding, teacher_embedding, step.indices)
