"""Data-parallel training with torchrun (gloo, two CPU processes) against one process."""

import json
import os
import subprocess
import sys

import pytest

from vpstudy import runs
from vpstudy.config import make_config
from vpstudy.train import train

ARGS = ["--profile", "smoke", "--model", "gsta", "--epochs", "2", "--batch-size", "4"]
CFG = make_config("smoke", model="gsta", epochs=2, batch_size=4)
# The ranks train on the two halves of each global batch and average gradients, so the run
# is the single-process run up to batch-norm statistics (per half) and summation order.
TOLERANCE = 0.01          # relative, on test MSE and SSIM


def torchrun(root, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone",
           "-m", "vpstudy", "train", *ARGS, "--runs", str(root), "--no-progress", "--no-baselines"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def record(root):
    return json.loads((root / runs.run_id(CFG.identity()) / "record.json").read_text())


@pytest.mark.slow
def test_torchrun_two_processes_train_like_one(tmp_path):
    out = torchrun(tmp_path / "ddp")
    assert out.count("completed: test mse") == 1                  # rank 0 alone reports
    dirs = [p for p in (tmp_path / "ddp").iterdir()]
    assert [p.name for p in dirs] == [runs.run_id(CFG.identity())]  # one record, same identity
    ddp = record(tmp_path / "ddp")
    one = train(CFG, tmp_path / "one", progress=False, log=None)
    assert ddp["status"] == "completed" and ddp["provenance"]["world_size"] == 2
    assert one["provenance"]["world_size"] == 1
    assert ddp["test"]["num_sequences"] == one["test"]["num_sequences"] == CFG.test_sequences
    for m in ("mse", "ssim"):
        assert ddp["test"][m] == pytest.approx(one["test"][m], rel=TOLERANCE), m


@pytest.mark.slow
def test_torchrun_resumes_a_run_interrupted_after_one_epoch(tmp_path):
    root = tmp_path / "runs"
    part = train(CFG, root, progress=False, log=None, _stop_after_epoch=1)   # as if killed
    assert part["status"] == "running" and len(part["history"]) == 1
    torchrun(root)
    rec = record(root)
    assert rec["status"] == "completed" and len(rec["history"]) == 2
    assert rec["provenance"]["resumed_at"] and rec["provenance"]["world_size"] == 2
    one = train(CFG, tmp_path / "one", progress=False, log=None)
    assert rec["test"]["mse"] == pytest.approx(one["test"]["mse"], rel=TOLERANCE)


def test_a_global_batch_that_does_not_split_is_refused_before_work(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        train(CFG, tmp_path, progress=False, log=None)
    assert not (tmp_path / runs.run_id(CFG.identity())).exists()
