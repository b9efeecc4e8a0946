"""Knowledge distillation (the KD paper, 2015): the student, trained end to end from a
fresh init, matches the teacher's softened logits and the labels."""

from __future__ import annotations

from lit.methods.base import Method, register_method
from lit.methods.losses import kd_loss


@register_method("kd")
class KnowledgeDistillation(Method):
    def losses(self, phase, inputs, labels, progress):
        teacher_logits, _ = self.teacher_logits_and_feats(inputs)
        logits = self.student(inputs)
        return logits, {"kd": kd_loss(logits, teacher_logits, labels, self.cfg.temperature, self.cfg.hard_weight)}
