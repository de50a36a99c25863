"""PredRNN (Wang et al., NIPS 2017): a stack of spatiotemporal LSTM (ST-LSTM) cells.

Baseline of the lightweight separable CNN-LSTM study (REFERENCE §2): 4 layers x 128 hidden
channels, 5x5 filters, stride 1, no layer norm, frames patched 4x4 (space-to-depth, so a
1x64x64 frame becomes 16x16x16). This is the configuration of PredRNN's own Moving MNIST /
KTH scripts; it has exactly 23,838,720 parameters (every conv is bias-free, as in the
public PyTorch code).

This module holds:

- `scheduled_sampling_prob(progress)`: PredRNN's linear scheduled-sampling schedule.
- `PatchedRecurrentPredictor`: what PredRNN and PredRNN++ share -- patching, the recurrent
  roll-out, the project's model contract (`forward`, `training_loss`). Subclasses supply
  `init_state` and `step`.
- `SpatioTemporalLSTMCell`, `PredRNN` (built by the registry: ``build_model("predrnn",
  in_shape=...)``; the same 4 x 128, filter 5, patch 4 network for Moving MNIST and KTH,
  23,838,720 parameters; on 3-channel BAIR frames 24,559,616).

Model contract (shared with every model in `vpstudy.models`):

- ``forward(x)``: x (B, T_in, C, H, W) -> (B, out_frames, C, H, W). The model reads the T_in
  observed frames, then feeds its own prediction back for out_frames - 1 more steps.
- ``training_loss(inputs, targets, criterion, *, progress)``: on the full sequence
  cat(inputs, targets) of length T, predict frames 1..T-1 (as PredRNN trains), feeding the
  true frame for the observed part and, for the future part, per sample and per frame the
  true frame with probability ``scheduled_sampling_prob(progress)`` and the model's own
  previous prediction otherwise. Returns ``(loss, parts)`` with
  ``loss, parts = criterion(pred_frames, true_frames)``.

Patching: ``F.pixel_unshuffle`` / ``F.pixel_shuffle``. PredRNN's numpy patching orders the
patched channels (dy, dx, c), pixel_unshuffle orders them (c, dy, dx); for one channel the
two agree, for RGB they differ by a fixed permutation of the first conv's input channels and
the read-out's output channels -- the same model, not the same checkpoint layout.

Reversed-input training (PredRNN's scripts run with ``--reverse_input 1``): with
``model.reverse_input = True`` (the registry's 'predrnn' sets it) `training_loss` also
reads the batch time-reversed and returns the mean of the two losses. thuml's trainer
(core/trainer.py) instead takes two optimizer steps per batch, one on each direction;
within this project's one-step-per-batch contract the two directions share one step (same
data and objective, half as many Adam updates). Not in this module: the reverse scheduled
sampling of PredRNN-V2.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from .base import VideoPredictor

# PredRNN's run.py / MNIST + KTH scripts: eta starts at 1.0 and drops by
# sampling_changing_rate = 2e-5 per iteration until sampling_stop_iter = 50,000, then is 0;
# max_iterations = 80,000. With progress = iteration / 80,000:
#     eta = 1 - 2e-5 * 80,000 * progress = 1 - progress / 0.625,
# i.e. the linear decay covers the first 50,000 / 80,000 = 62.5% of training.
SAMPLING_STOP_PROGRESS = 0.625

Criterion = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, Any]]]


def scheduled_sampling_prob(progress: float,
                            stop_progress: float = SAMPLING_STOP_PROGRESS) -> float:
    """Probability of feeding the TRUE future frame at training progress `progress`.

    ``p = max(0, 1 - progress / stop_progress)``: 1 at the start of training (pure teacher
    forcing), falling linearly to 0 at ``progress = stop_progress`` and staying 0 after
    (the model then always consumes its own predictions, as at test time). The default
    0.625 reproduces PredRNN's schedule (see SAMPLING_STOP_PROGRESS); 0.5 is a common
    rounded choice.

    Args:
        progress: fraction of training done, in [0, 1].
        stop_progress: where the probability reaches 0, in (0, 1].
    """
    for name, value, low_ok in (("progress", progress, True), ("stop_progress", stop_progress, False)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        if value > 1 or value < 0 or (value == 0 and not low_ok):
            allowed = "[0, 1]" if low_ok else "(0, 1]"
            raise ValueError(f"{name} must be in {allowed}, got {value!r}")
    return max(0.0, 1.0 - float(progress) / float(stop_progress))


def _check_in_shape(in_shape: tuple[int, ...], patch: int) -> tuple[int, int, int, int]:
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
        raise ValueError(f"patch must be an int >= 1, got {patch!r}")
    if len(in_shape) != 4 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                 for v in in_shape):
        raise ValueError(f"in_shape must be 4 positive ints (T_in, C, H, W), got {in_shape!r}")
    t_in, c, h, w = in_shape
    if h % patch or w % patch:
        raise ValueError(f"frame size {h}x{w} must be divisible by patch={patch}; "
                         f"pick a patch that divides both")
    return t_in, c, h, w


def _check_hidden(hidden: tuple[int, ...], min_layers: int) -> tuple[int, ...]:
    hidden = tuple(hidden)
    if len(hidden) < min_layers or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                       for v in hidden):
        raise ValueError(f"hidden must be at least {min_layers} positive ints "
                         f"(channels per layer), got {hidden!r}")
    return hidden


def _check_filter_size(filter_size: int) -> int:
    if isinstance(filter_size, bool) or not isinstance(filter_size, int) \
            or filter_size < 1 or filter_size % 2 == 0:
        raise ValueError(f"filter_size must be an odd int >= 1 ('same' padding), got {filter_size!r}")
    return filter_size


class PatchedRecurrentPredictor(VideoPredictor):
    """Base class: a recurrent next-frame predictor working on 4x4 (patch x patch) patched frames.

    A subclass builds its cells and calls ``super().__init__(...)`` first; it implements

    - ``init_state(batch, height, width, like) -> state``: the zero state for patched frames
      of size height x width (any object; ``like`` gives dtype and device);
    - ``step(frame, state) -> (top_hidden, state)``: one time step on a patched frame
      (B, C*patch^2, H/patch, W/patch); ``top_hidden`` is the top layer's hidden state,
      which the 1x1 conv ``self.readout`` (bias-free unless readout_bias) turns into the next
      patched frame.

    Attributes: name, in_shape, in_frames, out_frames, channels, patch, frame_channels
    (= C * patch^2), sampling_stop_progress.
    """

    name: str = "patched_rnn"
    reverse_input: bool = False       # also train on the time-reversed batch (PredRNN's scripts)

    def __init__(self, in_shape: tuple[int, int, int, int], out_frames: int, patch: int,
                 top_channels: int, sampling_stop_progress: float = SAMPLING_STOP_PROGRESS,
                 readout_bias: bool = False):
        super().__init__()
        t_in, c, h, w = _check_in_shape(tuple(in_shape), patch)
        if isinstance(out_frames, bool) or not isinstance(out_frames, int) or out_frames < 1:
            raise ValueError(f"out_frames must be an int >= 1, got {out_frames!r}")
        scheduled_sampling_prob(0.0, sampling_stop_progress)  # validates stop_progress
        self.in_shape = (t_in, c, h, w)
        self.in_frames = t_in
        self.out_frames = out_frames
        self.channels = c
        self.patch = patch
        self.frame_channels = c * patch * patch
        self.sampling_stop_progress = float(sampling_stop_progress)
        self.readout = nn.Conv2d(top_channels, self.frame_channels, kernel_size=1, bias=readout_bias)

    # -- to implement ----------------------------------------------------------------------
    def init_state(self, batch: int, height: int, width: int, like: torch.Tensor) -> Any:
        raise NotImplementedError

    def step(self, frame: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    # -- patching ----------------------------------------------------------------------------
    def patchify(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, T, C*p*p, H/p, W/p) by space-to-depth (p = self.patch)."""
        b, t = video.shape[:2]
        return F.pixel_unshuffle(video.flatten(0, 1), self.patch).unflatten(0, (b, t))

    def unpatchify(self, patched: torch.Tensor) -> torch.Tensor:
        """(B, T, C*p*p, H/p, W/p) -> (B, T, C, H, W), the inverse of `patchify`."""
        b, t = patched.shape[:2]
        return F.pixel_shuffle(patched.flatten(0, 1), self.patch).unflatten(0, (b, t))

    def _check_video(self, video: torch.Tensor, what: str) -> None:
        if not isinstance(video, torch.Tensor) or video.ndim != 5:
            shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
            raise ValueError(f"{self.name}: {what} must be a (B, T, C, H, W) tensor, got {shape}")
        _, t, c, h, w = video.shape
        if t < 1 or c != self.channels or h % self.patch or w % self.patch:
            raise ValueError(f"{self.name}: {what} has shape {tuple(video.shape)}; need T >= 1, "
                             f"C = {self.channels} and H, W divisible by patch={self.patch}")

    # -- the contract ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict `out_frames` frames after the observed ones.

        Args:
            x: observed frames (B, T_in, C, H, W); any T_in >= 1 and H, W divisible by patch.
        Returns:
            (B, out_frames, C, H, W): the first comes after reading all T_in frames, each later
            one after feeding back the previous prediction.
        """
        self._check_video(x, "x")
        b, t_in = x.shape[:2]
        frames = self.patchify(x)
        state = self.init_state(b, frames.shape[-2], frames.shape[-1], frames)
        predictions = []
        frame = frames[:, 0]
        for t in range(t_in + self.out_frames - 1):
            top_hidden, state = self.step(frame, state)
            if t + 1 < t_in:
                frame = frames[:, t + 1]  # still observing; no read-out needed
                continue
            frame = self.readout(top_hidden)
            predictions.append(frame)
        return self.unpatchify(torch.stack(predictions, dim=1))

    def training_loss(self, inputs: torch.Tensor, targets: torch.Tensor, criterion: Criterion, *,
                      progress: float, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, dict[str, Any]]:
        """PredRNN's training objective with scheduled sampling.

        The full sequence ``cat(inputs, targets)`` (length T) is read frame by frame; the
        model predicts frames 1..T-1. The input at step t is the true frame t for t < T_in;
        for t >= T_in it is, per sample and per frame, the true frame with probability
        ``p = scheduled_sampling_prob(progress, self.sampling_stop_progress)`` and the model's
        own prediction of frame t otherwise (PredRNN's ``mask_true``: one Bernoulli(p) draw
        per sample and future step, broadcast over the whole frame). Gradients flow through
        fed-back predictions, as in PredRNN.

        The draws come from ``torch.rand`` on the CPU (torch's global RNG, so
        ``torch.manual_seed`` makes them repeatable) or from `generator` (on its device).

        Args:
            inputs: (B, T_in, C, H, W) observed frames.
            targets: (B, T_out, C, H, W) future frames, T_out >= 1.
            criterion: ``criterion(pred, target) -> (loss, parts)`` on (B, T, C, H, W).
            progress: fraction of training done, in [0, 1].
            generator: optional torch.Generator for the sampling draws.
        Returns:
            ``(loss, parts)``: the criterion's loss on the T-1 predicted frames and its parts,
            plus 'mse' (if the criterion gave none) and 'sampling_prob' (p), both detached
            0-dim tensors.
        """
        self._check_video(inputs, "inputs")
        self._check_video(targets, "targets")
        if targets.shape[0] != inputs.shape[0] or targets.shape[2:] != inputs.shape[2:]:
            raise ValueError(f"{self.name}: targets {tuple(targets.shape)} must match inputs "
                             f"{tuple(inputs.shape)} in batch, channels and frame size")
        prob = scheduled_sampling_prob(progress, self.sampling_stop_progress)
        video = torch.cat([inputs, targets], dim=1)
        loss, parts = self._sampled_loss(video, inputs.shape[1], criterion, prob, generator)
        if self.reverse_input:
            rev_loss, rev_parts = self._sampled_loss(video.flip(1), inputs.shape[1], criterion, prob,
                                                     generator)
            loss = (loss + rev_loss) / 2
            parts = {k: (torch.as_tensor(v) + torch.as_tensor(rev_parts[k])) / 2 if k in rev_parts else v
                     for k, v in parts.items()}
        parts["sampling_prob"] = torch.tensor(prob, device=loss.device)
        return loss, parts

    def _sampled_loss(self, video: torch.Tensor, t_in: int, criterion: Criterion, prob: float,
                      generator: torch.Generator | None) -> tuple[torch.Tensor, dict[str, Any]]:
        """The scheduled-sampling loss on one (B, T, C, H, W) video observed for t_in frames."""
        b, t_total = video.shape[0], video.shape[1]
        frames = self.patchify(video)

        draw_device = generator.device if generator is not None else torch.device("cpu")
        use_true = torch.rand(b, t_total - t_in - 1, generator=generator, device=draw_device) < prob
        use_true = use_true.to(frames.device).view(b, -1, 1, 1, 1)

        state = self.init_state(b, frames.shape[-2], frames.shape[-1], frames)
        predictions = []
        for t in range(t_total - 1):
            if t < t_in:
                frame = frames[:, t]
            else:
                frame = torch.where(use_true[:, t - t_in], frames[:, t], predictions[-1])
            top_hidden, state = self.step(frame, state)
            predictions.append(self.readout(top_hidden))
        pred = self.unpatchify(torch.stack(predictions, dim=1))
        loss, parts = criterion(pred, video[:, 1:])
        parts = dict(parts)
        if "mse" not in parts:
            parts["mse"] = F.mse_loss(pred.detach().float(), video[:, 1:].float())
        return loss, parts


class SpatioTemporalLSTMCell(nn.Module):
    """ST-LSTM cell (PredRNN eq. 3), bias-free 'same' convs, no layer norm.

    Inputs: x (B, in_channels, h, w); h, c, m (B, hidden, h, w): hidden state, temporal
    memory (along time in this layer) and spatiotemporal memory (zig-zags through the layers).
    Returns (h', c', m'), each (B, hidden, h, w):

        i, f, g, o   = conv_x(x)[:4] + conv_h(h)          (f gets +1 forget bias)
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
        i', f', g'   = conv_x(x)[4:] + conv_m(m)          (f' gets +1 forget bias)
        m' = sigmoid(f') * m + sigmoid(i') * tanh(g')
        o  = sigmoid(o + conv_o([c', m']))
        h' = o * tanh(conv_fuse([c', m']))                (conv_fuse: 1x1)

    One conv per input computes all gates fed by that input (x: 7, h: 4, m: 3). The gate
    order inside conv_x is (i, f, g, o, i', f', g') so the x and h parts add in one op;
    PredRNN's checkpoints order it (i, f, g, i', f', g', o) -- a relabeling of channels.

    Parameters: k^2 * hidden * (7*in + 4*hidden + 3*hidden + 2*hidden) + 2*hidden^2.
    """

    forget_bias = 1.0

    def __init__(self, in_channels: int, hidden: int, filter_size: int = 5):
        super().__init__()
        _check_filter_size(filter_size)
        pad = filter_size // 2
        self.hidden = hidden
        self.conv_x = nn.Conv2d(in_channels, 7 * hidden, filter_size, padding=pad, bias=False)
        self.conv_h = nn.Conv2d(hidden, 4 * hidden, filter_size, padding=pad, bias=False)
        self.conv_m = nn.Conv2d(hidden, 3 * hidden, filter_size, padding=pad, bias=False)
        self.conv_o = nn.Conv2d(2 * hidden, hidden, filter_size, padding=pad, bias=False)
        self.conv_fuse = nn.Conv2d(2 * hidden, hidden, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, m: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = self.hidden
        x_gates = self.conv_x(x)
        xh = x_gates[:, :4 * n] + self.conv_h(h)
        xm = x_gates[:, 4 * n:] + self.conv_m(m)
        i, f, g, o = xh.chunk(4, dim=1)
        c_new = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(g)
        i2, f2, g2 = xm.chunk(3, dim=1)
        m_new = torch.sigmoid(f2 + self.forget_bias) * m + torch.sigmoid(i2) * torch.tanh(g2)
        memory = torch.cat([c_new, m_new], dim=1)
        o = torch.sigmoid(o + self.conv_o(memory))
        h_new = o * torch.tanh(self.conv_fuse(memory))
        return h_new, c_new, m_new


class PredRNN(PatchedRecurrentPredictor):
    """PredRNN: stacked ST-LSTM cells, spatiotemporal memory zig-zagging through the stack.

    At each step layer 0 reads the patched frame, layer l > 0 reads layer l-1's new hidden
    state; the memory m goes up layer 0 -> L-1 and then to layer 0 of the next step. A
    bias-free 1x1 conv reads the next patched frame out of the top hidden state. All states
    start at zero. Since m passes through every layer, all layers need the same width.

    Args:
        in_shape: (T_in, C, H, W) of the observed clip; H, W divisible by `patch`.
        out_frames: frames predicted by `forward`.
        hidden: channels per layer (all equal); default 4 x 128.
        filter_size: odd conv kernel size (5).
        patch: space-to-depth patch size (4).
        sampling_stop_progress: where scheduled sampling reaches probability 0.

    Parameters for (1 x 64 x 64, patch 4, 4 x 128, k 5): 23,838,720.
    """

    name = "predrnn"

    def __init__(self, in_shape: tuple[int, int, int, int] = (10, 1, 64, 64), out_frames: int = 10,
                 hidden: tuple[int, ...] = (128, 128, 128, 128), filter_size: int = 5,
                 patch: int = 4, sampling_stop_progress: float = SAMPLING_STOP_PROGRESS):
        hidden = _check_hidden(hidden, 1)
        if len(set(hidden)) != 1:
            raise ValueError(f"PredRNN passes its memory through every layer, so all layers need "
                             f"the same width; got hidden={hidden!r}")
        _check_filter_size(filter_size)
        super().__init__(in_shape, out_frames, patch, hidden[-1], sampling_stop_progress)
        self.hidden = hidden
        self.filter_size = filter_size
        self.cells = nn.ModuleList(
            SpatioTemporalLSTMCell(self.frame_channels if i == 0 else hidden[i - 1], n, filter_size)
            for i, n in enumerate(hidden))

    def init_state(self, batch: int, height: int, width: int, like: torch.Tensor):
        """State = (h list, c list, m), all zeros (B, hidden, height, width)."""
        zeros = like.new_zeros(batch, self.hidden[0], height, width)
        layers = len(self.hidden)
        return [zeros] * layers, [zeros] * layers, zeros

    def step(self, frame: torch.Tensor, state):
        hs, cs, m = state
        hs, cs = list(hs), list(cs)
        x = frame
        for i, cell in enumerate(self.cells):
            hs[i], cs[i], m = cell(x, hs[i], cs[i], m)
            x = hs[i]
        return x, (hs, cs, m)
