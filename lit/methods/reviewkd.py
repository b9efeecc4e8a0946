"""Knowledge review (ReviewKD; Chen et al., CVPR 2021), after the official CIFAR-100 code
(dvlab-research/ReviewKD, `model/reviewkd.py` and `train.py`).

The student's features are the outputs of its sections and, one level deeper, their last
one average-pooled to 1 x 1 (the official `[f1, f2, f3, f4]`). Attention-based fusion
(ABF) modules review them from the deepest level up: level i maps its feature by a 1x1
convolution and batch norm to `mid` channels (the deepest level's width, at most 512) and,
below the deepest level, fuses it with the fused map of the level beneath, resized to its
size (nearest), by two sigmoid attention maps from a 1x1 convolution of both
(`x * a0 + residual * a1`); a 3x3 convolution and batch norm to the teacher's channels of
that level gives its output, which the hierarchical context loss (HCL) compares with the
teacher's feature of the same level: the teacher's section outputs BEFORE their last ReLU
(the official code's `preact=True`) and its pooled last section output. HCL of one level is
`(MSE + sum_k 2^-k MSE(pool_l(s), pool_l(t))) / (1 + sum_k 2^-k)` over the pyramid levels
l = 4, 2, 1 (k = 1, 2, 3) smaller than the feature's height. The objective is
`CE + reviewkd_weight * min(epoch / reviewkd_warmup_epochs, 1) * sum_levels HCL`, the epoch
counted from 0 as the official training loop does (its first epoch is cross-entropy alone);
weight 1.0 and warm-up 20 are its defaults (its scripts set the weight per pair: 0.6 for
ResNet-56 -> 20, 1.0 for ResNet-110 -> 32, 5.0 or 8.0 for the others).

The ABF modules are the method's extra modules: trained with the student by the same
optimiser (as the official code), checkpointed by the engine, unused at test time.
Where the official code sizes the fusion by fixed shapes (`shapes`, `out_shapes`), the
sizes here are read from the features themselves: each level's output has the teacher's
spatial size of that level. The teacher's pre-activations are recorded from the ReLU that
ends each of its sections (`section_with_preactivation`), so a folded (batch norms merged)
teacher gives them as well; a family whose sections do not end in a ReLU is refused, as is
one with 1-D features (the fusion convolutions are 2-D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from lit.config import ConfigError
from lit.methods.base import Method, register_method
from lit.methods.fitnets import section_output_channels


class ABF(nn.Module):
    """One level of the review: 1x1 conv + BN to `mid`, attention fusion with the level
    beneath (all but the deepest), resize to the output size, 3x3 conv + BN to `out`."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels))
        self.conv2 = nn.Sequential(nn.Conv2d(mid_channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.att_conv = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)  # the official initialisation
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None, out_size: tuple[int, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(this level's output, the fused map handed to the level above)."""
        x = self.conv1(x)
        if self.att_conv is not None:
            residual = F.interpolate(residual, size=tuple(x.shape[2:]), mode="nearest")
            attention = self.att_conv(torch.cat([x, residual], dim=1))
            x = x * attention[:, :1] + residual * attention[:, 1:]
        if tuple(x.shape[2:]) != tuple(out_size):
            x = F.interpolate(x, size=tuple(out_size), mode="nearest")
        return self.conv2(x), x


def hcl(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """The hierarchical context loss of one level, in float32 at least."""
    dtype = torch.promote_types(student_feature.dtype, torch.float32)
    s, t = student_feature.to(dtype), teacher_feature.to(dtype)
    loss, weight, weights = F.mse_loss(s, t), 1.0, 1.0
    for size in (4, 2, 1):
        if size >= s.shape[2]:
            continue
        weight /= 2.0
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size))
        weights += weight
    return loss / weights


def hcl_loss(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor]) -> torch.Tensor:
    """HCL summed over the levels."""
    return sum(hcl(s, t) for s, t in zip(student_features, teacher_features, strict=True))


class _LastReLU(TorchFunctionMode):
    """Records the input and output of the last ReLU a forward calls."""

    RELUS = (F.relu, torch.relu, torch.Tensor.relu)

    def __init__(self) -> None:
        super().__init__()
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in self.RELUS:
            self.last = (args[0], out)
        return out


def section_with_preactivation(section: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(section(x), the input of the ReLU that produced it)."""
    recorder = _LastReLU()
    with recorder:
        out = section(x)
    if recorder.last is None or recorder.last[1] is not out or recorder.last[0] is out:
        raise ValueError("ReviewKD takes the teacher's section outputs before their last ReLU, but a section does not end in one")
    return out, recorder.last[0]


@register_method("reviewkd")
class ReviewKD(Method):
    def __init__(self, cfg, student, teacher=None, context=None):
        super().__init__(cfg, student, teacher, context)
        if cfg.reviewkd_warmup_epochs and "train" in self.context.active_phases and "train" not in self.context.phase_epochs:
            raise ConfigError(
                "config key 'method.reviewkd_warmup_epochs': ReviewKD's warm-up counts epochs, but phase 'train' counts "
                "iterations (train.phases.train.iterations); give the phase in epochs or set the warm-up to 0"
            )
        if len(student.sections) != len(teacher.sections):
            raise ValueError(
                f"ReviewKD pairs the features of every section: the student has {len(student.sections)} sections, "
                f"the teacher {len(teacher.sections)}"
            )
        student_channels, teacher_channels = [], []
        for model, channels in ((student, student_channels), (teacher, teacher_channels)):
            for section in model.sections:
                width, dims = section_output_channels(section)
                if dims != 2:
                    raise ValueError("ReviewKD's fusion modules are 2-D convolutions: this family's features are 1-D")
                channels.append(width)
            channels.append(channels[-1])  # the pooled last section output
        mid = min(512, student_channels[-1])
        levels = len(student_channels)
        self.extra = nn.ModuleDict({"abfs": nn.ModuleList(
            ABF(student_channels[i], mid, teacher_channels[i], fuse=i < levels - 1) for i in range(levels)
        )})

    def extra_modules(self) -> nn.ModuleDict:
        return self.extra

    def teacher_features(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """The pre-activations of the teacher's section outputs, and its last one pooled."""
        with torch.no_grad():
            hidden, features = self.teacher.stem(inputs), []
            for section in self.teacher.sections:
                hidden, preactivation = section_with_preactivation(section, hidden)
                features.append(preactivation)
            return [*features, F.adaptive_avg_pool2d(hidden, 1)]

    def review(self, student_features: list[torch.Tensor], teacher_features: list[torch.Tensor]) -> list[torch.Tensor]:
        """The ABF outputs, one per level (shallowest first), each of its teacher feature's size."""
        abfs = self.extra["abfs"]
        outputs: list[torch.Tensor] = [None] * len(abfs)
        residual = None
        for i in reversed(range(len(abfs))):
            outputs[i], residual = abfs[i](student_features[i], residual, tuple(teacher_features[i].shape[2:]))
        return outputs

    def warmup(self, phase: str, progress: float) -> float:
        """min(epoch / warm-up, 1), the epoch counted from 0 (the official training loop)."""
        if self.cfg.reviewkd_warmup_epochs == 0:
            return 1.0
        return min(self.epochs_done(phase, progress) / self.cfg.reviewkd_warmup_epochs, 1.0)

    def losses(self, phase, inputs, labels, progress):
        teacher_features = self.teacher_features(inputs)
        feats = self.student.features(inputs)
        logits = self.student.head(feats[-1])
        student_features = [*feats[1:], F.adaptive_avg_pool2d(feats[-1], 1)]
        reviewed = self.review(student_features, teacher_features)
        weight = self.cfg.reviewkd_weight * self.warmup(phase, progress)
        terms = {"ce": F.cross_entropy(logits, labels)}
        names = [f"hcl_section{i}" for i in range(len(feats) - 1)] + ["hcl_pooled"]
        for name, s, t in zip(names, reviewed, teacher_features, strict=True):
            terms[name] = weight * hcl(s, t)
        return logits, terms
