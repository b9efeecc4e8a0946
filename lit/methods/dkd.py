"""Decoupled knowledge distillation (DKD; Zhao et al., CVPR 2022).

KD's KL divergence splits into a target-class part and a non-target part, which DKD
weights on their own: `CE(s, y) + w(epoch) * (alpha * TCKD + beta * NCKD)`, where
  TCKD = T^2 KL(b_t || b_s), b = (p_y, 1 - p_y), the binary target/rest distribution of
         softmax(z / T);
  NCKD = T^2 KL(q_t || q_s), q = softmax(z / T) over the non-target classes only;
both batch means, and `w(epoch) = min(epoch / warm-up, 1)` with epochs counted from 1 (the
official code, mdistiller: `min(kwargs["epoch"] / self.warmup, 1.0)`, its trainer's epochs
starting at 1), constant within an epoch. Defaults are the official code's
(`CFG.DKD`: CE weight 1, alpha 1, beta 8, T 4, warm-up 20); its configs of the same-family
CIFAR ResNet pairs (ResNet-56 -> 20, ResNet-110 -> 32) set beta 2, its WRN and VGG pairs 6.

DKD has its own temperature key, `method.dkd_temperature` (4), rather than KD's
`method.temperature`, whose default (6) and run-config values are LIT's and which `lit tune`
rewrites for KD and LIT.

The log-probabilities are differences of log-sum-exps, so they stay finite where a
probability underflows; in float32 at least, as KD's soft term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lit.config import ConfigError
from lit.methods.base import Method, register_method


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def dkd_terms(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), unweighted: each T^2 times a batch-mean KL divergence, teacher to student."""
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    target = F.one_hot(labels, student_logits.shape[1]).bool()

    def log_distributions(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log b = log (p_y, 1 - p_y) and log q (softmax over the non-target classes)."""
        z = logits.to(dtype) / temperature
        others = z[~target].view(len(z), -1)  # the non-target logits, in class order
        binary = torch.cat([z.gather(1, labels[:, None]), torch.logsumexp(others, dim=1, keepdim=True)], dim=1)
        return binary - torch.logsumexp(z, dim=1, keepdim=True), F.log_softmax(others, dim=1)

    teacher_binary, teacher_others = log_distributions(teacher_logits)
    student_binary, student_others = log_distributions(student_logits)
    tckd = _kl(teacher_binary, student_binary).mean() * temperature**2
    nckd = _kl(teacher_others, student_others).mean() * temperature**2
    return tckd, nckd


@register_method("dkd")
class DecoupledKD(Method):
    def __init__(self, cfg, student, teacher=None, context=None):
        super().__init__(cfg, student, teacher, context)
        if cfg.dkd_warmup_epochs and "train" in self.context.active_phases and "train" not in self.context.phase_epochs:
            raise ConfigError(
                "config key 'method.dkd_warmup_epochs': DKD's warm-up counts epochs, but phase 'train' counts iterations "
                "(train.phases.train.iterations); give the phase in epochs or set the warm-up to 0"
            )

    def warmup(self, phase: str, progress: float) -> float:
        """min(epoch / warm-up, 1), the epoch counted from 1."""
        if self.cfg.dkd_warmup_epochs == 0:
            return 1.0
        return min((self.epochs_done(phase, progress) + 1) / self.cfg.dkd_warmup_epochs, 1.0)

    def losses(self, phase, inputs, labels, progress):
        with torch.no_grad():
            teacher_logits = self.teacher(inputs)
        logits = self.student(inputs)
        tckd, nckd = dkd_terms(logits, teacher_logits, labels, self.cfg.dkd_temperature)
        weight = self.warmup(phase, progress)
        return logits, {
            "ce": F.cross_entropy(logits, labels),
            "tckd": weight * self.cfg.dkd_alpha * tckd,
            "nckd": weight * self.cfg.dkd_beta * nckd,
        }
