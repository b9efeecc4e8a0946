"""Learning rate as a pure function of the position in a phase (no scheduler state, so
there is no call-order pitfall and resume needs nothing but the step counter)."""

from __future__ import annotations

import math

from lit.config import PhaseConfig


def learning_rate(phase: PhaseConfig, base_lr: float, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> float:
    """lr for one step; `epoch` counts from 0 within the phase. An iteration-based phase is
    one epoch of `phase.iterations` steps, so its milestones count iterations."""
    iteration = epoch * steps_per_epoch + step_in_epoch
    if iteration < phase.warmup_iters:
        return phase.warmup_lr * base_lr / phase.lr
    if phase.iterations is not None:
        epoch, step_in_epoch, steps_per_epoch, epochs = 0, iteration, max(phase.iterations, 1), 1
        milestone_position = iteration
    else:
        epochs, milestone_position = phase.epochs, epoch
    if phase.schedule == "multistep":
        return base_lr * phase.gamma ** sum(milestone_position >= m for m in phase.milestones)
    if phase.schedule == "cosine":
        done = (epoch + step_in_epoch / steps_per_epoch) / max(epochs, 1)
        return 0.5 * base_lr * (1.0 + math.cos(math.pi * done))
    if phase.schedule == "linear":
        return linear_decay(base_lr, iteration, epochs * steps_per_epoch, phase.decay_start)
    return base_lr


def linear_decay(base_lr: float, step: int, total: int, decay_start: int | None) -> float:
    """Constant, then linear to zero over [decay_start, total) (StarGAN: the second half)."""
    start = total // 2 if decay_start is None else decay_start
    if step < start or total <= start:
        return base_lr
    return base_lr * (total - step) / (total - start)
