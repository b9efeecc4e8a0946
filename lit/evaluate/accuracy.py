"""Top-1 accuracy of a classifier over batches."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from lit.runtime.device import autocast


def accuracy(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy with the model in eval mode."""
    was_training = model.training
    model.eval()
    correct, loss_sum, count = torch.zeros((), device=device), torch.zeros((), device=device), 0
    with torch.no_grad(), autocast(device, dtype):
        for inputs, labels in batches:
            logits = model(inputs).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(1) == labels).sum()
            count += len(labels)
    model.train(was_training)
    if count == 0:
        raise ValueError("cannot measure accuracy on an empty split")
    return (correct / count).item(), (loss_sum / count).item()
