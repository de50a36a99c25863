"""KTH and BAIR as the trainer sees them: fixed validation/test clips and a training stream.

Training clips are drawn from the training split in a fresh order each epoch (a generator
seeded by the run's seed and the epoch, so a resumed run sees the same batches). Test clips
are a fixed subset of the test split, as in PredRNN's protocol where the test persons (KTH
17-25) are never trained on. Validation clips are a fixed subset (another seed) of the
TRAINING split -- KTH persons 1-16, BAIR's training trajectories -- at the test clip length,
so the test persons are not looked at before the test. The protocol trains on every clip of
persons 1-16, so holding some out would change the training set: the validation clips
therefore overlap training material. They only draw the time-to-accuracy curve; nothing is
selected on them.

KTH training clips (PredRNN's protocol): thuml/predrnn-pytorch kth_script/predrnn_kth_train.sh
runs with ``--input_length 10 --total_length 20``, and its KTH provider
(core/data_provider/kth_action.py) cuts training clips of ``seq_length`` = total_length = 20
frames: observe 10, predict 10. Testing is 10 -> 20 (30-frame clips, the paper's Table II).
So KTH trains on ``min(seq_len, in_frames + KTH_TRAIN_PREDICT)`` frames and tests on
``seq_len``; a model's training loss then sees 10 target frames while ``forward`` predicts
``out_frames`` (the recurrent and window models roll out to any length).
"""

from __future__ import annotations

from itertools import islice
from typing import Iterator

import torch

from vpstudy.data.stream import StudyData, epoch_seed
from vpstudy.data.video_datasets import BAIRDataset, BAIRTFRecordDataset, KTHDataset, iterate_batches, load_clips


class ClipStream:
    """The training stream of a KTH or BAIR run: ``cfg.steps_per_epoch`` batches per epoch of
    clips from ``dataset``, moved to ``device``."""

    def __init__(self, cfg, dataset, device: torch.device):
        self.cfg, self.dataset, self.device = cfg, dataset, device

    def __len__(self) -> int:
        return self.cfg.steps_per_epoch

    def epoch_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cfg = self.cfg
        if len(self.dataset) < cfg.batch_size:
            raise ValueError(f"the training split has {len(self.dataset)} clips, fewer than batch_size="
                             f"{cfg.batch_size}")
        gen = torch.Generator().manual_seed(epoch_seed(cfg, epoch))
        batches = cycle_batches(self.dataset, cfg.batch_size, gen)
        for x in islice(batches, cfg.steps_per_epoch):
            x = x.to(self.device, non_blocking=True)
            yield x[:, : cfg.in_frames], x[:, cfg.in_frames: cfg.seq_len]


def cycle_batches(dataset, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled batches, reshuffling after each pass, for as long as asked."""
    while True:
        yield from iterate_batches(dataset, batch_size, generator=gen)


# Frames predicted by KTH training clips (PredRNN's --total_length 20 - --input_length 10).
KTH_TRAIN_PREDICT = 10


def train_clip_frames(cfg) -> int:
    """Frames per training clip: KTH ``min(seq_len, in_frames + 10)`` (PredRNN's protocol),
    otherwise ``seq_len``."""
    if cfg.dataset == "kth":
        return min(cfg.seq_len, cfg.in_frames + KTH_TRAIN_PREDICT)
    return cfg.seq_len


def open_split(cfg, split: str, seq_len: int | None = None):
    """The dataset object of ``cfg.dataset`` for ``split`` with clips of ``seq_len`` frames
    (default ``cfg.seq_len``); raises with instructions if the data is absent."""
    seq_len = seq_len or cfg.seq_len
    if cfg.dataset == "kth":
        return KTHDataset(cfg.data_root, split=split, seq_len=seq_len, size=cfg.image_size)
    if cfg.dataset == "bair":
        try:
            return BAIRDataset(cfg.data_root, split=split, seq_len=seq_len)
        except FileNotFoundError as png_error:
            try:
                return BAIRTFRecordDataset(cfg.data_root, split=split, seq_len=seq_len)
            except FileNotFoundError as tfrecord_error:
                raise FileNotFoundError(        # both layouts, not only the last one tried
                    f"BAIR data not found in either layout.\nAs PNG frames: {png_error}\n"
                    f"As TFRecords: {tfrecord_error}") from None
    raise ValueError(f"dataset {cfg.dataset!r} is not a real-video dataset")


def prepare(cfg, device: torch.device) -> StudyData:
    """The full-size data of a KTH or BAIR run; raises with instructions if it is absent."""
    train_frames = train_clip_frames(cfg)
    train = open_split(cfg, "train", train_frames)
    val_split = train if train_frames == cfg.seq_len else open_split(cfg, "train")
    test_split = open_split(cfg, "test")
    val = load_clips(val_split, min(cfg.val_sequences, len(val_split)), seed=cfg.seed + 1)
    test = load_clips(test_split, min(cfg.test_sequences, len(test_split)), seed=0)
    source = (f"{cfg.dataset.upper()} from {train.root} ({len(train)} training clips of "
              f"{train_frames} frames, {val.shape[0]} validation clips from the training split, "
              f"{test.shape[0]} of {len(test_split)} test clips of {cfg.seq_len} frames, "
              f"{cfg.image_size}x{cfg.image_size})")
    return StudyData(ClipStream(cfg, train, device), val, test, {}, source)
