"""ONNX export: the exported graph predicts what PyTorch predicts (needs the 'onnx' extra)."""

from __future__ import annotations

import pytest
import torch

from vpstudy.__main__ import main
from vpstudy.export import export_onnx, onnx_predict, onnx_session
from vpstudy.models import build_model

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name, shape, out_frames", [
    ("sepcrev", (3, 1, 16, 16), 2), ("crevnet", (3, 1, 16, 16), 2), ("gsta", (4, 1, 16, 16), 4)])
def test_onnx_output_equals_pytorch(tmp_path, name, shape, out_frames):
    torch.manual_seed(0)
    model = build_model(name, in_shape=shape, out_frames=out_frames).eval()
    x = torch.rand(1, *shape)
    path = export_onnx(model, tmp_path / f"{name}.onnx", (1, *shape))
    assert not model.training
    with torch.no_grad():
        expected = model(x)                  # sepcrev: its fast path; the graph: its modules
    got = onnx_predict(onnx_session(path), x)
    assert got.shape == expected.shape == (1, out_frames, *shape[1:])
    assert ((got - expected).abs().max() / expected.abs().max()).item() < 1e-4


def test_cli_writes_the_graph(tmp_path, capsys):
    out = tmp_path / "g.onnx"
    assert main(["export", "gsta", "--onnx", str(out), "--frame-size", "16"]) == 0
    assert out.stat().st_size > 1_000_000 and "wrote" in capsys.readouterr().out


def test_cli_exports_a_trained_run_and_its_graph_predicts_what_the_run_predicts(tmp_path, capsys):
    from vpstudy.config import make_config
    from vpstudy.predict import load_predictor
    from vpstudy.train import train

    cfg = make_config("smoke", model="gsta", epochs=1)
    rec = train(cfg, tmp_path / "runs", progress=False, log=None)
    out = tmp_path / "trained.onnx"
    assert main(["export", "--run", rec["_dir"], "--onnx", str(out)]) == 0
    assert f"run {rec['id']}" in capsys.readouterr().out
    model, cfg, _ = load_predictor(run=rec["_dir"])
    x = torch.rand(2, *cfg.clip_shape)
    with torch.no_grad():
        expected = model(x)
    got = onnx_predict(onnx_session(out), x)                 # batch 2 through a batch-1 trace
    assert ((got - expected).abs().max() / expected.abs().max()).item() < 1e-4
    # a trained model keeps its run's frame size; a name beside --run is refused
    assert main(["export", "gsta", "--run", rec["_dir"], "--onnx", str(out)]) == 2
    assert "without a model name" in capsys.readouterr().err
    assert main(["export", "--onnx", str(out)]) == 2
