"""Network slimming (Liu et al., ICCV 2017): sparse batch-norm scales, then channel pruning.

Phase `sparsity`: cross-entropy plus an L1 penalty on the scale factors (gamma) of the
prunable batch norms, `lambda * sum |gamma|` (`method.sparsity` is lambda; the paper's
1e-4 on CIFAR; its subgradient `lambda * sign(gamma)` is what the paper adds to the
gradient). Logged as the terms `ce` and `l1_bn`.

At the start of phase `finetune` the student is pruned: the |gamma| of all prunable batch
norms are pooled and the `floor(method.prune_ratio * total)` smallest are removed (a
global threshold, the paper's 40% / 60% / 70% on CIFAR; ties go in network order), every
layer keeping at least its largest channel. Removing a channel removes it from the
convolution before its batch norm (output), the batch norm, and the convolution after it
(input): the result is a smaller dense network, recorded in the model spec
(`options["pruned"]`, `lit.models.pruned`), so its checkpoints rebuild from their spec and
evaluate like any other run's. Phase `finetune` trains it with plain cross-entropy (the
paper: the same schedule as the first training). The engine restarts the validation
selection at the pruning, so `best.pt` is always a pruned model.

What is prunable: the internal channels of a block, conv1's output / bn1 / conv2's input.
- `resnet` (basic blocks, option-A shortcuts): a block's output channels are tied across
  the residual additions of a whole stage and the fixed zero-padding shortcut, so they stay
  (the slimming paper's ResNet variant also effectively prunes inside blocks).
- `vdcnn`: the same rule on its conv blocks (conv1 -> bn1 -> conv2 inside a block).
- `resnext` is refused: its internal channels feed grouped convolutions, whose groups
  must keep equal widths, which a global threshold does not keep. Generator families
  (`stargan`) are refused too.
Only the prunable batch norms are penalised.

The structural surgery is torch-pruning's (`DependencyGraph`): it is traced on each block
alone (a forward of a zero input with the block's own input width), and the pruning
group of conv1's output channels must be exactly conv1, bn1 and conv2, which is checked.
`torch.compile` is refused for this method (`train.compile`): the graph is traced on the
uncompiled forward, and the student's shapes change mid-run.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lit.config import ConfigError
from lit.methods.base import Method, register_method
from lit.models.pruned import changed_sizes, module_sizes
from lit.models.resnet import BasicBlock
from lit.models.vdcnn import ConvBlock

# the families slimming prunes, and the block whose internal channels it removes
PRUNABLE_BLOCKS: dict[str, type[nn.Module]] = {"resnet": BasicBlock, "vdcnn": ConvBlock}
REFUSED = {
    "resnext": "its blocks' internal channels feed grouped convolutions, whose groups must keep equal "
               "widths, which a global pruning threshold does not keep",
    "stargan": "it is a generator, and slimming trains classifiers",
}


def block_type_of(family: str, student: nn.Module) -> type[nn.Module]:
    """The block type whose internal channels slimming prunes in `family`; a ValueError
    naming the family where it prunes none."""
    supported = ", ".join(PRUNABLE_BLOCKS)
    if not family:  # built outside the engine: tell the family by its blocks
        family = next((name for name, kind in PRUNABLE_BLOCKS.items() if any(isinstance(m, kind) for m in student.modules())), "unknown")
    if family not in PRUNABLE_BLOCKS:
        why = REFUSED.get(family, "its blocks have no channels that slimming knows to be prunable")
        raise ValueError(f"slimming cannot prune model family {family!r}: {why} (it prunes: {supported})")
    kind = PRUNABLE_BLOCKS[family]
    if not any(isinstance(m, kind) for m in student.modules()):
        raise ValueError(f"slimming found no {kind.__name__} to prune in this {family} student")
    return kind


def l1_of_scales(norms: Sequence[nn.Module]) -> torch.Tensor:
    """sum |gamma| over the batch norms' scale factors."""
    return sum(norm.weight.abs().sum() for norm in norms)


def channels_to_remove(scales: Sequence[torch.Tensor], ratio: float) -> list[list[int]]:
    """For each layer, the sorted indices of its channels to remove: the `floor(ratio * total)`
    channels with the smallest |scale| over all layers together (a global threshold; ties
    in network order), except that a layer that would lose every channel keeps its largest."""
    sizes = [s.numel() for s in scales]
    magnitudes = torch.cat([s.detach().abs().float().cpu().flatten() for s in scales])
    count = math.floor(ratio * magnitudes.numel() + 1e-9)
    order = torch.sort(magnitudes, stable=True).indices[:count].tolist()
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    layer_of = [layer for layer, size in enumerate(sizes) for _ in range(size)]
    remove: list[list[int]] = [[] for _ in sizes]
    for index in order:  # smallest first
        remove[layer_of[index]].append(index - starts[layer_of[index]])
    for layer, size in enumerate(sizes):
        if len(remove[layer]) == size:
            remove[layer].pop()  # the layer's largest |scale|: it keeps one channel
    return [sorted(r) for r in remove]


def prune_block(block: nn.Module, remove: list[int]) -> None:
    """Remove channels `remove` of conv1's output, bn1 and conv2's input of `block`, in
    place, with torch-pruning's dependency graph of the block alone."""
    import torch_pruning as tp

    conv = block.conv1
    example = torch.zeros(1, conv.in_channels, *[8] * (conv.weight.dim() - 2), device=conv.weight.device, dtype=conv.weight.dtype)
    training = block.training
    with torch.enable_grad():
        graph = tp.DependencyGraph().build_dependency(block, example_inputs=(example,), verbose=False)
    block.train(training)  # tracing switched it to eval mode
    group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, remove)
    names = {id(m): name for name, m in block.named_modules()}  # the graph's own op nodes (relu) are not among them
    touched = sorted({names[id(dep.target.module)] for dep, _ in group if id(dep.target.module) in names})
    if touched != ["bn1", "conv1", "conv2"]:
        raise RuntimeError(
            f"slimming: torch-pruning's group of conv1's output channels is not exactly conv1, bn1 and conv2 (it "
            f"touches {touched}); refusing to prune"
        )
    group.prune(record_history=False)


@register_method("slimming")
class NetworkSlimming(Method):
    def __init__(self, cfg, student, teacher=None, context=None):
        super().__init__(cfg, student, teacher, context)
        self.block_type = block_type_of(self.context.family, student)
        if self.context.active_phases and "finetune" not in self.context.active_phases:
            raise ConfigError(
                "config key 'train.phases.finetune.epochs': slimming prunes the student at the start of phase "
                "finetune and selects among the fine-tuned pruned models, expected a positive number of epochs, got 0"
            )

    def blocks(self) -> list[tuple[str, nn.Module]]:
        return [(name, m) for name, m in self.student.named_modules() if isinstance(m, self.block_type)]

    def prunable_norms(self) -> list[nn.Module]:
        """The batch norms of the blocks' internal channels (bn1), in network order."""
        return [block.bn1 for _, block in self.blocks()]

    def losses(self, phase, inputs, labels, progress):
        logits = self.student(inputs)
        terms = {"ce": F.cross_entropy(logits, labels)}
        if phase == "sparsity":
            terms["l1_bn"] = self.cfg.sparsity * l1_of_scales(self.prunable_norms())
        return logits, terms

    def prune(self) -> dict[str, dict[str, int]]:
        """Prune the student in place at `method.prune_ratio`; the full sizes of every layer changed."""
        before = module_sizes(self.student)
        blocks = self.blocks()
        remove = channels_to_remove([block.bn1.weight for _, block in blocks], self.cfg.prune_ratio)
        for (_, block), channels in zip(blocks, remove):
            if channels:
                prune_block(block, channels)
        return changed_sizes(before, self.student)

    def reshape_student(self, phase: str, options: dict[str, Any]) -> dict[str, Any] | None:
        if phase != "finetune":
            return None
        pruned = self.prune()
        return {**options, "pruned": {**options.get("pruned", {}), **pruned}}
