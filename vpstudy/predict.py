"""Predict the next frames of a video of one's own, or of a sequence of the fixed test set.

    from vpstudy import load_trained, predict
    from vpstudy.predict import read_frames, to_model_layout

    model, cfg = load_trained("gsta")                          # the shipped weights (vpstudy.weights)
    frames = read_frames("clip.mp4")                           # (T, H, W, C) uint8, as in the file
    clip = to_model_layout(frames, cfg)                        # grey/RGB, crop, resize, frame count
    future = predict(model, cfg, clip.observed)                # (T_out, C, h, w) float in [0, 1]

    python -m vpstudy predict --model gsta --video clip.mp4 --out pred.gif
    python -m vpstudy predict --run runs/gsta-cpu-s0-27331ec5e2 --test-index 7 --digits 3

Input: a video file (mp4, avi, gif, ...: imageio with its ffmpeg plugin), a folder of frames
(sorted by name, numbers in order), an ``.npy`` array of frames ((T, H, W), (T, H, W, C) or
(T, C, H, W); uint8, or floats in [0, 1]), or a sequence of the model's fixed test set. The
conversion to the model's layout says what it did (`Clip.notes`): RGB to grey (ITU-R 601 luma)
or grey to RGB, a centre crop to a square, an antialiased resize to the trained frame size, and
which frames are observed and which are the target (when the input is long enough).

Output (`write_animation`): a GIF, and an MP4 when ffmpeg is there (imageio-ffmpeg), whose frame k
shows observed frame k | predicted frame k | target frame k side by side; and, with a target,
per-frame MSE and SSIM in the conventions of `vpstudy.metrics` (SSIM with data_range 2 as
published). A bad input is a `PredictInputError`: one line naming the file and what is needed.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from vpstudy.config import TrainConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
LUMA = np.array([0.299, 0.587, 0.114], np.float32)     # ITU-R BT.601 RGB -> grey
TILE_PIXELS = 128                                        # frames are shown at least this wide
PROGRESS_FROM = 50                                       # frames read before a progress bar shows


class PredictInputError(ValueError):
    """An input that cannot be predicted from; the message names the file and what is needed."""


# ---------------------------------------------------------------- the model


def load_predictor(model: str | None = None, run: str | os.PathLike | None = None,
                   checkpoint: str | os.PathLike | None = None, weights: str | os.PathLike | None = None,
                   device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig, str]:
    """(model, its run's config, what it is) from exactly one of: ``model`` (the shipped weights
    of that name, `vpstudy.weights.load_trained`), ``run`` (a run directory with its checkpoint)
    or ``checkpoint`` (a ``checkpoint.pt`` alone: it holds its config)."""
    given = [k for k, v in (("model", model), ("run", run), ("checkpoint", checkpoint)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of --model NAME, --run DIR or --checkpoint PATH (got {given or 'none'})")
    if model is not None:
        from vpstudy.weights import load_trained, manifest_entry

        net, cfg = load_trained(model, weights, device)
        return net, cfg, f"shipped {model} weights (run {manifest_entry(model, weights)['run_id']})"
    if run is not None:
        from vpstudy.train import load_run_model

        if not (Path(run) / "record.json").is_file():
            raise FileNotFoundError(f"{run} is not a run directory (it has no record.json)")
        net, cfg = load_run_model(run, device)
        return net, cfg, f"run {Path(run).name}"
    return _load_checkpoint_alone(Path(checkpoint), device)


def _load_checkpoint_alone(path: Path, device) -> tuple[nn.Module, TrainConfig, str]:
    from vpstudy import runs
    from vpstudy.checkpoints import CheckpointMismatch, load_checkpoint
    from vpstudy.precision import memory_format_for
    from vpstudy.train import build_run_model

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    state = load_checkpoint(path)                       # safe load, digest checked
    try:
        cfg = TrainConfig.from_dict(runs.json_loads(state["identity"]))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointMismatch(f"checkpoint {path} holds no usable config ({e})") from e
    net = build_run_model(cfg)
    load_checkpoint(path, cfg, net)
    net = net.to(device)
    return (net.to(memory_format=memory_format_for(net)).eval(), cfg,
            f"checkpoint {path} (run {runs.run_id(cfg.identity())}, epoch {state['epoch'] + 1})")


@torch.no_grad()
def predict(model: nn.Module, cfg: TrainConfig, frames) -> np.ndarray:
    """The model's prediction of the next ``cfg.out_frames`` frames after ``frames``, observed
    frames in the model's layout: (T_in, C, h, w) or a batch (B, T_in, C, h, w), floats in [0, 1]
    (tensor or array; `to_model_layout` makes them from any video). Returns float32 numpy of
    shape (T_out, C, h, w) (or (B, T_out, C, h, w)), computed in the precision the run was
    evaluated in."""
    from vpstudy.evaluate import predict as predict_batch
    from vpstudy.precision import autocast_dtype

    x = frames.float() if torch.is_tensor(frames) else torch.from_numpy(np.asarray(frames, np.float32))
    single = x.dim() == 4
    x = x[None] if single else x
    if x.dim() != 5 or tuple(x.shape[1:]) != cfg.clip_shape:
        raise ValueError(f"frames of shape {tuple(frames.shape)}: the model observes {cfg.clip_shape} "
                         f"(T_in, C, H, W), or a batch of them; convert with vpstudy.predict.to_model_layout")
    device = next(model.parameters(), torch.empty(0)).device
    out = predict_batch(model, x, device, autocast_dtype(cfg, device)).numpy()
    return out[0] if single else out


# ---------------------------------------------------------------- reading frames


def read_frames(path: str | os.PathLike, max_frames: int | None = None, start: int = 0, step: int = 1,
                progress: bool = True) -> np.ndarray:
    """Frames of a video file, a folder of images or an ``.npy`` array as (T, H, W, C), C 1, 3 or
    4, uint8 (or float for float arrays): frames ``start, start + step, ...``, at most
    ``max_frames``."""
    path = Path(path)
    if start < 0 or step < 1:
        raise PredictInputError(f"{path}: --start must be >= 0 and --step >= 1 (got {start}, {step})")
    if path.is_dir():
        return _read_folder(path, max_frames, start, step, progress)
    if not path.is_file():
        raise PredictInputError(f"{path}: no such file or folder; give a video file, a folder of frames or an .npy")
    if path.suffix.lower() == ".npy":
        frames = _frames_layout(path, _load_npy(path))
        return frames[start::step][:max_frames]
    return _read_video(path, max_frames, start, step, progress)


def _wanted(start: int, step: int, max_frames: int | None) -> int | None:
    """How many frames to read from the start of the input."""
    return None if max_frames is None else start + step * (max_frames - 1) + 1


def _bar(total: int | None, desc: str, progress: bool):
    return tqdm(total=total, desc=desc, unit="frame", leave=False,
                disable=not progress or (total is not None and total < PROGRESS_FROM))


def _read_video(path: Path, max_frames: int | None, start: int, step: int, progress: bool) -> np.ndarray:
    import imageio.v3 as iio

    need = _wanted(start, step, max_frames)
    frames = []
    try:
        with contextlib.closing(iio.imiter(path)) as it, _bar(need, f"reading {path.name}", progress) as bar:
            for i, frame in enumerate(it):
                if need is not None and i >= need:
                    break
                if i >= start and (i - start) % step == 0:
                    frames.append(np.asarray(frame))
                bar.update(1)
    except Exception as e:  # noqa: BLE001 - imageio raises many kinds for an unreadable file
        detail = str(e).splitlines()[0] if str(e) else "no detail"
        raise PredictInputError(f"{path}: cannot be read as a video ({type(e).__name__}: {detail}); give an "
                                f"mp4, avi or gif file (imageio-ffmpeg reads it), a folder of frames or an .npy") from e
    if not frames:
        raise PredictInputError(f"{path}: holds no frames (after --start {start})")
    return _frames_layout(path, _stack(path, frames))


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _read_folder(path: Path, max_frames: int | None, start: int, step: int, progress: bool) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: _natural_key(p.name))
    files = files[start::step][:max_frames]
    if not files:
        raise PredictInputError(f"{path}: a folder without frames; it needs image files "
                                f"({', '.join(IMAGE_SUFFIXES)}), read in the order of their names")
    frames = []
    for f in tqdm(files, desc=f"reading {path.name}/", unit="frame", leave=False,
                  disable=not progress or len(files) < PROGRESS_FROM):
        try:
            with Image.open(f) as img:
                grey = img.mode in ("1", "L", "LA", "I", "I;16", "F")
                frames.append(np.asarray(img.convert("L" if grey else "RGB")))
        except (UnidentifiedImageError, OSError) as e:
            raise PredictInputError(f"{f}: not a readable image ({e}); the folder must hold only frames") from e
    return _frames_layout(path, _stack(path, frames, files))


def _stack(path: Path, frames: list[np.ndarray], names: Sequence[Path] | None = None) -> np.ndarray:
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        odd = next(i for i, f in enumerate(frames) if f.shape != frames[0].shape)
        where = names[odd] if names else f"{path} frame {odd}"
        raise PredictInputError(f"{where}: frame of shape {frames[odd].shape}, the first is {frames[0].shape}; "
                                f"all frames must have one size")
    return np.stack(frames)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise PredictInputError(f"{path}: not a readable .npy array ({e})") from e


def _frames_layout(path: Path, a: np.ndarray) -> np.ndarray:
    """Any accepted array as (T, H, W, C), C in 1, 3, 4; checks dtype and value range."""
    expected = ("frames as (T, H, W), (T, H, W, C) or (T, C, H, W) with C 1, 3 or 4, uint8 0-255 or "
                "floats in [0, 1]")
    if a.ndim == 5 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        a = a[..., None]
    elif a.ndim == 4 and a.shape[-1] not in (1, 3, 4) and a.shape[1] in (1, 3, 4):
        a = a.transpose(0, 2, 3, 1)
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4) or min(a.shape[:3]) < 1:
        raise PredictInputError(f"{path}: holds an array of shape {a.shape}; expected {expected}")
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
        raise PredictInputError(f"{path}: holds {a.dtype} values; expected {expected}")
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi > 1:
        raise PredictInputError(f"{path}: holds values from {lo:g} to {hi:g}; expected {expected}")
    return a


# ---------------------------------------------------------------- to the model's layout


@dataclass
class Clip:
    """Frames in the model's layout: observed (T_in, C, h, w), target (T_out, C, h, w) or None
    when the input is too short for one, floats in [0, 1]; what the conversion did."""

    observed: np.ndarray
    target: np.ndarray | None
    notes: list[str] = field(default_factory=list)


def to_model_layout(frames: np.ndarray, cfg: TrainConfig, source: str = "input") -> Clip:
    """``frames`` (T, H, W, C) as `read_frames` gives them, converted to what ``cfg``'s model
    observes: its channels, a centre crop to a square, a resize to its frame size, its first
    ``cfg.in_frames`` frames observed and the next ``cfg.out_frames`` the target (if there)."""
    frames = _frames_layout(Path(source), np.asarray(frames))
    t, h, w, c = frames.shape
    need, full = cfg.in_frames, cfg.in_frames + cfg.out_frames
    if t < need:
        raise PredictInputError(f"{source}: has {t} frame{'s' * (t != 1)}; the model needs at least {need} "
                                f"observed frames ({full} to compare its prediction with a target)")
    frames = frames[:full]
    x = frames.astype(np.float32) / 255 if frames.dtype == np.uint8 else frames.astype(np.float32)
    notes = [f"{source}: {t} frame{'s' * (t != 1)} of {w}x{h}, {_channels_text(c)}"]
    if c == 4:
        x = x[..., :3]
    if cfg.channels == 1 and x.shape[-1] == 3:
        x = x @ LUMA
        x = x[..., None]
        notes.append("RGB to grey (ITU-R 601 luma)")
    elif cfg.channels == 3 and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
        notes.append("grey to RGB")
    side, size = min(h, w), cfg.frame_size
    if h != w:
        top, left = (h - side) // 2, (w - side) // 2
        x = x[:, top: top + side, left: left + side]
        notes.append(f"centre crop to {side}x{side}")
    y = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    if side != size:
        y = torch.nn.functional.interpolate(y, size=(size, size), mode="bilinear", antialias=True,
                                            align_corners=False).clamp(0, 1)
        notes.append(f"resized to {size}x{size}")
    y = y.numpy()
    notes.append(f"observed frames 1-{need}" + (f", target frames {need + 1}-{full}" if t >= full else
                                                f"; no target ({t} frames, a target needs {full})"))
    return Clip(y[:need], y[need:full] if t >= full else None, notes)


def _channels_text(c: int) -> str:
    return {1: "grey", 3: "RGB", 4: "RGBA"}[c]


def test_clip(cfg: TrainConfig, index: int, digits: int | None = None) -> Clip:
    """Sequence ``index`` of the model's fixed test set (``digits``: the Moving MNIST test set
    with that many digits), already in the model's layout."""
    from vpstudy.data import fixed_test_set

    n = cfg.test_sequences
    if not 0 <= index < n:
        raise PredictInputError(f"--test-index {index}: the fixed test set has {n} sequences; give 0 to {n - 1}")
    seq = fixed_test_set(cfg, digits)[index].numpy()
    which = f"{digits or cfg.num_digits}-digit " if cfg.dataset == "mmnist" else ""
    return Clip(seq[: cfg.in_frames], seq[cfg.in_frames: cfg.seq_len],
                [f"test sequence {index} of the fixed {which}{cfg.dataset} test set ({n} sequences, "
                 f"{cfg.frame_size}x{cfg.frame_size})"])


# ---------------------------------------------------------------- output


def frame_metrics(prediction: np.ndarray, target: np.ndarray) -> dict[str, list[float]]:
    """Per-frame MSE and SSIM (data_range 2, as published) of one clip (`vpstudy.metrics`)."""
    from vpstudy.metrics import SSIM_DATA_RANGE_PUBLISHED, mse_per_frame, ssim_per_frame

    p, y = prediction[None], target[None]
    return {"mse": mse_per_frame(p, y)[0].tolist(),
            "ssim": ssim_per_frame(p, y, data_range=SSIM_DATA_RANGE_PUBLISHED)[0].tolist()}


def _tile(frame: np.ndarray | None, scale: int, shape: tuple[int, ...]) -> np.ndarray:
    """(C, H, W) in [0, 1] (None: an empty grey tile) -> (H*scale, W*scale, 3) uint8."""
    if frame is None:
        return np.full((shape[1] * scale, shape[2] * scale, 3), 200, np.uint8)
    f = np.clip(frame, 0, 1)
    f = np.repeat(f, 3, axis=0) if f.shape[0] == 1 else f[:3]
    img = (f.transpose(1, 2, 0) * 255).round().astype(np.uint8)
    return img.repeat(scale, axis=0).repeat(scale, axis=1)


def animation_frames(clip: Clip, prediction: np.ndarray) -> list[np.ndarray]:
    """RGB frames of the animation: frame k shows observed k | predicted k | target k."""
    from vpstudy.tiles import compose

    t_in, t_out = len(clip.observed), len(prediction)
    shape = clip.observed.shape[1:]
    scale = max(1, math.ceil(TILE_PIXELS / shape[-1]))
    out = []
    for k in range(max(t_in, t_out)):
        cells = [(clip.observed[k] if k < t_in else None, f"observed {k + 1}" if k < t_in else ""),
                 (prediction[k] if k < t_out else None, f"predicted {t_in + k + 1}" if k < t_out else "")]
        if clip.target is not None:
            cells.append((clip.target[k] if k < t_out else None, f"target {t_in + k + 1}" if k < t_out else ""))
        out.append(compose([[_tile(f, scale, shape) for f, _ in cells]], [[c for _, c in cells]]))
    return out


def write_animation(frames: list[np.ndarray], out: Path, fps: float = 4.0, mp4: bool = True) -> list[Path]:
    """Write the frames as a looping GIF at ``out`` and, when ``mp4`` and ffmpeg is there, as an
    MP4 beside it; returns the files written."""
    from PIL import Image

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(out, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    written = [out]
    if mp4 and ffmpeg_available():
        import imageio.v2 as imageio

        video = out.with_suffix(".mp4")
        h, w = frames[0].shape[:2]
        pad = ((0, -h % 16), (0, -w % 16), (0, 0))          # x264 wants sizes in 16-pixel blocks
        imageio.mimwrite(video, [np.pad(f, pad, constant_values=255) for f in frames], fps=fps,
                         macro_block_size=16)
        written.append(video)
    return written


def ffmpeg_available() -> bool:
    try:
        import imageio_ffmpeg

        return Path(imageio_ffmpeg.get_ffmpeg_exe()).exists()
    except (ImportError, RuntimeError):
        return False


# ---------------------------------------------------------------- the command


@dataclass
class Result:
    clip: Clip
    prediction: np.ndarray
    metrics: dict[str, list[float]] | None
    written: list[Path]
    model: str


def run_predict(*, model: str | None = None, run=None, checkpoint=None, weights=None, video=None,
                frames=None, npy=None, test_index: int | None = None, digits: int | None = None,
                out: str | os.PathLike = "pred.gif", start: int = 0, step: int = 1, fps: float = 4.0,
                mp4: bool = True, device: str = "cpu", progress: bool = True,
                log: Callable[[str], None] = print) -> Result:
    """What ``python -m vpstudy predict`` does: load the model, read and convert the input,
    predict, write the animation, and log what it did and the per-frame metrics."""
    inputs = [(k, v) for k, v in (("--video", video), ("--frames", frames), ("--npy", npy),
                                  ("--test-index", test_index)) if v is not None]
    if len(inputs) != 1:
        raise ValueError(f"give exactly one input: --video FILE, --frames DIR, --npy FILE or --test-index N "
                         f"(got {', '.join(k for k, _ in inputs) or 'none'})")
    if digits is not None and test_index is None:
        raise ValueError("--digits picks a fixed test set; use it with --test-index N")
    net, cfg, what = load_predictor(model, run, checkpoint, weights, device)
    kind, value = inputs[0]
    if kind == "--test-index":
        clip = test_clip(cfg, value, digits)
    else:
        path = Path(value)
        _check_kind(kind, path)
        raw = read_frames(path, cfg.in_frames + cfg.out_frames, start, step, progress)
        clip = to_model_layout(raw, cfg, str(path))
    log(f"{what}: observes {cfg.in_frames} frames of {cfg.frame_size}x{cfg.frame_size} "
        f"({'grey' if cfg.channels == 1 else 'RGB'}), predicts {cfg.out_frames}")
    log("; ".join(clip.notes))
    prediction = predict(net, cfg, clip.observed)
    metrics = frame_metrics(prediction, clip.target) if clip.target is not None else None
    if metrics:
        first = cfg.in_frames + 1
        log("frame " + " ".join(f"{first + k:>6}" for k in range(len(metrics["mse"]))))
        log("MSE   " + " ".join(f"{v:6.2f}" for v in metrics["mse"]) + f"   mean {np.mean(metrics['mse']):.2f}")
        log("SSIM  " + " ".join(f"{v:6.3f}" for v in metrics["ssim"]) + f"   mean {np.mean(metrics['ssim']):.4f}")
    written = write_animation(animation_frames(clip, prediction), Path(out), fps, mp4)
    log("wrote " + ", ".join(map(str, written)) + " (observed | predicted"
        + (" | target)" if clip.target is not None else ")"))
    return Result(clip, prediction, metrics, written, what)


def _check_kind(kind: str, path: Path) -> None:
    if kind == "--frames" and not path.is_dir():
        raise PredictInputError(f"{path}: --frames needs a folder of frames (use --video for a file)")
    if kind == "--npy" and path.suffix.lower() != ".npy":
        raise PredictInputError(f"{path}: --npy needs an .npy file")
    if kind == "--video" and (path.is_dir() or path.suffix.lower() == ".npy"):
        raise PredictInputError(f"{path}: --video needs a video file (use --frames for a folder, --npy for an array)")
