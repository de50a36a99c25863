"""KTH and BAIR through the trainer, on fixtures written in the real on-disk layouts."""

import pytest

from vpstudy.config import make_config
from vpstudy.data.fixtures import write_bair_png_fixture, write_kth_fixture
from vpstudy.data.video_datasets import KTH_ACTIONS
from vpstudy.study import missing_data
from vpstudy.train import train


def test_kth_run_trains_and_tests_on_the_test_persons(tmp_path):
    root = write_kth_fixture(tmp_path / "kth", persons=(1, 2, 17), actions=KTH_ACTIONS, frames=30,
                             size=(60, 80))
    cfg = make_config("smoke", dataset="kth", data_root=str(root), model="poolformer", in_frames=10,
                      out_frames=10, image_size=32, epochs=1, batch_size=2, sequences_per_epoch=4,
                      val_sequences=2, test_sequences=4, precision="fp32")
    rec = train(cfg, tmp_path / "runs", progress=False, log=None)
    assert rec["status"] == "completed"
    assert rec["test"]["num_sequences"] == 4 and len(rec["test"]["per_frame"]["psnr"]) == 10
    assert "KTH from" in rec["provenance"]["data_source"]
    # observe 10, predict 20 (the KTH protocol) for a window-free baseline
    cfg20 = make_config("smoke", dataset="kth", data_root=str(root), model="last-frame", in_frames=10,
                        out_frames=20, image_size=32, epochs=1, batch_size=1, sequences_per_epoch=1,
                        val_sequences=2, test_sequences=4)
    rec20 = train(cfg20, tmp_path / "runs", progress=False, log=None)
    assert len(rec20["test"]["per_frame"]["mse"]) == 20


def test_bair_png_tree_feeds_rgb_clips(tmp_path):
    root = tmp_path / "bair"
    write_bair_png_fixture(root, trajectories=3, split="train")
    write_bair_png_fixture(root, trajectories=2, split="test")
    cfg = make_config("smoke", dataset="bair", data_root=str(root), model="last-frame", epochs=1,
                      batch_size=1, sequences_per_epoch=1, val_sequences=2, test_sequences=2)
    rec = train(cfg, tmp_path / "runs", progress=False, log=None)
    assert rec["test"]["num_sequences"] == 2
    assert rec["efficiency"]["params"] == 0


def test_absent_data_is_reported_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv("VPSTUDY_KTH_DIR", raising=False)
    cfg = make_config("smoke", dataset="kth", data_root=str(tmp_path / "nowhere"), model="last-frame",
                      out_frames=20, image_size=128)
    reason = missing_data(cfg)
    assert reason and "KTH" in reason
    with pytest.raises(FileNotFoundError, match="VPSTUDY_KTH_DIR"):
        train(cfg, tmp_path / "runs", progress=False, log=None)


def test_kth_trains_on_20_frame_clips_and_validates_on_training_persons(tmp_path):
    from vpstudy.data.video_data import prepare, train_clip_frames

    root = write_kth_fixture(tmp_path / "kth", persons=(1, 2, 17), actions=KTH_ACTIONS, frames=30,
                             size=(60, 80))
    cfg = make_config("smoke", dataset="kth", data_root=str(root), model="crevnet", in_frames=10,
                      out_frames=20, image_size=32, batch_size=2, sequences_per_epoch=4,
                      val_sequences=2, test_sequences=2)
    assert train_clip_frames(cfg) == 20                  # PredRNN's --total_length 20
    data = prepare(cfg, __import__("torch").device("cpu"))
    x, y = next(data.train.epoch_batches(0))
    assert x.shape[1] == 10 and y.shape[1] == 10         # observe 10, predict 10 in training
    assert data.test.shape[1] == 30 and data.val.shape[1] == 30   # tested 10 -> 20
    assert "validation clips from the training split" in data.source


def test_study_recipes_differ_at_the_paper_profile():
    from vpstudy.study import study_runs

    lr = {r.row: r.config.lr for r in study_runs("lightweight", "paper") if r.table == "Table I"}
    assert lr == {"PredRNN": 3e-4, "PredRNN++": 1e-4, "CrevNet": 5e-4, "Proposed (sepcrev)": 0.002}
