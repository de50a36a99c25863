"""Video augmentations of the SimVP study (Table 1: "none" / "crop" / "crop+flip").

    x = augment_sequences(x, "crop+flip", generator=g)     # x: (B, T, C, H, W), whole videos
    inputs, targets = x[:, :10], x[:, 10:]

The transform is drawn once per sequence and applied identically to all of its frames, so it
must be called on the whole video (inputs and targets together), before the split.

Modes
-----
``"none"``
    ``x`` is returned unchanged (the same tensor object).
``"crop"``
    Per sequence, integer offsets ``oy ~ U{0, ..., H - c}`` and ``ox ~ U{0, ..., W - c}``
    (``c = crop_size``) pick the window of rows ``oy .. oy + c - 1`` and columns
    ``ox .. ox + c - 1``, which is resized bilinearly back to ``H x W``: output pixel
    ``(i, j)`` reads the input at

        y = oy + (i + 0.5) * c / H - 0.5,     x = ox + (j + 0.5) * c / W - 0.5

    (the pixel-centre convention of ``F.interpolate(..., align_corners=False)``), by bilinear
    interpolation of the full frame with edge replication outside it (``F.grid_sample``,
    ``padding_mode="border"``). So it is a random zoom-in by ``H / c`` plus a shift; the
    samples that fall up to half a pixel outside the window read the true neighbouring pixels
    (resizing the cut-out window instead would replicate its edge). ``crop_size == H == W`` is
    the identity up to float rounding (< 1e-5).
``"crop+flip"``
    The crop above, then each sequence is flipped horizontally (left-right) with p = 0.5 and
    vertically (up-down) with p = 0.5, independently: none / horizontal / vertical / both
    (= 180 degree rotation) with probability 1/4 each. The flips are folded into the sampling
    grid, so there is still one resampling.

Random draws, all from ``generator``, in this order: ``oy`` (B, 1), ``ox`` (B, 1), then for
"crop+flip" a (B, 2) uniform tensor whose columns decide horizontal, vertical flips. The crop
of a sequence is therefore the same in "crop" and "crop+flip" for the same seed. The draws,
and the float64 sampling coordinates of each output row and column computed from them, are
made on the generator's device (None: torch's global CPU generator), not necessarily x's: with
a CPU generator (the training stream's, see vpstudy.data.moving_mnist) a seed gives the same
crops and flips on every device, and only the (B, H) and (B, W) coordinates, rounded to x's
dtype, are moved to x's device. What remains device-dependent is the bilinear
``F.grid_sample`` itself, which runs on x's device: its float rounding (the last bits of each
value) may differ between devices.

Relation to OpenSTL (``MovingMNIST._augment_seq``, used with ``use_augment=True``): it
upsamples the whole video bilinearly by ``1 / 0.94`` (64 -> 68 px) and cuts a random integer
64 x 64 crop, i.e. a window of 64 * 0.94 = 60.2 original pixels (zoom 1.064) shifted by 0..4
upsampled pixels (steps of 0.94 px). ``crop_size=60`` here is a zoom of 64 / 60 = 1.067 with
shifts of 0..4 original pixels: nearly the same. Its flips differ: it applies a 180 degree
rotation with p = 3/4, else a vertical flip with p = 3/16, else a horizontal flip with
p = 3/64, and nothing with p = 1/64 (``random.randint(-2, 1)`` is non-zero 3 times in 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vpstudy.config import AUGMENT_MODES


def _pixel_to_grid(coords: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates (pixel i has its centre at i) -> grid_sample's [-1, 1] coordinates
    for align_corners=False."""
    return (2 * coords + 1) / size - 1


def augment_sequences(x: torch.Tensor, mode: str, *, crop_size: int = 60,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment whole videos, one random transform per sequence (see the module docstring).

    x: (B, T, C, H, W) float. mode: one of AUGMENT_MODES. crop_size: side of the crop window,
    1 <= crop_size <= min(H, W). generator: a torch.Generator on the CPU (any x device: the
    draws are made on the CPU, then moved) or on x's device type; None: torch's global CPU
    generator. Returns a new (B, T, C, H, W) tensor (``x`` itself for mode "none").
    """
    if mode not in AUGMENT_MODES:
        raise ValueError(f"unknown augmentation mode {mode!r}; valid modes: {', '.join(AUGMENT_MODES)}")
    if x.ndim != 5:
        raise ValueError(f"x must be a (B, T, C, H, W) batch of videos, got shape {tuple(x.shape)}")
    B, T, C, H, W = x.shape
    if isinstance(crop_size, bool) or not isinstance(crop_size, int) or not 1 <= crop_size <= min(H, W):
        raise ValueError(f"crop_size must be an integer in [1, {min(H, W)}] (the frame side), "
                         f"got {crop_size!r}")
    if mode == "none":
        return x
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    if generator is not None and generator.device.type not in ("cpu", x.device.type):
        raise ValueError(f"generator is on {generator.device} but x is on {x.device}; pass a CPU "
                         "generator, torch.Generator() (the same crops on every device), or one "
                         f"made with torch.Generator(device='{x.device.type}')")

    draw = generator.device if generator is not None else torch.device("cpu")
    top = torch.randint(H - crop_size + 1, (B, 1), generator=generator, device=draw)
    left = torch.randint(W - crop_size + 1, (B, 1), generator=generator, device=draw)
    rows = torch.arange(H, device=draw, dtype=torch.float64)
    cols = torch.arange(W, device=draw, dtype=torch.float64)
    ys = top + (rows + 0.5) * (crop_size / H) - 0.5          # (B, H) source row of each output row
    xs = left + (cols + 0.5) * (crop_size / W) - 0.5         # (B, W) source column of each output column
    if mode == "crop+flip":
        flip = torch.rand(B, 2, generator=generator, device=draw) < 0.5
        xs = torch.where(flip[:, 0:1], xs.flip(-1), xs)      # horizontal: reverse the columns
        ys = torch.where(flip[:, 1:2], ys.flip(-1), ys)      # vertical: reverse the rows

    # Rounded to x's dtype where drawn, then moved: (B, W) + (B, H) values, a few KiB.
    gx = _pixel_to_grid(xs, W).to(x.dtype).to(x.device, non_blocking=True)
    gy = _pixel_to_grid(ys, H).to(x.dtype).to(x.device, non_blocking=True)
    grid = torch.stack((gx[:, None, :].expand(B, H, W), gy[:, :, None].expand(B, H, W)), dim=-1)
    out = F.grid_sample(x.reshape(B, T * C, H, W), grid, mode="bilinear",
                        padding_mode="border", align_corners=False)
    return out.view(B, T, C, H, W)
