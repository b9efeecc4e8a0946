"""The method contract (after mdistiller's distillers): a method is a small objective.

The engine asks it, phase by phase, which parameters train and for the named loss terms
of a batch; it sums the terms, steps the optimiser and logs every term. A method never
touches optimisers, data loaders or files.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar

import torch
from torch import nn

from lit.config import MethodConfig
from lit.registry import Registry


class Method(ABC):
    phases: ClassVar[tuple[str, ...]] = ("train",)
    needs_teacher: ClassVar[bool] = False
    # the `method.*` keys this method reads; the others cannot change its result
    uses: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: MethodConfig, student: nn.Module, teacher: nn.Module | None = None) -> None:
        self.cfg = cfg
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)
        self.frozen: list[nn.Module] = []

    def extra_modules(self) -> nn.ModuleDict:
        """Trainable modules beyond the student (a regressor, say); they are checkpointed."""
        return nn.ModuleDict()

    def start_phase(self, phase: str) -> list[nn.Parameter]:
        """Freeze what `phase` freezes and return the parameters it trains."""
        self.frozen = []
        self.student.requires_grad_(True)
        return [p for p in self.trainable_modules().parameters() if p.requires_grad]

    def trainable_modules(self) -> nn.ModuleList:
        return nn.ModuleList([self.student, self.extra_modules()])

    def train_mode(self) -> None:
        """Training mode for what trains; frozen modules stay in eval mode so their
        batch-norm statistics stay exactly what was copied."""
        self.student.train()
        self.extra_modules().train()
        for module in self.frozen:
            module.eval()

    def freeze(self, *modules: nn.Module) -> None:
        for module in modules:
            module.requires_grad_(False)
            self.frozen.append(module)

    def teacher_logits_and_feats(self, inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The teacher's forward, frozen: eval mode and `no_grad` (not `inference_mode`,
        so its features can serve as regression targets in a backward pass)."""
        assert self.teacher is not None
        with torch.no_grad():
            feats = self.teacher.features(inputs)
            return self.teacher.head(feats[-1]), feats

    @abstractmethod
    def losses(self, phase: str, inputs: torch.Tensor, labels: torch.Tensor, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the student's logits and the named loss terms (already weighted: the
        objective is their sum). `progress` is the fraction of the phase done, in [0, 1]."""


METHODS: Registry[type[Method]] = Registry("method")


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    return METHODS.register(name)
