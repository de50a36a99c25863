"""The explorer's widgets, driven without a browser."""

from pathlib import Path

import numpy as np

from vpstudy.explore import Explorer, available_runs, compose


def test_explorer_lists_runs_and_reacts_to_the_sliders(trained_runs):
    root, rec, base = trained_runs
    ids = {c.run_id for c in available_runs(root)}
    assert ids == {rec["id"], base["id"]}
    ex = Explorer(root)
    assert set(ex.runs.value) == ids
    assert ex.sample.max == 5 and (ex.time.min, ex.time.max) == (11, 20)    # frame numbers
    first, first_table = ex.image.value, ex.table.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    ex.sample.value = 3
    assert ex.image.value != first and ex.table.value != first_table
    after_sample = ex.image.value
    ex.time.value = 16
    assert ex.image.value != after_sample
    assert "target frame t=16" in ex.table.value and "<b>A</b>" in ex.table.value
    assert ex.table.value.count("<tr><td>") == 4          # MSE and SSIM rows for each run
    ex.runs.value = (base["id"],)
    assert ex.table.value.count("<tr><td>") == 2


def test_explorer_predictions_match_the_recorded_samples(trained_runs):
    root, rec, _ = trained_runs
    ex = Explorer(root)
    with np.load(f"{rec['_dir']}/samples.npz") as f:
        recorded = f["predictions"][2].astype(np.float32) / 255
    live = ex.prediction(rec["id"], 2)
    assert np.abs(np.clip(live, 0, 1) - recorded).max() <= 1 / 255 + 1e-6


def test_explorer_without_runs_says_how_to_make_one(tmp_path):
    ex = Explorer(tmp_path)
    assert "python -m vpstudy train" in ex.message.value
    assert ex.choices == []


def test_compose_lays_out_tiles():
    a = np.zeros((3, 3, 3), np.uint8)
    img = compose([[a, a], [a]])
    assert img.shape == (2 * 3 + 3 * 4, 2 * 3 + 3 * 4, 3)
    assert (img[4:7, 4:7] == 0).all() and (img[0] == 255).all()


def test_runs_are_labelled_by_what_differs():
    from vpstudy.explore import run_labels

    a = {"model": "gsta", "lambda2": 0.0, "seed": 0, "profile": "cpu"}
    b = {"model": "gsta", "lambda2": 0.1, "seed": 0, "profile": "cpu"}
    c = {"model": "incepu", "lambda2": 0.0, "seed": 2, "profile": "cpu"}
    assert run_labels([a, b, c]) == ["gsta λ2=0.0 seed 0", "gsta λ2=0.1 seed 0", "incepu λ2=0.0 seed 2"]
    assert run_labels([a]) == ["gsta"]


def test_runs_without_checkpoint_show_their_recorded_samples(trained_runs, tmp_path):
    import shutil

    root, rec, base = trained_runs
    fresh = tmp_path / "clone"                          # as committed: records and samples only
    for d in (rec["_dir"], base["_dir"]):
        shutil.copytree(d, fresh / Path(d).name, ignore=shutil.ignore_patterns("checkpoint*"))
    choices = {c.run_id: c for c in available_runs(fresh)}
    assert set(choices) == {rec["id"], base["id"]}
    assert not choices[rec["id"]].live and choices[base["id"]].live   # a baseline has no weights
    assert "[recorded samples]" in choices[rec["id"]].label
    ex = Explorer(fresh)
    assert "recorded in their samples.npz" in ex.message.value
    with np.load(Path(rec["_dir"]) / "samples.npz") as f:
        recorded = f["predictions"].astype(np.float32) / 255
    assert ex.sample.max == len(recorded) - 1
    assert np.array_equal(ex.prediction(rec["id"], 1), recorded[1])
    ex.sample.value = ex.sample.max
    assert ex.image.value[:8] == b"\x89PNG\r\n\x1a\n"
