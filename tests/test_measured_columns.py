"""The efficiency tables' measured columns: latency and memory from committed bench results."""

import json

from vpstudy.report.tables import (
    MEASURED_COLUMNS,
    measured_cells,
    measured_inference,
    measured_steps,
    unrun_cost_text,
)


def write(folder, name, inference, hardware="CPU (test, 2 threads)"):
    (folder / name).write_text(json.dumps({"hardware": {"name": hardware}, "threads": 2, "frame_size": 32,
                                           "inference": inference}))


def test_cells_from_the_latest_bench_file(tmp_path):
    write(tmp_path, "a.json", {"sepcrev": {"eager_b1_ms_per_frame": 9.0}})
    write(tmp_path, "b.json", {"sepcrev": {"eager_b1_ms_per_frame": 1.234, "eager_b16_ms_per_frame": 0.5,
                                           "onnxruntime_b1_ms_per_frame": 2.0, "peak_rss_mb": 812.4,
                                           "memory_batch_size": 8}})
    (tmp_path / "old.json").write_text(json.dumps({"hardware": {"name": "x"}, "models": []}))  # no inference
    measured = measured_inference(tmp_path)
    assert set(measured) == {"sepcrev"}
    cells = measured_cells("sepcrev", measured)
    assert list(cells) == list(MEASURED_COLUMNS)
    assert cells["latency ms/frame, batch 1 · 16"] == "1.23 · 0.50"
    assert cells["ONNX Runtime ms/frame, batch 1 · 16"] == "2.00 · –"
    assert cells["training-step peak RSS"] == "812 MB (batch 8)"
    assert cells["measured on"] == "CPU (test, 2 threads), 2 threads, 32×32 frames (b.json)"
    assert measured_cells("predrnn", measured)[MEASURED_COLUMNS[0]] == "not measured"


def write_steps(folder, name, models, device="cpu"):
    (folder / name).write_text(json.dumps({"hardware": {"name": "CPU (test, 2 threads)"}, "threads": 2,
                                           "frame_size": 32, "device": device, "models": models}))


def test_an_unrun_row_states_its_measured_cost(tmp_path):
    step = {"model": "predrnn", "batch_size": 8, "frame_size": 32, "precision": "bf16"}
    write_steps(tmp_path, "a.json", [{**step, "step_s": 99.0}])
    write_steps(tmp_path, "b.json", [{**step, "step_s": 9.9}, {**step, "batch_size": 16, "step_s": 20.0}])
    write_steps(tmp_path, "c.json", [{**step, "step_s": 0.1}], device="cuda")      # not this CPU
    measured = measured_steps(tmp_path)
    assert measured[("predrnn", 8, 32)]["step_s"] == 9.9
    text = unrun_cost_text("predrnn", 8, 32, 2500, "cpu", measured)
    assert "9.90 s" in text and "2,500 steps" in text and "≈6.9 h per seed" in text and "CPU (test, 2 threads)" in text
    assert "b.json" in text and "bf16" in text and "in fp32" not in text
    measured[("predrnn", 8, 32)]["fp32_eager_step_s"] = 14.4
    text = unrun_cost_text("predrnn", 8, 32, 2500, "cpu", measured, table_fp32=True)
    assert text.endswith("; in fp32, the precision of the table's trained rows (which a comparison "
                         "with them needs), 14.40 s per step: ≈10.0 h per seed")
    measured[("predrnn", 8, 32)]["precision"] = "fp32"                        # said once, not twice
    assert "in fp32" not in unrun_cost_text("predrnn", 8, 32, 2500, "cpu", measured, table_fp32=True)
    assert unrun_cost_text("predrnn", 4, 32, 2500, "cpu", measured) == ""    # not measured at batch 4
    assert unrun_cost_text("predrnn", 8, 32, None, "cpu", measured) == ""    # no budget to multiply


def test_the_latest_measurement_wins_whatever_the_file_names(tmp_path):
    def bench(name, when, ms):
        result = {"hardware": {"name": "CPU"}, "threads": 2, "frame_size": 32, "device": "cpu",
                  "inference": {"gsta": {"eager_b1_ms_per_frame": ms}},
                  "models": [{"model": "gsta", "batch_size": 8, "frame_size": 32, "precision": "bf16",
                              "step_s": ms}]}
        if when:
            result["provenance"] = {"measured_at": when, "git_commit": "abc"}
        (tmp_path / name).write_text(json.dumps(result))

    bench("z-old.json", None, 1.0)                          # from before measured_at was recorded
    bench("b-new.json", "2026-12-02T19:30:00+00:00", 2.0)
    bench("a-mid.json", "2026-11-30T10:00:00+00:00", 3.0)
    assert measured_inference(tmp_path)["gsta"]["eager_b1_ms_per_frame"] == 2.0
    assert measured_steps(tmp_path)[("gsta", 8, 32)]["step_s"] == 2.0


def test_a_measurement_at_another_frame_size_is_not_shown(tmp_path):
    write(tmp_path, "b.json", {"sepcrev": {"eager_b1_ms_per_frame": 1.0}})     # measured at 32x32
    measured = measured_inference(tmp_path)
    assert measured_cells("sepcrev", measured, frame_size=32)[MEASURED_COLUMNS[0]] == "1.00 · –"
    assert measured_cells("sepcrev", measured, frame_size=128)[MEASURED_COLUMNS[0]] == "not measured at 128×128"
