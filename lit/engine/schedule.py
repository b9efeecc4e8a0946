"""Learning rate as a pure function of the position in a phase (no scheduler state, so
there is no call-order pitfall and resume needs nothing but the step counter)."""

from __future__ import annotations

import math

from lit.config import PhaseConfig


def learning_rate(phase: PhaseConfig, base_lr: float, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> float:
    """lr for one step; `epoch` counts from 0 within the phase."""
    iteration = epoch * steps_per_epoch + step_in_epoch
    if iteration < phase.warmup_iters:
        return phase.warmup_lr * base_lr / phase.lr
    if phase.schedule == "multistep":
        return base_lr * phase.gamma ** sum(epoch >= m for m in phase.milestones)
    if phase.schedule == "cosine":
        done = (epoch + step_in_epoch / steps_per_epoch) / max(phase.epochs, 1)
        return 0.5 * base_lr * (1.0 + math.cos(math.pi * done))
    return base_lr
