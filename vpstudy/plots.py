"""Figures: learning curves, per-frame metrics, frame strips and qualitative grids.

Every function takes plain data (run records, arrays) and returns a matplotlib Figure,
so notebooks and the report draw the same pictures.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

METRIC_LABELS = {
    "mse": "MSE per frame (sum over pixels) ↓",
    "mae": "MAE per frame (sum over pixels) ↓",
    "ssim": "SSIM (data_range 2, as published) ↑",
    "ssim_strict": "SSIM (data_range 1) ↑",
    "psnr": "PSNR (dB) ↑",
}


# One colour per model in every figure (tab10), the baselines in grey and black.
MODEL_COLORS = {
    "gsta": "#1f77b4", "incepu": "#ff7f0e", "poolformer": "#2ca02c", "gsta-l": "#9467bd",
    "sepcrev": "#d62728", "crevnet": "#8c564b", "predrnn": "#e377c2", "predrnnpp": "#17becf",
    "last-frame": "#7f7f7f", "all-black": "#000000",
}


def model_color(label: str) -> str | None:
    """The colour of the model a label names (``"gsta"``, ``"gsta (3 digits)"``), else None."""
    name = label.split(" ")[0]
    return MODEL_COLORS.get(name)


def time_to_accuracy(curves: dict[str, list[list[dict]]], baselines: dict[str, float] | None = None):
    """Validation MSE against training wall-clock seconds and against sequences seen.

    ``curves`` maps a model label to one list of points per run (seed), each point a dict
    with ``seconds``, ``sequences`` and ``mse`` (a record's ``val_points``); ``baselines``
    maps a baseline label to its MSE, drawn as dashed lines.
    """
    _style()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.9))
    styles: dict[str, str] = {}                  # one line style per "(machine)" in the labels
    for label, runs_points in curves.items():
        color = model_color(label)
        machine = label.partition(" (")[2]
        style = styles.setdefault(machine, ("-", ":", "-.", "--")[len(styles) % 4])
        for i, pts in enumerate(runs_points):
            for ax, key in ((axes[0], "seconds"), (axes[1], "sequences")):
                x = [p[key] / (60 if key == "seconds" else 1) for p in pts]
                ax.plot(x, [p["mse"] for p in pts], color=color, alpha=0.85, lw=1.4, ls=style,
                        label=label if i == 0 else None)
    for label, mse in (baselines or {}).items():
        for ax in axes:
            ax.axhline(mse, ls="--", lw=1, color=model_color(label) or "grey", label=label)
    axes[0].set(xlabel="training wall time (min)", ylabel="validation MSE per frame ↓",
                title="time to accuracy")
    axes[1].set(xlabel="training sequences seen", title="sample efficiency")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _style():
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")


def learning_curves(records: Sequence[dict], labels: Sequence[str] | None = None):
    """Training loss and validation MSE/SSIM against epoch, one line per run."""
    _style()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    labels = labels or [r["config"]["model"] for r in records]
    for rec, label in zip(records, labels):
        hist = rec.get("history") or []
        if not hist:
            continue
        ep = [h["epoch"] for h in hist]
        c = model_color(label)
        loss = [h["loss"] / hist[0]["loss"] for h in hist]
        axes[0].plot(ep, loss, marker="o", label=label, color=c)
        axes[1].plot(ep, [h["val"]["mse"] for h in hist], marker="o", label=label, color=c)
        axes[2].plot(ep, [h["val"]["ssim"] for h in hist], marker="o", label=label, color=c)
    for ax in axes:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[0].set(title="training loss / its first-epoch value", xlabel="epoch", yscale="log")
    axes[1].set(title="validation MSE per frame ↓", xlabel="epoch")
    axes[2].set(title="validation SSIM ↑", xlabel="epoch")
    for ax in axes:                           # whole epochs, even for a one-epoch run
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def per_frame_metrics(results: dict[str, dict], metrics: Sequence[str] = ("mse", "ssim"),
                      first_frame: int = 11):
    """Per-frame curves; ``results`` maps a label to a metrics dict with ``per_frame`` lists."""
    _style()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for label, res in results.items():
            vals = res["per_frame"][m]
            ax.plot(range(first_frame, first_frame + len(vals)), vals, marker="o", label=label,
                    color=model_color(label))
        ax.set(xlabel="predicted frame t", title=METRIC_LABELS.get(m, m))
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _strip_axes(fig, ax_row, frames, label, cmap="gray"):
    for ax, fr in zip(ax_row, frames):
        ax.imshow(_to_image(fr), cmap=cmap, vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    ax_row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)


def _to_image(frame: np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W), uint8 or float -> (H, W) or (H, W, 3) floats in [0, 1]."""
    f = np.asarray(frame)
    f = f.astype(np.float32) / 255.0 if f.dtype == np.uint8 else f.astype(np.float32)
    if f.ndim == 3:
        f = f[0] if f.shape[0] == 1 else np.transpose(f, (1, 2, 0))
    return np.clip(f, 0, 1)


def sequence_strips(inputs: np.ndarray, targets: np.ndarray, predictions: dict[str, np.ndarray],
                    title: str | None = None):
    """One sequence: a row of inputs, a row of targets, a row per model's predictions.

    ``inputs`` (T_in, C, H, W), ``targets`` (T_out, C, H, W), ``predictions`` label -> (T_out, C, H, W).
    """
    n_cols = max(len(inputs), len(targets))
    rows = [("input", inputs), ("target", targets), *predictions.items()]
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(n_cols * 0.95, len(rows) * 1.0 + 0.3),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (label, frames) in enumerate(rows):
        for ax in axes[r][: len(frames)]:
            ax.axis("on")
        _strip_axes(fig, axes[r][: len(frames)], frames, label)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.03, hspace=0.05, left=0.12, right=0.99, top=0.9 if title else 0.98,
                        bottom=0.02)
    return fig


def accuracy_vs_cost(records: dict[str, list[dict]], metric: str = "mse", extra_test: str | None = None,
                     baselines: dict[str, float] | None = None):
    """Test ``metric`` (mean ± std over each model's seeds) against parameters and against MACs
    (log x), one point per model named in the legend; ``records`` maps a model to its seeds'
    records; ``baselines`` (label -> value on the same test set) are dashed reference lines."""
    _style()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = "osD^vP*Xh"
    for ax, key, xlabel in ((axes[0], "params", "parameters"), (axes[1], "macs", "MACs per sample (forward)")):
        xs = []
        for i, (label, recs) in enumerate(records.items()):
            values = [(r["extra_tests"][extra_test] if extra_test else r["test"])[metric] for r in recs]
            x = recs[0]["efficiency"][key]
            if not x:
                continue
            xs.append(x)
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            seeds = f"{len(values)} seed{'s' * (len(values) != 1)}"
            ax.errorbar([x], [float(np.mean(values))], yerr=[std], fmt=markers[i % len(markers)], ms=7,
                        capsize=4, color=model_color(label), label=f"{label} ({seeds})")
        for label, value in (baselines or {}).items():
            ax.axhline(value, ls="--", lw=1, color=model_color(label) or "grey", label=label)
        ax.set(xscale="log", xlabel=xlabel, ylabel=METRIC_LABELS.get(metric, metric))
        if xs:                                    # at least two labelled ticks, even within a decade
            lo, hi = min(xs), max(xs)
            ax.set_xlim(lo / 2, hi * 2)
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter(sep=""))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
