"""LIT for generators (the LIT paper's StarGAN experiment), as the official code.

Phase `lit`: beta = 0, so the only loss is the MSE between each student residual section
fed the TEACHER's input to that section and the teacher's output of it, summed over
sections; the teacher translates to random target domains (the batch's labels shuffled),
as the generator is trained. The student's stem (down-sampling) and head (up-sampling) are
copies of the teacher's and stay frozen; its sections start from a fresh initialisation.
Phase `finetune` (length 0 by default: the official code effectively never fine-tunes the
generator): the student's sections against the teacher's discriminator, which keeps
training, with the StarGAN losses and fresh optimiser states.
"""

from __future__ import annotations

import torch
from torch import nn

from lit.config import ConfigError
from lit.methods.adversarial import DISCRIMINATOR, GENERATOR, adversarial_updates, build_discriminator, shuffled
from lit.methods.base import Method, Update, register_method
from lit.methods.losses import teacher_fed_section_mse


@register_method("gan_lit")
class GeneratorLIT(Method):
    def __init__(self, cfg, student, teacher=None, context=None):
        super().__init__(cfg, student, teacher, context)
        if len(student.sections) != len(teacher.sections):
            raise ConfigError(
                f"config key 'model.options.num_sections': LIT needs as many sections in the student "
                f"({len(student.sections)}) as in the teacher ({len(teacher.sections)})"
            )
        student.stem.load_state_dict(teacher.stem.state_dict())
        student.head.load_state_dict(teacher.head.state_dict())
        self.extra = nn.ModuleDict()
        if "finetune" in self.context.active_phases:
            self.extra[DISCRIMINATOR] = self.teacher_discriminator()

    def teacher_discriminator(self) -> nn.Module:
        extras = self.context.teacher_extras
        prefix = f"{DISCRIMINATOR}."
        if not extras or not any(key.startswith(prefix) for key in extras):
            raise ConfigError(
                "config key 'train.phases.finetune.iterations': adversarial fine-tuning needs the teacher's discriminator; "
                f"'method.teacher' ({self.cfg.teacher}) must be the teacher's run directory, with its checkpoints/state.pt"
            )
        discriminator = build_discriminator(self.cfg, self.context.input_shape, self.student.c_dim)
        discriminator.load_state_dict({key[len(prefix):]: value for key, value in extras.items() if key.startswith(prefix)})
        return discriminator

    def extra_modules(self) -> nn.ModuleDict:
        return self.extra

    def param_groups(self, phase):
        self.start_phase(phase)
        self.freeze(self.student.stem, self.student.head)
        sections = [p for p in self.student.sections.parameters()]
        if phase == "lit":
            return {GENERATOR: sections}
        return {GENERATOR: sections, DISCRIMINATOR: list(self.extra[DISCRIMINATOR].parameters())}

    def updates(self, step, inputs, labels):
        if step.phase == "finetune":
            yield from adversarial_updates(self.cfg, self.student, self.extra[DISCRIMINATOR], step, inputs, labels)
            return
        with torch.no_grad():
            teacher_feats = self.teacher.features(inputs, shuffled(labels, step.rng))
        section_mse = teacher_fed_section_mse(self.student.sections, teacher_feats)
        yield Update(GENERATOR, {f"mse_section{i}": mse for i, mse in enumerate(section_mse)})
