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


# Config fields that tell runs apart in labels (when they differ between the runs listed).
LABEL_FIELDS = ("activation", "augment", "lambda1", "lambda2", "epochs", "batch_size", "lr",
                "profile", "downsample", "test_sequences", "num_digits", "dataset", "seed")
SHORT = {"activation": "", "augment": "aug ", "lambda1": "λ1=", "lambda2": "λ2=", "epochs": "ep ",
         "batch_size": "bs ", "lr": "lr ", "profile": "", "downsample": "↓", "test_sequences": "test ",
         "num_digits": "digits ", "dataset": "", "seed": "seed "}


def run_labels(configs: list[dict]) -> list[str]:
    """A label per run: its model, then each field whose value differs between the trained runs
    (the baselines train nothing, so they are labelled by their name alone)."""
    from vpstudy.config import BASELINES

    trained = [c for c in configs if c["model"] not in BASELINES]
    differing = [f for f in LABEL_FIELDS if len({str(c.get(f)) for c in trained}) > 1]
    return [c["model"] if c["model"] in BASELINES else
            " ".join([c["model"]] + [f"{SHORT[f]}{c.get(f)}" for f in differing]) for c in configs]


def available_runs(root=None) -> list[RunChoice]:
    """Every completed run: live where it has a checkpoint or no parameters, else from the
    predictions recorded in its ``samples.npz`` (skipped if that file is missing too)."""
    found = []
    for rec in (r for base in runs.default_roots(root) for r in runs.load_records(base, "completed")):
        path = Path(rec["_dir"])
        live = (path / runs.CHECKPOINT).exists() or not rec.get("efficiency", {}).get("params", 1)
        if live or (path / runs.SAMPLES).exists():
            found.append((rec, path, live))
    labels = run_labels([rec["config"] for rec, _, _ in found])
    out = []
    for (rec, path, live), label in zip(found, labels):
        mse = rec.get("test", {}).get("mse", float("nan"))
        out.append(RunChoice(rec["id"], path, f"{label} — test MSE {mse:.1f}"
                             + ("" if live else " [recorded samples]"), live))
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


CAPTION = 13                     # pixels of caption band above each row of tiles


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
        draw = ImageDraw.Draw(img)
        for i, row in enumerate(captions):
            for j, text in enumerate(row):
                draw.text((GAP + j * (tw + GAP), GAP + i * (th + GAP + band)), text, fill=(0, 0, 0))
        canvas = np.asarray(img).copy()
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
        self._tests: dict[tuple, torch.Tensor] = {}
        self.message = W.HTML()
        if not self.choices:
            self.message.value = NO_RUNS_HELP.format(root=html.escape(str(self.root)))
            self.widget = W.VBox([self.message])
            return
        from vpstudy.config import BASELINES

        baseline = {c.run_id: c.label.split(" ")[0] in BASELINES for c in self.choices}
        self.choices.sort(key=lambda c: (baseline[c.run_id], c.label))     # trained runs first
        options = [(c.label, c.run_id) for c in self.choices]
        trained = [c.run_id for c in self.choices if not baseline[c.run_id]]
        shown_baselines = {}                      # one run of each baseline
        for c in self.choices:
            if baseline[c.run_id]:
                shown_baselines.setdefault(c.label.split(" ")[0], c.run_id)
        default = (trained[: max_selected - 1] + list(shown_baselines.values()))[:max_selected]
        self.runs = W.SelectMultiple(options=options, value=tuple(default),
                                     rows=min(6, len(options)), description="runs",
                                     layout=W.Layout(width="95%"))
        self.sample = W.IntSlider(0, 0, 0, description="sequence", continuous_update=False)
        self.time = W.IntSlider(11, 11, 11, description="frame")      # the predicted frame's number
        self.play = W.Play(interval=400, min=11, max=11, step=1, description="play")
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
        from vpstudy.data import prepare_data

        key = (cfg.test_sequences, cfg.num_digits, cfg.seq_len, cfg.image_size, cfg.downsample,
               cfg.digit_source, cfg.test_file, cfg.dataset, cfg.data_root)
        if key not in self._tests:                  # one copy per test set, kept
            self._tests[key] = prepare_data(cfg, torch.device("cpu")).test
        return self._tests[key]

    def prediction(self, run_id: str, index: int) -> np.ndarray:
        """(T_out, C, H, W) prediction of run ``run_id`` for test sequence ``index``."""
        key = (run_id, index)
        if key not in self._cache:
            from vpstudy.evaluate import predict
            from vpstudy.precision import autocast_dtype

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
        first, last = cfg.in_frames + 1, cfg.seq_len               # frame numbers, from 1
        self.time.max = self.play.max = max(last, self.time.max)
        self.time.min = self.play.min = first
        self.time.max = self.play.max = last
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
        cfg, i = self.cfg, self.sample.value
        t = self.time.value - cfg.in_frames - 1                        # index into the targets
        seq = self._test_set(cfg)[i].numpy()
        inputs, targets = seq[: cfg.in_frames], seq[cfg.in_frames: cfg.seq_len]
        preds = {r: self.prediction(r, i) for r in selected}
        letters = {r: chr(ord("A") + k) for k, r in enumerate(selected)}
        models = {r: self._load(r)[1].model for r in selected}
        rows = [[_tile(f) for f in inputs],
                [_tile(targets[t])] + [_tile(p[t]) for p in preds.values()],
                [_tile(np.zeros_like(targets[t]))] + [_error_tile(np.abs(p[t] - targets[t]))
                                                       for p in preds.values()]]
        frame = self.time.value
        captions = [[f"observed t={k + 1}" if k == 0 else f"t={k + 1}" for k in range(len(inputs))],
                    [f"target t={frame}"] + [f"{letters[r]}: {models[r]}" for r in preds],
                    [""] + [f"|error| {letters[r]}" for r in preds]]
        self.image.value = png_bytes(compose(rows, captions))
        self.table.value = self._metrics_html(targets, preds, t, letters)

    def _metrics_html(self, targets: np.ndarray, preds: dict[str, np.ndarray], t: int,
                      letters: dict[str, str]) -> str:
        y = torch.from_numpy(targets)[None]
        first = self.cfg.in_frames + 1
        head = "".join(f"<th>t={first + k}</th>" for k in range(targets.shape[0]))
        labels = {c.run_id: c.label for c in self.choices}
        legend = "".join(f"<li><b>{letters[r]}</b>: {html.escape(labels[r])} "
                         f"<code>{html.escape(r)}</code></li>" for r in preds)
        lines = [f"<p>Top row: the {self.cfg.in_frames} observed frames (t=1–{self.cfg.in_frames}). "
                 f"Middle row: target frame t={first + t}, then each run's prediction of it. "
                 f"Bottom row: each prediction's absolute error. Test sequence {self.sample.value}, "
                 f"frame t={first + t}.</p><ul>{legend}</ul>",
                 f"<table><tr><th>run</th><th>metric</th>{head}</tr>"]
        for run_id, p in preds.items():
            x = torch.from_numpy(p)[None]
            for name, vals in (("MSE", mse_per_frame(x, y)[0].tolist()),
                               ("SSIM", ssim_per_frame(x, y, data_range=2.0)[0].tolist())):
                cells = "".join(
                    f"<td style='{'font-weight:bold;background:#ffe9a8' if k == t else ''}'>{v:.3f}</td>"
                    for k, v in enumerate(vals))
                lines.append(f"<tr><td>{letters[run_id]}</td><td>{name}</td>{cells}</tr>")
        return "\n".join(lines) + "</table>"
