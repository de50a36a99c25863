"""Widgets to scrub through what recorded models predict.

``Explorer(runs_root)`` lists every completed run. Choose runs, a test sequence (slider)
and a time step (slider with play); it shows the observed input frames, the target frame,
each chosen model's prediction and its absolute error, and the current sequence's MSE and
SSIM per frame for each model. A run with a checkpoint (or without parameters) predicts
live on any test sequence; a run without one (as committed to the repository: checkpoints
are not) shows the predictions recorded in its ``samples.npz``, which cover the first
test sequences only; the panel says so.

Images are composed with numpy and encoded as PNG with Pillow (no matplotlib), so the
sliders stay responsive.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vpstudy import runs
from vpstudy.metrics import mse_per_frame, ssim_per_frame

SCALE = 3                        # display pixels per frame pixel
GAP = 4                          # pixels between tiles
NO_RUNS_HELP = ("No completed run under <code>{root}</code> yet. Make one with<br>"
                "<code>python -m vpstudy train --model gsta --profile smoke</code> "
                "(seconds) or <code>--profile cpu</code> (minutes), then re-run this cell.")


@dataclass(frozen=True)
class RunChoice:
    run_id: str
    path: Path
    label: str
    live: bool            # predicts from its checkpoint (or has no parameters); else samples.npz


def available_runs(root=None) -> list[RunChoice]:
    """Every completed run: live where it has a checkpoint or no parameters, else from the
    predictions recorded in its ``samples.npz`` (skipped if that file is missing too)."""
    out = []
    for rec in runs.load_records(root, "completed"):
        path = Path(rec["_dir"])
        live = (path / runs.CHECKPOINT).exists() or not rec.get("efficiency", {}).get("params", 1)
        if not live and not (path / runs.SAMPLES).exists():
            continue
        cfg, test = rec["config"], rec.get("test", {})
        label = (f"{cfg['model']} λ=({cfg['lambda1']}, {cfg['lambda2']}) {cfg['profile']} "
                 f"seed {cfg['seed']} — test MSE {test.get('mse', float('nan')):.1f}"
                 + ("" if live else " [recorded samples]"))
        out.append(RunChoice(rec["id"], path, label, live))
    return out


def recorded_predictions(path: Path) -> np.ndarray:
    """(N, T_out, C, H, W) float predictions kept in a run's samples.npz."""
    with np.load(Path(path) / runs.SAMPLES) as f:
        return f["predictions"].astype(np.float32) / 255


def _tile(frame: np.ndarray) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H*S, W*S, 3) uint8."""
    f = np.clip(frame, 0, 1)
    f = np.repeat(f, 3, axis=0) if f.shape[0] == 1 else f[:3]
    img = (np.transpose(f, (1, 2, 0)) * 255).round().astype(np.uint8)
    return img.repeat(SCALE, axis=0).repeat(SCALE, axis=1)


def _error_tile(err: np.ndarray) -> np.ndarray:
    """Absolute error (C, H, W) -> a red heat map tile."""
    e = np.clip(err.mean(axis=0), 0, 1)
    rgb = np.stack([e, 0.15 * e, 0.15 * e], axis=-1)
    img = (rgb * 255).round().astype(np.uint8)
    return img.repeat(SCALE, axis=0).repeat(SCALE, axis=1)


def compose(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Tiles (equal size) into one RGB image, row by row, on a white background."""
    th, tw = rows[0][0].shape[:2]
    width = max(len(r) for r in rows) * (tw + GAP) + GAP
    height = len(rows) * (th + GAP) + GAP
    canvas = np.full((height, width, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = GAP + i * (th + GAP), GAP + j * (tw + GAP)
            canvas[y: y + th, x: x + tw] = tile
    return canvas


def png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


class Explorer:
    """The widget panel. ``explorer.widget`` is what a notebook displays."""

    def __init__(self, root=None, device: str = "cpu", max_selected: int = 4):
        import ipywidgets as W

        self.root = runs.runs_root(root)
        self.device = torch.device(device)
        self.choices = available_runs(root)
        self._models: dict[str, tuple] = {}
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        self._test: torch.Tensor | None = None
        self._test_key: tuple | None = None
        self.message = W.HTML()
        if not self.choices:
            self.message.value = NO_RUNS_HELP.format(root=html.escape(str(self.root)))
            self.widget = W.VBox([self.message])
            return
        options = [(c.label, c.run_id) for c in self.choices]
        self.runs = W.SelectMultiple(options=options, value=tuple(o[1] for o in options[:max_selected]),
                                     rows=min(6, len(options)), description="runs",
                                     layout=W.Layout(width="95%"))
        self.sample = W.IntSlider(0, 0, 0, description="sample", continuous_update=False)
        self.time = W.IntSlider(0, 0, 0, description="time step")
        self.play = W.Play(interval=400, min=0, max=0, step=1, description="play")
        W.jslink((self.play, "value"), (self.time, "value"))
        self.image = W.Image(format="png")
        self.table = W.HTML()
        self._on_runs()
        self.runs.observe(lambda _: self._on_runs(), "value")
        self.sample.observe(lambda _: self.render(), "value")
        self.time.observe(lambda _: self.render(), "value")
        self.widget = W.VBox([self.runs, W.HBox([self.sample, self.play, self.time]), self.message,
                              self.image, self.table])

    # -------------------------------------------------------------- data
    def _choice(self, run_id: str) -> RunChoice:
        return next(c for c in self.choices if c.run_id == run_id)

    def _load(self, run_id: str):
        """(model or None, config) of a run; None when it shows its recorded samples."""
        if run_id not in self._models:
            from vpstudy.config import TrainConfig
            from vpstudy.train import load_run_model

            choice = self._choice(run_id)
            if choice.live:
                self._models[run_id] = load_run_model(choice.path, self.device)
            else:
                cfg = TrainConfig.from_dict(runs.RunDir(choice.path).load()["config"])
                self._models[run_id] = (None, cfg)
        return self._models[run_id]

    def _test_set(self, cfg) -> torch.Tensor:
        from vpstudy.train import prepare_data

        key = (cfg.test_sequences, cfg.num_digits, cfg.seq_len, cfg.image_size, cfg.downsample,
               cfg.digit_source, cfg.test_file, cfg.dataset)
        if self._test is None or self._test_key != key:
            self._test, self._test_key = prepare_data(cfg, torch.device("cpu")).test, key
        return self._test

    def prediction(self, run_id: str, index: int) -> np.ndarray:
        """(T_out, C, H, W) prediction of run ``run_id`` for test sequence ``index``."""
        key = (run_id, index)
        if key not in self._cache:
            from vpstudy.train import autocast_dtype, predict

            model, cfg = self._load(run_id)
            if model is None:
                recorded = recorded_predictions(self._choice(run_id).path)
                if index >= len(recorded):
                    raise IndexError(f"run {run_id} recorded predictions for the first "
                                     f"{len(recorded)} test sequences only")
                self._cache[key] = recorded[index]
                return self._cache[key]
            x = self._test_set(cfg)[index: index + 1, : cfg.in_frames]
            amp = autocast_dtype(cfg, self.device)      # the precision the run was evaluated in
            self._cache[key] = predict(model, x, self.device, amp)[0].numpy()
        return self._cache[key]

    # -------------------------------------------------------------- events
    def _on_runs(self) -> None:
        selected = list(self.runs.value)
        if not selected:
            self.message.value = "Choose at least one run."
            return
        _, cfg = self._load(selected[0])
        test = self._test_set(cfg)
        self.cfg = cfg
        recorded = [r for r in selected if not self._choice(r).live]
        n = min([test.shape[0]] + [len(recorded_predictions(self._choice(r).path)) for r in recorded])
        self.sample.value = min(self.sample.value, n - 1)
        self.sample.max = n - 1
        self.time.max = self.play.max = cfg.out_frames - 1
        self.message.value = (f"test set: {test.shape[0]} sequences ({cfg.dataset}, profile "
                              f"{cfg.profile}); frames {cfg.in_frames + 1}–{cfg.seq_len} are predicted")
        if recorded:
            self.message.value += (
                f"<br>{len(recorded)} of the chosen runs have no checkpoint here: they show the "
                f"predictions recorded in their samples.npz, so only the first {n} test sequences "
                f"can be chosen. Re-train a run (same parameters) to predict on any sequence.")
        self.render()

    def render(self) -> None:
        selected = list(self.runs.value)
        if not selected:
            return
        cfg, i, t = self.cfg, self.sample.value, self.time.value
        seq = self._test_set(cfg)[i].numpy()
        inputs, targets = seq[: cfg.in_frames], seq[cfg.in_frames: cfg.seq_len]
        preds = {r: self.prediction(r, i) for r in selected}
        rows = [[_tile(f) for f in inputs],
                [_tile(targets[t])] + [_tile(p[t]) for p in preds.values()],
                [_tile(np.zeros_like(targets[t]))] + [_error_tile(np.abs(p[t] - targets[t]))
                                                       for p in preds.values()]]
        self.image.value = png_bytes(compose(rows))
        self.table.value = self._metrics_html(targets, preds, t)

    def _metrics_html(self, targets: np.ndarray, preds: dict[str, np.ndarray], t: int) -> str:
        y = torch.from_numpy(targets)[None]
        head = "".join(f"<th>{self.cfg.in_frames + k + 1}</th>" for k in range(targets.shape[0]))
        lines = [f"<p>Row 1: the {self.cfg.in_frames} observed frames. Row 2: target frame "
                 f"{self.cfg.in_frames + t + 1}, then each run's prediction ({', '.join(preds)}). "
                 f"Row 3: absolute error. Sequence {self.sample.value}, time step {t + 1}.</p>",
                 f"<table><tr><th>run</th><th>metric</th>{head}</tr>"]
        for run_id, p in preds.items():
            x = torch.from_numpy(p)[None]
            for name, vals in (("MSE", mse_per_frame(x, y)[0].tolist()),
                               ("SSIM", ssim_per_frame(x, y, data_range=2.0)[0].tolist())):
                cells = "".join(
                    f"<td style='{'font-weight:bold;background:#ffe9a8' if k == t else ''}'>{v:.3f}</td>"
                    for k, v in enumerate(vals))
                lines.append(f"<tr><td>{html.escape(run_id)}</td><td>{name}</td>{cells}</tr>")
        return "\n".join(lines) + "</table>"
