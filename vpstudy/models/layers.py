"""Shared building blocks for the SimVP family.

- `StarReLU`: s * ReLU(x)^2 + b with two learnable scalars (MetaFormer baselines).
- `make_activation(name)`: 'gelu' | 'starrelu' -> a fresh activation module.
- `DropPath`: stochastic depth on a residual branch (per-sample, identity in eval).
- `drop_path_rates(...)`: the per-block drop-path schedule of a translator.
- `DepthwiseConv2d`: a depthwise ``nn.Conv2d`` (same parameters) that skips the taps which
  only ever see padding and runs in fp32 on CPUs.

All modules work on any tensor shape; the SimVP code uses them on (N, C, H, W).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vpstudy.enums import ACTIVATIONS

DROP_PATH_SCHEDULES: tuple[str, ...] = ("linear", "openstl")


class StarReLU(nn.Module):
    """StarReLU(x) = s * ReLU(x)^2 + b, with learnable scalars s, b (2 parameters).

    Init s = 0.8944, b = -0.4472 (i.e. 2/sqrt(5) and -1/sqrt(5)): for x ~ N(0, 1),
    E[ReLU(x)^2] = 1/2 and Var[ReLU(x)^2] = 5/4, so this init gives zero mean and
    unit variance. The public MetaFormer code defaults to s=1, b=0; pass
    `scale_init=1.0, bias_init=0.0` for that. The scalars are shared by all channels
    and always learnable, as in the SimVP study.

    Shape: any -> same. Under autocast the scalars are cast to the input's dtype so a
    bf16 activation stays bf16.
    """

    def __init__(self, scale_init: float = 0.8944, bias_init: float = -0.4472):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(scale_init)]))
        self.bias = nn.Parameter(torch.tensor([float(bias_init)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale.to(x.dtype) * F.relu(x).square() + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        return f"scale_init={self.scale.item():.4f}, bias_init={self.bias.item():.4f}"


def check_activation(name: str) -> str:
    """Return `name` if it is a known activation, else raise ValueError."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {ACTIVATIONS}")
    return name


def make_activation(name: str) -> nn.Module:
    """A fresh activation module: 'gelu' -> nn.GELU(), 'starrelu' -> StarReLU()."""
    check_activation(name)
    return nn.GELU() if name == "gelu" else StarReLU()


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise, "same"-padded ``nn.Conv2d`` (same parameters and state dict) that computes
    faster where it can, with the same result:

    - On a map smaller than the kernel's reach (gSTA's 7x7 kernel with dilation 3 reaches 9
      pixels out; at the cpu scale its maps are 8x8) the outer taps multiply zero padding
      only. They are left out (their gradients are zero either way).
    - On a CPU it runs in fp32 on contiguous memory, also under bf16 autocast: oneDNN's bf16
      channels-last depthwise path measured 3-8x slower (python -m vpstudy bench; gsta at 32x32).
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(channels, channels, kernel_size, padding=dilation * (kernel_size // 2),
                         dilation=dilation, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (dh, dw), (ph, pw) = self.kernel_size, self.dilation, self.padding
        h, w = (int(n) for n in x.shape[-2:])     # plain ints also when traced (ONNX export)
        # the tap k places from the centre reads the pixel dh * k away: inside the map for
        # some output pixel iff dh * k <= h - 1. The reaching taps are a centred block.
        r, c = kh // 2 - _reach(kh, dh, h), kw // 2 - _reach(kw, dw, w)     # taps to drop per side
        weight = self.weight[:, :, r: kh - r, c: kw - c]
        padding = (ph - dh * r, pw - dw * c)
        if x.device.type != "cpu":
            return F.conv2d(x, weight, self.bias, 1, padding, self.dilation, self.groups)
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(x.float().contiguous(), weight.float(), self.bias.float(), 1, padding,
                            self.dilation, self.groups)


def _reach(kernel: int, dilation: int, size: int) -> int:
    """How many taps on each side of a kernel's centre reach a map of ``size`` pixels."""
    return min(kernel // 2, (size - 1) // dilation)


class DropPath(nn.Module):
    """Stochastic depth: zero a residual branch for a random subset of samples.

    In training, each sample of the batch (dim 0) keeps its branch with probability
    1 - p and is rescaled by 1/(1 - p); in eval it is the identity.
    Shape: (N, ...) -> (N, ...).
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path rate must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = x.new_empty(mask_shape).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p:.4g}"


def make_drop_path(p: float) -> nn.Module:
    """DropPath(p) for p > 0, else nn.Identity() (no per-step cost)."""
    return DropPath(p) if p > 0.0 else nn.Identity()


def drop_path_rates(drop_path: float, num_blocks: int, schedule: str = "linear") -> list[float]:
    """Per-block drop-path rates for a stack of `num_blocks` blocks.

    - 'linear' (default): the usual stochastic-depth rule, linspace(0, drop_path, n);
      drop_path=0 means no drop path at all.
    - 'openstl': OpenSTL's rule, linspace(1e-2, drop_path, n). Note that it starts at
      0.01 even when drop_path=0, so every block but the last drops a little
      (n=4, drop_path=0: 0.01, 0.0067, 0.0033, 0). Use it to reproduce OpenSTL runs.
    """
    if schedule not in DROP_PATH_SCHEDULES:
        raise ValueError(f"unknown drop-path schedule {schedule!r}; choose one of {DROP_PATH_SCHEDULES}")
    if not 0.0 <= drop_path < 1.0:
        raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
    start = 0.0 if schedule == "linear" else 1e-2
    if num_blocks == 1:
        return [float(drop_path)]
    step = (drop_path - start) / (num_blocks - 1)
    return [start + i * step for i in range(num_blocks - 1)] + [float(drop_path)]
