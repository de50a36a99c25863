"""KTH and BAIR as the trainer sees them: fixed validation/test clips and a training stream.

Training clips are drawn from the training split in a fresh order each epoch (a generator
seeded by the run's seed and the epoch, so a resumed run sees the same batches); validation
and test clips are fixed subsets of the test split (different seeds), as in PredRNN's
protocol where the test persons (KTH 17-25) are never trained on.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterator

import torch

from vpstudy.data.video_datasets import (BAIRDataset, BAIRTFRecordDataset, KTHDataset, iterate_batches,
                                         load_clips)


class ClipStream:
    """Training batches from a clip dataset: ``steps_per_epoch`` batches per epoch."""

    def __init__(self, dataset):
        self.dataset = dataset

    def epoch_batches(self, cfg, epoch: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from vpstudy.train import epoch_seed

        if len(self.dataset) < cfg.batch_size:
            raise ValueError(f"the training split has {len(self.dataset)} clips, fewer than batch_size="
                             f"{cfg.batch_size}")
        gen = torch.Generator().manual_seed(epoch_seed(cfg, epoch))
        batches = cycle_batches(self.dataset, cfg.batch_size, gen)
        for x in islice(batches, cfg.steps_per_epoch):
            x = x.to(device, non_blocking=True)
            yield x[:, : cfg.in_frames], x[:, cfg.in_frames: cfg.seq_len]


def cycle_batches(dataset, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled batches, reshuffling after each pass, for as long as asked."""
    while True:
        yield from iterate_batches(dataset, batch_size, generator=gen)


def open_split(cfg, split: str):
    """The dataset object of ``cfg.dataset`` for ``split`` (raises with instructions if absent)."""
    if cfg.dataset == "kth":
        return KTHDataset(cfg.data_root, split=split, seq_len=cfg.seq_len, size=cfg.image_size)
    if cfg.dataset == "bair":
        try:
            return BAIRDataset(cfg.data_root, split=split, seq_len=cfg.seq_len)
        except FileNotFoundError as png_error:
            try:
                return BAIRTFRecordDataset(cfg.data_root, split=split, seq_len=cfg.seq_len)
            except FileNotFoundError as tfrecord_error:
                raise FileNotFoundError(        # both layouts, not only the last one tried
                    f"BAIR data not found in either layout.\nAs PNG frames: {png_error}\n"
                    f"As TFRecords: {tfrecord_error}") from None
    raise ValueError(f"dataset {cfg.dataset!r} is not a real-video dataset")


def prepare(cfg, device: torch.device) -> Any:
    from vpstudy.train import StudyData

    train = open_split(cfg, "train")
    test_split = open_split(cfg, "test")
    val = load_clips(test_split, min(cfg.val_sequences, len(test_split)), seed=cfg.seed + 1)
    test = load_clips(test_split, min(cfg.test_sequences, len(test_split)), seed=0)
    source = (f"{cfg.dataset.upper()} from {train.root} ({len(train)} training clips, "
              f"{test.shape[0]} of {len(test_split)} test clips, {cfg.image_size}x{cfg.image_size})")
    return StudyData(None, val, test, {}, source, train_clips=ClipStream(train))
