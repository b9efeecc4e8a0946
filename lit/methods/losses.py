"""Pure loss functions: each one a few lines that a reader can check against its paper."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of the student's softened distribution against the teacher's, batch mean.
    In float32: CPU autocast would run the softmaxes in bf16, too coarse for the small
    differences between student and teacher that the soft term's gradient consists of."""
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    teacher_probs = F.softmax(teacher_logits.to(dtype) / temperature, dim=1)
    return -(teacher_probs * F.log_softmax(student_logits.to(dtype) / temperature, dim=1)).sum(dim=1).mean()


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    hard_weight: float,
) -> torch.Tensor:
    """the KD paper, 2015 in the LIT code's convention, where the weight (alpha) is on the
    HARD-label term: `(1 - alpha) * tau^2 * softCE(s/tau, t/tau) + alpha * CE(s, y)`."""
    soft = soft_cross_entropy(student_logits, teacher_logits, temperature) * temperature**2
    hard = F.cross_entropy(student_logits, labels)
    return (1.0 - hard_weight) * soft + hard_weight * hard


def teacher_fed_section_mse(
    student_sections: Sequence[nn.Module], teacher_feats: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """LIT's intermediate loss: student section i is fed the TEACHER's output of section i-1
    (`teacher_feats[i]`, where `teacher_feats[0]` is the stem output) and regressed onto the
    teacher's output of section i (`teacher_feats[i + 1]`) by plain MSE, averaged over all
    elements. The teacher's features are targets only: no gradient reaches the teacher."""
    if len(teacher_feats) != len(student_sections) + 1:
        raise ValueError(
            f"teacher gives {len(teacher_feats) - 1} sections but the student has {len(student_sections)}: "
            "LIT needs teacher and student with the same number of sections"
        )
    return [
        F.mse_loss(section(teacher_feats[i].detach()).float(), teacher_feats[i + 1].detach().float())
        for i, section in enumerate(student_sections)
    ]
