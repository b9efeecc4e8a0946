"""Attention transfer (AT; Zagoruyko and Komodakis, ICLR 2017), activation-based.

The attention map of a feature f of shape (N, C, *spatial) is the mean over channels of
f^2, flattened and L2-normalised per sample; the loss at one section boundary is the mean
over batch and positions of the squared difference of the student's and the teacher's
maps, and the objective is `CE(student, y) + beta * sum_j at_loss_j` over the outputs of
every section (the official CIFAR code: `at(x) = F.normalize(x.pow(2).mean(1).view(N, -1))`,
`at_loss = (at(s) - at(t)).pow(2).mean()`, the groups' losses summed and weighted by
`--beta 1e+3`, with its KD term off, `--alpha 0`). The paper's eq. 2 writes the weight as
beta / 2 on a (non-squared) p-norm and sets beta to 1000 divided by the map size and batch:
the code's `mean` is that division, so `method.at_beta` is the code's beta, 1000.

The map averages over channels, so a student narrower than its teacher is compared as it
is: only the spatial sizes of each pair must agree (every family's stages downsample alike).
The stem's output is left out, as the official code leaves out the output of its first
convolution. Its WRN's group outputs are pre-activation sums (its blocks are pre-activation);
our sections end in ReLU, and their outputs are taken as they are (as mdistiller's AT does). Maps are computed in float32 (bf16 would round the small squared differences).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lit.methods.base import Method, register_method


def attention_map(feature: torch.Tensor) -> torch.Tensor:
    """(N, C, *spatial) -> (N, prod(spatial)): normalise(mean_c f^2), in float32 at least."""
    feature = feature.to(torch.promote_types(feature.dtype, torch.float32))
    return F.normalize(feature.pow(2).mean(1).flatten(1), dim=1)


def attention_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """Mean over batch and positions of the squared difference of the two attention maps."""
    if student_feature.shape[2:] != teacher_feature.shape[2:]:
        raise ValueError(
            f"AT compares attention maps of equal spatial size: student {tuple(student_feature.shape[2:])}, "
            f"teacher {tuple(teacher_feature.shape[2:])}"
        )
    return (attention_map(student_feature) - attention_map(teacher_feature)).pow(2).mean()


@register_method("at")
class AttentionTransfer(Method):
    def __init__(self, cfg, student, teacher=None, context=None):
        super().__init__(cfg, student, teacher, context)
        if len(student.sections) != len(teacher.sections):
            raise ValueError(
                f"AT pairs the output of every section: the student has {len(student.sections)} sections, "
                f"the teacher {len(teacher.sections)}"
            )

    def losses(self, phase, inputs, labels, progress):
        with torch.no_grad():
            teacher_feats = self.teacher.features(inputs)
        feats = self.student.features(inputs)
        logits = self.student.head(feats[-1])
        terms = {"ce": F.cross_entropy(logits, labels)}
        for i, (student_feature, teacher_feature) in enumerate(zip(feats[1:], teacher_feats[1:])):
            terms[f"at_section{i}"] = self.cfg.at_beta * attention_loss(student_feature, teacher_feature)
        return logits, terms
