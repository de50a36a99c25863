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


def torchrun(root, nproc=2, target=None):
    """``vpstudy train`` under torchrun (or ``target``: [script, args...] instead)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    what = target or ["-m", "vpstudy", "train", *ARGS, "--runs", str(root), "--no-progress", "--no-baselines"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone", *what]
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


# Two ranks that stop after epoch 1, as a killed torchrun run leaves its checkpoint.
STOP_AFTER_ONE_EPOCH = """
import sys
from vpstudy.config import make_config
from vpstudy.train import train
train(make_config("smoke", model="gsta", epochs=2, batch_size=4), sys.argv[1], progress=False, log=None,
      _stop_after_epoch=1)
"""


@pytest.mark.slow
def test_a_resumed_torchrun_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path):
    torchrun(tmp_path / "whole")
    script = tmp_path / "stop_after_one_epoch.py"
    script.write_text(STOP_AFTER_ONE_EPOCH)
    torchrun(tmp_path / "part", target=[str(script), str(tmp_path / "part")])
    part = record(tmp_path / "part")
    assert part["status"] == "running" and len(part["history"]) == 1
    torchrun(tmp_path / "part")                     # resumes from epoch 1's checkpoint
    whole, resumed = record(tmp_path / "whole"), record(tmp_path / "part")
    assert resumed["status"] == "completed" and resumed["provenance"]["resumed_at"]
    # every rank holds the checkpoint's (rank-averaged) batch-norm statistics after each epoch
    assert [h["val"]["mse"] for h in resumed["history"]] == [h["val"]["mse"] for h in whole["history"]]
    for m in ("mse", "ssim"):
        assert resumed["test"][m] == whole["test"][m], m


def test_a_global_batch_that_does_not_split_is_refused_before_work(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        train(CFG, tmp_path, progress=False, log=None)
    assert not (tmp_path / runs.run_id(CFG.identity())).exists()
