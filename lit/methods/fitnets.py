"""FitNets (ICLR 2015): hints for thin deep nets, in two stages.

The hint is the teacher's output of one section, the guided layer the student's output of
the same section: by default the middle one, `hint_section = (N - 1) // 2` of the
student's N sections (section 1 of a 3-section CIFAR ResNet, the paper's "middle layer"),
or `method.hint_section`.

Stage `hint`: the student's stem and sections up to the guided layer, and a regressor
(a 1x1 convolution and batch norm from the student's to the teacher's channels, then the
hint's non-linearity; the paper uses a convolutional regressor, sized so that the spatial
shapes agree, which for our families of equal strides is 1x1) are trained on
`MSE(regressor(student_feats[h + 1]), teacher_feats[h + 1])`; the student's later
sections and head are frozen (eval mode, no gradient).
Stage `train`: the whole student is trained with KD (hard_weight alpha, temperature tau),
the regressor is dropped (frozen and unused).

The regressor's non-linearity (`method.regressor_activation`): Romero et al. pass the
regressor through the same non-linearity as the hint. In every classifier family here the
hint, a section's output, is post-ReLU: a section ends in a residual block whose forward
ends `relu(out + shortcut(x))` (resnet `BasicBlock`, resnext `BottleneckBlock`) or, for
vdcnn, in a `ConvBlock` ending `relu(bn2(...) [+ shortcut])` (its down-sampling pool
comes first in the section). So `relu` (the default) applies ReLU after the regressor's
batch norm and the regressed output lives where the hint lives (non-negative); `none`
leaves the regressor linear (conv and batch norm), as this project did before. (StarGAN's
residual blocks end in a sum without ReLU, but they have no batch norm, and FitNets
refuses them: `section_output_channels`.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit.config import ConfigError
from lit.methods.base import Method, register_method
from lit.methods.losses import kd_loss


def default_hint_section(sections: int) -> int:
    """The middle section: (N - 1) // 2 (0 of 1 or 2, 1 of 3 or 4, 2 of 5 or 6)."""
    return (sections - 1) // 2


def section_output_channels(section: nn.Module) -> tuple[int, int]:
    """(channels, spatial dims) of a section's output: its last batch norm's features
    (every family ends a block in batch norm; a projection shortcut's has the same width)."""
    norms = [m for m in section.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("FitNets cannot tell a section's output channels: the section has no batch norm")
    return norms[-1].num_features, 1 if isinstance(norms[-1], nn.BatchNorm1d) else 2


def hint_regressor(student_channels: int, teacher_channels: int, dims: int, activation: str = "relu") -> nn.Sequential:
    """1x1 convolution, batch norm, then the hint's non-linearity (`relu`) or none (`none`)."""
    conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
    layers: list[nn.Module] = [conv(student_channels, teacher_channels, 1, bias=False), norm(teacher_channels)]
    if activation == "relu":
        layers.append(nn.ReLU())
    elif activation != "none":
        raise ConfigError(f"config key 'method.regressor_activation': expected relu or none, got {activation!r}")
    return nn.Sequential(*layers)


@register_method("fitnets")
class FitNets(Method):
    def __init__(self, cfg, student, teacher=None, context=None):
        super().__init__(cfg, student, teacher, context)
        hint = default_hint_section(len(student.sections)) if cfg.hint_section is None else cfg.hint_section
        sections = min(len(student.sections), len(teacher.sections))
        if not 0 <= hint < sections:
            raise ConfigError(
                f"config key 'method.hint_section': expected a section index below {sections} "
                f"(student {len(student.sections)}, teacher {len(teacher.sections)} sections), got {hint}"
            )
        self.hint_section = hint
        student_channels, dims = section_output_channels(student.sections[hint])
        teacher_channels, _ = section_output_channels(teacher.sections[hint])
        self.extra = nn.ModuleDict(
            {"regressor": hint_regressor(student_channels, teacher_channels, dims, cfg.regressor_activation)}
        )

    def extra_modules(self) -> nn.ModuleDict:
        return self.extra

    def later_parts(self) -> list[nn.Module]:
        """What stage 1 leaves untouched: the sections after the guided layer and the head."""
        return [*self.student.sections[self.hint_section + 1 :], self.student.head]

    def start_phase(self, phase):
        super().start_phase(phase)
        self.extra.requires_grad_(True)
        if phase == "hint":
            self.freeze(*self.later_parts())
        else:
            self.freeze(self.extra)
        return [p for p in self.trainable_modules().parameters() if p.requires_grad]

    def guided_features(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = self.student.stem(inputs)
        for section in self.student.sections[: self.hint_section + 1]:
            hidden = section(hidden)
        return hidden

    def hint_features(self, inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            hidden = self.teacher.stem(inputs)
            for section in self.teacher.sections[: self.hint_section + 1]:
                hidden = section(hidden)
            return hidden

    def losses(self, phase, inputs, labels, progress):
        if phase == "train":
            with torch.no_grad():
                teacher_logits = self.teacher(inputs)
            logits = self.student(inputs)
            return logits, {"kd": kd_loss(logits, teacher_logits, labels, self.cfg.temperature, self.cfg.hard_weight)}
        guided = self.guided_features(inputs)
        hint = self.hint_features(inputs)
        regressed = self.extra["regressor"](guided)
        if regressed.shape != hint.shape:
            raise ValueError(
                f"FitNets: the regressed guided layer has shape {tuple(regressed.shape)}, the teacher's hint "
                f"{tuple(hint.shape)}: choose a method.hint_section where both have the same resolution"
            )
        with torch.no_grad():  # the full forward, for train accuracy only: frozen parts get no graph
            hidden = guided.detach()
            for part in self.later_parts():
                hidden = part(hidden)
            logits = hidden
        return logits, {"hint": F.mse_loss(regressed.float(), hint.float())}
