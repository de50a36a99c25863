"""Data-parallel training under torchrun: who this process is, and the few collectives it needs.

``torchrun --nproc_per_node N -m vpstudy train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set. Every rank builds the same model from the same seed and
generates the same global batch of each step, keeps its own contiguous slice of it, and
averages gradients with the others after each backward: the union of the slices is the batch
a single process would train on, so a run keeps its identity (``batch_size`` is the global
batch) and its results up to batch-norm statistics (each rank's come from its slice; they are
averaged over ranks at the end of each epoch, `average_buffers`) and summation order. Evaluation is
sharded the same way and its metric sums are added up over ranks. Rank 0 alone writes the
checkpoint and the record (which states the world size).

Gradients are averaged with one all-reduce of the flattened gradients rather than by wrapping
the model in DistributedDataParallel: DDP's hooks only see ``model(x)``, and the recurrent
models train through their own ``training_loss``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` items (rank 0 takes the first ones)."""
        return slice(n * self.rank // self.world, n * (self.rank + 1) // self.world)


SINGLE = Ranks()


def launched_ranks() -> Ranks:
    """The ranks torchrun set up for this process (``SINGLE`` when not launched by torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Ranks(int(os.environ.get("RANK", "0")), world) if world > 1 else SINGLE


def setup(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group (gloo on CPUs, nccl on GPUs); the device this rank computes on."""
    if ranks.world == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def average_gradients(model: nn.Module, ranks: Ranks) -> None:
    """Replace every gradient by its mean over ranks (one all-reduce)."""
    _mean_in_place([p.grad for p in model.parameters() if p.grad is not None], ranks, torch.float32)


def average_buffers(model: nn.Module, ranks: Ranks) -> None:
    """Replace every floating-point buffer (batch-norm running statistics) by its mean over
    ranks (one all-reduce). Each rank's statistics come from its own slice of the batches;
    called at the end of each epoch, before validation and the checkpoint, it gives every rank
    the buffers the checkpoint holds, so a resumed run continues exactly as an uninterrupted one."""
    _mean_in_place([b for b in model.buffers() if b.is_floating_point()], ranks, torch.float64)


def _mean_in_place(tensors: list[torch.Tensor], ranks: Ranks, dtype: torch.dtype) -> None:
    """Each tensor replaced by its mean over ranks: one all-reduce of all of them, flattened
    in ``dtype``."""
    if ranks.world == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1).to(dtype) for t in tensors])
    dist.all_reduce(flat)
    flat /= ranks.world
    offset = 0
    for t in tensors:
        t.copy_(flat[offset: offset + t.numel()].view_as(t))
        offset += t.numel()


def sum_over_ranks(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """``values`` summed over ranks (a new tensor; ``values`` itself when there is one rank)."""
    if ranks.world == 1:
        return values
    out = values.clone()
    dist.all_reduce(out)
    return out


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.barrier()
