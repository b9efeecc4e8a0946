"""Data-parallel training over the processes `torchrun` starts: one run, N processes.

Every process builds the same models from the same seed and draws the same global batch
(same order, same augmentation); each then trains on its own slice of it. After each
backward the gradients are averaged over the processes, weighted by slice size, so a
step equals the single-process step on the whole global batch for any objective that is a
mean over its batch plus batch-independent terms (weight penalties). What differs: batch
normalisation normalises each slice with its own statistics (as DistributedDataParallel
does without SyncBatchNorm), so families with batch norm match a single process only
approximately; families without it (the Vision Transformer) match to float precision.

Why not `DistributedDataParallel` itself: its gradient hooks are armed by its wrapper's
`forward`, but LIT, FitNets and the GAN methods call the student's stem, sections and head
one at a time (each section fed the teacher's output) and apply several updates per batch
with their own optimisers; one flat all-reduce per update covers all of them.

Rank 0 writes every file (checkpoints, logs, summary); the others compute the same
validation and keep identical models, so a resumed run restores every rank from rank 0's
state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Group:
    """This process's place in the run: rank 0 of 1 without torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (slices differ by at most one)."""
        return batch.tensor_split(self.world_size)[self.rank] if self.active else batch

    def average_gradients(self, parameters: Iterable[nn.Parameter], local: int, total: int,
                          loss: torch.Tensor) -> torch.Tensor:
        """Make every rank's gradients the global batch's: each rank's gradient of its slice
        mean, weighted by its share `local / total`, summed over the ranks in one flat
        all-reduce. The loss rides along, so every rank gets the global loss (and a NaN on
        one rank stops them all at the same step). Returns that loss."""
        if not self.active:
            return loss
        grads = [p.grad for p in parameters if p.grad is not None]
        share = local / total
        flat = torch.cat([*(g.reshape(-1).float() for g in grads), loss.detach().float().reshape(1)]) * share
        dist.all_reduce(flat)
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()
        return flat[-1]

    def average(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a tensor each holds (a float copy)."""
        return self.total(values.float()) / self.world_size if self.active else values

    def total(self, values: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of a tensor each holds (a copy)."""
        if not self.active:
            return values
        total = values.detach().clone()
        dist.all_reduce(total)
        return total

    def broadcast(self, module: nn.Module | None) -> None:
        """Rank 0's parameters and buffers (batch-norm statistics) on every rank."""
        if not self.active or module is None:
            return
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def launched_processes() -> int:
    """How many processes torchrun started for this run (WORLD_SIZE); 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def join(device_name: str) -> tuple[Group, str]:
    """The process group `torchrun` describes in its environment (WORLD_SIZE, RANK,
    LOCAL_RANK), joined with NCCL on GPUs and gloo on CPUs; and the device this rank trains
    on (`cuda:<local rank>` where the run config says `auto` or `cuda`). Without torchrun:
    a group of one and the configured device."""
    world_size = launched_processes()
    if world_size <= 1:
        return Group(), device_name
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    on_gpu = device_name in ("auto", "cuda") and torch.cuda.is_available() or device_name.startswith("cuda")
    if on_gpu:
        if device_name.startswith("cuda:"):
            raise ValueError(f"train.device is {device_name!r}, but a data-parallel run gives each process its "
                             "own GPU: use train.device=auto or cuda")
        device_name = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if on_gpu else "gloo")
    return Group(rank=rank, world_size=world_size, local_rank=local_rank), device_name


def leave(group: Group) -> None:
    if group.active and dist.is_initialized():
        dist.destroy_process_group()
