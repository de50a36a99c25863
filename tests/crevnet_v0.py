# Frozen copy of vpstudy/models/crevnet.py as of commit 367ace8 (before the small-map fast path):
# the reference that tests/test_crevnet_fast.py compares the current model with. Do not edit:
# its only change from that file is the absolute import of VideoPredictor.
# ruff: noqa
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

CPU note: PyTorch's depthwise Conv3d backward is slow on CPU (~3× slower than a standard
conv with 32× the MACs at 96 channels, 8×8, batch 16), so on CPU the separable model trains
slower than CrevNet despite ~13× fewer MACs. ``model.to(memory_format=torch.channels_last_3d)``
was ~1.5× faster there in one measurement (batch 4, one thread).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vpstudy.models.base import VideoPredictor

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
        if (self._fast_cpu_path and x.device.type == "cpu" and torch.is_grad_enabled()
                and x.shape[-1] * x.shape[-2] >= 64):
            return self.pointwise(_DepthwiseConv3dCPU.apply(x, self.depthwise.weight))
        return self.pointwise(self.depthwise(x))


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

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, state: RPMState | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, RPMState]:
        """Returns (x1, x2, new_state); state=None starts from zeros."""
        layer_states, memory = state if state is not None else self.initial_state(x1)
        new_layer_states = []
        for cell, attention, (hidden, c) in zip(self.cells, self.attention, layer_states):
            hidden, c, memory = cell(x1, hidden, c, memory)
            new_layer_states.append((hidden, c))
            gate = torch.sigmoid(attention(hidden))
            x2 = (1 - gate) * x2 + gate * hidden
            x1, x2 = x2, x1
        return x1, x2, (new_layer_states, memory)


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

    def step(self, window: torch.Tensor, state: RPMState | None = None
             ) -> tuple[torch.Tensor, RPMState]:
        """Predict window j+1 from window j: (B, C, 3, H, W) -> ((B, C, 3, H, W), new state)."""
        x1, x2 = self.autoencoder.encode(window)
        x1, x2, state = self.predictor(x1, x2, state)
        return self.autoencoder.decode(x1, x2), state

    def observe(self, window: torch.Tensor, state: RPMState | None = None) -> RPMState:
        """Advance the state on a true window without decoding a prediction."""
        x1, x2 = self.autoencoder.encode(window)
        return self.predictor(x1, x2, state)[2]

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
        state = None
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
        state = None
        outs1, outs2 = [], []
        for x1, x2 in zip(x1_all.split(B), x2_all.split(B)):
            x1, x2, state = self.predictor(x1, x2, state)
            outs1.append(x1)
            outs2.append(x2)
        pred = self.autoencoder.decode(torch.cat(outs1), torch.cat(outs2))   # (tr·B, C, 3, H, W)
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
