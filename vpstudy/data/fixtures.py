"""Tiny KTH and BAIR trees in the real on-disk layouts, for tests and notebooks.

Every fixture video shows a bright square on a plain background that moves right by a fixed
number of pixels per frame, so temporal order (and which frames a clip holds) can be read
back from the square's position.

* ``write_kth_fixture``: ``<root>/<action>/personXX_<action>_d1_uncomp/image_NNNN.png``,
  160x120 gray frames saved as RGB with equal channels (like frames extracted from the
  KTH AVIs); in frame number n (from 1) the square's left edge is at x = 4 + 3 (n - 1).
* ``bair_fixture_frames`` / ``write_bair_png_fixture`` / ``write_bair_tfrecord_fixture``:
  the same 30-frame 64x64 RGB sequences as SVG's PNG tree and as a real TFRecord file (hand
  encoded ``tf.train.Example``s, masked CRC-32C framing); in frame i the square's left edge
  is at x = 4 + i.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np
from PIL import Image

from vpstudy.data.tfrecord import encode_example, write_tfrecords

PathLike = Union[str, os.PathLike]

KTH_FIXTURE_BACKGROUND = 30
KTH_FIXTURE_FOREGROUND = 235
KTH_FIXTURE_PIXELS_PER_FRAME = 3
BAIR_FIXTURE_SQUARE_RGB = (250, 40, 20)


def kth_fixture_frame(frame_number: int, video_index: int = 0,
                      size: Tuple[int, int] = (120, 160)) -> np.ndarray:
    """Gray uint8 frame ``(H, W)``: a square of value 235 on 30, left edge at 4 + 3(n - 1).

    The x position wraps around when it would leave the frame (after ~45 frames at 160 wide);
    the row depends on ``video_index`` so videos differ.
    """
    height, width = size
    side = max(2, min(16, height // 4, width // 8))
    x_span = max(1, width - side - 8)
    y_span = max(1, height - side - 16)
    x = 4 + (KTH_FIXTURE_PIXELS_PER_FRAME * (frame_number - 1)) % x_span
    y = 8 + (9 * video_index) % y_span
    frame = np.full((height, width), KTH_FIXTURE_BACKGROUND, dtype=np.uint8)
    frame[y:y + side, x:x + side] = KTH_FIXTURE_FOREGROUND
    return frame


def write_kth_fixture(root: PathLike, persons: Sequence[int] = (1, 2, 17),
                      actions: Sequence[str] = ("boxing", "walking"), frames: int = 40,
                      size: Tuple[int, int] = (120, 160), ext: str = "png") -> Path:
    """Write one video (scenario d1) per (action, person) in PredRNN's KTH layout; returns root.

    ``size`` is (height, width) of the originals (KTH: 120x160); frames are numbered from 1
    (``image_0001.<ext>``); ``ext`` is 'png' or 'jpg'.
    """
    if ext not in ("png", "jpg"):
        raise ValueError(f"ext must be 'png' or 'jpg', got {ext!r}")
    root = Path(root)
    video_index = 0
    for action in actions:
        for person in persons:
            directory = root / action / f"person{person:02d}_{action}_d1_uncomp"
            directory.mkdir(parents=True, exist_ok=True)
            for n in range(1, frames + 1):
                gray = kth_fixture_frame(n, video_index, size)
                Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2)).save(
                    directory / f"image_{n:04d}.{ext}")
            video_index += 1
    return root


def bair_fixture_frames(index: int, frames: int = 30) -> np.ndarray:
    """Sequence ``index`` as uint8 ``(frames, 64, 64, 3)``: a red square moving right 1 px per
    frame (left edge 4 + i) over a background whose green channel ramps down the rows."""
    rows = np.arange(64, dtype=np.uint8)[:, None]
    background = np.zeros((64, 64, 3), dtype=np.uint8)
    background[..., 0] = 60
    background[..., 1] = 90 + rows
    background[..., 2] = 120 + (index * 17) % 100
    video = np.repeat(background[None], frames, axis=0)
    y = 6 + (7 * index) % 40
    for i in range(frames):
        x = 4 + i % 48
        video[i, y:y + 12, x:x + 12] = BAIR_FIXTURE_SQUARE_RGB
    return video


def write_bair_png_fixture(root: PathLike, trajectories: int = 2, split: str = "test",
                           frames: int = 30) -> Path:
    """Write SVG's tree ``<root>/processed_data/<split>/traj_0_to_<n-1>/<k>/<i>.png``; returns root.

    One trajectory folder holds ``trajectories`` sequences k = 1..n (SVG numbers them from 1
    within each TFRecord file); sequence k shows ``bair_fixture_frames(k - 1)``, the same
    content as record k - 1 of ``write_bair_tfrecord_fixture(..., examples=n)``.
    """
    root = Path(root)
    folder = root / "processed_data" / split / f"traj_0_to_{trajectories - 1}"
    for k in range(1, trajectories + 1):
        (folder / str(k)).mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(bair_fixture_frames(k - 1, frames)):
            Image.fromarray(frame).save(folder / str(k) / f"{i}.png")
    return root


def write_bair_tfrecord_fixture(path: PathLike, examples: int = 2, frames: int = 30) -> Path:
    """Write a TFRecord file of ``examples`` BAIR-style ``tf.train.Example``s; returns the path.

    Each example has, for i < frames, ``'{i}/image_aux1/encoded'`` (raw 64x64x3 uint8 bytes of
    ``bair_fixture_frames(index)``), ``'{i}/action'`` (4 floats) and ``'{i}/endeffector_pos'``
    (3 floats), as in the softmotion30_44k release. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(examples):
        video = bair_fixture_frames(index, frames)
        features = {}
        for i in range(frames):
            features[f"{i}/action"] = np.array([0.1 * i, -0.2, 0.0, float(index)], np.float32)
            features[f"{i}/endeffector_pos"] = np.array([0.5, 0.01 * i, 0.2], np.float32)
            features[f"{i}/image_aux1/encoded"] = [video[i].tobytes()]
        records.append(encode_example(features))
    write_tfrecords(path, records)
    return path
