import json
import os

import pytest

from vpstudy import runs
from vpstudy.config import make_config


def test_run_id_is_stable_and_config_sensitive():
    a = make_config("smoke", lambda2=0.1).identity()
    b = make_config("smoke", lambda2=0.1).identity()
    c = make_config("smoke", lambda2=0.5).identity()
    assert runs.run_id(a) == runs.run_id(b)
    assert runs.run_id(a) != runs.run_id(c)
    assert runs.run_id(a).startswith("gsta-smoke-s0-")


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = tmp_path / "x" / "record.json"
    runs.atomic_write_json(p, {"a": 1})
    runs.atomic_write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    assert os.listdir(p.parent) == ["record.json"]


def test_lock_is_exclusive_and_stale_locks_are_taken_over(tmp_path):
    rd = runs.RunDir(tmp_path / "r")
    with rd.lock():
        with pytest.raises(runs.RunLockedError, match="in use by another process"):
            with rd.lock():
                pass
    # a lock left by a dead process (pid that cannot exist) is stale
    (tmp_path / "r" / "lock").write_text(f"999999999 {runs.socket.gethostname()}\n")
    with rd.lock():
        pass
    assert not (tmp_path / "r" / "lock").exists()


def test_move_aside_never_overwrites(tmp_path):
    rd = runs.RunDir(tmp_path / "r")
    rd.save({"status": "completed"})
    moved = rd.move_aside()
    assert moved.exists() and ".replaced-" in moved.name
    assert not rd.exists()
    assert list(runs.iter_run_dirs(tmp_path)) == []       # moved-aside runs are not loaded


def test_load_runs_dataframe(tmp_path):
    for i, l2 in enumerate([0.0, 0.1]):
        rd = runs.RunDir(tmp_path / f"r{i}")
        rd.save({"id": f"r{i}", "status": "completed", "config": {"model": "gsta", "lambda2": l2},
                 "test": {"mse": 40.0 + i, "ssim": 0.9, "per_frame": {"mse": [1, 2]}},
                 "efficiency": {"params": 6456065}, "provenance": {"wall_time_s": 3.0},
                 "history": [{}, {}]})
    runs.RunDir(tmp_path / "failed").save({"id": "f", "status": "failed", "config": {"model": "gsta"}})
    df = runs.load_runs(tmp_path)
    assert list(df["lambda2"]) == [0.0, 0.1]
    assert list(df["test_mse"]) == [40.0, 41.0]
    assert df["params"].tolist() == [6456065, 6456065]
    assert len(runs.load_runs(tmp_path, status=None)) == 3


def test_git_commit_reported(tmp_path, monkeypatch):
    import re

    if (runs.REPO / ".git").exists():                  # a checkout: its HEAD, maybe +dirty
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", runs.git_commit())
    monkeypatch.setenv("VPSTUDY_GIT_COMMIT", "a" * 40)   # a copy without git metadata
    assert runs.git_commit(tmp_path) == "a" * 40
    monkeypatch.delenv("VPSTUDY_GIT_COMMIT")
    assert runs.git_commit(tmp_path) is None


def test_mark_failed_leaves_a_run_another_process_is_training(tmp_path, lock_held_elsewhere):
    rd = runs.RunDir(tmp_path / "r")
    rd.save({"id": "r", "status": "running", "config": {}, "history": []})
    lock_held_elsewhere(rd)
    runs.mark_failed(rd, "RunLockedError: in use")
    assert rd.load()["status"] == "running"                # the other process's run, untouched
    (rd.path / "lock").unlink()
    with rd.lock():                                        # our own lock: our run to mark
        runs.mark_failed(rd, "ValueError: boom")
    assert rd.load()["status"] == "failed" and rd.load()["error"] == "ValueError: boom"
