"""The data of one run as the trainer sees it: one object, :class:`StudyData`, holding the
training stream and the fixed validation and test sets.

    data = prepare_data(cfg, device)                   # vpstudy.data.prepare; raises on bad data
    for inputs, targets in train_batches(cfg, data, epoch):
        ...                                             # (B, T_in, C, h, w), (B, T_out, C, h, w)

A training stream is any object with ``epoch_batches(epoch)`` yielding full-size ``(inputs,
targets)`` batches of one epoch, drawn from a generator seeded by :func:`epoch_seed` (so a run
resumed from an epoch's checkpoint sees the batches an uninterrupted run sees):
:class:`vpstudy.data.moving_mnist.MovingMNISTStream` (fresh videos generated on the training
device) and :class:`vpstudy.data.video_data.ClipStream` (KTH and BAIR clips).
:func:`train_batches` is where every stream's batches are sharded over torchrun ranks and
area-averaged to the model's frame size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol

import torch

from vpstudy.distributed import SINGLE, Ranks


def epoch_seed(cfg, epoch: int) -> int:
    """The seed of epoch ``epoch`` of run ``cfg``: its training batches and its global RNG."""
    return (cfg.seed * 1_000_003 + epoch * 7_919 + 17) % (2**63 - 1)


class TrainStream(Protocol):
    def epoch_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


@dataclass
class StudyData:
    """Data of one run: the training stream, fixed val/test sets (N, T, C, H, W) on the CPU at
    the model's frame size, fixed extra test sets by digit count, and a description of the
    source for the run record."""

    train: TrainStream
    val: torch.Tensor
    test: torch.Tensor
    extra_tests: dict[int, torch.Tensor] = field(default_factory=dict)
    source: str = ""


def downsample_frames(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, T, C, H, W) frames averaged over ``factor`` x ``factor`` blocks (area resize)."""
    if factor == 1:
        return x
    n, t = x.shape[:2]
    y = torch.nn.functional.avg_pool2d(x.flatten(0, 1), factor)
    return y.view(n, t, *y.shape[1:])


def train_batches(cfg, data: StudyData, epoch: int,
                  ranks: Ranks = SINGLE) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The epoch's (inputs, targets) batches at the model's frame size. Under torchrun each
    rank keeps its contiguous slice of every global batch."""
    for x, y in data.train.epoch_batches(epoch):
        part = ranks.shard(x.shape[0])
        yield downsample_frames(x[part], cfg.downsample), downsample_frames(y[part], cfg.downsample)
