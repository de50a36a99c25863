"""CrevNet and its lightweight 3D-separable variant ("sepcrev"), one code path for both.

The lightweight separable CNN-LSTM study (Mathai, Liu, Ling) takes CrevNet's Moving MNIST
model and replaces every 3×3×3 Conv3d by a 3D separable convolution. Here both models are
built by the same classes; the switch is ``conv='separable' | 'standard'`` (which also sets
the default of ``gate_bias``, see below).

    window X_{t-1}  (B, C, 3, H, W)             three consecutive frames
      │ space-to-depth 2×2, split channels
      ▼
    (x1, x2)        2 × (B, 2C, 3, H/2, W/2)
      │ two-way autoencoder, forward pass       M i-RevNet blocks (12 for MNIST)
      ▼
    (x1, x2)        2 × (B, 32C, 3, H/8, W/8)
      │ reversible predictive module            N × [ST-LSTM cell + attention gate]
      ▼                                         (carries H, C per layer and M across steps)
    (x1, x2)        2 × (B, 32C, 3, H/8, W/8)
      │ two-way autoencoder, exact inverse
      ▼
    window X_t      (B, C, 3, H, W)             the same three frames shifted by one

Parameter counts (built by the registry, `vpstudy.models.build_model`; checked in
tests/test_crevnet.py):

    build_model(...)                        layout            params     GMACs per 3-frame step
    "sepcrev"  Moving MNIST 1×64×64         12 AE / 8 RPM     368,706    ≈0.078 (AE 11,330)
    "crevnet"  Moving MNIST 1×64×64         12 AE / 8 RPM   4,997,444    ≈0.99  (AE 104,516)
    "sepcrev", dataset="kth", 1×128×128     14 AE / 16 RPM    727,170     0.592 (paper 727.26K/0.6G)
    "crevnet", dataset="kth", 1×128×128     14 AE / 16 RPM  9,894,756     7.758 (paper 9.89M/7.76G)
    "sepcrev-bair"  3×64×64 RGB             14 AE / 16 RPM  4,663,182     0.930 (96 wide: RGB)
    "crevnet-bair"  3×64×64 RGB             14 AE / 16 RPM 89,021,700    17.45

The attention conv is 1×1×1 (CrevNet's own code: its 3×3×3 line is commented out); that gives
368,706 parameters, 0.07% from the study's 368.96K, where a separable 3×3×3 one would give
375,362 (1.7% off). A depthwise 1×1×1 conv would only rescale channels, so "separable" 1×1×1
is just this pointwise conv.

Two facts the exact counts pin down (both follow CrevNet's public code):
- ST-LSTM gate convs carry a bias in CrevNet (nn.Conv3d's default), 7×32 numbers per layer;
  the separable study's gate convs have none. ``gate_bias=None`` picks that per conv type.
- W1 (the 1×1×1 conv producing H) and the 1×1×1 attention conv carry a bias in both.

Use: ``model(x)`` predicts ``model.out_frames`` frames from (B, T_in, C, H, W) (ground-truth
warm-up, then autoregressive rollout, see `CrevNetPredictor.forward`);
``model.training_loss(inputs, targets, criterion, progress=...)`` is the teacher-forced
training objective; ``model.step(window, state)`` is one 3-frame window step.

CPU note: PyTorch's depthwise Conv3d is slow on CPUs at these sizes (its backward ~20× its
forward), and the separable model is thousands of tiny convolution calls per training step.
On maps of at most TOEPLITZ_MAX_POSITIONS positions (the cpu profile's 32×32 frames) the
predictor and the autoencoder's last stage therefore run the same maths as batched matmuls
(see "small-map fast path" below; tests/test_crevnet_fast.py checks it against a frozen copy
of the module code). CrevNet ('standard') always runs its nn.Conv3d modules.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .base import VideoPredictor

CONV_TYPES: tuple[str, ...] = ("separable", "standard")
ATTENTION_CONVS: tuple[str, ...] = ("pointwise", "3x3x3")

# How a given total number of autoencoder blocks is split into the three stages (strides
# 1, 2, 2). 12 is CrevNet's Moving MNIST layout. For 14 (KTH/BAIR) the two extra blocks go
# to the middle stage: (4, 7, 3). Reason: the study's Table III counts (727.26K params,
# 0.6G; CrevNet 9.89M, 7.76G) match a 1-channel 128×128 model with 14 blocks and 16 layers
# (i.e. the KTH layout) only when the last stage keeps 3 blocks, and (4, 7, 3) is the one
# split that reproduces them all: 727,170 params / 0.592 GMACs; CrevNet 9,894,756 params /
# 7.758 GMACs per 1×3×128×128 step ((5, 6, 3) gives 7.748G, (6, 5, 3) 7.738G, (5, 5, 4)
# 9.93M). Pass a tuple to `ae_blocks` for any other split.
AE_STAGE_SPLITS: dict[int, tuple[int, int, int]] = {12: (4, 5, 3), 14: (4, 7, 3)}
AE_STAGE_STRIDES: tuple[int, int, int] = (1, 2, 2)


# --------------------------------------------------------------------------- convolutions

class _DepthwiseConv3dCPU(torch.autograd.Function):
    """Depthwise 3×3×3 conv, stride 1, padding 1, whose backward is two forward convs.

    PyTorch's CPU backward of a depthwise Conv3d is ~20× slower than its forward (about
    1 ms for an (8, 96, 3, 4, 4) input against 0.06 ms). Both gradients are convolutions
    too: dL/dx is the depthwise conv of dL/dy with the flipped kernel, and dL/dw[c] is
    the correlation of the padded x[:, c] with dL/dy[:, c], one depthwise conv with the
    batch folded into the channels. Same values as autograd's (tests/test_crevnet.py).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        y = F.conv3d(x, weight, padding=1, groups=weight.shape[0])
        ctx.save_for_backward(x.to(y.dtype), weight.to(y.dtype))
        ctx.dtypes = (x.dtype, weight.dtype)
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, weight = ctx.saved_tensors
        grad_y = grad_y.to(x.dtype)
        B, C, T, H, W = x.shape
        grad_x = F.conv3d(grad_y, weight.flip(2, 3, 4), padding=1, groups=C)
        padded = F.pad(x, (1, 1, 1, 1, 1, 1)).transpose(0, 1).reshape(1, C * B, T + 2, H + 2, W + 2)
        kernels = grad_y.transpose(0, 1).reshape(C * B, 1, T, H, W)
        grad_w = F.conv3d(padded, kernels, groups=C * B).view(C, B, 3, 3, 3).sum(1, keepdim=True)
        return grad_x.to(ctx.dtypes[0]), grad_w.to(ctx.dtypes[1])


class SepConv3d(nn.Module):
    """3D separable convolution: depthwise k×k×k Conv3d, then pointwise 1×1×1 Conv3d.

    The depthwise conv (groups=in_ch, no bias) filters each channel in time and space and
    applies the stride; the pointwise conv mixes channels. Parameters:
    ``in_ch·k³ + in_ch·out_ch (+ out_ch with bias)`` instead of ``in_ch·out_ch·k³``.
    On a CPU, a stride-1 3×3×3 depthwise conv on frames of 8×8 or more runs through
    `_DepthwiseConv3dCPU` (measured faster there; on 4×4 maps both take the same time).

    Shape: (B, in_ch, T, H, W) -> (B, out_ch, T', H', W'), as nn.Conv3d with the same
    kernel_size/stride/padding.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3,
                 stride: int | tuple[int, int, int] = 1, padding: int = 1, bias: bool = True):
        super().__init__()
        self.depthwise = nn.Conv3d(in_ch, in_ch, kernel_size, stride=stride, padding=padding,
                                   groups=in_ch, bias=False)
        self.pointwise = nn.Conv3d(in_ch, out_ch, kernel_size=1, bias=bias)
        dw = self.depthwise
        self._fast_cpu_path = (dw.kernel_size == (3, 3, 3) and dw.stride == (1, 1, 1)
                               and dw.padding == (1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fast_cpu_path and fast_path_enabled(x):
            return self._small_map(x)
        if (self._fast_cpu_path and x.device.type == "cpu" and torch.is_grad_enabled()
                and x.shape[-1] * x.shape[-2] >= 64):
            return self.pointwise(_DepthwiseConv3dCPU.apply(x, self.depthwise.weight))
        return self.pointwise(self.depthwise(x))


    def _small_map(self, x: torch.Tensor) -> torch.Tensor:
        """The same conv on maps of at most TOEPLITZ_MAX_POSITIONS positions as two matmuls:
        the depthwise conv as one n×n matrix per channel (`_toeplitz`), then the pointwise."""
        B, C, *size = x.shape
        depthwise = _without_grad_cached(self, (self.depthwise.weight,), tuple(size), lambda: _toeplitz(
            self.depthwise.weight.view(1, C, 27), _tap_index(*size, x.device)))      # (C, n, n)
        z = torch.bmm(x.transpose(0, 1).reshape(C, B, -1), depthwise).view(C, -1)
        pw = self.pointwise
        y = pw.weight.flatten(1) @ z if pw.bias is None else torch.addmm(pw.bias[:, None], pw.weight.flatten(1), z)
        return y.view(-1, B, *size).transpose(0, 1)


def check_conv_type(conv: str) -> str:
    """Return `conv` if it is 'separable' or 'standard', else raise ValueError."""
    if conv not in CONV_TYPES:
        raise ValueError(f"unknown conv type {conv!r}; choose one of {CONV_TYPES}")
    return conv


def make_conv3d(conv: str, in_ch: int, out_ch: int, kernel_size: int = 3,
                stride: int | tuple[int, int, int] = 1, bias: bool = False) -> nn.Module:
    """The conv factory: a 'same'-padded k×k×k conv of the chosen type.

    'separable' -> SepConv3d, 'standard' -> nn.Conv3d. Padding is kernel_size // 2.
    """
    check_conv_type(conv)
    padding = kernel_size // 2
    if conv == "separable":
        return SepConv3d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=bias)
    return nn.Conv3d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=bias)


def parallel_conv3d(convs: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """``torch.cat([conv(x) for conv in convs], dim=1)`` in one or two convolution calls.

    For n convs of one type with the same input (the ST-LSTM's gates), the weights are
    stacked at call time, so the parameters stay the convs' own. Standard: one Conv3d with
    n·out channels. Separable: one depthwise conv with channel multiplier n (output channel
    c·n + k is conv k's depthwise filter on channel c), then one 1×1×1 conv whose weight is
    block-diagonal over k. Same arithmetic as calling each conv; on a CPU, where each tiny
    convolution call costs far more than its arithmetic, it is ~2-3× faster.
    """
    first = convs[0]
    biases = [c.bias if isinstance(c, nn.Conv3d) else c.pointwise.bias for c in convs]
    bias = None if biases[0] is None else torch.cat(biases)
    if isinstance(first, nn.Conv3d):
        weight = torch.cat([c.weight for c in convs])
        return F.conv3d(x, weight, bias, first.stride, first.padding)
    n, dw = len(convs), first.depthwise
    in_ch = dw.in_channels
    depthwise = torch.stack([c.depthwise.weight for c in convs], dim=1).flatten(0, 1)
    z = F.conv3d(x, depthwise, None, dw.stride, dw.padding, groups=in_ch)    # (B, in·n, ...)
    pointwise = torch.stack([c.pointwise.weight[:, :, 0, 0, 0] for c in convs])  # (n, out, in)
    eye = torch.eye(n, dtype=pointwise.dtype, device=pointwise.device)
    block = torch.einsum("koc,km->kocm", pointwise, eye).reshape(-1, in_ch * n, 1, 1, 1)
    return F.conv3d(z, block, bias)


# --------------------------------------------------------------------------- invertible parts

def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """Invertible 2×2 spatial space-to-depth: (B, C, T, H, W) -> (B, 4C, T, H/2, W/2).

    Output channel ``(2·dy + dx)·C + c`` holds pixel (2i + dy, 2j + dx) of channel c, i.e.
    the channels are grouped by pixel phase (as in CrevNet's `psi`), so splitting the 4C
    channels in halves gives the top-row and bottom-row pixels of every channel.
    """
    B, C, T, H, W = x.shape
    x = x.reshape(B, C, T, H // 2, 2, W // 2, 2)
    x = x.permute(0, 4, 6, 1, 2, 3, 5)  # B, dy, dx, C, T, H/2, W/2
    return x.reshape(B, 4 * C, T, H // 2, W // 2)


def depth_to_space(x: torch.Tensor) -> torch.Tensor:
    """Exact inverse of `space_to_depth`: (B, 4C, T, H, W) -> (B, C, T, 2H, 2W)."""
    B, C4, T, H, W = x.shape
    C = C4 // 4
    x = x.reshape(B, 2, 2, C, T, H, W)
    x = x.permute(0, 3, 4, 5, 1, 6, 2)  # B, C, T, H, dy, W, dx
    return x.reshape(B, C, T, 2 * H, 2 * W)


class InvertibleBlock(nn.Module):
    """i-RevNet block on a pair of channel groups (x1, x2).

    forward:  y1 = F(x2) + psi(x1);  output (psi(x2), y1)
    inverse:  x2 = psi⁻¹(a);  x1 = psi⁻¹(y1 − F(x2))       for input (a, y1)

    psi is `space_to_depth` in a downsampling block (stride 2) and the identity otherwise.
    F = [BN → ReLU, except in the first block] → conv (stride (1,2,2) when downsampling)
        → BN → ReLU → conv → BN → ReLU → conv, with bottleneck width out_ch // 2 (at least 1);
    convs have no bias and come from `make_conv3d(conv, ...)`.

    Shapes: groups (B, in_ch, T, H, W) -> (B, out_ch, T, H/s, W/s) with out_ch = in_ch·s².
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, first: bool, conv: str):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertibleBlock: stride must be 1 or 2, got {stride!r}")
        if out_ch != in_ch * stride * stride:
            raise ValueError(f"InvertibleBlock: out_ch must be in_ch·stride² = "
                             f"{in_ch * stride * stride} to stay invertible, got {out_ch}")
        self.downsample = stride == 2
        width = max(out_ch // 2, 1)
        layers: list[nn.Module] = []
        if not first:
            layers += [nn.BatchNorm3d(in_ch), nn.ReLU()]
        layers += [
            make_conv3d(conv, in_ch, width, stride=(1, stride, stride)),
            nn.BatchNorm3d(width), nn.ReLU(),
            make_conv3d(conv, width, width),
            nn.BatchNorm3d(width), nn.ReLU(),
            make_conv3d(conv, width, out_ch),
        ]
        self.residual = nn.Sequential(*layers)  # F

    def psi(self, x: torch.Tensor) -> torch.Tensor:
        return space_to_depth(x) if self.downsample else x

    def psi_inverse(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space(x) if self.downsample else x

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y1 = self.residual(x2) + self.psi(x1)
        return self.psi(x2), y1

    def inverse(self, a: torch.Tensor, y1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x2 = self.psi_inverse(a)
        x1 = self.psi_inverse(y1 - self.residual(x2))
        return x1, x2


class InvertibleAutoencoder(nn.Module):
    """CrevNet's two-way autoencoder: a stack of i-RevNet blocks and its exact inverse.

    encode: window (B, C, T, H, W) -> space_to_depth -> split into two groups of 2C channels
            -> blocks -> (x1, x2), each (B, 2C·4^k, T, H/2^(k+1), W/2^(k+1)) with k the
            number of downsampling stages (2: each group ends as 32C × T × H/8 × W/8).
    decode: the exact inverse (up to float rounding, ~1e-7), in any BN mode: each block's F
            is re-evaluated on the same x2 it saw in the forward pass. (In train mode that
            re-evaluation updates the BN running statistics again, as in CrevNet's code.)

    Stages: `stage_blocks[i]` blocks, the first of stage i with stride `stage_strides[i]`;
    group channels 2C → 8C → 32C for strides (1, 2, 2). Only the first block of the whole
    stack skips F's leading BN+ReLU.
    """

    def __init__(self, in_channels: int, stage_blocks: tuple[int, ...],
                 stage_strides: tuple[int, ...] = AE_STAGE_STRIDES, conv: str = "separable"):
        super().__init__()
        if len(stage_blocks) != len(stage_strides) or min(stage_blocks) < 1:
            raise ValueError(f"InvertibleAutoencoder: need one block count >= 1 per stage "
                             f"(strides {stage_strides}), got {stage_blocks}")
        self.in_channels = in_channels
        self.downsampling = 2 * 2 ** sum(s == 2 for s in stage_strides)  # incl. the first psi
        blocks = []
        group_ch = 2 * in_channels
        for n_blocks, stage_stride in zip(stage_blocks, stage_strides):
            for i in range(n_blocks):
                stride = stage_stride if i == 0 else 1
                out_ch = group_ch * stride * stride
                blocks.append(InvertibleBlock(group_ch, out_ch, stride, first=not blocks,
                                              conv=conv))
                group_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.group_channels = group_ch

    def encode(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1, x2 = space_to_depth(window).chunk(2, dim=1)
        for block in self.blocks:
            x1, x2 = block(x1, x2)
        return x1, x2

    def decode(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        for block in reversed(self.blocks):
            x1, x2 = block.inverse(x1, x2)
        return depth_to_space(torch.cat([x1, x2], dim=1))

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as `encode`."""
        return self.encode(window)


# --------------------------------------------------------------------------- predictor

class SpatioTemporalLSTMCell(nn.Module):
    """CrevNet's ST-LSTM cell with 7 gate convs of the chosen type (all channels = `width`).

        i,  f,  g  = σ, σ, tanh of conv(cat(x, H, C))          3·width -> width
        C_new      = f·C + i·g
        i′, f′, g′ = σ, σ, tanh of conv(cat(x, M, C_new))      3·width -> width
        M_new      = f′·M + i′·g′
        o          = σ(conv(cat(x, H, C_new, M_new)))          4·width -> width
        H_new      = o · tanh(W1(cat(C_new, M_new)))           W1: 1×1×1 Conv3d with bias

    All tensors are (B, width, T, h, w). Gate convs are k×k×k (k=3), bias per `gate_bias`.
    """

    def __init__(self, width: int, conv: str, gate_bias: bool):
        super().__init__()

        def gate(in_ch: int) -> nn.Module:
            return make_conv3d(conv, in_ch, width, bias=gate_bias)

        self.input_gate, self.forget_gate, self.cell_candidate = (gate(3 * width) for _ in range(3))
        self.memory_input_gate, self.memory_forget_gate, self.memory_candidate = (
            gate(3 * width) for _ in range(3))
        self.output_gate = gate(4 * width)
        self.w1 = nn.Conv3d(2 * width, width, kernel_size=1)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor,
                memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (H_new, C_new, M_new)."""
        xhc = torch.cat([x, hidden, cell], dim=1)
        i, f, g = [c(xhc) for c in [self.input_gate, self.forget_gate, self.cell_candidate]]
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)

        xmc = torch.cat([x, memory, cell], dim=1)
        i_m, f_m, g_m = [c(xmc) for c in [self.memory_input_gate, self.memory_forget_gate, self.memory_candidate]]
        memory = torch.sigmoid(f_m) * memory + torch.sigmoid(i_m) * torch.tanh(g_m)

        o = torch.sigmoid(self.output_gate(torch.cat([x, hidden, cell, memory], dim=1)))
        hidden = o * torch.tanh(self.w1(torch.cat([cell, memory], dim=1)))
        return hidden, cell, memory


# The RPM's recurrent state: ([(H, C) for each layer], M), every tensor (B, width, T, h, w).
RPMState = tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]


class ReversiblePredictor(nn.Module):
    """CrevNet's reversible predictive module ("zig_rev_predictor"): N layers, each

        H, C, M = ST-LSTM_l(x1, H_l, C_l, M)        M comes from the layer below (zig-zag)
        g       = σ(attention_l(H))
        x2      = (1 − g)·x2 + g·H
        x1, x2  = x2, x1                            the groups swap

    M leaving the top layer is the M entering the bottom layer at the next step.
    Attention conv: 'pointwise' = 1×1×1 nn.Conv3d with bias (CrevNet's); '3x3x3' = a
    k=3 conv of the chosen type without bias.

    Shapes: x1, x2 (B, width, T, h, w) -> same.
    """

    def __init__(self, width: int, num_layers: int, conv: str, gate_bias: bool,
                 attention_conv: str = "pointwise"):
        super().__init__()
        if attention_conv not in ATTENTION_CONVS:
            raise ValueError(f"unknown attention_conv {attention_conv!r}; "
                             f"choose one of {ATTENTION_CONVS}")
        if num_layers < 1:
            raise ValueError(f"ReversiblePredictor: num_layers must be >= 1, got {num_layers}")
        self.width = width
        self.conv, self.attention_conv = conv, attention_conv
        self.cells = nn.ModuleList(
            SpatioTemporalLSTMCell(width, conv, gate_bias) for _ in range(num_layers))
        self.attention = nn.ModuleList(
            nn.Conv3d(width, width, kernel_size=1) if attention_conv == "pointwise"
            else make_conv3d(conv, width, width, bias=False)
            for _ in range(num_layers))

    def initial_state(self, like: torch.Tensor) -> RPMState:
        """All-zero state for features shaped like `like` (B, width, T, h, w)."""
        zeros = torch.zeros_like(like)
        return [(zeros, zeros) for _ in self.cells], zeros

    def packed(self, like: torch.Tensor) -> "ToeplitzPredictor | None":
        """This predictor packed for features shaped like `like` (B, width, T, h, w) on the
        small-map fast path, or None where that path does not apply: standard convs (CrevNet
        keeps nn.Conv3d), a 3×3×3 attention conv, maps of more than TOEPLITZ_MAX_POSITIONS
        positions, or autocast (the packed matmuls would run in another precision than the
        modules' convs)."""
        if self.conv != "separable" or self.attention_conv != "pointwise" or not fast_path_enabled(like):
            return None
        return _without_grad_cached(self, tuple(self.parameters()), tuple(like.shape),
                                    lambda: ToeplitzPredictor(self, like))

    def roll(self, x1: torch.Tensor, x2: torch.Tensor, batch: int, state: RPMState | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, RPMState]:
        """`forward` over consecutive steps: x1, x2 (steps·batch, width, T, h, w), step j's
        inputs at rows j·batch .. (j+1)·batch, each step's inputs independent of the outputs
        (teacher forcing). Returns the outputs stacked the same way and the final state."""
        packed = self.packed(x1[:batch])
        if packed is None:
            outs1, outs2 = [], []
            for a, b in zip(x1.split(batch), x2.split(batch)):
                a, b, state = self(a, b, state)
                outs1.append(a)
                outs2.append(b)
            return torch.cat(outs1), torch.cat(outs2), state
        state = packed.enter_state(state)
        outs1, outs2 = [], []
        for a, b in zip(packed.enter(x1), packed.enter(x2)):
            a, b, state = packed.step(a, b, state)
            outs1.append(a)
            outs2.append(b)
        return (packed.leave(torch.stack(outs1)), packed.leave(torch.stack(outs2)),
                packed.leave_state(state))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, state: RPMState | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, RPMState]:
        """Returns (x1, x2, new_state); state=None starts from zeros. (One step; `roll` and
        `CrevNetPredictor.forward` pack the weights once for a whole sequence.)"""
        packed = self.packed(x1)
        if packed is not None:
            a, b, state = packed.step(packed.enter(x1)[0], packed.enter(x2)[0], packed.enter_state(state))
            return packed.leave(a[None]), packed.leave(b[None]), packed.leave_state(state)
        layer_states, memory = state if state is not None else self.initial_state(x1)
        new_layer_states = []
        for cell, attention, (hidden, c) in zip(self.cells, self.attention, layer_states):
            hidden, c, memory = cell(x1, hidden, c, memory)
            new_layer_states.append((hidden, c))
            gate = torch.sigmoid(attention(hidden))
            x2 = (1 - gate) * x2 + gate * hidden
            x1, x2 = x2, x1
        return x1, x2, (new_layer_states, memory)


# --------------------------------------------------------------------------- small-map fast path
#
# On the predictor's small maps (the cpu profile's 32×32 frames give 3×4×4 = 48 positions)
# the separable ST-LSTM is ~3,500 tiny convolution calls per training step, bound by the
# number and shape of calls. `ToeplitzPredictor` computes the same maths in few, larger
# calls; its parameters are the modules' own (packed once per sequence, so gradients reach
# them through autograd):
#
# - A depthwise 3×3×3 conv (stride 1, padding 1) of one channel on n = T·h·w positions is an
#   n×n matrix ("Toeplitz": entry (q, p) is the filter tap through which position q feeds
#   position p, zero where the tap would read padding). Every depthwise filter that a gate
#   applies to one source tensor (x, H, C, M, C_new, M_new) becomes such a matrix, and all
#   those of one stage of the cell run as one batched matmul over channels.
# - The seven gates' pointwise convs run as one batched matmul per stage over the gates; W1
#   and the attention conv are single matmuls. The cell runs in three stages (what is
#   known before C_new, after C_new, after M_new), 7 matmuls in all instead of 16 convs.
# - State tensors stay in a (channels, batch·positions) layout for the whole sequence.
# - The Toeplitz weights' gradient is computed once per sequence (`_ToeplitzGrad`): one
#   matmul over the gradients of several steps, instead of one per step and a running sum of
#   weight-sized tensors (what autograd does). On the busy 2-core machine the two measured
#   within noise of each other; this one is kept for its smaller memory traffic.
# - `SepConv3d` on such maps (the autoencoder's last stage) does the same per conv.
#
# Measured (torch.profiler and interleaved timings, one thread, batch 8, 32×32 frames, a busy
# machine, so ratios only): the predictor's teacher-forced forward+backward went from 14.5 s
# to 3.8 s in one interleaved run; the whole training step from 1.38× CrevNet's (bf16) to
# 0.80× (1 thread) and 0.50× (2 threads). Not kept: one fused depthwise Conv3d for the gates
# (mkldnn, channels-last-3d): 1.0-1.4 ms forward for (8, 96 -> 288 channels, 3×4×4), against
# 0.28 ms for the Toeplitz matmul, and its backward far slower; building the Toeplitz matrices
# as a matmul with 0/1 shift matrices (more arithmetic than the convs they replace; an index
# gather is used); the Toeplitz matmul in the other orientation ((S, K·n, n) @ (S, n, B):
# the predictor 1.25× slower); `torch.compile` (inductor) of one reversible layer, forward and
# backward: within noise of eager after 74 s of compiling; at batch 1 without gradients,
# mkldnn's channels-last depthwise conv3d instead of the matmul: 13% off the inference, 1.6×
# slower at batch 16. Not tried: an explicit 27-tap shifted multiply-add (54 eager calls per
# conv). Maps larger than TOEPLITZ_MAX_POSITIONS (the paper's 64×64
# frames: 192) would make the matrices 16× larger and keep the module path.

TOEPLITZ_MAX_POSITIONS = 64
_FAST_PATH = [True]        # False inside `module_path()`


@contextlib.contextmanager
def module_path():
    """Run the separable model through its modules (no small-map fast path) inside this block:
    for tracing (ONNX export), where the packed weights would be expanded into the graph."""
    _FAST_PATH.append(False)
    try:
        yield
    finally:
        _FAST_PATH.pop()


def fast_path_enabled(x: torch.Tensor) -> bool:
    """Whether the small-map fast path may run on ``x``: not inside `module_path`, not under
    autocast, and ``x`` (B, C, T, h, w) has at most TOEPLITZ_MAX_POSITIONS positions."""
    return (_FAST_PATH[-1] and not torch.is_autocast_enabled(x.device.type)
            and x[0, 0].numel() <= TOEPLITZ_MAX_POSITIONS)


def _without_grad_cached(owner: nn.Module, params: tuple[torch.Tensor, ...], shape: tuple[int, ...], build):
    """``build()``, kept on ``owner`` and reused while gradients are off (prediction,
    evaluation) and ``params`` are unchanged: the packed weights are then the same tensors, so
    a prediction is bit for bit what packing anew gives, without the ~250 gathers per clip
    that packing anew costs at batch 1. Keyed by each parameter's storage, version counter
    (an optimizer step or `load_state_dict` bumps it), dtype and device, and by ``shape``."""
    if torch.is_grad_enabled():
        return build()
    key = (shape, tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params))
    cached = _PACKED_WITHOUT_GRAD.get(owner)
    if cached is None or cached[0] != key:
        cached = _PACKED_WITHOUT_GRAD[owner] = (key, build())
    return cached[1]


_PACKED_WITHOUT_GRAD: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()
_GRAD_FLUSH_STEPS = 8      # steps whose gradients are held before they are summed in one matmul


@functools.lru_cache(maxsize=16)
def _tap_index(T: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """(n, n) long tensor, n = T·h·w: the 3×3×3 tap (0..26, in the weight's (t, y, x) order)
    through which input position q feeds output position p of a padding-1 conv, 27 where none."""
    with torch.inference_mode(False):     # cached: must stay usable outside inference mode
        return _build_tap_index(T, h, w, device)


def _build_tap_index(T: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    pos = torch.arange(T * h * w, device=device).view(T, h, w)
    index = torch.full((T * h * w, T * h * w), 27, dtype=torch.long, device=device)
    for dt in range(3):
        for dy in range(3):
            for dx in range(3):
                def span(size: int, d: int) -> tuple[slice, slice]:      # (outputs, inputs)
                    return slice(max(0, 1 - d), size - max(0, d - 1)), slice(max(0, d - 1), size - max(0, 1 - d))
                (ot, it), (oy, iy), (ox, ix) = span(T, dt), span(h, dy), span(w, dx)
                index[pos[it, iy, ix].flatten(), pos[ot, oy, ox].flatten()] = dt * 9 + dy * 3 + dx
    return index


def _toeplitz(filters: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Depthwise filters (K, S, 27) -> matrices (S, n, K·n) such that
    ``bmm(x, result)[s, b, k·n + p]`` is filter (k, s) applied to ``x[s, b]`` (n positions)."""
    K, S, _ = filters.shape
    n = taps.shape[0]
    padded = torch.cat([filters, filters.new_zeros(K, S, 1)], dim=2)
    matrices = padded.index_select(2, taps.flatten()).view(K, S, n, n)
    return matrices.permute(1, 2, 0, 3).reshape(S, n, K * n)


class _ToeplitzGrad(torch.autograd.Function):
    """Hands the Toeplitz weight's gradient, summed over all steps, to autograd at once.

    Its output (a 0-dim token) is an input of every step's `_ToeplitzMatmul`, so autograd
    runs this backward after all of theirs, which have left their (input, output-gradient)
    pairs in ``conv`` (summed every _GRAD_FLUSH_STEPS steps)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, conv: "ToeplitzConv") -> torch.Tensor:
        ctx.conv = conv
        return weight.new_zeros(())

    @staticmethod
    def backward(ctx, _token_grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        return ctx.conv.take_grad(), None


class _ToeplitzMatmul(torch.autograd.Function):
    """``bmm(x, conv.weight)`` whose weight gradient is left to `_ToeplitzGrad`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, token: torch.Tensor, conv: "ToeplitzConv") -> torch.Tensor:
        ctx.conv = conv
        ctx.save_for_backward(x)
        return torch.bmm(x, conv.weight.detach())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        ctx.conv.hold(x, grad)
        return torch.bmm(grad, ctx.conv.weight.detach().transpose(1, 2)), grad.new_zeros(()), None


class ToeplitzConv:
    """The depthwise 3×3×3 filters (K, S, 27) of S channel slots as one batched matmul:
    ``conv(x)`` maps (S, B, n) to (S, B, K·n) (filter k's output at [..., k·n:(k+1)·n])."""

    def __init__(self, filters: torch.Tensor, taps: torch.Tensor):
        self.weight = _toeplitz(filters, taps)
        self.deferred = self.weight.requires_grad and torch.is_grad_enabled()
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.grad: torch.Tensor | None = None
        if self.deferred:
            self.token = _ToeplitzGrad.apply(self.weight, self)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.deferred:
            return torch.bmm(x, self.weight)
        return _ToeplitzMatmul.apply(x, self.token, self)

    def hold(self, x: torch.Tensor, grad: torch.Tensor) -> None:
        self.pending.append((x, grad))
        if len(self.pending) >= _GRAD_FLUSH_STEPS:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        xs, grads = zip(*self.pending)
        self.pending = []
        x, grad = torch.cat(xs, dim=1).transpose(1, 2), torch.cat(grads, dim=1)
        self.grad = torch.bmm(x, grad) if self.grad is None else torch.baddbmm(self.grad, x, grad)

    def take_grad(self) -> torch.Tensor | None:
        self._flush()
        grad, self.grad = self.grad, None
        return grad


def _pointwise(conv: nn.Module, channels: slice) -> torch.Tensor:
    """(out, len(channels)) pointwise weight of a SepConv3d (or 1×1×1 Conv3d) on input channels."""
    weight = conv.pointwise.weight if isinstance(conv, SepConv3d) else conv.weight
    return weight[:, channels, 0, 0, 0]


def _depthwise(conv: SepConv3d, channels: slice) -> torch.Tensor:
    """(len(channels), 27) depthwise filters of a SepConv3d on input channels."""
    return conv.depthwise.weight[channels, 0].flatten(1)


def _stacked_bias(convs: list[SepConv3d | None]) -> torch.Tensor | None:
    """(len(convs), out, 1) pointwise biases (zeros for None), or None when no conv has one."""
    present = [c.pointwise.bias for c in convs if c is not None and c.pointwise.bias is not None]
    if not present:
        return None
    zero = torch.zeros_like(present[0])
    return torch.stack([zero if c is None or c.pointwise.bias is None else c.pointwise.bias
                        for c in convs])[:, :, None]


def _gate_matmul(bias: torch.Tensor | None, weight: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return torch.bmm(weight, z) if bias is None else torch.baddbmm(bias, weight, z)


class ToeplitzCell:
    """One `SpatioTemporalLSTMCell`'s parameters packed for `step` on (width, B·n) tensors.

    Stage 1 (inputs x, H, C, M): depthwise filters of i, f, g, o on [x, H, C] and of
    i′, f′, g′ on [x, M]; stage 2 (C_new): i′, f′, g′, o; stage 3 (M_new): o."""

    def __init__(self, cell: SpatioTemporalLSTMCell, taps: torch.Tensor):
        c = cell.w1.out_channels
        x, h, old_c, old_m = slice(0, c), slice(c, 2 * c), slice(2 * c, 3 * c), slice(c, 2 * c)
        new_c, new_m = slice(2 * c, 3 * c), slice(3 * c, 4 * c)
        i, f, g = cell.input_gate, cell.forget_gate, cell.cell_candidate
        mi, mf, mg = cell.memory_input_gate, cell.memory_forget_gate, cell.memory_candidate
        o = cell.output_gate
        nothing = torch.zeros_like(_depthwise(i, x))
        self.conv_xhc = ToeplitzConv(torch.stack(
            [torch.cat([_depthwise(q, x), _depthwise(q, h), _depthwise(q, old_c)]) for q in (i, f, g)]
            + [torch.cat([_depthwise(o, x), _depthwise(o, h), nothing])]), taps)        # (4, 3c, 27)
        self.conv_xm = ToeplitzConv(torch.stack(
            [torch.cat([_depthwise(q, x), _depthwise(q, old_m)]) for q in (mi, mf, mg)]), taps)
        self.conv_c = ToeplitzConv(torch.stack([_depthwise(q, new_c) for q in (mi, mf, mg, o)]), taps)
        self.conv_m = ToeplitzConv(_depthwise(o, new_m)[None], taps)
        zeros = torch.zeros_like(_pointwise(i, x))
        self.pw_xhc = torch.stack([torch.cat([_pointwise(q, x), _pointwise(q, h), _pointwise(q, old_c)], 1)
                                   for q in (i, f, g)]
                                  + [torch.cat([_pointwise(o, x), _pointwise(o, h), zeros], 1)])
        self.pw_xm = torch.stack([torch.cat([_pointwise(q, x), _pointwise(q, old_m)], 1) for q in (mi, mf, mg)])
        self.pw_c = torch.stack([_pointwise(q, new_c) for q in (mi, mf, mg, o)])
        self.pw_m = _pointwise(o, new_m)
        self.bias_xhc = _stacked_bias([i, f, g, o])
        self.bias_xm = _stacked_bias([mi, mf, mg])
        self.w1, self.w1_bias = _pointwise(cell.w1, slice(None)), cell.w1.bias[:, None]

    def step(self, x: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor, memory: torch.Tensor,
             batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`SpatioTemporalLSTMCell.forward` on (width, batch·n) tensors: (H_new, C_new, M_new)."""
        c, bn = x.shape

        def depthwise(conv: ToeplitzConv, sources: list[torch.Tensor], k: int) -> torch.Tensor:
            z = conv(torch.cat(sources).view(len(sources) * c, batch, -1))      # (S, B, k·n)
            return z.view(len(sources) * c, batch, k, -1).permute(2, 0, 1, 3).reshape(k, -1, bn)

        i, f, g, o = _gate_matmul(self.bias_xhc, self.pw_xhc, depthwise(self.conv_xhc, [x, hidden, cell], 4)).unbind(0)
        partial_m = _gate_matmul(self.bias_xm, self.pw_xm, depthwise(self.conv_xm, [x, memory], 3))
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
        gates = torch.baddbmm(torch.cat([partial_m, o[None]]), self.pw_c, depthwise(self.conv_c, [cell], 4))
        i_m, f_m, g_m, o = gates.unbind(0)
        memory = torch.sigmoid(f_m) * memory + torch.sigmoid(i_m) * torch.tanh(g_m)
        o = torch.sigmoid(torch.addmm(o, self.pw_m, self.conv_m(memory.view(c, batch, -1)).view(c, bn)))
        hidden = o * torch.tanh(torch.addmm(self.w1_bias, self.w1, torch.cat([cell, memory])))
        return hidden, cell, memory


class PackedState(NamedTuple):
    """A predictor state in the packed layout, with the packed predictor that made it."""
    packed: "ToeplitzPredictor"
    state: RPMState | None


class ToeplitzPredictor:
    """A `ReversiblePredictor` packed for small maps (see the section comment): the same steps
    on tensors in a (width, B·n) layout, n = T·h·w, sample-major. `enter`/`leave` convert
    from/to the modules' (B, width, T, h, w); a state is ([(H, C)], M) in the packed layout."""

    def __init__(self, predictor: "ReversiblePredictor", like: torch.Tensor):
        self.batch, self.width, *self.map = like.shape
        self.positions = like[0, 0].numel()
        taps = _tap_index(*self.map, like.device)
        self.cells = [ToeplitzCell(cell, taps) for cell in predictor.cells]
        self.attention = [(_pointwise(a, slice(None)), a.bias[:, None]) for a in predictor.attention]

    def enter(self, x: torch.Tensor) -> torch.Tensor:
        """(steps·B, width, T, h, w) -> (steps, width, B·n)."""
        steps = x.shape[0] // self.batch
        return x.reshape(steps, self.batch, self.width, self.positions).transpose(1, 2).reshape(
            steps, self.width, self.batch * self.positions)

    def leave(self, x: torch.Tensor) -> torch.Tensor:
        """(steps, width, B·n) -> (steps·B, width, T, h, w)."""
        steps = x.shape[0]
        return x.view(steps, self.width, self.batch, -1).transpose(1, 2).reshape(
            steps * self.batch, self.width, *self.map)

    def enter_state(self, state: RPMState | None) -> RPMState | None:
        if state is None:
            return None
        layers, memory = state
        return [(self.enter(h)[0], self.enter(c)[0]) for h, c in layers], self.enter(memory)[0]

    def leave_state(self, state: RPMState) -> RPMState:
        layers, memory = state
        return [(self.leave(h[None]), self.leave(c[None])) for h, c in layers], self.leave(memory[None])

    def step(self, x1: torch.Tensor, x2: torch.Tensor, state: RPMState | None
             ) -> tuple[torch.Tensor, torch.Tensor, RPMState]:
        """`ReversiblePredictor.forward` on (width, B·n) tensors."""
        if state is None:
            zeros = torch.zeros_like(x1)
            state = [(zeros, zeros) for _ in self.cells], zeros
        layers, memory = state
        new_layers = []
        for cell, (weight, bias), (hidden, c) in zip(self.cells, self.attention, layers):
            hidden, c, memory = cell.step(x1, hidden, c, memory, self.batch)
            new_layers.append((hidden, c))
            x2 = torch.lerp(x2, hidden, torch.sigmoid(torch.addmm(bias, weight, hidden)))
            x1, x2 = x2, x1
        return x1, x2, (new_layers, memory)


# --------------------------------------------------------------------------- full model

class CrevNetPredictor(VideoPredictor):
    """CrevNet-style video predictor on sliding 3-frame windows (the project's model contract).

    Window j is frames (j, j+1, j+2), as a (B, C, 3, H, W) tensor. One `step` maps window j
    to a prediction of window j+1: encode -> reversible predictor -> decode, carrying the
    RPM state.

    Args:
        conv: 'separable' (the lightweight study) or 'standard' (CrevNet).
        in_channels: 1 (grayscale) or 3 (RGB).
        ae_blocks: total autoencoder blocks (12 or 14, see AE_STAGE_SPLITS) or a tuple of
            blocks per stage (strides 1, 2, 2).
        rpm_layers: ST-LSTM layers in the reversible predictor.
        attention_conv: 'pointwise' (1×1×1, CrevNet) or '3x3x3' (a conv of type `conv`).
        gate_bias: bias on the 7 ST-LSTM gate convs; None = CrevNet's convention for the
            conv type (standard: True, as nn.Conv3d's default in CrevNet's code; separable:
            False, as in the study). These are the choices that give the exact counts.
        in_frames, out_frames: observed and predicted frames of the contract.

    Attributes: name, in_frames, out_frames, conv, autoencoder, predictor.
    """

    window_frames = 3          # frames per window: one recurrent step (the model contract)

    def __init__(self, conv: str = "separable", in_channels: int = 1,
                 ae_blocks: int | tuple[int, int, int] = 12, rpm_layers: int = 8,
                 attention_conv: str = "pointwise", gate_bias: bool | None = None,
                 in_frames: int = 10, out_frames: int = 10):
        super().__init__()
        check_conv_type(conv)
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels!r}")
        if isinstance(ae_blocks, int):
            if ae_blocks not in AE_STAGE_SPLITS:
                raise ValueError(f"ae_blocks={ae_blocks} has no stage split; use one of "
                                 f"{sorted(AE_STAGE_SPLITS)} or a tuple of 3 stage sizes")
            stage_blocks = AE_STAGE_SPLITS[ae_blocks]
        else:
            stage_blocks = tuple(ae_blocks)
        if in_frames < self.window_frames:
            raise ValueError(f"in_frames must be >= {self.window_frames} (one full window), "
                             f"got {in_frames}")
        if out_frames < 1:
            raise ValueError(f"out_frames must be >= 1, got {out_frames}")
        if gate_bias is None:
            gate_bias = conv == "standard"
        self.conv = conv
        self.name = "sepcrev" if conv == "separable" else "crevnet"   # build_model sets the registry name
        self.in_channels = in_channels
        self.in_frames = in_frames
        self.out_frames = out_frames
        self.autoencoder = InvertibleAutoencoder(in_channels, stage_blocks, AE_STAGE_STRIDES, conv)
        self.predictor = ReversiblePredictor(self.autoencoder.group_channels, rpm_layers, conv,
                                             gate_bias, attention_conv)

    # ---- one window step

    def _advance(self, window: torch.Tensor, state: "RPMState | PackedState | None"):
        """Encode `window` and advance the predictor: (x1, x2, new state), the state in the
        layout it came in (a `PackedState` stays packed)."""
        x1, x2 = self.autoencoder.encode(window)
        if not isinstance(state, PackedState):
            return self.predictor(x1, x2, state)
        packed = state.packed
        x1, x2, inner = packed.step(packed.enter(x1)[0], packed.enter(x2)[0], state.state)
        return packed.leave(x1[None]), packed.leave(x2[None]), PackedState(packed, inner)

    def step(self, window: torch.Tensor, state: "RPMState | PackedState | None" = None
             ) -> tuple[torch.Tensor, "RPMState | PackedState"]:
        """Predict window j+1 from window j: (B, C, 3, H, W) -> ((B, C, 3, H, W), new state).
        `state` is an RPMState, None (zeros), or the `PackedState` that `forward` starts with."""
        x1, x2, state = self._advance(window, state)
        return self.autoencoder.decode(x1, x2), state

    def observe(self, window: torch.Tensor, state: "RPMState | PackedState | None" = None
                ) -> "RPMState | PackedState":
        """Advance the state on a true window without decoding a prediction."""
        return self._advance(window, state)[2]

    def start_state(self, frames: torch.Tensor) -> "PackedState | None":
        """The initial state for a sequence of `frames` (B, T, C, H, W): a `PackedState` (the
        predictor packed once for all its steps) where the small-map fast path applies, else
        None (zeros, the modules' layout)."""
        B, _, _, H, W = frames.shape
        ds = self.autoencoder.downsampling
        like = frames.new_empty(B, self.autoencoder.group_channels, self.window_frames, H // ds, W // ds)
        packed = self.predictor.packed(like)
        return None if packed is None else PackedState(packed, None)

    # ---- contract

    def _check_frames(self, frames: torch.Tensor, what: str) -> None:
        if frames.ndim != 5:
            raise ValueError(f"{what} must be (B, T, C, H, W), got shape {tuple(frames.shape)}")
        _, T, C, H, W = frames.shape
        ds = self.autoencoder.downsampling
        if C != self.in_channels:
            raise ValueError(f"{what} has {C} channels; this model takes {self.in_channels}")
        if H % ds or W % ds:
            raise ValueError(f"{what}: H and W must be multiples of {ds}, got {H}×{W}")

    @staticmethod
    def _window(frames: torch.Tensor, j: int) -> torch.Tensor:
        """Frames (j, j+1, j+2) of (B, T, C, H, W) as a (B, C, 3, H, W) window."""
        return frames[:, j:j + 3].transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict `self.out_frames` future frames from T_in observed frames.

        x: (B, T_in, C, H, W), T_in >= 3 -> (B, T_out, C, H, W), T_out = self.out_frames.

        Indexing (frames 0..T_in−1 observed; shown for T_in = 10):
          1. warm-up: the true windows 0 .. T_in−4 (window 6 = frames 6,7,8) only advance
             the state (no decoding);
          2. step k = 0: true window T_in−3 = (7, 8, 9) -> predicted window (8, 9, 10); its
             last frame is future frame 10 = output[:, 0];
          3. step k >= 1: the input is the latest predicted window (frames k+7, k+8, k+9)
             with every frame that was observed (index < T_in) replaced by the true frame
             (CrevNet's test loop); its prediction's last frame is frame T_in + k = output[:, k].
        """
        self._check_frames(x, "x")
        T_in = x.shape[1]
        if T_in < self.window_frames:
            raise ValueError(f"need at least {self.window_frames} observed frames, got {T_in}")
        state = self.start_state(x)
        for j in range(T_in - 3):
            state = self.observe(self._window(x, j), state)
        window = self._window(x, T_in - 3)
        future = []
        for k in range(self.out_frames):
            pred, state = self.step(window, state)  # frames (T_in−2+k, T_in−1+k, T_in+k)
            future.append(pred[:, :, -1])
            first = T_in - 2 + k
            window = torch.stack([x[:, first + d] if first + d < T_in else pred[:, :, d]
                                  for d in range(3)], dim=2)
        return torch.stack(future, dim=1)

    @staticmethod
    def _windows(frames: torch.Tensor, first: int, count: int) -> torch.Tensor:
        """Windows first .. first+count-1 of (B, T, C, H, W), stacked window-major into one
        batch: (count·B, C, 3, H, W), window j's sequences at rows (j-first)·B .. (j-first+1)·B."""
        idx = torch.arange(first, first + count, device=frames.device)[:, None] + \
            torch.arange(3, device=frames.device)
        win = frames[:, idx]                                   # (B, count, 3, C, H, W)
        return win.permute(1, 0, 3, 2, 4, 5).flatten(0, 1)     # (count·B, C, 3, H, W)

    def training_loss(self, inputs: torch.Tensor, targets: torch.Tensor, criterion, *,
                      progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Teacher-forced loss over all window transitions of cat(inputs, targets).

        inputs (B, T_in, C, H, W), targets (B, T_out, C, H, W); with T = T_in + T_out frames
        there are T − 3 transitions (17 for 20 frames): feed true window j, predict window
        j+1, loss = SUM over j of criterion(pred, true)[0], both as (B, 3, C, H, W).
        `progress` (fraction of training done) is part of the contract and unused here.

        Under teacher forcing only the predictive module is recurrent: the autoencoder
        encodes every true window in one batched call and decodes every prediction in one
        batched call (one convolution call per layer instead of one per window and layer,
        the main cost of the separable model on a CPU). The arithmetic per window is the
        same as stepping; BatchNorm's batch statistics in train mode are then taken over all
        T − 3 windows of the batch at once rather than per window.

        Returns (loss, parts): parts holds each of the criterion's parts averaged over the
        transitions (detached 0-dim tensors), with 'mse' (element mean) added if the
        criterion does not report it, and 'transitions' (their number).
        """
        self._check_frames(inputs, "inputs")
        self._check_frames(targets, "targets")
        frames = torch.cat([inputs, targets], dim=1)
        B = frames.shape[0]
        transitions = frames.shape[1] - 3
        if transitions < 1:
            raise ValueError(f"need at least 4 frames in cat(inputs, targets), got "
                             f"{frames.shape[1]}")
        x1_all, x2_all = self.autoencoder.encode(self._windows(frames, 0, transitions))
        x1_all, x2_all, _ = self.predictor.roll(x1_all, x2_all, B)
        pred = self.autoencoder.decode(x1_all, x2_all)                         # (tr·B, C, 3, H, W)
        loss = frames.new_zeros(())
        sums: dict[str, torch.Tensor] = {}
        for j, pred_j in enumerate(pred.split(B)):
            pred_j = pred_j.transpose(1, 2)                   # (B, 3, C, H, W)
            true = frames[:, j + 1:j + 4]
            value, parts = criterion(pred_j, true)
            loss = loss + value
            if "mse" not in parts:
                parts = {**parts, "mse": torch.mean((pred_j.detach() - true) ** 2)}
            for key, part in parts.items():
                part = torch.as_tensor(part).detach().float()
                sums[key] = sums[key] + part if key in sums else part
        averaged = {key: total / transitions for key, total in sums.items()}
        averaged["transitions"] = torch.tensor(float(transitions))
        return loss, averaged
