"""The model contract: what the trainer, the evaluation and `vpstudy.efficiency` read from a
model. Every registered model is a :class:`VideoPredictor`.

    forward(x)      (B, T_in, C, H, W) -> (B, out_frames, C, H, W): the deterministic prediction
    training_loss   the loss of one batch; default ``criterion(self(inputs), targets)``.
                    Recurrent models override it (teacher forcing, scheduled sampling,
                    reversed input, a KL term) and read ``progress``, the fraction of training
                    done.
    name, out_frames   set by `vpstudy.models.build_model`
    window_frames   frames per recurrent step of a window model (CrevNet-style: 3; its
                    per-step cost is counted on one window); None for whole-clip models
    stochastic      True for a model evaluated by best-of-N sampling, which then also has
                    ``sample(x, generator)``, ``predict_mean(x)`` and ``eval_samples``
                    (N per profile)
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class VideoPredictor(nn.Module):
    """Base class of every model in the registry (see the module docstring for the contract)."""

    name: str = ""
    out_frames: int = 0
    window_frames: int | None = None
    stochastic: bool = False

    def training_loss(self, inputs: torch.Tensor, targets: torch.Tensor, criterion: Callable, *,
                      progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``criterion(self(inputs), targets)``: (loss, parts). ``progress`` is unused here."""
        return criterion(self(inputs), targets)


def has_own_training_loss(model: VideoPredictor) -> bool:
    """Whether ``model`` overrides the default loss (the trainer then calls it directly rather
    than through a compiled forward)."""
    return type(model).training_loss is not VideoPredictor.training_loss
