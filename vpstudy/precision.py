"""Where and in which precision a run computes: the device, bf16 autocast, and the memory
format of the model's convolutions.

- ``device='auto'`` is CUDA when there is a GPU, else the CPU.
- ``precision='auto'`` trains under bf16 autocast on devices that compute bf16 natively (CUDA;
  CPUs with AVX512-BF16/AMX via oneDNN), unless the model's registry info says bf16 is slower
  for it on that device type (``fp32_on``, measured by ``python -m vpstudy bench``);
  ``'bf16'`` forces autocast, ``'fp32'`` turns it off.
- Models train channels-last (2D or 3D, after their weights).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from vpstudy.config import TrainConfig
from vpstudy.models import model_info


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA GPU is available; use device='cpu' or 'auto'")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (CUDA; CPUs with AVX512-BF16/AMX via oneDNN)."""
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast under ``precision='bf16'``, or under ``'auto'`` where the device has native
    bf16, unless the model's registry info says bf16 is slower for it on this device type
    (``fp32_on``, measured by ``python -m vpstudy bench``)."""
    if cfg.precision == "bf16":
        return torch.bfloat16
    if cfg.precision == "auto" and native_bf16(device):
        if device.type in model_info(cfg.model).get("fp32_on", ()):
            return None
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)




def memory_format_for(model: nn.Module) -> torch.memory_format:
    """Channels-last for the model's convolutions: 2D (SimVP) or 3D (CrevNet-style) weights."""
    if any(p.dim() == 5 for p in model.parameters()):
        return torch.channels_last_3d
    return torch.channels_last
