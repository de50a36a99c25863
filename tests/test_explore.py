"""The explorer's widgets, driven without a browser."""

import numpy as np

from vpstudy.explore import Explorer, available_runs, compose


def test_explorer_lists_runs_and_reacts_to_the_sliders(trained_runs):
    root, rec, base = trained_runs
    ids = {c.run_id for c in available_runs(root)}
    assert ids == {rec["id"], base["id"]}
    ex = Explorer(root)
    assert set(ex.runs.value) == ids
    assert ex.sample.max == 5 and ex.time.max == 9
    first, first_table = ex.image.value, ex.table.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    ex.sample.value = 3
    assert ex.image.value != first and ex.table.value != first_table
    after_sample = ex.image.value
    ex.time.value = 5
    assert ex.image.value != after_sample
    assert "time step 6" in ex.table.value
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
