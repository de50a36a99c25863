"""Model efficiency: parameters, size in bytes, FLOPs / MACs, latency. Model-agnostic.

Conventions (REFERENCE section 4): FLOPs are counted at batch 1 for one forward pass with
torch.utils.flop_counter.FlopCounterMode, which counts 2 FLOPs per multiply-add of convs
and matmuls (norms, activations and other elementwise ops are not counted). MACs are
FLOPs / 2 -- the unit the papers and OpenSTL quote. Always say which one you report.
"""

from __future__ import annotations

import operator
import statistics
import time
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """All parameters (trainable and frozen, shared ones once); buffers are not counted."""
    return sum(p.numel() for p in model.parameters())


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of the tensors in model.state_dict() (parameters + persistent buffers,
    e.g. BatchNorm running stats), each storage counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for t in model.state_dict().values():
        nbytes = t.numel() * t.element_size()
        key = (t.data_ptr(), nbytes)
        if nbytes and key in seen:
            continue
        seen.add(key)
        total += nbytes
    return total


def _check_shape(input_shape: tuple) -> tuple[int, ...]:
    """`input_shape` as a tuple of ints, or ValueError if it is not one of positive ints."""
    try:
        shape = tuple(operator.index(s) for s in input_shape)
    except TypeError:
        shape = ()
    if not shape or min(shape) < 1:
        raise ValueError(f"input_shape must be a tuple of positive ints like (1, 10, 1, 64, 64), got {input_shape!r}")
    return shape


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter (cpu/float32 if none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


@contextmanager
def _eval_no_grad(model: nn.Module) -> Iterator[None]:
    """Run in eval mode without autograd, then restore the model's train/eval state."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def count_flops(model: nn.Module, input_shape: tuple = (1, 10, 1, 64, 64)) -> dict[str, int]:
    """FLOPs and MACs of one forward pass on a random input of `input_shape`.

    Runs the model for real (eval mode, no grad) on its own device and dtype, so the
    count follows whatever control flow the model takes. Use batch 1 for the per-sample
    numbers the studies report. Returns {'macs': flops // 2, 'flops': flops}.

    The count depends only on shapes, so a model built under `torch.device("meta")`
    gives the same numbers without doing the arithmetic (handy for large models).
    """
    shape = _check_shape(input_shape)
    device, dtype = _model_device_dtype(model)
    x = torch.randn(shape, device=device, dtype=dtype)
    counter = FlopCounterMode(display=False)
    with _eval_no_grad(model), counter:
        model(x)
    flops = int(counter.get_total_flops())
    return {"macs": flops // 2, "flops": flops}


def count_step_flops(model: nn.Module, window_shape: tuple) -> dict[str, int]:
    """FLOPs and MACs of one recurrent step ``model.step(window)`` (window models of study 2).

    The lightweight-model study quotes its cost per 3-frame window step, e.g. 0.078 GMACs
    for the separable model on a 1×3×64×64 window.
    """
    device, dtype = _model_device_dtype(model)
    x = torch.randn(_check_shape(window_shape), device=device, dtype=dtype)
    counter = FlopCounterMode(display=False)
    with _eval_no_grad(model), counter:
        model.step(x)
    flops = int(counter.get_total_flops())
    return {"macs_per_step": flops // 2, "flops_per_step": flops}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(model: nn.Module, input_shape: tuple = (1, 10, 1, 64, 64),
                    device: str | torch.device = "cpu", repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time in seconds of one forward pass (eval mode, no grad).

    The model is moved to `device` for the measurement and moved back afterwards (its
    train/eval mode is restored too). `warmup` untimed passes run first; CUDA work is
    synchronised before each clock reading.
    """
    shape = _check_shape(input_shape)
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    target = torch.device(device)
    home, dtype = _model_device_dtype(model)
    model.to(target)
    try:
        x = torch.randn(shape, device=target, dtype=dtype)
        times = []
        with _eval_no_grad(model):
            for _ in range(warmup):
                model(x)
            for _ in range(repeats):
                _sync(target)
                start = time.perf_counter()
                model(x)
                _sync(target)
                times.append(time.perf_counter() - start)
    finally:
        model.to(home)
    return float(statistics.median(times))


def describe_model(model: nn.Module, input_shape: tuple = (1, 10, 1, 64, 64), *,
                   latency: bool = False, device: str | torch.device = "cpu",
                   repeats: int = 5) -> dict[str, float | int]:
    """One row of an efficiency table.

    Returns {'params', 'size_bytes', 'macs', 'flops'} for one whole forward pass (observe
    T_in frames, predict T_out) and, for window models (``window_frames`` set, and a ``step``
    method), also 'macs_per_step' and 'flops_per_step' for one window; with latency=True, also
    'latency_s' (median forward time on `device`, see measure_latency).
    """
    row: dict[str, float | int] = {
        "params": count_parameters(model),
        "size_bytes": model_size_bytes(model),
        **count_flops(model, input_shape),
    }
    if getattr(model, "window_frames", None):        # a VideoPredictor that steps on windows
        b, _, c, h, w = input_shape
        row.update(count_step_flops(model, (b, c, model.window_frames, h, w)))
    if latency:
        row["latency_s"] = measure_latency(model, input_shape, device=device, repeats=repeats)
    return row
