"""The sectioned-model contract every family obeys: stem -> sections -> head."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class Sectioned(nn.Module):
    """A network cut at its LIT split points.

    `features(x)` returns `[stem(x), after section 0, ..., after section N-1]`, so LIT can
    feed `teacher_feats[i]` to `student.sections[i]` and compare with `teacher_feats[i + 1]`.
    Teacher and student of one family have the same number of sections and the same widths.
    `task` says what the network's output is, and so how a run of it is evaluated:
    "classify" (logits; accuracy) or "translate" (images from images and target labels; FID).
    """

    task: ClassVar[str] = "classify"

    def __init__(self, stem: nn.Module, sections: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.sections = nn.ModuleList(sections)
        self.head = head

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for section in self.sections:
            feats.append(section(feats[-1]))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.stem(x)
        for section in self.sections:
            hidden = section(hidden)
        return self.head(hidden)
