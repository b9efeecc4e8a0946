"""Training from scratch: cross-entropy on the labels."""

from __future__ import annotations

import torch.nn.functional as F

from lit.methods.base import Method, register_method


@register_method("scratch")
class Scratch(Method):
    def losses(self, phase, inputs, labels, progress):
        logits = self.student(inputs)
        return logits, {"ce": F.cross_entropy(logits, labels)}
