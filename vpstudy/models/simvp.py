"""SimVP: spatial encoder -> translator -> spatial decoder, predicting all frames in one shot.

Shapes (Moving MNIST: T=10, C=1, H=W=64, N_S=4 -> h=w=16):

    x (B, T, C, H, W) --fold frames into batch--> (B*T, C, H, W)
      --Encoder--> (B*T, hid_S, h, w)          [+ skip: first layer's output, (B*T, hid_S, H, W)]
      --stack frames as channels--> (B, T*hid_S, h, w)
      --translator--> (B, T*hid_S, h, w)
      --unstack--> (B*T, hid_S, h, w)
      --Decoder(+ skip)--> (B*T, C, H, W) --> (B, T, C, H, W)

The number of predicted frames equals the number of observed frames (T_out == T_in), as
in SimVP; the decoder turns each of the T translated latents into one future frame.
No Python loops over frames: frames always ride in the batch or channel dimension.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import VideoPredictor
from .translators import make_translator


class ConvGNSiLU(nn.Module):
    """Conv2d(k) -> GroupNorm(2) -> SiLU, optionally stride 2 (down) or conv to 4*out +
    PixelShuffle(2) (up). Padding (k - stride + 1) // 2 keeps / halves / doubles H, W.

    (N, in_ch, H, W) -> (N, out_ch, H', W') with H' = H, H/2 (down) or 2H (up).
    Conv weights ~ truncated N(0, 0.02), bias 0 (as in the reference implementation).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3,
                 downsample: bool = False, upsample: bool = False):
        super().__init__()
        stride = 2 if downsample else 1
        padding = (kernel_size - stride + 1) // 2
        if upsample:
            self.conv = nn.Sequential(
                nn.Conv2d(in_ch, 4 * out_ch, kernel_size, padding=padding),
                nn.PixelShuffle(2),
            )
        else:
            self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding)
        self.norm = nn.GroupNorm(2, out_ch)
        self.act = nn.SiLU()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


def _strides_down(num_layers: int) -> list[bool]:
    """Which encoder layers downsample: [False, True] * (N_S // 2) -> 1, 2, 1, 2, ..."""
    return [False, True] * (num_layers // 2)


class Encoder(nn.Module):
    """N_S ConvGNSiLU layers, strides 1,2,1,2,... (N, C, H, W) -> latent (N, hid_S, h, w)
    with h = H / 2^(N_S/2), plus the first layer's output (N, hid_S, H, W) as a skip."""

    def __init__(self, in_ch: int, hid_S: int, num_layers: int, kernel_size: int = 3):
        super().__init__()
        self.layers = nn.ModuleList(
            ConvGNSiLU(in_ch if i == 0 else hid_S, hid_S, kernel_size, downsample=down)
            for i, down in enumerate(_strides_down(num_layers))
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.layers[0](x)
        z = skip
        for layer in self.layers[1:]:
            z = layer(z)
        return z, skip


class Decoder(nn.Module):
    """Mirror of the encoder: N_S ConvGNSiLU layers upsampling 2,1,2,1,... (PixelShuffle),
    the encoder skip ADDED to the last layer's input, then a 1x1 readout to C channels.
    (N, hid_S, h, w), skip (N, hid_S, H, W) -> (N, C, H, W)."""

    def __init__(self, hid_S: int, out_ch: int, num_layers: int, kernel_size: int = 3):
        super().__init__()
        self.layers = nn.ModuleList(
            ConvGNSiLU(hid_S, hid_S, kernel_size, upsample=up)
            for up in reversed(_strides_down(num_layers))
        )
        self.readout = nn.Conv2d(hid_S, out_ch, kernel_size=1)

    def forward(self, z: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            z = layer(z)
        return self.readout(self.layers[-1](z + skip))


class SimVP(VideoPredictor):
    """SimVP video predictor (v1 with translator='incepu', v2 with 'gsta'; or 'poolformer').

    Args:
        in_shape: (T, C, H, W) of the observed clip; H and W divisible by 2^(N_S/2).
        hid_S: spatial channels (C_s). hid_T: translator channels (C_t).
        N_S: encoder (and decoder) layers, even, >= 2. N_T: translator blocks, >= 2.
        translator: 'incepu' | 'gsta' | 'poolformer'.
        mlp_ratio: MetaFormer MLP expansion (gsta / poolformer).
        activation: 'gelu' | 'starrelu', the MetaFormer MLP activation (gsta / poolformer).
        drop_path, drop_path_schedule: see `layers.drop_path_rates` (default: none).
        spatial_kernel: kernel size of the encoder / decoder convs.

    forward: (B, T, C, H, W) -> (B, T, C, H, W), the next T frames.
    """

    def __init__(self, in_shape: tuple[int, int, int, int] = (10, 1, 64, 64), *,
                 hid_S: int = 32, hid_T: int = 256, N_S: int = 4, N_T: int = 4,
                 translator: str = "gsta", mlp_ratio: float = 8.0, activation: str = "gelu",
                 drop_path: float = 0.0, drop_path_schedule: str = "linear",
                 spatial_kernel: int = 3):
        super().__init__()
        if len(in_shape) != 4 or any(int(s) < 1 for s in in_shape):
            raise ValueError(f"in_shape must be (T, C, H, W) of positive ints, got {in_shape}")
        T, C, H, W = (int(s) for s in in_shape)
        if N_S < 2 or N_S % 2:
            raise ValueError(f"N_S must be an even number >= 2, got {N_S}")
        scale = 2 ** (N_S // 2)
        if H % scale or W % scale:
            raise ValueError(f"H and W must be divisible by 2^(N_S/2) = {scale}; got H={H}, W={W}")
        if min(hid_S, hid_T) < 2 or hid_S % 2:
            raise ValueError(f"hid_S must be even (GroupNorm(2)) and hid_T >= 2; got {hid_S}, {hid_T}")
        self.in_shape = (T, C, H, W)
        self.out_frames = T
        self.encoder = Encoder(C, hid_S, N_S, spatial_kernel)
        self.translator = make_translator(
            translator, T * hid_S, hid_T, N_T, mlp_ratio=mlp_ratio, activation=activation,
            drop_path=drop_path, drop_path_schedule=drop_path_schedule)
        self.decoder = Decoder(hid_S, C, N_S, spatial_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C, H, W = x.shape
        if (T, C, H, W) != self.in_shape:
            raise ValueError(f"expected input (B, {', '.join(map(str, self.in_shape))}), got {tuple(x.shape)}")
        z, skip = self.encoder(x.reshape(B * T, C, H, W))
        _, hid_S, h, w = z.shape
        z = self.translator(z.reshape(B, T * hid_S, h, w))
        y = self.decoder(z.reshape(B * T, hid_S, h, w), skip)
        return y.reshape(B, T, C, H, W)
