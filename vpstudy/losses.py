"""Training losses for video prediction: MSE + λ1·GDL + λ2·DDR (SimVP study, eq. 1–3).

All functions take predicted and true future frames shaped ``(B, T, C, H, W)`` with pixel
values in [0, 1] and return a 0-dim tensor.

- ``gradient_difference_loss`` (GDL, Mathieu et al. 2015, study eq. 1): compares the absolute
  image gradients of each predicted and true frame (intra-frame structure).
- ``differential_divergence_loss`` (DDR, TAU paper, study eq. 2): compares the distributions
  ``softmax(Δframe / τ)`` of consecutive-frame differences with a KL divergence
  (inter-frame motion).
- ``VideoPredictionLoss``: the study's total loss ``L = MSE + λ1·GDL + λ2·DDR`` (eq. 3).

Precision: every loss is computed in float32 with autocast switched off, so the losses are
the same whether the model ran under bf16/fp16 autocast or not; gradients still flow back to
a low-precision ``pred`` through the float32 cast. Non-contiguous (e.g. channels_last) inputs
are fine.
"""

from __future__ import annotations

import contextlib
import math
from numbers import Real

import kornia
import torch
import torch.nn as nn
import torch.nn.functional as F

DDR_EPS = 1e-12  # the TAU reference's eps inside the KL: p * log(p / (q + eps) + eps)


def _check_video_pair(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    """Raise ValueError unless pred and target are tensors of the same 5-D shape (B, T, C, H, W)."""
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError(f"{name}: pred and target must be torch tensors, got "
                         f"{type(pred).__name__} and {type(target).__name__}")
    if pred.ndim != 5 or pred.shape != target.shape:
        raise ValueError(f"{name}: pred and target must both have shape (B, T, C, H, W); got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")


def _check_number(where: str, name: str, value, minimum_exclusive: bool) -> float:
    """Return float(value) if it is a finite real number >= 0 (> 0 if minimum_exclusive)."""
    ok = (isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
          and (value > 0 if minimum_exclusive else value >= 0))
    if not ok:
        bound = "> 0" if minimum_exclusive else ">= 0"
        raise ValueError(f"{where}: {name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _autocast_off(device: torch.device):
    """Context that disables autocast on `device` (a no-op where autocast is unsupported)."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


def gradient_difference_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gradient Difference Loss, study eq. 1, averaged over batch, frames, C, H and W.

    GDL = mean_{b,t,c,h,w} [ (|I_x| − |Î_x|)² + (|I_y| − |Î_y|)² ]

    Gradients are kornia's first-order Sobel ``spatial_gradient(mode='sobel',
    normalized=True)``: the 3×3 Sobel kernels divided by 8, so a ramp of slope s gives s.
    This is kornia's default; the study only says "a Sobel operator through the Kornia
    library", so we assume the default (normalized=False would scale the GDL by 64). kornia
    replicates the border, so adding a constant to an image leaves its gradients, borders
    included, unchanged.

    Args:
        pred, target: (B, T, C, H, W) tensors.
    Returns:
        0-dim float32 tensor.
    """
    _check_video_pair(pred, target, "gradient_difference_loss")
    B, T, C, H, W = pred.shape
    with _autocast_off(pred.device):
        pred_frames = pred.float().reshape(B * T, C, H, W)
        true_frames = target.float().reshape(B * T, C, H, W)
        pred_grad = kornia.filters.spatial_gradient(pred_frames, mode="sobel", normalized=True)
        true_grad = kornia.filters.spatial_gradient(true_frames, mode="sobel", normalized=True)
        # (B·T, C, 2, H, W): axis 2 holds (d/dx, d/dy); sum the two terms, mean over the rest
        squared = (true_grad.abs() - pred_grad.abs()).pow(2)
        return squared.sum(dim=2).mean()


def differential_divergence_loss(pred: torch.Tensor, target: torch.Tensor,
                                 tau: float = 0.1) -> torch.Tensor:
    """Differential Divergence Regularization (TAU), study eq. 2, as the reference code computes it.

    For each sequence and each t in 1..T−1, the forward differences Δŷ_t = ŷ_{t+1} − ŷ_t and
    Δy_t are flattened over C·H·W and turned into distributions p = softmax(Δŷ_t / τ),
    q = softmax(Δy_t / τ). The result is ``mean(p · log(p / (q + eps) + eps))`` over ALL
    elements (B, T−1, C·H·W) with eps = 1e-12, i.e. KL(p‖q) per frame pair divided by C·H·W,
    then averaged over batch and frame pairs. Computed in float32.

    Like the reference, the loss is zero when T ≤ 2 (even though T = 2 has one difference);
    the zero is ``0 · sum(pred)``, so it is still connected to the graph.

    Args:
        pred, target: (B, T, C, H, W) tensors.
        tau: softmax temperature, > 0.
    Returns:
        0-dim float32 tensor.
    """
    _check_video_pair(pred, target, "differential_divergence_loss")
    tau = _check_number("differential_divergence_loss", "tau", tau, minimum_exclusive=True)
    B, T = pred.shape[:2]
    with _autocast_off(pred.device):
        if T <= 2:
            return pred.float().sum() * 0.0
        pred_diff = (pred[:, 1:].float() - pred[:, :-1].float()).reshape(B, T - 1, -1)
        true_diff = (target[:, 1:].float() - target[:, :-1].float()).reshape(B, T - 1, -1)
        p = F.softmax(pred_diff / tau, dim=-1)
        q = F.softmax(true_diff / tau, dim=-1)
        return (p * torch.log(p / (q + DDR_EPS) + DDR_EPS)).mean()




class VideoPredictionLoss(nn.Module):
    """The study's total loss, eq. 3: ``L = MSE + λ1·GDL + λ2·DDR``.

    MSE is the plain element mean (``F.mse_loss``), as used for training (the evaluation
    metric in ``vpstudy.metrics`` is a per-frame SUM instead). GDL and DDR are only computed
    when their weight is non-zero; otherwise they are reported as 0.

    Args:
        lambda1: GDL weight, finite and >= 0.
        lambda2: DDR weight, finite and >= 0.
        tau: DDR softmax temperature, > 0.

    forward(pred, target) with (B, T, C, H, W) tensors returns ``(total, parts)``: ``total`` a
    0-dim float32 tensor with grad, ``parts = {'mse', 'gdl', 'ddr'}`` the unweighted terms as
    detached 0-dim float32 tensors.
    """

    def __init__(self, lambda1: float = 0.0, lambda2: float = 0.0, tau: float = 0.1):
        super().__init__()
        where = "VideoPredictionLoss"
        self.lambda1 = _check_number(where, "lambda1", lambda1, minimum_exclusive=False)
        self.lambda2 = _check_number(where, "lambda2", lambda2, minimum_exclusive=False)
        self.tau = _check_number(where, "tau", tau, minimum_exclusive=True)

    def forward(self, pred: torch.Tensor, target: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        _check_video_pair(pred, target, "VideoPredictionLoss")
        with _autocast_off(pred.device):
            mse = F.mse_loss(pred.float(), target.float())
            total = mse
            zero = mse.new_zeros(())
            gdl = ddr = zero
            if self.lambda1 > 0:
                gdl = gradient_difference_loss(pred, target)
                total = total + self.lambda1 * gdl
            if self.lambda2 > 0:
                ddr = differential_divergence_loss(pred, target, self.tau)
                total = total + self.lambda2 * ddr
        parts = {"mse": mse.detach(), "gdl": gdl.detach(), "ddr": ddr.detach()}
        return total, parts

    def extra_repr(self) -> str:
        return f"lambda1={self.lambda1}, lambda2={self.lambda2}, tau={self.tau}"
