"""LIT (ICML 2019): Learned Intermediate representation Training.

Phase `lit`: the student's stem and head start as copies of the teacher's (frozen by
default); each student section i is fed the teacher's output of section i-1 and regressed
onto the teacher's output of section i (plain MSE); KD runs on the student's own end-to-end
forward. Objective: L = s * (beta * KD + (1 - beta) * sum_i MSE_i), with s =
`method.objective_scale`. The official code has two scales: its CIFAR code halves the sum
(s = 0.5, the default), its VDCNN code does not (`(beta * KD).backward()` and then
`(1 - beta) * MSE_i` for each section: s = 1.0). Under SGD the factor is a factor on the
phase-1 learning rate, so each of our run configs sets it to the value of the official
code it follows (1.0 for the VDCNN/text configs, 0.5 for CIFAR and digits).
Phase `finetune`: KD only, end to end (stem and head frozen by default, as the official
CIFAR code).

Batch-norm statistics: the teacher-fed pass runs the student's sections in training mode
(as the official code) but with their running statistics left untouched, so the
statistics that validation and selection use come only from the student's own path.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn

from lit.methods.base import Method, register_method
from lit.methods.losses import kd_loss, teacher_fed_section_mse


@contextmanager
def running_stats_untouched(module: nn.Module) -> Iterator[None]:
    """Batch norm in training mode normalises with batch statistics as usual, but a
    momentum of 0 leaves the running mean and variance exactly as they were."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


@register_method("lit")
class LIT(Method):
    def __init__(self, cfg, student, teacher=None, context=None):
        super().__init__(cfg, student, teacher, context)
        if len(student.sections) != len(teacher.sections):
            raise ValueError(
                f"LIT needs as many sections in the student ({len(student.sections)}) as in the teacher ({len(teacher.sections)})"
            )
        if cfg.copy_stem_head:
            student.stem.load_state_dict(teacher.stem.state_dict())
            student.head.load_state_dict(teacher.head.state_dict())

    def start_phase(self, phase):
        super().start_phase(phase)
        freeze = self.cfg.freeze_stem_head if phase == "lit" else self.cfg.finetune_freeze_stem_head
        if freeze:
            self.freeze(self.student.stem, self.student.head)
        return [p for p in self.trainable_modules().parameters() if p.requires_grad]

    def kd_weight(self, progress: float) -> float:
        """beta; the linear schedule moves it from its configured value to 1 (KD only)."""
        beta = self.cfg.kd_weight
        return beta + (1.0 - beta) * progress if self.cfg.kd_weight_schedule == "linear" else beta

    def losses(self, phase, inputs, labels, progress):
        teacher_logits, teacher_feats = self.teacher_logits_and_feats(inputs)
        logits = self.student(inputs)
        kd = kd_loss(logits, teacher_logits, labels, self.cfg.temperature, self.cfg.hard_weight)
        if phase == "finetune":
            return logits, {"kd": kd}
        beta = self.kd_weight(progress)
        with running_stats_untouched(self.student.sections):
            section_mse = teacher_fed_section_mse(self.student.sections, teacher_feats)
        scale = self.cfg.objective_scale
        terms = {"kd": scale * beta * kd}
        for i, mse in enumerate(section_mse):
            terms[f"mse_section{i}"] = scale * (1.0 - beta) * mse
        return logits, terms
