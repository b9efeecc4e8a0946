"""The frozen teacher's fast path: batch norm folded into the convolution before it.

A teacher in eval mode normalises with fixed statistics, so `bn(conv(x))` is one
convolution with rescaled weights and a bias (exact up to float rounding). Folding removes
every batch-norm pass from the teacher forward that KD, LIT and FitNets run on each batch.
Each part of a sectioned model (stem, every section, head) is folded on its own, so
`features()` still returns the outputs LIT regresses onto. A part that torch.fx cannot
trace stays as it was (slower, same result).
"""

from __future__ import annotations

import warnings

from torch import nn
from torch.fx.experimental.optimization import fuse

from lit.models.base import Sectioned


def fold_batch_norm(part: nn.Module) -> nn.Module:
    """`part` with every (conv, batch norm) pair folded; `part` itself if it cannot be traced."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in part.modules()):
        return part
    try:
        return fuse(part.eval(), inplace=False)
    except Exception as err:  # any tracing failure: the unfolded part computes the same thing
        warnings.warn(f"teacher part {type(part).__name__} kept unfolded (torch.fx: {err})", stacklevel=2)
        return part


def freeze_for_inference(teacher: Sectioned) -> Sectioned:
    """Fold the batch norms of a frozen teacher's parts in place; the teacher must already be
    frozen (eval mode, no gradients): folding bakes in its running statistics."""
    if teacher.training or any(p.requires_grad for p in teacher.parameters()):
        raise ValueError("only a frozen teacher (eval mode, requires_grad False) can be folded")
    teacher.stem = fold_batch_norm(teacher.stem)
    teacher.sections = nn.ModuleList(fold_batch_norm(section) for section in teacher.sections)
    teacher.head = fold_batch_norm(teacher.head)
    teacher.requires_grad_(False)
    return teacher.eval()
