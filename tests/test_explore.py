"""The explorer's widgets, driven without a browser."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from vpstudy.explore import Explorer, available_runs, colour_bar_tile, compose, run_labels


@pytest.fixture(scope="module")
def two_seeds(trained_runs, tmp_path_factory):
    """The session's runs root plus the same poolformer config at seed 1 with a 3-digit test set."""
    from vpstudy.config import make_config
    from vpstudy.train import train

    root, rec, base = trained_runs
    copy = tmp_path_factory.mktemp("two_seeds")
    for d in (rec["_dir"], base["_dir"]):
        shutil.copytree(d, copy / Path(d).name)
    cfg = make_config("smoke", model="poolformer", epochs=1, batch_size=2, sequences_per_epoch=4,
                      val_sequences=4, test_sequences=6, precision="fp32", seed=1, extra_test_digits=[3])
    other = train(cfg, copy, progress=False, log=None)
    return copy, rec, other


def test_explorer_lists_runs_and_reacts_to_the_sliders(trained_runs):
    root, rec, base = trained_runs
    assert [c.run_id for c in available_runs(root)] == [rec["id"]]      # baselines: no record needed
    ex = Explorer(root)
    assert ex.runs.value == (rec["id"],) and ex.baselines["last-frame"].value
    assert ex.sample.max == 5 and (ex.time.min, ex.time.max) == (11, 20)    # frame numbers
    first, first_table = ex.image.value, ex.table.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    ex.sample.value = 3
    assert ex.image.value != first and ex.table.value != first_table
    after_sample = ex.image.value
    ex.time.value = 16
    assert ex.image.value != after_sample
    assert "target frame t=16" in ex.table.value and "<b>A</b>" in ex.table.value
    assert ex.table.value.count("<tr><td>") == 4          # MSE and SSIM rows: run A, last frame
    ex.baselines["all-black"].value = True
    assert ex.table.value.count("<tr><td>") == 6


def test_deselecting_every_run_clears_the_picture(trained_runs):
    root, rec, _ = trained_runs
    ex = Explorer(root)
    assert len(ex.image.value) > 100
    ex.runs.value = ()
    assert bytes(ex.image.value) == b"" and ex.table.value == ""
    assert "Choose at least one run" in ex.message.value
    ex.runs.value = (rec["id"],)
    assert bytes(ex.image.value)[:8] == b"\x89PNG\r\n\x1a\n"


def test_explorer_predictions_match_the_recorded_samples_and_baselines_the_registry(trained_runs):
    root, rec, _ = trained_runs
    ex = Explorer(root)
    with np.load(f"{rec['_dir']}/samples.npz") as f:
        recorded = f["predictions"][2].astype(np.float32) / 255
        inputs = f["inputs"][2].astype(np.float32) / 255
    live = ex.prediction(rec["id"], 2)
    assert np.abs(np.clip(live, 0, 1) - recorded).max() <= 1 / 255 + 1e-6
    seq = ex._sequence(2)
    assert np.abs(seq[:10] - inputs).max() <= 0.5 / 255 + 1e-6
    last = ex._baseline("last-frame", seq)
    assert last.shape == recorded.shape and np.array_equal(last[4], seq[9])
    assert not ex._baseline("all-black", seq).any()


def test_filters_narrow_the_list_but_keep_what_is_chosen(two_seeds):
    root, rec, other = two_seeds
    ex = Explorer(root)
    ids = [v for _, v in ex.runs.options]
    assert sorted(ids) == sorted([rec["id"], other["id"]])
    labels = dict((v, k) for k, v in ex.runs.options)
    assert labels[rec["id"]].startswith("poolformer seed 0") and labels[other["id"]].startswith("poolformer seed 1")
    assert ex.seed_filter.options == ("all", 0, 1) and ex.model_filter.options == ("all", "poolformer")
    ex.runs.value = (rec["id"],)
    ex.seed_filter.value = 1
    assert [v for _, v in ex.runs.options] == [rec["id"], other["id"]]   # chosen first, then the filtered
    ex.runs.value = ()
    assert [v for _, v in ex.runs.options] == [rec["id"], other["id"]]
    ex._refilter()
    assert [v for _, v in ex.runs.options] == [other["id"]]
    ex.table_filter.value = "ad hoc"
    assert [v for _, v in ex.runs.options] == [other["id"]]


def test_the_three_digit_test_set_of_a_run_that_has_one(two_seeds):
    root, _, other = two_seeds
    ex = Explorer(root)
    ex.runs.value = (other["id"],)
    assert [v for _, v in ex.test_set.options] == ["", "3"]
    two = ex._sequence(0)
    ex.test_set.value = "3"
    three = ex._sequence(0)
    assert "3 digits" in ex.message.value and not np.array_equal(two, three)
    assert three[:10].sum() > two[:10].sum()                 # a third digit: more bright pixels
    with np.load(Path(other["_dir"]) / "samples.npz") as f:
        recorded = f["predictions_3"][0].astype(np.float32) / 255
    assert np.abs(np.clip(ex.prediction(other["id"], 0, "3"), 0, 1) - recorded).max() <= 1 / 255 + 1e-6


def test_explorer_without_runs_says_how_to_make_one(tmp_path):
    ex = Explorer(tmp_path)
    assert "python -m vpstudy train" in ex.message.value
    assert ex.choices == []


def test_compose_lays_out_tiles():
    a = np.zeros((3, 3, 3), np.uint8)
    img = compose([[a, a], [a]])
    assert img.shape == (2 * 3 + 3 * 4, 2 * 3 + 3 * 4, 3)
    assert (img[4:7, 4:7] == 0).all() and (img[0] == 255).all()


def test_colour_bar_runs_from_black_to_yellow():
    bar = colour_bar_tile((96, 96, 3))
    assert bar.shape == (96, 96, 3)
    assert bar[0, 0].tolist() == [0, 0, 0] and bar[0, -1].tolist() == [255, 255, 0]
    assert bar[0, 48, 0] > 200 and bar[0, 48, 1] < 20                   # red at 0.5


def test_runs_are_labelled_by_what_differs_within_a_model_and_only_by_what_applies():
    a = {"model": "gsta", "lambda2": 0.0, "seed": 0, "profile": "cpu", "activation": "gelu"}
    b = {"model": "gsta", "lambda2": 0.1, "seed": 0, "profile": "cpu", "activation": "starrelu"}
    c = {"model": "incepu", "lambda2": 0.0, "seed": 2, "profile": "cpu", "activation": "gelu"}
    d = {"model": "crevnet", "lambda2": 0.0, "seed": 1, "profile": "smoke", "activation": "gelu"}
    assert run_labels([a, b, c, d]) == ["gsta gelu λ2=0.0 seed 0", "gsta starrelu λ2=0.1 seed 0",
                                        "incepu seed 2", "crevnet seed 1"]
    # the activation never labels a model whose activation is fixed
    e = {**d, "activation": "starrelu", "seed": 2}
    assert run_labels([d, e]) == ["crevnet seed 1", "crevnet seed 2"]


def test_study_runs_are_labelled_by_their_table_row_and_seed(tmp_path):
    from vpstudy import runs
    from vpstudy.study import study_runs

    run = next(r for r in study_runs("simvp", "smoke") if r.table == "Table 2" and r.row == "StarReLU")
    rd = runs.RunDir(tmp_path / run.run_id)
    rd.save({"id": run.run_id, "status": "completed", "config": run.config.to_dict(), "test": {"mse": 20.0}})
    frames = np.zeros((2, 10, 1, 32, 32), np.uint8)
    np.savez_compressed(rd.samples_path, inputs=frames, targets=frames, predictions=frames)
    (choice,) = available_runs(tmp_path)
    # one run, two rows (Table 2 StarReLU = Table 3 None {0, 0}): listed under both, named by the last
    assert choice.tables == ("simvp · Table 2", "simvp · Table 3")
    assert choice.label == "gsta · Table 3: None {0, 0} · seed 0 — test MSE 20.0 [recorded samples]"


def test_runs_without_checkpoint_show_their_recorded_samples(trained_runs, tmp_path):
    root, rec, base = trained_runs
    fresh = tmp_path / "clone"                          # as committed: records and samples only
    for d in (rec["_dir"], base["_dir"]):
        shutil.copytree(d, fresh / Path(d).name, ignore=shutil.ignore_patterns("checkpoint*"))
    (choice,) = available_runs(fresh)
    assert choice.run_id == rec["id"] and not choice.live
    assert "[recorded samples]" in choice.label
    ex = Explorer(fresh)
    assert "recorded in their samples.npz" in ex.message.value
    with np.load(Path(rec["_dir"]) / "samples.npz") as f:
        recorded = f["predictions"].astype(np.float32) / 255
    assert ex.sample.max == len(recorded) - 1
    assert np.array_equal(ex.prediction(rec["id"], 1), recorded[1])
    ex.sample.value = ex.sample.max
    assert ex.image.value[:8] == b"\x89PNG\r\n\x1a\n"


def test_shipped_weights_predict_any_test_sequence_and_the_three_digit_set(tmp_path):
    """As on a fresh clone: the shipped gSTA run's record and samples, no checkpoint."""
    from vpstudy.predict import predict, test_clip
    from vpstudy.weights import load_trained, manifest_entry

    run_id = manifest_entry("gsta")["run_id"]
    src = Path(__file__).resolve().parent.parent / "runs" / run_id
    shutil.copytree(src, tmp_path / run_id, ignore=shutil.ignore_patterns("checkpoint*"))
    (choice,) = available_runs(tmp_path)
    assert choice.weights == "gsta" and choice.live and "[shipped weights]" in choice.label
    ex = Explorer(tmp_path)
    assert ex.runs.value == (run_id,) and ex.sample.max == 499          # the whole fixed test set
    assert [v for _, v in ex.test_set.options] == ["", "3"]
    ex.sample.value = 123
    model, cfg = load_trained("gsta")
    np.testing.assert_allclose(ex.prediction(run_id, 123), predict(model, cfg, test_clip(cfg, 123).observed),
                               atol=1e-6)
    ex.test_set.value = "3"
    three = test_clip(cfg, 5, digits=3)
    np.testing.assert_allclose(ex._sequence(5)[:10], three.observed)
    assert "3 digits" in ex.message.value and bytes(ex.image.value)[:4] == b"\x89PNG"


def test_a_video_of_ones_own_is_converted_and_predicted(trained_runs, tmp_path):
    root, rec, _ = trained_runs
    ex = Explorer(root)
    video = np.zeros((24, 48, 64, 3), np.uint8)                  # a bright square moving right
    for t in range(24):
        video[t, 16:32, 2 * t: 2 * t + 12] = 255
    np.save(tmp_path / "mine.npy", video)
    ex.load_video(str(tmp_path / "mine.npy"))
    assert ex.test_set.value == "video" and "centre crop to 48x48" in ex.message.value
    seq = ex._sequence(0)
    assert seq.shape == (20, 1, 32, 32) and seq[:10].max() > 0.9
    assert ex.prediction(rec["id"], 0, "video").shape == (10, 1, 32, 32)
    assert "your video" in ex.table.value and ex.table.value.count("<tr><td>") == 4
    np.save(tmp_path / "short.npy", video[:12])                  # observed frames, no target
    ex.load_video(str(tmp_path / "short.npy"))
    assert "no target" in ex.message.value and "too short for a target" in ex.table.value
    np.save(tmp_path / "tiny.npy", video[:4])
    ex.load_video(str(tmp_path / "tiny.npy"))
    assert "Cannot use" in ex.message.value and "at least 10" in ex.message.value
