"""Trivial baselines: reference points for the learned models."""

from __future__ import annotations

import torch
from torch import nn


class LastFrame(nn.Module):
    """Predict that nothing moves: repeat the last observed frame `out_frames` times.

    No parameters (a trainer should skip optimisation for it). forward:
    (B, T_in, C, H, W) -> (B, out_frames, C, H, W), a fresh contiguous tensor.
    """

    def __init__(self, out_frames: int = 10):
        super().__init__()
        if int(out_frames) < 1:
            raise ValueError(f"out_frames must be >= 1, got {out_frames}")
        self.out_frames = int(out_frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected input (B, T, C, H, W), got shape {tuple(x.shape)}")
        B, _, C, H, W = x.shape
        return x[:, -1:].expand(B, self.out_frames, C, H, W).contiguous()

    def extra_repr(self) -> str:
        return f"out_frames={self.out_frames}"


class AllBlack(nn.Module):
    """Predict empty frames: zeros for every predicted frame.

    On Moving MNIST, where most pixels are black, this is the MSE a model must beat before it
    has learnt anything about the digits (its per-frame MSE is the targets' own energy).
    forward: (B, T_in, C, H, W) -> (B, out_frames, C, H, W) zeros.
    """

    def __init__(self, out_frames: int = 10):
        super().__init__()
        if int(out_frames) < 1:
            raise ValueError(f"out_frames must be >= 1, got {out_frames}")
        self.out_frames = int(out_frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected input (B, T, C, H, W), got shape {tuple(x.shape)}")
        B, _, C, H, W = x.shape
        return x.new_zeros(B, self.out_frames, C, H, W)

    def extra_repr(self) -> str:
        return f"out_frames={self.out_frames}"
