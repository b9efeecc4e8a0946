"""StarGAN (CVPR 2018), the objective that trains a teacher generator: the generator
(the run's model) against a PatchGAN discriminator with a domain classifier, which this
method owns (checkpointed with the run). Losses and update order: `lit.methods.adversarial`.
One iteration-based phase, `gan`; no validation selection (best.pt is the last model)."""

from __future__ import annotations

from torch import nn

from lit.methods.adversarial import DISCRIMINATOR, GENERATOR, adversarial_updates, build_discriminator
from lit.methods.base import Method, register_method


@register_method("stargan")
class StarGAN(Method):
    def __init__(self, cfg, student, teacher=None, context=None):
        super().__init__(cfg, student, teacher, context)
        self.extra = nn.ModuleDict({DISCRIMINATOR: build_discriminator(cfg, self.context.input_shape, student.c_dim)})

    def extra_modules(self) -> nn.ModuleDict:
        return self.extra

    def param_groups(self, phase):
        self.start_phase(phase)
        return {GENERATOR: list(self.student.parameters()), DISCRIMINATOR: list(self.extra.parameters())}

    def updates(self, step, inputs, labels):
        yield from adversarial_updates(self.cfg, self.student, self.extra[DISCRIMINATOR], step, inputs, labels)
