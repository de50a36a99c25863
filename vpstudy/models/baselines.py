"""Trivial baselines: reference points for the learned models."""

from __future__ import annotations

import torch

from vpstudy.models.base import VideoPredictor


class TrivialPredictor(VideoPredictor):
    """A predictor without parameters (a trainer skips optimisation for it): checks
    ``out_frames`` and the (B, T_in, C, H, W) input; subclasses say what to predict."""

    def __init__(self, out_frames: int = 10):
        super().__init__()
        if int(out_frames) < 1:
            raise ValueError(f"out_frames must be >= 1, got {out_frames}")
        self.out_frames = int(out_frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected input (B, T, C, H, W), got shape {tuple(x.shape)}")
        return self.predict(x)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"out_frames={self.out_frames}"


class LastFrame(TrivialPredictor):
    """Predict that nothing moves: repeat the last observed frame `out_frames` times.

    forward: (B, T_in, C, H, W) -> (B, out_frames, C, H, W), a fresh contiguous tensor.
    """

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        B, _, C, H, W = x.shape
        return x[:, -1:].expand(B, self.out_frames, C, H, W).contiguous()


class AllBlack(TrivialPredictor):
    """Predict empty frames: zeros for every predicted frame.

    On Moving MNIST, where most pixels are black, this is the MSE a model must beat before it
    has learnt anything about the digits (its per-frame MSE is the targets' own energy).
    forward: (B, T_in, C, H, W) -> (B, out_frames, C, H, W) zeros.
    """

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        B, _, C, H, W = x.shape
        return x.new_zeros(B, self.out_frames, C, H, W)
