"""Frames laid out as one picture: equal tiles in rows, captioned, encoded as PNG (numpy and
Pillow only, fast enough for widget sliders). Used by the explorer and `vpstudy predict`."""

from __future__ import annotations

import io

import numpy as np

GAP = 4                          # pixels between tiles
CAPTION = 20                     # pixels of caption band above each row of tiles
FONT_SIZE = 14


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:                        # Pillow < 10.1: one bitmap size only
        return ImageFont.load_default()


def compose(rows: list[list[np.ndarray]], captions: list[list[str]] | None = None) -> np.ndarray:
    """Tiles (equal size) into one RGB image, row by row, on a white background; with
    ``captions`` (same layout as ``rows``), each tile gets its caption written above it."""
    th, tw = rows[0][0].shape[:2]
    band = CAPTION if captions else 0
    width = max(len(r) for r in rows) * (tw + GAP) + GAP
    height = len(rows) * (th + GAP + band) + GAP
    canvas = np.full((height, width, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = GAP + band + i * (th + GAP + band), GAP + j * (tw + GAP)
            canvas[y: y + th, x: x + tw] = tile
    if captions:
        from PIL import Image, ImageDraw

        img = Image.fromarray(canvas)
        draw, font = ImageDraw.Draw(img), _font()
        for i, row in enumerate(captions):
            for j, text in enumerate(row):
                draw.text((GAP + j * (tw + GAP), GAP + i * (th + GAP + band) + 1), text,
                          fill=(0, 0, 0), font=font)
        canvas = np.asarray(img).copy()
    return canvas


def png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()
