"""The inference graph of a model as ONNX, and its prediction with ONNX Runtime (optional
extra ``onnx``: ``pip install -e .[onnx]``).

    python -m vpstudy export sepcrev --onnx sepcrev.onnx

The graph maps ``frames`` (B, T_in, C, H, W) to ``future`` (B, out_frames, C, H, W), as the
model's ``forward`` in eval mode, traced at one input shape (recurrent loops are unrolled);
the batch dimension stays free.
CrevNet-style models export through their modules (`crevnet.module_path`): the small-map fast
path's packed matmuls would be traced with every weight expanded (and take minutes to export).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def export_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, ...]) -> Path:
    """Write ``model``'s inference graph at ``input_shape`` (B, T_in, C, H, W) to ``path``."""
    from vpstudy.models.crevnet import module_path

    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        x = torch.rand(*input_shape)
        with torch.no_grad(), module_path():
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17,
                              input_names=["frames"], output_names=["future"],
                              dynamic_axes={"frames": {0: "batch"}, "future": {0: "batch"}})
    finally:
        model.train(was_training)
    return path


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session for an exported graph (``threads``: intra-op threads)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("ONNX Runtime is not installed: pip install -e .[onnx]") from e
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_predict(session, frames: torch.Tensor) -> torch.Tensor:
    """The exported graph's prediction for ``frames`` (a CPU float32 tensor)."""
    out = session.run(None, {"frames": np.ascontiguousarray(frames.numpy(), dtype=np.float32)})[0]
    return torch.from_numpy(out)
