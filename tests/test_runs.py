import json
import os

import pytest

from vpstudy import runs
from vpstudy.config import TrainConfig, make_config


def test_run_id_is_stable_and_config_sensitive():
    a = make_config("smoke", lambda2=0.1).identity()
    b = make_config("smoke", lambda2=0.1).identity()
    c = make_config("smoke", lambda2=0.5).identity()
    assert runs.run_id(a) == runs.run_id(b)
    assert runs.run_id(a) != runs.run_id(c)
    assert runs.run_id(a).startswith("gsta-smoke-s0-")


def test_test_set_key_names_what_the_test_set_depends_on():
    cfg = make_config("cpu", seed=0).to_dict()
    assert runs.test_set_key(cfg) == runs.test_set_key({**cfg, "seed": 3, "lr": 0.5, "model": "incepu"})
    for field, other in [("test_sequences", 7), ("num_digits", 3), ("downsample", 1), ("test_file", "x.npy")]:
        assert runs.test_set_key(cfg) != runs.test_set_key({**cfg, field: other}), field
    # a record written before a field existed is keyed with that field's default
    full = make_config("cpu", seed=0, data_root=None).to_dict()
    assert runs.test_set_key({k: v for k, v in full.items() if k != "digit_source"}) == runs.test_set_key(full)
    assert runs.test_set_key({}) == runs.test_set_key(TrainConfig().to_dict())


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
        cfg = make_config("smoke", lambda2=l2)
        rid = runs.run_id(cfg.identity())
        rd = runs.RunDir(tmp_path / rid)
        rd.save({"id": rid, "status": "completed", "config": cfg.to_dict(),
                 "test": {"mse": 40.0 + i, "ssim": 0.9, "per_frame": {"mse": [1, 2]}},
                 "efficiency": {"params": 6456065}, "provenance": {"wall_time_s": 3.0},
                 "history": [{}, {}]})
    runs.RunDir(tmp_path / "failed").save({"id": "failed", "status": "failed", "config": {}})
    df = runs.load_runs(tmp_path)
    assert sorted(zip(df["lambda2"], df["test_mse"])) == [(0.0, 40.0), (0.1, 41.0)]
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


def _completed(root, mse=20.0, **config):
    cfg = make_config("smoke", **config)
    rid = runs.run_id(cfg.identity())
    rd = runs.RunDir(root / rid)
    rd.save({"id": rid, "status": "completed", "config": cfg.to_dict(), "test": {"mse": mse}})
    return rd


def _published(root):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs = runs.load_records(root)
    return {r["id"]: r["test"]["mse"] for r in recs}, [str(w.message) for w in caught
                                                      if issubclass(w.category, runs.RefusedRecord)]


def test_records_carry_a_digest_and_edited_copied_or_linked_records_are_not_published(tmp_path):
    import shutil

    root = tmp_path / "runs"
    rd = _completed(root)
    other = _completed(root, lambda2=0.1)
    stored = json.loads(rd.record_path.read_text())
    assert stored["digest"] == runs.content_digest(stored)
    assert _published(root) == ({rd.id: 20.0, other.id: 20.0}, [])
    # an edited metric: the digest no longer matches
    stored["test"]["mse"] = 12.35
    rd.record_path.write_text(json.dumps(stored))
    shown, refused = _published(root)
    assert rd.id not in shown and other.id in shown
    assert refused == [f"skipping run record {rd.record_path}: its content does not match its digest "
                       f"(edited after the run wrote it)"]
    # an edited config in a record without a digest (as older records are): it no longer hashes to its id
    legacy = {k: v for k, v in json.loads(other.record_path.read_text()).items() if k != "digest"}
    legacy["config"]["lr"] = 0.5
    other.record_path.write_text(json.dumps(legacy))
    assert any(f"{other.id}/record.json: its config does not hash to its id" in r for r in _published(root)[1])
    # a copied directory with other numbers: the copy is refused, the original stays
    fresh = _completed(root, lambda2=0.5)
    shutil.copytree(fresh.path, root / f"{fresh.id}.bak")
    shown, refused = _published(root)
    assert fresh.id in shown and any(f"{fresh.id}.bak" in r and "not its directory's name" in r for r in refused)
    # a link to a run directory outside the runs root
    outside = _completed(tmp_path / "elsewhere", lambda1=0.5)
    (root / outside.id).symlink_to(outside.path, target_is_directory=True)
    shown, refused = _published(root)
    assert outside.id not in shown and any("outside the runs root" in r for r in refused)
