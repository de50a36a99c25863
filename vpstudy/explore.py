"""Widgets to scrub through what recorded models predict.

``Explorer(runs_root)`` lists every completed trained run, labelled by the study table and
row it stands for and its seed (an ad-hoc run: by its model and the settings that tell it
apart from the other runs of that model). Narrow the list by table, model and seed; choose
runs and the trivial baselines (computed on the spot, once per test set); choose the test set
(the fixed 2-digit one, or the 3-digit one where the runs have it), a test sequence (slider)
and a frame (slider with play). It shows the observed frames, the target frame, each choice's
prediction and its absolute error (with the error's colour scale), and each choice's MSE and
SSIM per frame on the current sequence.

A run with shipped weights (``weights/``, `vpstudy.weights`) or a checkpoint predicts live:
on any sequence of the fixed test set, on the 3-digit test set, and on a video of one's own
(a path, or a file uploaded in the panel; converted by `vpstudy.predict.to_model_layout`).
A run without either (checkpoints are not committed) shows the predictions recorded in its
``samples.npz``, which cover the first test sequences only; the panel says so.

Images are composed with numpy and encoded as PNG with Pillow (no matplotlib), so the
sliders stay responsive.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from vpstudy import runs
from vpstudy.enums import BASELINES
from vpstudy.metrics import mse_per_frame, ssim_per_frame
from vpstudy.tiles import compose, png_bytes

__all__ = ["Explorer", "RunChoice", "available_runs", "colour_bar_tile", "compose", "png_bytes", "run_labels"]

TILE = 128                       # display pixels a frame's side is scaled up to (an integer factor)
NO_RUNS_HELP = ("No completed run under <code>{root}</code> yet. Make one with<br>"
                "<code>python -m vpstudy train --model gsta --profile smoke</code> "
                "(seconds) or <code>--profile cpu</code> (minutes), then re-run this cell.")
BASELINE_NAMES = {"last-frame": "last frame", "all-black": "all black"}
ALL = "all"
VIDEO = "video"                  # the test-set choice that shows the loaded video


@dataclass(frozen=True)
class RunChoice:
    run_id: str
    path: Path
    label: str
    live: bool            # predicts from shipped weights or its checkpoint; else from its samples.npz
    model: str
    seed: int
    tables: tuple[str, ...]   # ("simvp · Table 4", "simvp · Table 5"), or ("ad hoc",) for a run no study lists
    config: dict
    weights: str | None = None    # the shipped weights' name (weights/manifest.json) for this run
    val_mse: float = float("inf")  # its final validation MSE (`runs.final_val_mse`)


# Config fields that tell runs of one model apart in labels of ad-hoc runs (when they differ).
LABEL_FIELDS = ("activation", "augment", "lambda1", "lambda2", "epochs", "batch_size", "lr",
                "profile", "downsample", "test_sequences", "num_digits", "dataset")
SHORT = {"activation": "", "augment": "aug ", "lambda1": "λ1=", "lambda2": "λ2=", "epochs": "ep ",
         "batch_size": "bs ", "lr": "lr ", "profile": "", "downsample": "↓", "test_sequences": "test ",
         "num_digits": "digits ", "dataset": ""}


def _applies(field: str, model: str) -> bool:
    """Whether a setting means anything for ``model`` (activation: only where configurable)."""
    if field != "activation":
        return True
    from vpstudy.models import model_info

    return model_info(model)["activation_configurable"]


def run_labels(configs: list[dict]) -> list[str]:
    """A label per trained run: its model, each applicable setting whose value differs between
    the runs of that model, and its seed."""
    by_model: dict[str, list[dict]] = {}
    for c in configs:
        by_model.setdefault(c["model"], []).append(c)
    differing = {m: [f for f in LABEL_FIELDS if _applies(f, m) and len({str(c.get(f)) for c in cs}) > 1]
                 for m, cs in by_model.items()}
    return [" ".join([c["model"]] + [f"{SHORT[f]}{c.get(f)}" for f in differing[c["model"]]]
                     + [f"seed {c.get('seed', 0)}"]) for c in configs]


@lru_cache(maxsize=8)
def _study_rows(profiles: tuple[str, ...], seeds: int) -> dict[str, list[tuple[str, str, str]]]:
    from vpstudy.study import rows_by_run_id

    return rows_by_run_id(profiles, seeds)


def available_runs(root=None) -> list[RunChoice]:
    """Every completed trained run that can be shown: live where it has a checkpoint, else
    from the predictions recorded in its ``samples.npz`` (skipped if that is missing too).
    Trained runs only: the baselines need no record (the explorer computes them)."""
    from vpstudy.weights import read_manifest

    shipped = {e["run_id"]: name for name, e in read_manifest(missing_ok=True).get("models", {}).items()}
    found = []
    for rec in (r for base in runs.default_roots(root) for r in runs.load_records(base, "completed")):
        path = Path(rec["_dir"])
        if rec["config"]["model"] in BASELINES:
            continue
        live = rec["id"] in shipped or (path / runs.CHECKPOINT).exists()
        if live or (path / runs.SAMPLES).exists():
            found.append((rec, path, live))
    if not found:
        return []
    profiles = tuple(sorted({rec["config"]["profile"] for rec, _, _ in found}))
    rows = _study_rows(profiles, max(rec["config"]["seed"] for rec, _, _ in found) + 1)
    adhoc = [rec for rec, _, _ in found if rec["id"] not in rows]
    adhoc_labels = dict(zip([r["id"] for r in adhoc], run_labels([r["config"] for r in adhoc])))
    out = []
    for rec, path, live in found:
        cfg = rec["config"]
        if rec["id"] in rows:
            study, table, row = rows[rec["id"]][-1]      # a shared run: its last table's row
            groups = tuple(dict.fromkeys(f"{s} · {t}" for s, t, _ in rows[rec["id"]]))
            label = f"{cfg['model']} · {table}: {row} · seed {cfg['seed']}"
        else:
            groups, label = ("ad hoc",), adhoc_labels[rec["id"]]
        mse = rec.get("test", {}).get("mse", float("nan"))
        weights = shipped.get(rec["id"])
        out.append(RunChoice(rec["id"], path, f"{label} — test MSE {mse:.1f}"
                             + (" [shipped weights]" if weights else "" if live else " [recorded samples]"),
                             live, cfg["model"], cfg["seed"], groups, cfg, weights,
                             runs.final_val_mse(rec)))
    return sorted(out, key=lambda c: (c.tables[0], c.label))


def recorded(path: Path, suffix: str = "") -> dict[str, np.ndarray]:
    """The inputs, targets and predictions (N, T, C, H, W) floats kept in a run's samples.npz
    (``suffix`` "_3": the 3-digit test set)."""
    with np.load(Path(path) / runs.SAMPLES) as f:
        return {k: f[k + suffix].astype(np.float32) / 255 for k in ("inputs", "targets", "predictions")
                if k + suffix in f}


def _scaled(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> scaled up by the integer factor that brings H nearest to TILE (at least 1)."""
    s = max(1, round(TILE / img.shape[0]))
    return img.repeat(s, axis=0).repeat(s, axis=1)


def _tile(frame: np.ndarray) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H*s, W*s, 3) uint8 (`_scaled`)."""
    f = np.clip(frame, 0, 1)
    f = np.repeat(f, 3, axis=0) if f.shape[0] == 1 else f[:3]
    return _scaled((np.transpose(f, (1, 2, 0)) * 255).round().astype(np.uint8))


def _heat(e: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (H, W) -> the |error| colour map: black through red to yellow."""
    e = np.clip(e, 0, 1)
    rgb = np.stack([np.minimum(1, 2 * e), np.clip(2 * e - 1, 0, 1), np.zeros_like(e)], axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def _error_tile(err: np.ndarray) -> np.ndarray:
    """Absolute error (C, H, W) -> a heat map tile (scale: `colour_bar_tile`)."""
    return _scaled(_heat(err.mean(axis=0)))


def colour_bar_tile(shape: tuple[int, ...]) -> np.ndarray:
    """A tile of ``shape`` (H, W, 3) showing the |error| colour scale from 0 (left) to 1 (right),
    with tick marks at 0, 0.5 and 1."""
    h, w = shape[:2]
    bar = _heat(np.tile(np.linspace(0, 1, w), (h, 1)))
    bar[h - h // 4:, :] = 255
    for x in (0, w // 2, w - 1):
        bar[h - h // 4:, max(0, x - 1): x + 1] = 0
    return bar


class Explorer:
    """The widget panel. ``explorer.widget`` is what a notebook displays."""

    def __init__(self, root=None, device: str = "cpu", max_selected: int = 3):
        import ipywidgets as W

        self.root = runs.runs_root(root)
        self.device = torch.device(device)
        self.choices = available_runs(root)
        self._by_id = {c.run_id: c for c in self.choices}
        self._models: dict[str, tuple] = {}
        self._cache: dict[tuple, np.ndarray] = {}
        self._tests: dict[tuple, torch.Tensor] = {}
        self.message = W.HTML()
        if not self.choices:
            self.message.value = NO_RUNS_HELP.format(root=html.escape(str(self.root)))
            self.widget = W.VBox([self.message])
            return
        wide = W.Layout(width="95%")
        self.table_filter = W.Dropdown(options=[ALL] + sorted({t for c in self.choices for t in c.tables}),
                                       description="table")
        self.model_filter = W.Dropdown(options=[ALL] + sorted({c.model for c in self.choices}),
                                       description="model")
        self.seed_filter = W.Dropdown(options=[ALL] + sorted({c.seed for c in self.choices}),
                                      description="seed")
        self.runs = W.SelectMultiple(options=[], rows=8, description="runs", layout=wide)
        self.baselines = {name: W.Checkbox(value=name == "last-frame", description=text, indent=False,
                                           layout=W.Layout(width="auto"))
                          for name, text in BASELINE_NAMES.items()}
        self.test_set = W.Dropdown(options=[("2 digits", "")], description="test set")
        self.video_path = W.Text(placeholder="a video file, a folder of frames or an .npy", description="video",
                                 layout=W.Layout(width="50%"))
        self.video_load = W.Button(description="predict it")
        self.upload = W.FileUpload(accept=".mp4,.avi,.gif,.mov,.webm,.npy", multiple=False,
                                   description="upload a video")
        self._video = None                       # a Clip in the first chosen run's layout
        self._video_cfg: tuple | None = None     # the test-set key of the run it was converted for
        self.sample = W.IntSlider(0, 0, 0, description="sequence", continuous_update=False)
        self.time = W.IntSlider(11, 11, 11, description="frame")      # the predicted frame's number
        self.play = W.Play(interval=400, min=11, max=11, step=1, description="play")
        W.jslink((self.play, "value"), (self.time, "value"))
        self.image = W.Image(format="png")
        self.table = W.HTML()
        self._refilter()
        self.runs.value = tuple(self._default_selection(max_selected))
        self._on_runs()
        for f in (self.table_filter, self.model_filter, self.seed_filter):
            f.observe(lambda _: self._refilter(), "value")
        self.runs.observe(lambda _: self._on_runs(), "value")
        for box in self.baselines.values():
            box.observe(lambda _: self._on_runs(), "value")
        self.test_set.observe(lambda _: self._on_runs(), "value")
        self.video_load.on_click(lambda _: self.load_video(self.video_path.value))
        self.upload.observe(lambda _: self._on_upload(), "value")
        self.sample.observe(lambda _: self.render(), "value")
        self.time.observe(lambda _: self.render(), "value")
        self.widget = W.VBox([
            W.HBox([self.table_filter, self.model_filter, self.seed_filter]), self.runs,
            W.HBox([W.Label("baselines:"), *self.baselines.values(), self.test_set]),
            W.HBox([self.video_path, self.video_load, self.upload]),
            W.HBox([self.sample, self.play, self.time]), self.message, self.image, self.table])

    # -------------------------------------------------------------- choosing
    def _default_selection(self, n: int) -> list[str]:
        """Per model, its run with the lowest final validation MSE (live ones first), for up to
        ``n`` models of the first table that has runs of several models."""
        tables = sorted({t for c in self.choices for t in c.tables},
                        key=lambda t: -len({c.model for c in self.choices if t in c.tables}))
        pool = [c for c in self.choices if tables[0] in c.tables]
        best: dict[str, RunChoice] = {}
        for c in sorted(pool, key=lambda c: (not c.live, c.val_mse)):
            best.setdefault(c.model, c)
        return [c.run_id for c in list(best.values())[:n]]

    def _refilter(self) -> None:
        """The run list: the runs the filters let through, after those already chosen."""
        keep = list(self.runs.value)
        table, model, seed = self.table_filter.value, self.model_filter.value, self.seed_filter.value
        shown = [c for c in self.choices if c.run_id not in keep and (table == ALL or table in c.tables)
                 and model in (ALL, c.model) and seed in (ALL, c.seed)]
        self.runs.options = [(self._by_id[r].label, r) for r in keep] + [(c.label, c.run_id) for c in shown]
        self.runs.value = tuple(keep)

    # -------------------------------------------------------------- data
    def _load(self, run_id: str):
        """(model or None, TrainConfig) of a run; None when it shows its recorded samples."""
        if run_id not in self._models:
            from vpstudy.config import TrainConfig
            from vpstudy.train import load_run_model

            choice = self._by_id[run_id]
            if choice.weights:
                from vpstudy.weights import load_trained

                self._models[run_id] = load_trained(choice.weights, device=self.device)
            elif choice.live:
                self._models[run_id] = load_run_model(choice.path, self.device)
            else:
                self._models[run_id] = (None, TrainConfig.from_dict(choice.config))
        return self._models[run_id]

    def _test_sequences(self, cfg, digits: str) -> torch.Tensor:
        """The fixed test set of ``cfg`` (``digits`` "": the main one; "3": the 3-digit one)."""
        from vpstudy.data import fixed_test_set

        key = (runs.test_set_key(cfg.to_dict()), digits)
        if key not in self._tests:                  # one copy per test set, kept
            self._tests[key] = fixed_test_set(cfg, int(digits) if digits else None)
        return self._tests[key]

    def _sequence(self, index: int) -> np.ndarray:
        """(T, C, H, W) test sequence ``index`` of the chosen test set (your video: its observed
        frames, then its target frames, or as many blank ones when it has none)."""
        cfg, digits = self.cfg, self.test_set.value
        if digits == VIDEO:
            clip = self._video
            target = clip.target if clip.target is not None else np.zeros_like(clip.observed[: cfg.out_frames])
            return np.concatenate([clip.observed, target])
        if self._live_test:
            return self._test_sequences(cfg, digits)[index].numpy()
        r = recorded(self._by_id[self._selected[0]].path, f"_{digits}" if digits else "")
        return np.concatenate([r["inputs"][index], r["targets"][index]])

    def prediction(self, run_id: str, index: int, digits: str = "") -> np.ndarray:
        """(T_out, C, H, W) prediction of run ``run_id`` for test sequence ``index`` (of the
        3-digit test set with ``digits`` "3")."""
        key = (run_id, index, digits)
        if key not in self._cache:
            from vpstudy.evaluate import predict
            from vpstudy.precision import autocast_dtype

            model, cfg = self._load(run_id)
            if digits == VIDEO:
                from vpstudy.predict import predict as predict_clip

                self._cache[key] = predict_clip(model, cfg, self._video.observed)
                return self._cache[key]
            if model is None:
                preds = recorded(self._by_id[run_id].path, f"_{digits}" if digits else "")["predictions"]
                if index >= len(preds):
                    raise IndexError(f"run {run_id} recorded predictions for the first "
                                     f"{len(preds)} test sequences only")
                self._cache[key] = preds[index]
                return self._cache[key]
            x = self._test_sequences(cfg, digits)[index: index + 1, : cfg.in_frames]
            amp = autocast_dtype(cfg, self.device)      # the precision the run was evaluated in
            self._cache[key] = predict(model, x, self.device, amp)[0].numpy()
        return self._cache[key]

    def _baseline(self, name: str, seq: np.ndarray) -> np.ndarray:
        """What baseline ``name`` predicts for ``seq`` (built through the model registry)."""
        from vpstudy.models import build_model

        cfg = self.cfg
        model = build_model(name, in_shape=tuple(seq[: cfg.in_frames].shape), out_frames=cfg.out_frames)
        with torch.no_grad():
            return model(torch.from_numpy(seq[None, : cfg.in_frames]))[0].numpy()

    # -------------------------------------------------------------- events
    def _clear(self, why: str) -> None:
        self.message.value, self.image.value, self.table.value = why, b"", ""

    def _on_runs(self) -> None:
        chosen = list(self.runs.value)
        if not chosen:
            self._selected = []
            self._clear("Choose at least one run (the filters above narrow the list).")
            return
        _, cfg = self._load(chosen[0])
        self.cfg = cfg
        key = runs.test_set_key(cfg.to_dict())
        self._selected = [r for r in chosen if runs.test_set_key(self._by_id[r].config) == key]
        elsewhere = [self._by_id[r].label for r in chosen if r not in self._selected]
        recorded_runs = [r for r in self._selected if not self._by_id[r].live]
        self._live_test = not recorded_runs
        self._set_test_sets(cfg, recorded_runs)
        digits = self.test_set.value
        if digits == VIDEO:
            n = 1
            if recorded_runs:
                self._selected = [r for r in self._selected if r not in recorded_runs]
                elsewhere += [self._by_id[r].label + " (recorded samples cannot predict a video)"
                              for r in recorded_runs]
                recorded_runs = []
            if not self._selected:
                self._clear("None of the chosen runs can predict a video: choose a run with shipped "
                            "weights or a checkpoint. " + html.escape("; ".join(elsewhere)))
                return
        elif self._live_test:
            n = self._test_sequences(cfg, digits).shape[0]
        else:
            suffix = f"_{digits}" if digits else ""
            n = min(len(recorded(self._by_id[r].path, suffix).get("predictions", ())) for r in recorded_runs)
        self.sample.max = max(n - 1, 0)
        self.sample.value = min(self.sample.value, n - 1)
        first, last = cfg.in_frames + 1, cfg.seq_len               # frame numbers, from 1
        self.time.max = self.play.max = max(last, self.time.max)
        self.time.min = self.play.min = first
        self.time.max = self.play.max = last
        if digits == VIDEO:
            self.message.value = html.escape("; ".join(self._video.notes)) + (
                f"; frames {first}–{last} are predicted")
        else:
            self.message.value = (f"test set: {n} sequences ({cfg.dataset}, "
                                  f"{digits or cfg.num_digits} digits, profile {cfg.profile}); frames "
                                  f"{first}–{last} are predicted")
        if elsewhere:
            self.message.value += ("<br>Not shown (another test set than the first chosen run's): "
                                   + html.escape("; ".join(elsewhere)))
        if recorded_runs:
            self.message.value += (
                f"<br>{len(recorded_runs)} of the chosen runs have no checkpoint here: they show the "
                f"predictions recorded in their samples.npz, so only the first {n} test sequences "
                f"can be chosen. Re-train a run (same parameters) to predict on any sequence.")
        self.render()

    def _set_test_sets(self, cfg, recorded_runs: list[str]) -> None:
        """The test sets the chosen runs can show: the main one; on Moving MNIST the 2- and 3-digit
        ones (live runs: any; recorded ones: those their samples hold); the loaded video."""
        digits = {str(n) for n in cfg.extra_test_digits}
        if cfg.dataset == "mmnist" and not cfg.test_file:
            digits |= {"2", "3"} - {str(cfg.num_digits)}
        for r in recorded_runs:
            with np.load(self._by_id[r].path / runs.SAMPLES) as f:
                digits &= {k.split("_")[1] for k in f if k.startswith("predictions_")}
        options = [(f"{cfg.num_digits} digits" if cfg.dataset == "mmnist" else "test set", "")]
        options += [(f"{n} digits", n) for n in sorted(digits)]
        if self._video is not None and self._video_cfg == runs.test_set_key(cfg.to_dict()):
            options.append(("your video", VIDEO))
        if [v for _, v in self.test_set.options] != [v for _, v in options]:
            value = self.test_set.value if self.test_set.value in [v for _, v in options] else ""
            self.test_set.options, self.test_set.value = options, value

    def load_video(self, path: str, name: str | None = None) -> None:
        """Read a video file, frame folder or .npy, convert it to the first chosen run's layout
        and show it (test set "your video"); a bad input is said in the panel, not raised."""
        from vpstudy.predict import PredictInputError, read_frames, to_model_layout

        if not getattr(self, "_selected", None):
            self.message.value = "Choose a run first: the video is converted to that run's frames."
            return
        try:
            frames = read_frames(path, max_frames=self.cfg.seq_len, progress=False)
            self._video = to_model_layout(frames, self.cfg, source=name or str(path))
        except (PredictInputError, FileNotFoundError, OSError, ValueError) as e:
            self.message.value = f"Cannot use {html.escape(name or str(path))}: {html.escape(str(e))}"
            return
        self._video_cfg = runs.test_set_key(self.cfg.to_dict())
        self._cache = {k: v for k, v in self._cache.items() if k[2] != VIDEO}
        self._set_test_sets(self.cfg, [r for r in self._selected if not self._by_id[r].live])
        if self.test_set.value == VIDEO:
            self._on_runs()
        else:
            self.test_set.value = VIDEO          # observed: re-draws

    def _on_upload(self) -> None:
        import tempfile

        for item in self.upload.value:           # ipywidgets 8: a tuple of {name, content, ...}
            suffix = Path(item["name"]).suffix
            with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as f:
                f.write(bytes(item["content"]))
            self.load_video(f.name, item["name"])

    def render(self) -> None:
        if not getattr(self, "_selected", None):
            return
        cfg, i, digits = self.cfg, self.sample.value, self.test_set.value
        t = self.time.value - cfg.in_frames - 1                        # index into the targets
        seq = self._sequence(i)
        inputs, targets = seq[: cfg.in_frames], seq[cfg.in_frames: cfg.seq_len]
        preds = {chr(ord("A") + k): self.prediction(r, i, digits) for k, r in enumerate(self._selected)}
        preds.update({BASELINE_NAMES[b]: self._baseline(b, seq) for b, box in self.baselines.items()
                      if box.value})
        runs_of = {chr(ord("A") + k): self._by_id[r] for k, r in enumerate(self._selected)}
        names = {k: f"{k}: {c.model} s{c.seed}" for k, c in runs_of.items()}     # legend: the table
        no_target = digits == VIDEO and self._video.target is None
        target_tile = _tile(targets[t])
        rows = [[_tile(f) for f in inputs],
                [target_tile] + [_tile(p[t]) for p in preds.values()],
                [colour_bar_tile(target_tile.shape)] + [_error_tile(np.abs(p[t] - targets[t]))
                                                        for p in preds.values()]]
        frame = self.time.value
        captions = [[f"observed t={k + 1}" if k == 0 else f"t={k + 1}" for k in range(len(inputs))],
                    [f"no target t={frame}" if no_target else f"target t={frame}"]
                    + [names.get(k, k) for k in preds],
                    ["|error| 0 - 1"] + [f"|error| {k if k in runs_of else ''}" for k in preds]]
        if no_target:                            # a video too short for a target: predictions only
            rows, captions = rows[:2], captions[:2]
        self.image.value = png_bytes(compose(rows, captions))
        self.table.value = self._metrics_html(targets, preds, t, runs_of, no_target)

    def _metrics_html(self, targets: np.ndarray, preds: dict[str, np.ndarray], t: int,
                      runs_of: dict[str, RunChoice], no_target: bool = False) -> str:
        y = torch.from_numpy(targets)[None]
        first = self.cfg.in_frames + 1
        head = "".join(f"<th>t={first + k}</th>" for k in range(targets.shape[0]))
        legend = "".join(f"<li><b>{k}</b>: {html.escape(c.label)} <code>{html.escape(c.run_id)}</code></li>"
                         for k, c in runs_of.items())
        lines = [f"<p>Top row: the {self.cfg.in_frames} observed frames (t=1–{self.cfg.in_frames}). "
                 f"Middle row: target frame t={first + t}, then each chosen prediction of it. "
                 f"Bottom row: each prediction's absolute error (colour scale under the target). "
                 + ("your video" if self.test_set.value == VIDEO else f"Test sequence {self.sample.value}")
                 + f", frame t={first + t}.</p><ul>{legend}</ul>"]
        if no_target:
            return "\n".join(lines) + "<p>The video is too short for a target: no metrics.</p>"
        lines.append(f"<table><tr><th>prediction</th><th>metric</th>{head}</tr>")
        for key, p in preds.items():
            x = torch.from_numpy(p)[None]
            for name, vals in (("MSE", mse_per_frame(x, y)[0].tolist()),
                               ("SSIM", ssim_per_frame(x, y, data_range=2.0)[0].tolist())):
                cells = "".join(
                    f"<td style='{'font-weight:bold;background:#ffe9a8' if k == t else ''}'>{v:.3f}</td>"
                    for k, v in enumerate(vals))
                lines.append(f"<tr><td>{html.escape(key)}</td><td>{name}</td>{cells}</tr>")
        return "\n".join(lines) + "</table>"
