"""Evaluation metrics for video prediction, following the published conventions (REFERENCE §4).

All per-frame functions take predicted and true frames shaped ``(B, T, C, H, W)`` with pixel
values in [0, 1] (torch tensors on any device and of any float dtype or memory layout, or numpy
arrays), move them to the CPU as float32 values, compute in float64 numpy, and return one value
per frame, shape (B, T).

Conventions (so that the numbers compare with the SimVP / OpenSTL tables):

- ``mse`` / ``mae``: per frame, the SUM over C·H·W of the squared / absolute error, computed
  BEFORE clipping (a "MSE 34.4" on Moving MNIST is a per-frame sum over 64·64 pixels).
- ``ssim``: predictions clipped to [0, 1], scikit-image ``structural_similarity`` with its
  default 7×7 uniform window (sample covariance, K1=0.01, K2=0.03), averaged over channels for
  C > 1 (as ``channel_axis`` does). The published numbers use ``data_range=2``: OpenSTL pinned
  an old scikit-image that silently took the float dtype range [-1, 1] as the data range.
  ``ssim_strict`` is the technically correct ``data_range=1`` and gives lower values.
- ``psnr``: predictions clipped to [0, 1], ``10·log10(1 / mean squared error)`` per frame
  (= 20·log10(1/sqrt(mse)), data range 1). A perfect frame (mse = 0, or below 1e-10) is
  capped at ``PSNR_MAX_DB`` = 100 dB instead of +inf, so averages stay finite and
  JSON-serializable.

- ``sharpness`` (not a published metric; it tests the SimVP paper's claim that a larger model
  predicts sharper frames): per frame, the mean Sobel gradient magnitude of the clipped
  prediction over that of the target, ``(G(pred) + ε) / (G(target) + ε)`` with ε =
  ``SHARPNESS_EPS``. ``G`` is the mean over C and the interior pixels (no padding) of
  ``sqrt(gx² + gy²)``, with the 3×3 Sobel kernels divided by 8 (a unit ramp has gradient 1).
  1 means as sharp as the target, below 1 blurrier (the usual failure of an MSE-trained
  predictor), above 1 edges the target does not have; the frame itself scores exactly 1.

As in OpenSTL, only the predictions are clipped; the targets are taken as they are (they are
data in [0, 1]).

SSIM is computed vectorized (a 7-wide box filter along W then H over the region the
scikit-image result keeps after cropping its 3-pixel border), which equals scikit-image to
~1e-15 and runs at several thousand 64×64 frames per second on 2 CPU cores.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch
from scipy.ndimage import uniform_filter1d

PSNR_MAX_DB = 100.0          # PSNR reported for a perfect (mse < 1e-10) frame
SSIM_WIN_SIZE = 7            # scikit-image default uniform window
SSIM_K1, SSIM_K2 = 0.01, 0.03
SSIM_DATA_RANGE_PUBLISHED = 2.0  # old scikit-image's float default; used by the published SSIMs
SSIM_DATA_RANGE_STRICT = 1.0     # the actual range of [0, 1] pixels
SHARPNESS_EPS = 1e-6         # keeps the ratio defined for edgeless (blank) frames: blank/blank = 1
_SSIM_CHUNK_FRAMES = 16      # frames filtered at once (small chunks stay in cache: fastest)

METRIC_NAMES = ("mse", "mae", "ssim", "ssim_strict", "psnr", "sharpness")

METRIC_INFO: dict[str, dict] = {
    "mse": {
        "label": "MSE (per-frame sum)",
        "higher_is_better": False,
        "convention": "sum over C·H·W of squared error on [0,1] pixels, before clipping; "
                      "mean over sequences and frames",
    },
    "mae": {
        "label": "MAE (per-frame sum)",
        "higher_is_better": False,
        "convention": "sum over C·H·W of absolute error on [0,1] pixels, before clipping; "
                      "mean over sequences and frames",
    },
    "ssim": {
        "label": "SSIM (data_range=2, published)",
        "higher_is_better": True,
        "convention": "scikit-image SSIM, 7x7 uniform window, predictions clipped to [0,1], "
                      "data_range=2 as in the published tables (old scikit-image float default)",
    },
    "ssim_strict": {
        "label": "SSIM (data_range=1)",
        "higher_is_better": True,
        "convention": "scikit-image SSIM, 7x7 uniform window, predictions clipped to [0,1], "
                      "data_range=1 (technically correct; lower than the published convention)",
    },
    "psnr": {
        "label": "PSNR (dB)",
        "higher_is_better": True,
        "convention": "per frame 10·log10(1/mean squared error) on clipped predictions, "
                      f"capped at {PSNR_MAX_DB:g} dB; mean over sequences and frames",
    },
    "sharpness": {
        "label": "sharpness (Sobel, pred / target)",
        "higher_is_better": None,          # best at 1: neither blurrier nor with spurious edges
        "best": 1.0,
        "convention": "per frame, mean Sobel gradient magnitude of the clipped prediction over "
                      "the target's (interior pixels, kernels / 8); mean over sequences and frames",
    },
}


def _to_cpu_float64(x, name: str) -> np.ndarray:
    """Any tensor / array -> C-contiguous float64 numpy array of its CPU float32 values."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to(device="cpu", dtype=torch.float32).numpy()
    elif isinstance(x, np.ndarray):
        x = x.astype(np.float32, copy=False)
    else:
        raise ValueError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}")
    return np.ascontiguousarray(x, dtype=np.float64)


def _video_pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (pred, target) pair of (B, T, C, H, W) videos; return float64 numpy copies."""
    pred = _to_cpu_float64(pred, "pred")
    target = _to_cpu_float64(target, "target")
    if pred.ndim != 5 or pred.shape != target.shape:
        raise ValueError("pred and target must both have shape (B, T, C, H, W); got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    return pred, target


def _frame_sum(x: np.ndarray) -> np.ndarray:
    """(B, T, C, H, W) -> (B, T): sum over C, H, W."""
    return x.reshape(x.shape[0], x.shape[1], -1).sum(axis=-1)


def _psnr(pred_clipped: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(B, T) PSNR in dB, data range 1, capped at PSNR_MAX_DB."""
    error = pred_clipped - target
    mse_mean = _frame_sum(error * error) / np.prod(error.shape[2:])
    return -10.0 * np.log10(np.maximum(mse_mean, 10.0 ** (-PSNR_MAX_DB / 10.0)))


def mse_per_frame(pred, target) -> torch.Tensor:
    """Per-frame SUM over C·H·W of the squared error, before clipping: (B, T) float64 tensor."""
    pred, target = _video_pair(pred, target)
    error = pred - target
    return torch.from_numpy(_frame_sum(error * error))


def mae_per_frame(pred, target) -> torch.Tensor:
    """Per-frame SUM over C·H·W of the absolute error, before clipping: (B, T) float64 tensor."""
    pred, target = _video_pair(pred, target)
    return torch.from_numpy(_frame_sum(np.abs(pred - target)))


def psnr_per_frame(pred, target) -> torch.Tensor:
    """Per-frame PSNR in dB of the clipped prediction, data range 1: (B, T) float64 tensor.

    PSNR = 10·log10(1 / mean_{C,H,W}((clip(pred) − target)²)), capped at PSNR_MAX_DB.
    """
    pred, target = _video_pair(pred, target)
    return torch.from_numpy(_psnr(np.clip(pred, 0.0, 1.0), target))


def _gradient_magnitude(x: np.ndarray) -> np.ndarray:
    """(B, T, C, H, W) -> (B, T): mean over C and the interior pixels of the Sobel gradient
    magnitude, kernels divided by 8 so that a unit ramp has gradient 1."""
    dx = x[..., 2:] - x[..., :-2]                                   # [-1, 0, 1] along W
    gx = (dx[..., :-2, :] + 2 * dx[..., 1:-1, :] + dx[..., 2:, :]) / 8.0  # [1, 2, 1] along H
    dy = x[..., 2:, :] - x[..., :-2, :]                             # [-1, 0, 1] along H
    gy = (dy[..., :-2] + 2 * dy[..., 1:-1] + dy[..., 2:]) / 8.0       # [1, 2, 1] along W
    magnitude = np.sqrt(gx * gx + gy * gy)
    return magnitude.reshape(*x.shape[:2], -1).mean(axis=-1)


def _sharpness(pred_clipped: np.ndarray, target: np.ndarray) -> np.ndarray:
    return ((_gradient_magnitude(pred_clipped) + SHARPNESS_EPS)
            / (_gradient_magnitude(target) + SHARPNESS_EPS))


def sharpness_per_frame(pred, target) -> np.ndarray:
    """Per-frame sharpness of the clipped prediction relative to the target (module docstring):
    (B, T) float64 numpy array; 1 = as sharp as the target, < 1 blurrier."""
    pred, target = _video_pair(pred, target)
    if min(pred.shape[-2:]) < 3:
        raise ValueError(f"sharpness needs frames of at least 3x3 pixels; got {pred.shape[-2:]}")
    return _sharpness(np.clip(pred, 0.0, 1.0), target)


def _box_mean_valid(x: np.ndarray, size: int) -> np.ndarray:
    """Mean over size×size windows of the last two axes, only where the window fits.

    (..., H, W) -> (..., H − size + 1, W − size + 1). Equals scipy's uniform_filter (which
    scikit-image uses) on the pixels that SSIM keeps after cropping its border.
    """
    r = size // 2
    x = uniform_filter1d(x, size, axis=-1, mode="reflect")[..., r:x.shape[-1] - r]
    return uniform_filter1d(x, size, axis=-2, mode="reflect")[..., r:x.shape[-2] - r, :]


def _ssim_images(x: np.ndarray, y: np.ndarray, data_ranges: tuple[float, ...]) -> list[np.ndarray]:
    """Mean SSIM of each 2-D image pair in (N, H, W) float64 stacks, for several data ranges.

    Returns one (N,) float64 array per data range. Same formula as scikit-image's
    structural_similarity (uniform window, sample covariance, border of win//2 cropped).
    """
    win = SSIM_WIN_SIZE
    ux, uy, uxx, uyy, uxy = _box_mean_valid(np.stack([x, y, x * x, y * y, x * y]), win)
    cov_norm = win * win / (win * win - 1.0)  # sample covariance
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    a1, b1 = 2 * ux * uy, ux ** 2 + uy ** 2
    a2, b2 = 2 * vxy, vx + vy
    results = []
    for data_range in data_ranges:
        c1 = (SSIM_K1 * data_range) ** 2
        c2 = (SSIM_K2 * data_range) ** 2
        ssim_map = ((a1 + c1) * (a2 + c2)) / ((b1 + c1) * (b2 + c2))
        results.append(ssim_map.mean(axis=(-2, -1), dtype=np.float64))
    return results


def _check_data_range(data_range) -> float:
    if isinstance(data_range, bool) or not isinstance(data_range, Real) \
            or not math.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range must be a finite number > 0 (published convention "
                         f"{SSIM_DATA_RANGE_PUBLISHED}, strict {SSIM_DATA_RANGE_STRICT}); "
                         f"got {data_range!r}")
    return float(data_range)


def _ssim_per_frame_multi(pred_clipped: np.ndarray, target: np.ndarray,
                          data_ranges: tuple[float, ...]) -> list[np.ndarray]:
    """SSIM per frame for several data ranges sharing one pass: list of (B, T) float64 arrays.

    ``pred_clipped`` and ``target`` are (B, T, C, H, W) float64 arrays, the prediction already
    clipped to [0, 1].
    """
    B, T, C, H, W = pred_clipped.shape
    if min(H, W) < SSIM_WIN_SIZE:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} pixels "
                         f"(scikit-image's default window); got {H}x{W}")
    images_pred = pred_clipped.reshape(B * T * C, H, W)
    images_true = target.reshape(B * T * C, H, W)
    per_image = [np.empty(B * T * C) for _ in data_ranges]
    step = _SSIM_CHUNK_FRAMES * C
    for start in range(0, B * T * C, step):
        chunk = slice(start, start + step)
        for out, values in zip(per_image, _ssim_images(images_pred[chunk], images_true[chunk],
                                                       data_ranges)):
            out[chunk] = values
    # mean over channels, as scikit-image does with channel_axis
    return [values.reshape(B, T, C).mean(axis=-1) for values in per_image]


def ssim_per_frame(pred, target, data_range: float) -> np.ndarray:
    """Per-frame SSIM of the clipped prediction: (B, T) float64 numpy array.

    Equals ``skimage.metrics.structural_similarity(target_frame, clip(pred_frame, 0, 1),
    data_range=data_range, channel_axis=<C axis>)`` (default 7×7 uniform window) for every
    frame. Use data_range=2.0 for the published convention, 1.0 for the strict one.
    """
    data_range = _check_data_range(data_range)
    pred, target = _video_pair(pred, target)
    return _ssim_per_frame_multi(np.clip(pred, 0.0, 1.0), target, (data_range,))[0]


def per_frame_metrics(pred, target) -> dict[str, np.ndarray]:
    """Every metric of METRIC_NAMES per frame: ``{name: (B, T) float64 array}`` (the conventions above)."""
    pred, target = _video_pair(pred, target)
    error = pred - target                   # unclipped: MSE, MAE
    pred_clipped = np.clip(pred, 0.0, 1.0)  # clipped: SSIM, PSNR
    ssim, ssim_strict = _ssim_per_frame_multi(
        pred_clipped, target, (SSIM_DATA_RANGE_PUBLISHED, SSIM_DATA_RANGE_STRICT))
    return {
        "mse": _frame_sum(error * error),
        "mae": _frame_sum(np.abs(error)),
        "ssim": ssim,
        "ssim_strict": ssim_strict,
        "psnr": _psnr(pred_clipped, target),
        "sharpness": _sharpness(pred_clipped, target),
    }


PER_SEQUENCE_METRICS = ("mse", "ssim", "sharpness")   # kept per sequence and frame (per_sequence.npz)


class MetricAccumulator:
    """Accumulates per-frame metrics over batches of (B, T, C, H, W) predictions and targets.

    ``update(pred, target)`` adds a batch (tensors on any device, or numpy arrays; moved to
    CPU float32). ``compute()`` returns a JSON-serializable dict::

        {'mse': float, 'mae': float, 'ssim': float, 'ssim_strict': float, 'psnr': float,
         'per_frame': {name: [float] * T}, 'num_sequences': int}

    where each overall value is the mean over all sequences and frames and ``per_frame[name][t]``
    the mean over sequences at future step t. All batches must have the same T.
    ``per_sequence()`` returns the values behind them, ``{name: (N, T) float32}`` for the
    metrics of ``PER_SEQUENCE_METRICS`` (what a run keeps in ``per_sequence.npz``).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.num_sequences = 0
        self.num_frames: int | None = None
        self._sums: dict[str, np.ndarray] = {}
        self._rows: dict[str, list[np.ndarray]] = {k: [] for k in PER_SEQUENCE_METRICS}

    def update(self, pred, target) -> None:
        values = per_frame_metrics(pred, target)
        self._add(values)

    def _add(self, per_frame: dict[str, np.ndarray]) -> None:
        """Add (B, T) per-frame values of every metric."""
        B, T = per_frame["mse"].shape
        if self.num_frames is not None and T != self.num_frames:
            raise ValueError(f"MetricAccumulator: every batch must have the same number of frames "
                             f"T; got T={T} after batches with T={self.num_frames}")
        for name, values in per_frame.items():
            batch_sum = values.sum(axis=0, dtype=np.float64)  # (T,)
            self._sums[name] = self._sums.get(name, 0.0) + batch_sum
            if name in self._rows:
                self._rows[name].append(np.asarray(values, dtype=np.float32))
        self.num_frames = T
        self.num_sequences += B

    def per_sequence(self) -> dict[str, np.ndarray]:
        """``{name: (N, T) float32}``: each sequence's per-frame value, in the order added."""
        T = self.num_frames or 0
        return {k: np.concatenate(v) if v else np.zeros((0, T), np.float32) for k, v in self._rows.items()}

    def totals(self) -> np.ndarray:
        """Everything accumulated, as one float64 vector (per-frame sums of each metric in
        ``METRIC_NAMES`` order, then the sequence count): what ranks add up to merge shards."""
        return np.concatenate([*(np.asarray(self._sums[k], dtype=np.float64) for k in METRIC_NAMES),
                               [float(self.num_sequences)]])

    def set_totals(self, totals: np.ndarray) -> None:
        """The inverse of ``totals`` (for the same number of frames)."""
        T = (len(totals) - 1) // len(METRIC_NAMES)
        self._sums = {k: np.asarray(totals[i * T: (i + 1) * T], dtype=np.float64)
                      for i, k in enumerate(METRIC_NAMES)}
        self.num_frames, self.num_sequences = T, int(round(float(totals[-1])))

    def compute(self) -> dict:
        if self.num_sequences == 0:
            raise ValueError("MetricAccumulator.compute(): no batches yet; call update(pred, target) first")
        result: dict = {}
        per_frame: dict[str, list[float]] = {}
        for name in METRIC_NAMES:
            means = self._sums[name] / self.num_sequences  # (T,)
            per_frame[name] = [float(v) for v in means]
            result[name] = float(means.mean())
        result["per_frame"] = per_frame
        result["num_sequences"] = int(self.num_sequences)
        return result


class BestOfNAccumulator(MetricAccumulator):
    """Metrics of a stochastic model under the best-of-N protocol (SVG, Denton & Fergus 2018).

    ``update(samples, target)`` takes N predictions of the same (B, T, C, H, W) batch. For each
    metric separately and each sequence, the sample whose mean over the T frames is best for
    that metric (lowest MSE/MAE, highest SSIM/PSNR; for sharpness, which has no better
    direction, the MSE-best sample) is kept, and its per-frame values are
    accumulated. ``compute()`` returns MetricAccumulator's dict plus ``'samples': N``.
    ``update`` returns, per sequence, the index of the sample best by MSE.
    """

    def reset(self) -> None:
        super().reset()
        self.samples: int | None = None

    def update(self, samples, target) -> np.ndarray:
        samples = list(samples)
        if not samples:
            raise ValueError("BestOfNAccumulator.update: need at least one sample")
        if self.samples is not None and len(samples) != self.samples:
            raise ValueError(f"BestOfNAccumulator: every batch needs the same number of samples; "
                             f"got {len(samples)} after {self.samples}")
        self.samples = len(samples)
        per_sample = [per_frame_metrics(p, target) for p in samples]
        chosen: dict[str, np.ndarray] = {}
        best_by_mse = None
        for name in METRIC_NAMES:                                      # "mse" comes first
            values = np.stack([v[name] for v in per_sample])          # (N, B, T)
            score = values.mean(axis=2)                                # (N, B)
            higher = METRIC_INFO[name]["higher_is_better"]
            if higher is None:            # no better direction (sharpness): the MSE-best sample's
                best = best_by_mse
            else:
                best = score.argmax(0) if higher else score.argmin(0)
            chosen[name] = values[best, np.arange(values.shape[1])]    # (B, T)
            if name == "mse":
                best_by_mse = best
        self._add(chosen)
        return best_by_mse

    def compute(self) -> dict:
        result = super().compute()
        result["samples"] = int(self.samples or 0)
        return result


def compute_metrics(pred, target) -> dict:
    """All metrics of one (B, T, C, H, W) batch; same dict as ``MetricAccumulator.compute()``."""
    accumulator = MetricAccumulator()
    accumulator.update(pred, target)
    return accumulator.compute()
