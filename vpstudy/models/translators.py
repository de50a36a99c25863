"""SimVP translators: the temporal modules that map B x (T*hid_S) x h x w to the same shape.

Frames are stacked in the channel dimension, so the translators are plain 2-D conv nets:

- `IncepUTranslator` ('incepu', SimVP v1): a U-Net of Inception blocks.
- `MetaFormerTranslator` ('gsta', SimVPv2, and 'poolformer'): a stack of MetaFormer blocks,
  block = x + ls1 * DropPath(TokenMixer(Norm(x))); x + ls2 * DropPath(MixMlp(Norm(x))).

The study's activation choice ('gelu' | 'starrelu') is the activation of the MetaFormer
feed-forward block (MixMlp), in both gSTA and PoolFormer. The activation inside gSTA's
attention (between its first 1x1 conv and the large-kernel attention) is NOT changed: it
is always GELU, as in SimVPv2 -- the study swaps only "the activation in the MetaFormer
Feed Forward block". So each MetaFormer block holds exactly one switchable activation and
StarReLU adds 2 parameters per block (N_T blocks -> +2*N_T parameters).

Weight init follows the reference implementation (OpenSTL): in gSTA and MixMlp convs
get N(0, sqrt(2 / fan_out)) with zero bias; everything else uses torch defaults.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import DepthwiseConv2d, check_activation, drop_path_rates, make_activation, make_drop_path

TRANSLATORS: tuple[str, ...] = ("incepu", "gsta", "poolformer")


def _init_conv_fan_out(module: nn.Module) -> None:
    """Init every Conv2d in `module`: weight ~ N(0, sqrt(2 / fan_out)), bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------
# IncepU (SimVP v1)
# ---------------------------------------------------------------------------------------


class InceptionBlock(nn.Module):
    """1x1 conv to `hid` channels, then the SUM of parallel grouped convs (kernels 3,5,7,11).

    Each branch: Conv2d(k, groups) -> GroupNorm(groups) -> LeakyReLU(0.2).
    (N, in_ch, h, w) -> (N, out_ch, h, w). If `hid` is not divisible by `groups`, the
    branches fall back to groups=1 (as in the reference).
    """

    def __init__(self, in_ch: int, hid: int, out_ch: int,
                 kernels: tuple[int, ...] = (3, 5, 7, 11), groups: int = 8):
        super().__init__()
        if hid % groups != 0:
            groups = 1
        self.bottleneck = nn.Conv2d(in_ch, hid, kernel_size=1)
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(hid, out_ch, kernel_size=k, padding=k // 2, groups=groups),
                nn.GroupNorm(groups, out_ch),
                nn.LeakyReLU(0.2),
            )
            for k in kernels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bottleneck(x)
        y = self.branches[0](x)
        for branch in self.branches[1:]:
            y = y + branch(x)
        return y


class IncepUTranslator(nn.Module):
    """U-Net of `num_blocks` encoder + `num_blocks` decoder Inception blocks (SimVP v1).

    Encoder: in_ch -> hid_T, then hid_T -> hid_T; every encoder output but the last is a
    skip. Decoder: hid_T -> hid_T, then cat(z, skip) (2*hid_T) -> hid_T, the last one
    -> in_ch. Each block's bottleneck is hid_T // 2. (B, in_ch, h, w) -> same.
    """

    def __init__(self, in_ch: int, hid_T: int, num_blocks: int,
                 kernels: tuple[int, ...] = (3, 5, 7, 11), groups: int = 8):
        super().__init__()
        if num_blocks < 2:
            raise ValueError(f"the IncepU translator needs N_T >= 2 blocks, got {num_blocks}")
        mid = hid_T // 2
        self.encoder = nn.ModuleList(
            InceptionBlock(in_ch if i == 0 else hid_T, mid, hid_T, kernels, groups)
            for i in range(num_blocks)
        )
        self.decoder = nn.ModuleList(
            InceptionBlock(hid_T if i == 0 else 2 * hid_T, mid,
                           in_ch if i == num_blocks - 1 else hid_T, kernels, groups)
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        z = x
        for block in self.encoder:
            z = block(z)
            skips.append(z)
        skips.pop()  # the bottom output feeds the decoder directly
        z = self.decoder[0](z)
        for block in self.decoder[1:]:
            z = block(torch.cat([z, skips.pop()], dim=1))
        return z


# ---------------------------------------------------------------------------------------
# MetaFormer blocks (gSTA, PoolFormer)
# ---------------------------------------------------------------------------------------


class MixMlp(nn.Module):
    """MetaFormer feed-forward with a depthwise conv: 1x1 (dim -> hidden) -> 3x3 depthwise
    -> activation -> 1x1 (hidden -> dim). (N, dim, h, w) -> same."""

    def __init__(self, dim: int, hidden: int, activation: str = "gelu"):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, kernel_size=1)
        self.dwconv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.act = make_activation(activation)
        self.fc2 = nn.Conv2d(hidden, dim, kernel_size=1)
        _init_conv_fan_out(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class LargeKernelGate(nn.Module):
    """gSTA's gated large-kernel attention (decomposed 21x21 kernel).

    5x5 depthwise -> 7x7 depthwise with dilation 3 -> 1x1 to 2*dim, split into (f, g),
    return sigmoid(g) * f. (N, dim, h, w) -> same.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.local = DepthwiseConv2d(dim, kernel_size=5)
        self.dilated = DepthwiseConv2d(dim, kernel_size=7, dilation=3)
        self.to_gate = nn.Conv2d(dim, 2 * dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, g = self.to_gate(self.dilated(self.local(x))).chunk(2, dim=1)
        return torch.sigmoid(g) * f


class GatedSpatialAttention(nn.Module):
    """gSTA token mixer: x + 1x1(LargeKernelGate(GELU(1x1(x)))). The GELU here is fixed
    (not the study's switchable activation). (N, dim, h, w) -> same."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj_in = nn.Conv2d(dim, dim, kernel_size=1)
        self.act = nn.GELU()
        self.gate = LargeKernelGate(dim)
        self.proj_out = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj_out(self.gate(self.act(self.proj_in(x))))


class PoolMixer(nn.Module):
    """PoolFormer token mixer: AvgPool3x3(x) - x (padding not counted). No parameters."""

    def __init__(self, pool_size: int = 3):
        super().__init__()
        self.pool = nn.AvgPool2d(pool_size, stride=1, padding=pool_size // 2, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


class MetaFormerBlock(nn.Module):
    """x = x + ls1 * DropPath(mixer(norm1(x))); x = x + ls2 * DropPath(mlp(norm2(x))).

    kind 'gsta': BatchNorm2d norms, gated spatial attention mixer, layer-scale init 1e-2.
    kind 'poolformer': GroupNorm(1) norms, pooling mixer, layer-scale init 1e-5.
    Both use MixMlp(dim, mlp_ratio * dim, activation). When out_ch != dim a 1x1 conv
    maps the block's output to out_ch. (N, dim, h, w) -> (N, out_ch, h, w).
    """

    def __init__(self, kind: str, dim: int, out_ch: int, mlp_ratio: float = 8.0,
                 activation: str = "gelu", drop_path: float = 0.0):
        super().__init__()
        if kind == "gsta":
            norm, mixer, ls_init = nn.BatchNorm2d, GatedSpatialAttention(dim), 1e-2
        elif kind == "poolformer":
            norm, mixer, ls_init = (lambda c: nn.GroupNorm(1, c)), PoolMixer(3), 1e-5
        else:
            raise ValueError(f"unknown MetaFormer block kind {kind!r}; choose 'gsta' or 'poolformer'")
        self.norm1 = norm(dim)
        self.mixer = mixer
        self.norm2 = norm(dim)
        self.mlp = MixMlp(dim, int(dim * mlp_ratio), activation)
        self.layer_scale1 = nn.Parameter(torch.full((dim,), ls_init))
        self.layer_scale2 = nn.Parameter(torch.full((dim,), ls_init))
        self.drop_path = make_drop_path(drop_path)
        self.out_proj = nn.Conv2d(dim, out_ch, kernel_size=1) if out_ch != dim else nn.Identity()
        if kind == "gsta":
            _init_conv_fan_out(self.mixer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.layer_scale1.view(1, -1, 1, 1) * self.mixer(self.norm1(x)))
        x = x + self.drop_path(self.layer_scale2.view(1, -1, 1, 1) * self.mlp(self.norm2(x)))
        return self.out_proj(x)


class MetaFormerTranslator(nn.Module):
    """A stack of `num_blocks` MetaFormer blocks (gSTA or PoolFormer).

    The first block works at in_ch and ends with a 1x1 conv to hid_T; the middle blocks
    work at hid_T; the last block works at hid_T and ends with a 1x1 conv back to in_ch.
    Drop-path rates per block come from `drop_path_rates(drop_path, num_blocks,
    drop_path_schedule)`; the default drop_path=0 with the 'linear' schedule means no drop
    path anywhere (OpenSTL's 'openstl' schedule would still drop ~1% in early blocks).
    (B, in_ch, h, w) -> same.
    """

    def __init__(self, kind: str, in_ch: int, hid_T: int, num_blocks: int,
                 mlp_ratio: float = 8.0, activation: str = "gelu",
                 drop_path: float = 0.0, drop_path_schedule: str = "linear"):
        super().__init__()
        if num_blocks < 2:
            raise ValueError(f"the {kind} translator needs N_T >= 2 blocks, got {num_blocks}")
        if mlp_ratio <= 1:
            raise ValueError(f"mlp_ratio must be > 1, got {mlp_ratio}")
        check_activation(activation)
        rates = drop_path_rates(drop_path, num_blocks, drop_path_schedule)
        dims = [in_ch] + [hid_T] * (num_blocks - 1) + [in_ch]  # block i: dims[i] -> dims[i+1]
        self.blocks = nn.Sequential(*(
            MetaFormerBlock(kind, dims[i], dims[i + 1], mlp_ratio, activation, rates[i])
            for i in range(num_blocks)
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def make_translator(kind: str, in_ch: int, hid_T: int, num_blocks: int, *,
                    mlp_ratio: float = 8.0, activation: str = "gelu",
                    drop_path: float = 0.0, drop_path_schedule: str = "linear") -> nn.Module:
    """Build a translator by name: 'incepu' | 'gsta' | 'poolformer'.

    The IncepU translator has no configurable activation, MLP ratio, or drop path; asking
    for a non-default one raises ValueError instead of being silently ignored.
    """
    check_activation(activation)
    if kind == "incepu":
        if activation != "gelu":
            raise ValueError("the 'incepu' translator has no MetaFormer MLP, so its activation is "
                             f"fixed (LeakyReLU); use activation='gelu' (the default), got {activation!r}")
        if drop_path != 0.0:
            raise ValueError(f"the 'incepu' translator has no drop path; got drop_path={drop_path}")
        return IncepUTranslator(in_ch, hid_T, num_blocks)
    if kind in ("gsta", "poolformer"):
        return MetaFormerTranslator(kind, in_ch, hid_T, num_blocks, mlp_ratio, activation,
                                    drop_path, drop_path_schedule)
    raise ValueError(f"unknown translator {kind!r}; choose one of {TRANSLATORS}")
