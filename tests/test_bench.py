"""python -m vpstudy bench: structure and sanity of the result on a tiny configuration.

Timings are not compared with thresholds (the machine may be busy); only their signs and the
consistency of the derived numbers are checked.
"""

import json

import pytest
import torch

from vpstudy.__main__ import main
from vpstudy.bench import format_result, interleave, run_bench

TINY = dict(frame_size=16, rounds=2, warmup=1, eval_sequences=2, generator_sequences=8, matmul_size=512)
TINY_FLAGS = ["--frame-size", "16", "--batch-size", "2", "--rounds", "1", "--warmup", "1",
              "--eval-sequences", "2", "--generator-sequences", "8", "--matmul-size", "512",
              "--no-onnx", "--no-memory"]


@pytest.fixture(scope="module")
def result():
    return run_bench(["gsta"], [2], device="cpu", **TINY)


def test_result_structure_and_sane_values(result):
    assert {"hardware", "torch", "threads", "device", "matmul_peak", "models", "generator"} <= set(result)
    assert result["threads"] >= 1 and result["hardware"]["name"]
    (r,) = result["models"]
    assert (r["model"], r["batch_size"], r["frame_size"]) == ("gsta", 2, 16)
    assert r["input_shape"] == [10, 1, 16, 16]
    assert r["memory_format"] == "channels_last"
    assert r["step_s"] > 0 and r["fp32_eager_step_s"] > 0
    assert r["train_forward_flops_per_sample"] > 0
    flops = r["train_forward_flops_per_sample"]
    assert r["gflops_per_s"] == pytest.approx(3 * flops * 2 / r["step_s"] / 1e9)
    # the peak is the same run's matmul in the precision the step uses
    assert r["peak_precision"] == ("bf16" if r["precision"] == "bf16 autocast" else "fp32")
    assert r["peak_gflops_per_s"] == result["matmul_peak"][r["peak_precision"]]["gflops_per_s"] > 0
    assert 0 < r["fraction_of_peak"] <= 1.5 and 0 < r["fp32_eager_fraction_of_peak"] <= 1.5
    assert r["fp32_eager_over_step"] > 0
    assert r["fp32_eager_over_step"] == pytest.approx(r["fp32_eager_step_s"] / r["step_s"])
    assert r["eval_metric_frames_per_s"] > 0 and result["generator"]["sequences_per_s"] > 0
    assert all(len(v) == TINY["rounds"] and min(v) > 0 for v in result["times_s"].values())


def test_inference_latency_and_training_memory(result):
    (r,) = result["inference"].values()
    assert set(result["inference"]) == {"gsta"} and r["out_frames"] == 10
    for bs in (1, 16):
        assert r[f"eager_b{bs}_s"] > 0
        assert r[f"eager_b{bs}_ms_per_frame"] == pytest.approx(1e3 * r[f"eager_b{bs}_s"] / (bs * 10))
        if "onnxruntime_b1_s" in r:                  # where onnxruntime is installed
            assert r[f"onnxruntime_b{bs}_ms_per_frame"] > 0
    # the process's peak holds torch itself (well over 50 MB); the step adds its activations
    assert r["peak_rss_mb"] > 50 and 0 <= r["step_rss_mb"] < r["peak_rss_mb"]
    assert r["memory_batch_size"] == 2
    assert "inference, ms per predicted frame" in format_result(result)


def test_result_is_json_and_prints(result):
    assert json.loads(json.dumps(result)) == result
    assert set(result["provenance"]) == {"git_commit", "measured_at"} and result["provenance"]["measured_at"]
    text = format_result(result)
    assert "gsta batch 2" in text and "GFLOP/s" in text and "sequences/s" in text


def test_interleave_rotates_the_order_and_skips_warmup():
    order = []
    timers = {k: (lambda k=k: order.append(k) or 1.0) for k in "abc"}
    times = interleave(timers, rounds=2, warmup=1)
    assert order == list("abc" "bca" "cab")
    assert times == {k: [1.0, 1.0] for k in "abc"}


def test_cli_json_and_out(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", "gsta", *TINY_FLAGS, "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads(out.read_text())
    assert printed["models"][0]["model"] == "gsta" and printed["models"][0]["step_s"] > 0


@pytest.mark.parametrize("args, message", [
    (["--models", "last-frame"], "no trainable parameters"),
    (["--models", "nope"], "unknown model"),
    (["--rounds", "0"], "must be >= 1"),
])
def test_cli_rejects_bad_arguments_before_timing(args, message, capsys):
    assert main(["bench", *args]) == 2
    assert message in capsys.readouterr().err


def test_training_memory_is_the_fresh_process_own_peak_not_the_parents():
    import numpy as np

    from vpstudy.bench import training_peak_memory

    big = np.ones(2 * 2**30, dtype=np.uint8)          # this process's peak RSS: over 2 GiB
    mem = training_peak_memory("gsta", 2, 16, "auto", torch.device("cpu"))
    del big
    assert 50 < mem["peak_rss_mb"] < 1536             # a tiny gSTA step; ru_maxrss would say > 2048
