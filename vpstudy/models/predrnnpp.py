"""PredRNN++ (Wang et al., ICML 2018): Causal LSTM cells plus a Gradient Highway Unit.

Baseline of the lightweight separable CNN-LSTM study (REFERENCE §2): hidden (128, 64, 64,
64), 5x5 filters, stride 1, frames patched 4x4. The GHU sits between layers 0 and 1. The
training objective, scheduled sampling and the model contract are those of PredRNN
(`vpstudy.models.predrnn.PatchedRecurrentPredictor`).

Parameter count for Moving MNIST (1x64x64, patch 4) -- which conventions change it:

- default here (bias-free convs, no layer norm; the convention of the public PyTorch PredRNN
  code and OpenSTL, and the one our PredRNN's 23,838,720 uses): **15,367,168**;
- conv biases on every conv, as TF's ``tf.layers.conv2d`` had in the original PredRNN++
  code (``conv_bias=True``): 15,375,056 (+7,888);
- plus the original's tensor layer norm on the gate convs (per-sample over C,H,W with a
  per-channel scale and shift; ``layer_norm=True``, its default): 15,390,160 (+15,104) --
  this is REFERENCE's "≈15.39M" and exactly the original TF model.
- the memory's channel rule matters most: here, as in the original, the memory entering
  layer l has hidden[l-1] channels and the one entering layer 0 (the previous step's top
  memory) hidden[-1] = 64. Giving every layer's memory conv hidden[l] input channels (what
  OpenSTL's cell assumes; it cannot run with unequal widths) would give 15,674,368.
  The study's "15.09M" matches none of these; we did not find the convention behind it.

Weight init: torch defaults, except the GHU's convs ~ U(-1e-3, 1e-3) (the original and
OpenSTL). The original also drew the Causal LSTM's gate convs from U(-1e-3, 1e-3); OpenSTL
does not, nor do we.
"""

from __future__ import annotations

import torch
from torch import nn

from .predrnn import SAMPLING_STOP_PROGRESS, PatchedRecurrentPredictor, _check_filter_size, _check_hidden


def _gate_conv(in_channels: int, out_channels: int, filter_size: int, bias: bool,
               layer_norm: bool) -> nn.Module:
    """'Same' conv computing several gates at once, optionally followed by the original's
    tensor layer norm (= GroupNorm with one group: normalize each sample over C, H, W, then a
    per-channel scale and shift; eps 1e-5 as in the original)."""
    conv = nn.Conv2d(in_channels, out_channels, filter_size, padding=filter_size // 2, bias=bias)
    if not layer_norm:
        return conv
    return nn.Sequential(conv, nn.GroupNorm(1, out_channels, eps=1e-5))


class CausalLSTMCell(nn.Module):
    """Causal LSTM cell (PredRNN++ eq. 1): temporal memory first, then spatial memory, cascaded.

    Inputs: x (B, in_channels, h, w); h, c (B, hidden, h, w); m (B, memory_channels, h, w),
    the spatiotemporal memory coming from the layer below (or from the top layer of the
    previous step). Returns (h', c', m'), each (B, hidden, h, w):

        i, f, g      = conv_x(x)[i,f,g] + conv_h(h)[i,f,g] + conv_c(c)   (f: +1 forget bias)
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
        i', f', g', o_c = conv_c2m(c')
        i' += conv_x(x)[i'] + conv_m(m)[i'];  f' += conv_x(x)[f'] + conv_m(m)[f'] (+1)
        g' += conv_x(x)[g']
        m' = sigmoid(f') * tanh(conv_m(m)[m]) + sigmoid(i') * tanh(g')
        o  = tanh(conv_x(x)[o] + conv_h(h)[o] + o_c + conv_om(m'))
        h' = o * tanh(conv_fuse([c', m']))                               (conv_fuse: 1x1)

    (o uses tanh, as in the original and OpenSTL.) One conv per input computes all the gates
    fed by that input; conv_x's gate order is (i, f, g, o, i', f', g') so sums are single ops.

    Args:
        in_channels, hidden, memory_channels: channel counts of x, of this layer, of m.
        filter_size: odd kernel size.
        conv_bias: bias on every conv (False; True as in the original TF code).
        layer_norm: tensor layer norm after the gate convs (False; True in the original).
    """

    forget_bias = 1.0

    def __init__(self, in_channels: int, hidden: int, memory_channels: int, filter_size: int = 5,
                 conv_bias: bool = False, layer_norm: bool = False):
        super().__init__()
        _check_filter_size(filter_size)
        self.hidden = hidden

        def gates(cin: int, cout: int) -> nn.Module:
            return _gate_conv(cin, cout, filter_size, conv_bias, layer_norm)

        self.conv_x = gates(in_channels, 7 * hidden)      # i, f, g, o, i', f', g'
        self.conv_h = gates(hidden, 4 * hidden)           # i, f, g, o
        self.conv_c = gates(hidden, 3 * hidden)           # i, f, g
        self.conv_m = gates(memory_channels, 3 * hidden)  # i', f', m
        self.conv_c2m = gates(hidden, 4 * hidden)         # i', f', g', o
        self.conv_om = gates(hidden, hidden)              # o
        self.conv_fuse = nn.Conv2d(2 * hidden, hidden, kernel_size=1, bias=conv_bias)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, m: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = self.hidden
        x_gates = self.conv_x(x)
        m_gates = self.conv_m(m)
        xh = x_gates[:, :4 * n] + self.conv_h(h)                   # i, f, g, o
        ifg = xh[:, :3 * n] + self.conv_c(c)
        i, f, g = ifg.chunk(3, dim=1)
        c_new = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(g)

        c2m = self.conv_c2m(c_new)
        ifg2 = x_gates[:, 4 * n:] + c2m[:, :3 * n]                 # i', f', g'
        if2 = ifg2[:, :2 * n] + m_gates[:, :2 * n]
        i2, f2 = if2.chunk(2, dim=1)
        g2 = ifg2[:, 2 * n:]
        m_new = (torch.sigmoid(f2 + self.forget_bias) * torch.tanh(m_gates[:, 2 * n:])
                 + torch.sigmoid(i2) * torch.tanh(g2))

        o = torch.tanh(xh[:, 3 * n:] + c2m[:, 3 * n:] + self.conv_om(m_new))
        h_new = o * torch.tanh(self.conv_fuse(torch.cat([c_new, m_new], dim=1)))
        return h_new, c_new, m_new


class GradientHighwayUnit(nn.Module):
    """Gradient Highway Unit (PredRNN++ eq. 2): a gated shortcut across time.

    Inputs: x (B, in_channels, h, w) -- layer 0's new hidden state -- and z (B, hidden, h, w),
    the highway state. Returns z' (B, hidden, h, w):

        p, u = conv_x(x) + conv_z(z)
        z'   = sigmoid(u) * tanh(p) + (1 - sigmoid(u)) * z

    Both convs are drawn from U(-init_range, init_range) (1e-3, as in the original).
    """

    def __init__(self, in_channels: int, hidden: int, filter_size: int = 5,
                 conv_bias: bool = False, layer_norm: bool = False, init_range: float = 1e-3):
        super().__init__()
        _check_filter_size(filter_size)
        self.hidden = hidden
        self.conv_x = _gate_conv(in_channels, 2 * hidden, filter_size, conv_bias, layer_norm)
        self.conv_z = _gate_conv(hidden, 2 * hidden, filter_size, conv_bias, layer_norm)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.uniform_(module.weight, -init_range, init_range)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        p, u = (self.conv_x(x) + self.conv_z(z)).chunk(2, dim=1)
        u = torch.sigmoid(u)
        return u * torch.tanh(p) + (1 - u) * z


class PredRNNpp(PatchedRecurrentPredictor):
    """PredRNN++: stacked Causal LSTM cells with a GHU between layers 0 and 1.

    Per step: layer 0 reads the patched frame; the GHU updates z from layer 0's hidden state;
    layer 1 reads z; layer l >= 2 reads layer l-1's hidden state. The spatiotemporal memory
    goes up the stack and on to layer 0 of the next step, so the memory entering layer 0 has
    hidden[-1] channels and the one entering layer l has hidden[l-1]. A bias-free 1x1 conv
    (biased if conv_bias) reads out the next patched frame. All states start at zero.

    Args:
        in_shape: (T_in, C, H, W); H, W divisible by `patch`.
        out_frames: frames predicted by `forward`.
        hidden: channels per layer, at least 2 layers; default (128, 64, 64, 64).
        filter_size: odd conv kernel size (5).
        patch: space-to-depth patch size (4).
        conv_bias, layer_norm: the original TF code's conventions (see the module docstring).
        sampling_stop_progress: where scheduled sampling reaches probability 0.

    Parameters for (1 x 64 x 64, patch 4, defaults): 15,367,168.
    """

    name = "predrnnpp"

    def __init__(self, in_shape: tuple[int, int, int, int] = (10, 1, 64, 64), out_frames: int = 10,
                 hidden: tuple[int, ...] = (128, 64, 64, 64), filter_size: int = 5, patch: int = 4,
                 conv_bias: bool = False, layer_norm: bool = False,
                 sampling_stop_progress: float = SAMPLING_STOP_PROGRESS):
        hidden = _check_hidden(hidden, 2)
        _check_filter_size(filter_size)
        super().__init__(in_shape, out_frames, patch, hidden[-1], sampling_stop_progress,
                         readout_bias=conv_bias)
        self.hidden = hidden
        self.filter_size = filter_size
        self.cells = nn.ModuleList(
            CausalLSTMCell(in_channels=self.frame_channels if i == 0 else hidden[i - 1],
                           hidden=n,
                           memory_channels=hidden[i - 1],  # i = 0: hidden[-1], the top layer
                           filter_size=filter_size, conv_bias=conv_bias, layer_norm=layer_norm)
            for i, n in enumerate(hidden))
        self.highway = GradientHighwayUnit(hidden[0], hidden[0], filter_size, conv_bias, layer_norm)

    def init_state(self, batch: int, height: int, width: int, like: torch.Tensor):
        """State = (h list, c list, m, z), all zeros; m has hidden[-1] channels, z hidden[0]."""
        zeros = {n: like.new_zeros(batch, n, height, width) for n in set(self.hidden)}
        hs = [zeros[n] for n in self.hidden]
        return hs, list(hs), zeros[self.hidden[-1]], zeros[self.hidden[0]]

    def step(self, frame: torch.Tensor, state):
        hs, cs, m, z = state
        hs, cs = list(hs), list(cs)
        x = frame
        for i, cell in enumerate(self.cells):
            hs[i], cs[i], m = cell(x, hs[i], cs[i], m)
            x = hs[i]
            if i == 0:
                z = self.highway(x, z)
                x = z
        return x, (hs, cs, m, z)
