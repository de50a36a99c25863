"""KTH and BAIR video datasets read from data the user has placed locally (nothing is downloaded).

All datasets return one clip per index as a float32 tensor ``(T, C, H, W)`` with values in
[0, 1]; they are ``torch.utils.data.Dataset``s, index their files once at construction and
read images only in ``__getitem__`` (a full KTH/BAIR tree is never loaded into memory).

KTH (``KTHDataset``), PredRNN's on-disk layout::

    <root>/<action>/personXX_<action>_dN_uncomp/image_NNNN.png   (or .jpg / .jpeg)

  * actions: boxing, handclapping, handwaving, jogging, running, walking; persons 01-16 are
    the train split, 17-25 the test split (PredRNN/E3D-LSTM/OpenSTL convention);
  * frames: PIL ``convert('L')`` (luma), resized to size x size with PIL bilinear (which
    antialiases when shrinking), /255 -> ``(T, 1, size, size)``;
  * clips (PredRNN ``kth_action.py`` semantics, applied per video folder): frames are sorted
    by their number; the last clip ends on the last frame, and each earlier clip ends ``step``
    frames before the next one; a window is kept only if its frame numbers are consecutive
    (end - start == seq_len - 1), otherwise the window slides back by one frame. PredRNN's
    step is seq_len (non-overlapping) for boxing, handclapping, handwaving, walking and 3 for
    jogging and running (``step='predrnn'``, the default); an int step applies to all actions.
  * differences from PredRNN: clips are listed in a fixed order (actions as given, video
    folders by name, starts ascending) where PredRNN lists them in reverse over an
    ``os.listdir`` order; frames are resized with PIL bilinear+antialias where PredRNN uses
    ``cv2.resize`` (bilinear, no antialias; the two differ slightly at 128 and more at 64);
    frames are read lazily per clip instead of all at once.

BAIR robot pushing, 30-frame 64x64 RGB trajectories, clip = the first ``seq_len`` frames:

  * ``BAIRDataset`` reads SVG's converted PNG tree
    ``<root>/processed_data/{train,test}/<traj_folder>/<k>/<0..29>.png`` (``root`` may also be
    the ``processed_data`` folder). Note: SVG's ``convert_bair.py`` saved floats with
    ``scipy.misc.imsave``, which min-max stretches each frame to 0..255, so its PNGs equal the
    TFRecord bytes only for frames that already span 0..255.
  * ``BAIRTFRecordDataset`` reads the original release
    ``<root>/softmotion30_44k/{train,test}/traj_*_to_*.tfrecords`` (``root`` may also be the
    ``softmotion30_44k`` folder, the split folder, or one ``.tfrecords`` file) without
    TensorFlow, taking the raw 64x64x3 uint8 bytes of ``'{i}/image_aux1/encoded'``.

Missing data raises FileNotFoundError with the expected layout and the environment variable
(``VPSTUDY_KTH_DIR`` / ``VPSTUDY_BAIR_DIR``) used when ``root`` is None; unreadable images and
corrupt TFRecords raise ``DataError`` (a ValueError) naming the file.

Helpers: ``load_clips`` (a fixed, seeded evaluation tensor) and ``iterate_batches`` (one
shuffled epoch of training batches).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from vpstudy.data.errors import DataError
from vpstudy.data.tfrecord import index_tfrecord, parse_example, read_record

PathLike = Union[str, os.PathLike]

KTH_ACTIONS = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")
KTH_TRAIN_PERSONS = tuple(range(1, 17))
KTH_TEST_PERSONS = tuple(range(17, 26))
KTH_FAST_ACTIONS = ("jogging", "running")  # PredRNN's step-3 actions
KTH_ENV_VAR = "VPSTUDY_KTH_DIR"

BAIR_ENV_VAR = "VPSTUDY_BAIR_DIR"
BAIR_FRAMES = 30
BAIR_SIZE = 64
BAIR_IMAGE_KEY = "{i}/image_aux1/encoded"

_KTH_LAYOUT = f"""Place the KTH frames in PredRNN's layout:
    <root>/<action>/personXX_<action>_dN_uncomp/image_NNNN.png   (or .jpg)
with <action> one of {', '.join(KTH_ACTIONS)};
persons 01-16 form the train split and 17-25 the test split.
Pass root=<root> or set the environment variable {KTH_ENV_VAR}=<root>."""

_BAIR_PNG_LAYOUT = f"""Place BAIR as SVG's converted PNG tree:
    <root>/processed_data/{{train,test}}/<traj_folder>/<k>/<0..29>.png   (64x64 RGB)
(root may also be the processed_data folder itself).
Pass root=<root> or set the environment variable {BAIR_ENV_VAR}=<root>."""

_BAIR_TFRECORD_LAYOUT = f"""Place the original BAIR release (softmotion30_44k) as:
    <root>/softmotion30_44k/{{train,test}}/traj_*_to_*.tfrecords
(root may also be the softmotion30_44k folder, a split folder, or one .tfrecords file).
Pass root=<root> or set the environment variable {BAIR_ENV_VAR}=<root>."""

_BILINEAR = getattr(Image, "Resampling", Image).BILINEAR  # Pillow >= 9.1 has Image.Resampling
_KTH_VIDEO_DIR = re.compile(r"^person(\d+)_")
_KTH_FRAME_FILE = re.compile(r"^image_(\d+)\.(png|jpe?g)$", re.IGNORECASE)


# ----------------------------------------------------------------------------- shared helpers

def _resolve_root(root: Optional[PathLike], env_var: str, layout: str, name: str) -> Path:
    """``root`` (or ``$env_var`` when root is None) as an existing Path, else FileNotFoundError."""
    if root is None:
        root = os.environ.get(env_var)
        if not root:
            raise FileNotFoundError(f"{name} data: no root given and ${env_var} is not set.\n{layout}")
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{name} data not found: {path} does not exist.\n{layout}")
    return path


def _natural_key(name: str) -> list:
    """Sort key that orders 'traj_2' before 'traj_10'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _load_image(path: Path, mode: str, size: Optional[int] = None) -> np.ndarray:
    """Read an image as uint8 ``(H, W)`` ('L') or ``(H, W, 3)`` ('RGB'), optionally resized."""
    try:
        with Image.open(path) as image:
            image = image.convert(mode)
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), _BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as error:  # PIL's errors for broken/truncated files
        raise DataError(f"cannot read image file {path}: {error}") from error


def _frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(T, H, W)`` or ``(T, H, W, C)`` -> float32 ``(T, C, H, W)`` in [0, 1]."""
    video = frames[:, None] if frames.ndim == 3 else frames.transpose(0, 3, 1, 2)
    video = np.ascontiguousarray(video, dtype=np.float32)
    np.divide(video, 255.0, out=video)
    return torch.from_numpy(video)


def _check_positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def _evenly_spaced(count: int, max_clips: Optional[int]) -> list[int]:
    """All of ``range(count)``, or ``max_clips`` indices spread evenly over it (first and last kept)."""
    if max_clips is None or max_clips >= count:
        return list(range(count))
    return np.linspace(0, count - 1, max_clips).round().astype(int).tolist()


def _check_index(index: int, length: int) -> int:
    if not -length <= index < length:
        raise IndexError(f"clip index {index} out of range for a dataset of {length} clips")
    return index % length


# ----------------------------------------------------------------------------- KTH

def kth_clip_starts(frame_numbers: Sequence[int], seq_len: int, step: int) -> list[int]:
    """Clip starts (positions in the sorted frame list) of one KTH video, ascending.

    PredRNN's rule: walk clip ends backwards from the last frame; a window whose first and
    last frame numbers differ by ``seq_len - 1`` (no missing frame) is kept and the end moves
    back ``step`` frames, otherwise the end moves back one frame.
    E.g. 40 frames, seq_len 30, step 30 -> [10]; step 3 -> [1, 4, 7, 10].
    """
    starts = []
    end = len(frame_numbers) - 1
    while end >= seq_len - 1:
        start = end - seq_len + 1
        if frame_numbers[end] - frame_numbers[start] == seq_len - 1:
            starts.append(start)
            end -= step
        else:
            end -= 1
    return starts[::-1]


@dataclass(frozen=True)
class KTHVideo:
    """One KTH video folder: its action, person id, folder and frame files sorted by number."""
    action: str
    person: int
    directory: Path
    frame_paths: tuple[Path, ...]
    frame_numbers: tuple[int, ...]


class KTHDataset(Dataset):
    """KTH human actions as grayscale clips ``(seq_len, 1, size, size)``, float32 in [0, 1].

    Args:
        root: folder holding the six action folders (or a folder holding ``kth_action/``);
            None reads ``$VPSTUDY_KTH_DIR``.
        split: 'train' (persons 1-16) or 'test' (persons 17-25).
        seq_len: frames per clip; 30 = 10 observed + 20 predicted (the study's KTH setting).
        size: output height = width (128 in the study; 64 optional). Frames (160x120 in KTH)
            are resized without keeping the aspect ratio, as PredRNN does.
        step: frames between consecutive clip ends within a video. 'predrnn' (default):
            seq_len for boxing/handclapping/handwaving/walking, 3 for jogging/running.
            An int applies to every action (1 = every possible clip).
        actions: which action folders to read (each must exist).
        max_clips: keep only this many clips, spread evenly over the ordered clip list.

    Attributes: ``videos`` (list of KTHVideo) and ``clips`` (list of ``(video_index, start)``
    with ``start`` a position in that video's sorted frame list).
    """

    def __init__(self, root: Optional[PathLike] = None, split: str = "train", seq_len: int = 30,
                 size: int = 128, step: Union[int, str] = "predrnn",
                 actions: Sequence[str] = KTH_ACTIONS, max_clips: Optional[int] = None):
        _check_split(split)
        _check_positive_int(seq_len, "seq_len")
        _check_positive_int(size, "size")
        if step != "predrnn":
            _check_positive_int(step, "step (or 'predrnn')")
        if max_clips is not None:
            _check_positive_int(max_clips, "max_clips")
        actions = (actions,) if isinstance(actions, str) else tuple(actions)
        unknown = [a for a in actions if a not in KTH_ACTIONS]
        if unknown or not actions:
            raise ValueError(f"actions must be a non-empty subset of {KTH_ACTIONS}, got {actions}")

        self.root = _resolve_root(root, KTH_ENV_VAR, _KTH_LAYOUT, "KTH")
        self.split, self.seq_len, self.size, self.step = split, seq_len, size, step
        self.actions = actions
        persons = KTH_TRAIN_PERSONS if split == "train" else KTH_TEST_PERSONS
        action_root = self._find_action_root(self.root, actions)

        self.videos: list[KTHVideo] = []
        for action in actions:
            for directory in sorted((action_root / action).iterdir(), key=lambda p: p.name):
                match = _KTH_VIDEO_DIR.match(directory.name)
                if not directory.is_dir() or not match or int(match.group(1)) not in persons:
                    continue
                numbered = sorted((int(m.group(1)), p) for p in directory.iterdir()
                                  if (m := _KTH_FRAME_FILE.match(p.name)))
                if numbered:
                    self.videos.append(KTHVideo(action, int(match.group(1)), directory,
                                                tuple(p for _, p in numbered),
                                                tuple(n for n, _ in numbered)))
        if not self.videos:
            raise FileNotFoundError(
                f"KTH data: no {split} video folders (persons {persons[0]:02d}-{persons[-1]:02d}, "
                f"frames image_NNNN.png/.jpg) under {action_root} for actions {actions}."
                f"\n{_KTH_LAYOUT}")

        all_clips = [(v, start) for v, video in enumerate(self.videos)
                     for start in kth_clip_starts(video.frame_numbers, seq_len,
                                                  self._step_for(video.action))]
        if not all_clips:
            raise ValueError(f"KTH: none of the {len(self.videos)} {split} videos has {seq_len} "
                             "consecutively numbered frames; use a smaller seq_len")
        self.clips = [all_clips[i] for i in _evenly_spaced(len(all_clips), max_clips)]

    @staticmethod
    def _find_action_root(root: Path, actions: Sequence[str]) -> Path:
        if not any((root / a).is_dir() for a in actions) and (root / "kth_action").is_dir():
            root = root / "kth_action"  # PredRNN's download unpacks to kth_action/
        missing = [a for a in actions if not (root / a).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"KTH data: missing action folder(s) {missing} under {root} "
                f"(pass actions=... to read a subset).\n{_KTH_LAYOUT}")
        return root

    def _step_for(self, action: str) -> int:
        if self.step != "predrnn":
            return int(self.step)
        return 3 if action in KTH_FAST_ACTIONS else self.seq_len

    def __len__(self) -> int:
        return len(self.clips)

    def clip_frame_paths(self, index: int) -> list[Path]:
        """The ``seq_len`` image files of clip ``index``, in temporal order."""
        video_index, start = self.clips[_check_index(index, len(self))]
        return list(self.videos[video_index].frame_paths[start:start + self.seq_len])

    def __getitem__(self, index: int) -> torch.Tensor:
        frames = np.stack([_load_image(p, "L", self.size) for p in self.clip_frame_paths(index)])
        return _frames_to_tensor(frames)  # (T, 1, size, size)

    def __repr__(self) -> str:
        return (f"KTHDataset(split={self.split!r}, clips={len(self)}, videos={len(self.videos)}, "
                f"seq_len={self.seq_len}, size={self.size}, step={self.step!r}, root='{self.root}')")


# ----------------------------------------------------------------------------- BAIR

def _check_bair_seq_len(seq_len: int) -> None:
    _check_positive_int(seq_len, "seq_len")
    if seq_len > BAIR_FRAMES:
        raise ValueError(f"seq_len must be at most {BAIR_FRAMES} (BAIR trajectories have "
                         f"{BAIR_FRAMES} frames), got {seq_len}")


class BAIRDataset(Dataset):
    """BAIR robot pushing from SVG's PNG tree: clips ``(seq_len, 3, 64, 64)``, float32 in [0, 1].

    Args:
        root: folder holding ``processed_data/`` (or the ``processed_data`` folder itself);
            None reads ``$VPSTUDY_BAIR_DIR``.
        split: 'train' or 'test'.
        seq_len: the first ``seq_len`` frames of each 30-frame trajectory (20 = 10 + 10).
        max_clips: keep only this many sequences, spread evenly over the ordered list.

    Sequences are ordered by trajectory folder then ``k`` (natural sort), one clip each;
    ``sequence_dirs`` lists their folders.
    """

    def __init__(self, root: Optional[PathLike] = None, split: str = "train", seq_len: int = 20,
                 max_clips: Optional[int] = None):
        _check_split(split)
        _check_bair_seq_len(seq_len)
        if max_clips is not None:
            _check_positive_int(max_clips, "max_clips")
        self.root = _resolve_root(root, BAIR_ENV_VAR, _BAIR_PNG_LAYOUT, "BAIR")
        self.split, self.seq_len = split, seq_len

        candidates = [self.root / "processed_data" / split, self.root / split]
        split_dir = next((c for c in candidates if c.is_dir()), None)
        if split_dir is None:
            raise FileNotFoundError(
                f"BAIR data: no {split!r} folder; looked for {candidates[0]} and {candidates[1]}."
                f"\n{_BAIR_PNG_LAYOUT}")
        self.split_dir = split_dir
        sequences = []
        for trajectory in sorted((d for d in split_dir.iterdir() if d.is_dir()),
                                 key=lambda p: _natural_key(p.name)):
            sequences += sorted((d for d in trajectory.iterdir() if d.is_dir()),
                                key=lambda p: _natural_key(p.name))
        if not sequences:
            raise FileNotFoundError(
                f"BAIR data: no <traj_folder>/<k>/ sequence folders under {split_dir}."
                f"\n{_BAIR_PNG_LAYOUT}")
        self.sequence_dirs = [sequences[i] for i in _evenly_spaced(len(sequences), max_clips)]

    def __len__(self) -> int:
        return len(self.sequence_dirs)

    def __getitem__(self, index: int) -> torch.Tensor:
        directory = self.sequence_dirs[_check_index(index, len(self))]
        frames = []
        for i in range(self.seq_len):
            path = directory / f"{i}.png"
            if not path.is_file():
                raise FileNotFoundError(f"BAIR data: missing frame {path} (each sequence folder "
                                        f"needs 0.png ... {BAIR_FRAMES - 1}.png)")
            frame = _load_image(path, "RGB")
            if frame.shape != (BAIR_SIZE, BAIR_SIZE, 3):
                raise DataError(f"BAIR frame {path} is {frame.shape[1]}x{frame.shape[0]}, "
                                 f"expected {BAIR_SIZE}x{BAIR_SIZE}")
            frames.append(frame)
        return _frames_to_tensor(np.stack(frames))  # (T, 3, 64, 64)

    def __repr__(self) -> str:
        return (f"BAIRDataset(split={self.split!r}, clips={len(self)}, seq_len={self.seq_len}, "
                f"root='{self.root}')")


class BAIRTFRecordDataset(Dataset):
    """BAIR robot pushing from the original TFRecords (no TensorFlow): ``(seq_len, 3, 64, 64)``.

    Args:
        root: folder holding ``softmotion30_44k/`` (or that folder, a split folder, or one
            ``.tfrecords`` file); None reads ``$VPSTUDY_BAIR_DIR``.
        split: 'train' or 'test' (a split folder named train/test must match it).
        seq_len: the first ``seq_len`` of the 30 frames (20 = 10 + 10).
        max_clips: keep only this many records, spread evenly over the ordered list.
        verify_crc: check each record's data CRC-32C when it is read (a few ms per
            370 kB record).
            Length CRCs are always checked while indexing, since the framing depends on them.

    Records are ordered by file (natural sort of ``traj_*_to_*``) then position in the file,
    the same order as SVG's ``<traj_folder>/<k>`` tree; ``records`` lists
    ``(file, data_offset, data_length)``.
    """

    def __init__(self, root: Optional[PathLike] = None, split: str = "train", seq_len: int = 20,
                 max_clips: Optional[int] = None, verify_crc: bool = True):
        _check_split(split)
        _check_bair_seq_len(seq_len)
        if max_clips is not None:
            _check_positive_int(max_clips, "max_clips")
        self.root = _resolve_root(root, BAIR_ENV_VAR, _BAIR_TFRECORD_LAYOUT, "BAIR")
        self.split, self.seq_len, self.verify_crc = split, seq_len, verify_crc
        self.files = self._find_files(self.root, split)
        records = [(path, offset, length)
                   for path in self.files for offset, length in index_tfrecord(path)]
        if not records:
            raise FileNotFoundError(f"BAIR data: the TFRecord files {[str(f) for f in self.files]} "
                                    f"hold no records.\n{_BAIR_TFRECORD_LAYOUT}")
        self.records = [records[i] for i in _evenly_spaced(len(records), max_clips)]

    @staticmethod
    def _find_files(root: Path, split: str) -> list[Path]:
        if root.is_file():
            return [root]
        candidates = [root / "softmotion30_44k" / split, root / split, root]
        for folder in candidates:
            files = sorted(folder.glob("*.tfrecords"), key=lambda p: _natural_key(p.name)) \
                if folder.is_dir() else []
            if files:
                if folder == root and root.name in ("train", "test") and root.name != split:
                    raise ValueError(f"root {root} is the {root.name!r} split folder but "
                                     f"split={split!r} was asked for")
                return files
        raise FileNotFoundError(
            f"BAIR data: no *.tfrecords files for split {split!r}; looked in "
            f"{', '.join(str(c) for c in candidates)}.\n{_BAIR_TFRECORD_LAYOUT}")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> torch.Tensor:
        path, offset, length = self.records[_check_index(index, len(self))]
        with open(path, "rb") as f:
            data = read_record(f, offset, length, self.verify_crc, name=str(path))
        where = f"{path}: record at byte {offset - 12}"
        try:
            example = parse_example(data)
        except DataError as error:
            raise DataError(f"{where}: {error}") from error
        frames = []
        for i in range(self.seq_len):
            key = BAIR_IMAGE_KEY.format(i=i)
            value = example.get(key)
            if not isinstance(value, list) or not value:
                raise DataError(f"{where}: no bytes feature {key!r} (not a BAIR softmotion record?)")
            if len(value[0]) != BAIR_SIZE * BAIR_SIZE * 3:
                raise DataError(f"{where}: {key!r} has {len(value[0])} bytes, expected "
                                 f"{BAIR_SIZE}*{BAIR_SIZE}*3 raw uint8 RGB")
            frames.append(np.frombuffer(value[0], dtype=np.uint8).reshape(BAIR_SIZE, BAIR_SIZE, 3))
        return _frames_to_tensor(np.stack(frames))  # (T, 3, 64, 64)

    def __repr__(self) -> str:
        return (f"BAIRTFRecordDataset(split={self.split!r}, clips={len(self)}, "
                f"files={len(self.files)}, seq_len={self.seq_len}, root='{self.root}')")


# ----------------------------------------------------------------------------- clip helpers

def load_clips(dataset: Dataset, num_clips: Optional[int], seed: int = 0) -> torch.Tensor:
    """A fixed evaluation tensor ``(N, T, C, H, W)`` from ``dataset``.

    ``num_clips`` clips are drawn without replacement with ``torch.randperm`` under a
    ``torch.Generator`` seeded with ``seed`` and stacked in ascending index order, so the same
    (dataset, num_clips, seed) always gives the same tensor. ``num_clips=None`` takes all clips.
    """
    total = len(dataset)
    if num_clips is None:
        indices = list(range(total))
    else:
        _check_positive_int(num_clips, "num_clips")
        if num_clips > total:
            raise ValueError(f"num_clips={num_clips} exceeds the dataset's {total} clips")
        generator = torch.Generator().manual_seed(seed)
        indices = torch.randperm(total, generator=generator)[:num_clips].sort().values.tolist()
    return torch.stack([dataset[i] for i in indices])


def iterate_batches(dataset: Dataset, batch_size: int, generator: Optional[torch.Generator] = None,
                    shuffle: bool = True, drop_last: bool = True) -> Iterator[torch.Tensor]:
    """One epoch of batches ``(B, T, C, H, W)``.

    The order is ``torch.randperm(len(dataset), generator=generator)`` when ``shuffle`` (pass a
    seeded generator for a reproducible sequence of epochs; None uses torch's global RNG),
    else index order. ``drop_last`` drops a final incomplete batch (as PredRNN and OpenSTL do).
    """
    _check_positive_int(batch_size, "batch_size")
    total = len(dataset)
    order = (torch.randperm(total, generator=generator).tolist() if shuffle
             else list(range(total)))
    stop = total - total % batch_size if drop_last else total
    for begin in range(0, stop, batch_size):
        yield torch.stack([dataset[i] for i in order[begin:begin + batch_size]])
