"""The trainer on real (tiny) runs: records, skipping, resume after a kill, failures."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vpstudy import runs
from vpstudy.checkpoints import CheckpointMismatch, load_checkpoint
from vpstudy.config import make_config
from vpstudy.train import TrainingDiverged, load_run_model, train

REPO = Path(__file__).resolve().parent.parent
TINY = dict(model="poolformer", epochs=2, batch_size=2, sequences_per_epoch=4, val_sequences=4,
            test_sequences=4)


def test_train_writes_a_complete_record_and_skips_a_completed_run(tmp_path):
    cfg = make_config("smoke", **TINY, lambda1=0.5, lambda2=0.1)
    rec = train(cfg, tmp_path, progress=False, log=None)
    assert rec["status"] == "completed"
    assert rec["config"]["lambda2"] == 0.1
    assert len(rec["history"]) == 2 and rec["history"][-1]["steps"] == 2
    assert set(rec["history"][0]) >= {"loss", "mse", "gdl", "ddr", "lr", "val", "seconds"}
    t = rec["test"]
    assert all(math.isfinite(t[k]) for k in ("mse", "mae", "ssim", "ssim_strict", "psnr"))
    assert len(t["per_frame"]["mse"]) == 10
    assert rec["efficiency"]["params"] == 5_172_993
    prov = rec["provenance"]
    for key in ("git_commit", "torch_version", "hardware", "data_source", "seed", "start_time",
                "end_time", "wall_time_s"):
        assert key in prov
    rd = runs.RunDir(Path(rec["_dir"]))
    assert rd.checkpoint_path.exists() and rd.samples_path.exists()
    # the same config again is not recomputed
    mtime = rd.record_path.stat().st_mtime_ns
    again = train(cfg, tmp_path, progress=False, log=None)
    assert again["test"] == rec["test"] and rd.record_path.stat().st_mtime_ns == mtime
    # forcing moves the old run aside instead of overwriting it
    train(cfg, tmp_path, progress=False, log=None, force=True)
    assert len([p for p in tmp_path.iterdir() if ".replaced-" in p.name]) == 1
    df = runs.load_runs(tmp_path)
    assert len(df) == 1 and df["lambda2"].item() == 0.1


def test_last_frame_baseline_needs_no_training(tmp_path):
    rec = train(make_config("smoke", **{**TINY, "model": "last-frame"}), tmp_path, progress=False, log=None)
    assert rec["history"] == [] and rec["efficiency"]["params"] == 0
    assert rec["test"]["mse"] > 0


def test_checkpoint_from_another_config_or_model_is_refused(tmp_path):
    cfg = make_config("smoke", **TINY)
    rec = train(cfg, tmp_path, progress=False, log=None)
    ckpt = Path(rec["_dir"]) / "checkpoint.pt"
    other = make_config("smoke", **{**TINY, "lambda2": 0.3})
    with pytest.raises(CheckpointMismatch, match="differing fields.*lambda2"):
        load_checkpoint(ckpt, other)
    from vpstudy.models import build_model
    with pytest.raises(CheckpointMismatch, match="does not fit model"):
        load_checkpoint(ckpt, None, build_model("gsta"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatch, match="corrupt"):
        load_checkpoint(bad)
    model, cfg2 = load_run_model(rec["_dir"])
    assert cfg2 == cfg and sum(p.numel() for p in model.parameters()) == 5_172_993


def test_nan_loss_stops_the_run_and_marks_it_failed(tmp_path, monkeypatch):
    import vpstudy.train as T

    def nan_loss(model, x, y, criterion, progress):
        out = model(x)
        return (out * float("nan")).mean(), {}
    monkeypatch.setattr(T, "loss_of", nan_loss)
    cfg = make_config("smoke", **TINY)
    with pytest.raises(TrainingDiverged, match="became nan"):
        train(cfg, tmp_path, progress=False, log=None)
    rec = runs.RunDir(tmp_path / runs.run_id(cfg.identity())).load()
    assert rec["status"] == "failed" and "Lower the learning rate" in rec["error"]


def test_an_exploding_loss_stops_the_run_after_its_epoch_and_marks_it_failed(tmp_path, monkeypatch):
    """Finite but 1000x its first epoch's mean in the second (as sepcrev at lr 3e-2, seed 1)."""
    import vpstudy.train as T

    def exploding_loss(model, x, y, criterion, progress):
        loss = (model(x) - y).abs().mean() * 0 + 1.0       # 1.0 in epoch 1, 1000 in epoch 2
        return loss * (1000.0 if progress > 0.5 else 1.0), {}
    monkeypatch.setattr(T, "loss_of", exploding_loss)
    cfg = make_config("smoke", **TINY)
    with pytest.raises(TrainingDiverged, match="exploded at epoch 2: its mean was 1000, 1,000x"):
        train(cfg, tmp_path, progress=False, log=None)
    rec = runs.RunDir(tmp_path / runs.run_id(cfg.identity())).load()
    assert rec["status"] == "failed" and [h["loss"] for h in rec["history"]] == [1.0, 1000.0]


@pytest.mark.parametrize("losses, exploded", [([0.07, 0.068, 885.0], True), ([0.5, 0.1, 0.3, 9.0], False),
                                              ([1.0], False), ([0.2, 0.1, 0.09], False)])
def test_check_not_exploded_only_flags_a_rise_past_the_threshold(losses, exploded):
    from vpstudy.train import EXPLODED, check_not_exploded

    history = [{"epoch": i + 1, "loss": v} for i, v in enumerate(losses)]
    assert EXPLODED == 100
    if exploded:
        with pytest.raises(TrainingDiverged, match="Lower the learning rate"):
            check_not_exploded(history, lr=0.03)
    else:
        check_not_exploded(history, lr=0.03)


def _cli(root, *extra):
    args = [sys.executable, "-m", "vpstudy", "train", "--profile", "smoke", "--model", "poolformer",
            "--epochs", "4", "--batch-size", "2", "--sequences-per-epoch", "6", "--val-sequences", "2",
            "--test-sequences", "4", "--runs", str(root), "--no-progress", "--no-baselines", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return args, env


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
    # uninterrupted reference run
    args, env = _cli(tmp_path / "a", "--json")
    ref = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    ref_rec = json.loads(ref.stdout.strip().splitlines()[-1])

    # the same run, killed with SIGKILL after its first epoch's checkpoint, then resumed
    args, env = _cli(tmp_path / "b")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = tmp_path / "b" / ref_rec["id"] / "record.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        if record.exists() and len(json.loads(record.read_text())["history"]) >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = json.loads(record.read_text())
    assert killed["status"] == "running" and 1 <= len(killed["history"]) < 4

    args, env = _cli(tmp_path / "b", "--json")
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "resuming run" in res.stdout
    rec = json.loads(res.stdout.strip().splitlines()[-1])
    assert rec["status"] == "completed" and len(rec["history"]) == 4
    assert rec["provenance"]["resumed_at"]
    assert rec["test"] == ref_rec["test"]
    assert [h["loss"] for h in rec["history"]] == [h["loss"] for h in ref_rec["history"]]
    a = torch.load(tmp_path / "a" / ref_rec["id"] / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / ref_rec["id"] / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
