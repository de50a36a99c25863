"""Runs and reports that cannot be lost or silently corrupted (issue 9).

Each test drives the real code path (library or CLI) into one failure a new user can
cause, and checks the outcome: an exit code and an ``error:`` line naming the file or
path, a record marked ``failed``, nothing overwritten.
"""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vpstudy import runs
from vpstudy.__main__ import main
from vpstudy.checkpoints import CheckpointMismatch, CorruptCheckpoint, load_checkpoint
from vpstudy.config import make_config
from vpstudy.data import DataError, load_mnist_test_seq
from vpstudy.train import train

TINY = dict(model="poolformer", epochs=2, batch_size=2, sequences_per_epoch=4, val_sequences=4,
            test_sequences=4)
TINY_FLAGS = ["--profile", "smoke", "--model", "poolformer", "--epochs", "2", "--batch-size", "2",
              "--sequences-per-epoch", "4", "--val-sequences", "4", "--test-sequences", "4",
              "--no-progress", "--no-baselines"]


def _run_dir(root: Path, cfg) -> runs.RunDir:
    return runs.RunDir(root / runs.run_id(cfg.identity()))


@pytest.fixture
def no_data_preparation(monkeypatch):
    """Fail loudly if a test reaches data preparation (the checks must come before it)."""
    import vpstudy.train as T

    def boom(cfg, device):
        raise AssertionError("data preparation was reached")
    monkeypatch.setattr(T, "prepare_data", boom)


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


# ---------------------------------------------------------------- 1. --force and the lock


def test_force_refuses_a_run_locked_by_a_live_process(tmp_path, capsys, live_pid, no_data_preparation):
    cfg = make_config("smoke", **TINY)
    rd = _run_dir(tmp_path, cfg)
    rd.save({"id": rd.id, "status": "running", "config": cfg.to_dict(), "history": []})
    host = socket.gethostname()
    (rd.path / "lock").write_text(f"{live_pid} {host}\n")
    for extra in (["--force"], []):
        assert main(["train", *TINY_FLAGS, "--runs", str(tmp_path), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert f"pid {live_pid} on host {host}" in err and str(rd.path) in err
    assert [p.name for p in tmp_path.iterdir()] == [rd.id]          # nothing moved aside
    assert (rd.path / "lock").read_text().split()[0] == str(live_pid)
    assert rd.status() == "running"


def test_force_moves_an_unlocked_run_aside_without_its_lock(tmp_path):
    cfg = make_config("smoke", model="last-frame", test_sequences=4, val_sequences=4)
    first = train(cfg, tmp_path, progress=False, log=None)
    second = train(cfg, tmp_path, force=True, progress=False, log=None)
    assert second["status"] == "completed"
    (moved,) = [p for p in tmp_path.iterdir() if ".replaced-" in p.name]
    assert json.loads((moved / "record.json").read_text())["provenance"] == first["provenance"]
    assert not (moved / "lock").exists() and not (tmp_path / first["id"] / "lock").exists()


# ---------------------------------------------------------------- 2. report and the runs root


@pytest.mark.parametrize("kind", ["missing", "file", "empty", "no completed run"])
def test_report_with_a_wrong_runs_root_fails_and_keeps_the_reports(tmp_path, capsys, kind):
    root = tmp_path / "runs"
    if kind == "file":
        root.write_text("not a folder")
    elif kind == "empty":
        root.mkdir()
    elif kind == "no completed run":
        runs.RunDir(root / "r").save({"id": "r", "status": "failed", "config": {}})
    out = tmp_path / "reports"
    out.mkdir()
    (out / "README.md").write_text("committed tables\n")
    assert main(["report", "--runs", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: runs root ") and str(root) in err
    assert (out / "README.md").read_text() == "committed tables\n"
    assert [p.name for p in out.iterdir()] == ["README.md"]


# ---------------------------------------------------------------- 3. damaged checkpoints


def _flip_one_weight(path: Path) -> None:
    """Change one weight and save again without updating the digest: silent damage."""
    state = torch.load(path, weights_only=True)
    name = next(k for k, v in state["model"].items() if v.is_floating_point() and v.numel() > 1)
    state["model"][name].view(-1)[0] += 1.0
    torch.save(state, path)


def test_damaged_checkpoint_is_refused_naming_the_file(tmp_path, capsys):
    cfg = make_config("smoke", **TINY)
    train(cfg, tmp_path, progress=False, log=None, _stop_after_epoch=1)
    rd = _run_dir(tmp_path, cfg)
    good = rd.checkpoint_path.read_bytes()
    assert "sha256" not in load_checkpoint(rd.checkpoint_path, cfg)    # verified, then dropped

    _flip_one_weight(rd.checkpoint_path)
    with pytest.raises(CorruptCheckpoint, match=f"checkpoint {rd.checkpoint_path} is corrupt.*--force"):
        load_checkpoint(rd.checkpoint_path, cfg)
    assert main(["train", *TINY_FLAGS, "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint {rd.checkpoint_path} is corrupt")
    assert rd.load()["status"] == "failed" and "is corrupt" in rd.load()["error"]

    # random bytes in the middle of the file: refused too (digest or unreadable zip)
    damaged = bytearray(good)
    mid = len(damaged) // 2
    damaged[mid: mid + 64] = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes()
    rd.checkpoint_path.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointMismatch, match=str(rd.checkpoint_path)):
        load_checkpoint(rd.checkpoint_path, cfg)

    # --force keeps the damaged run aside and trains from scratch
    assert main(["train", *TINY_FLAGS, "--runs", str(tmp_path), "--force"]) == 0
    assert rd.load()["status"] == "completed"


def test_checkpoint_without_a_digest_still_loads(tmp_path):
    """Checkpoints written before digests existed (a running study's) are accepted."""
    cfg = make_config("smoke", **TINY)
    train(cfg, tmp_path, progress=False, log=None, _stop_after_epoch=1)
    path = _run_dir(tmp_path, cfg).checkpoint_path
    state = torch.load(path, weights_only=True)
    del state["sha256"]
    torch.save(state, path)
    assert load_checkpoint(path, cfg)["epoch"] == 0
    assert train(cfg, tmp_path, progress=False, log=None)["status"] == "completed"


def test_resume_on_another_machine_is_refused_before_data(tmp_path, capsys, monkeypatch):
    """A checkpoint from another processor, torch build or commit does not resume here: the
    record would name one machine and code version for epochs trained on two. The refusal comes before data
    preparation, names both machines and the way out; --force starts the run again here."""
    cfg = make_config("smoke", **TINY)
    train(cfg, tmp_path, progress=False, log=None, _stop_after_epoch=1)
    rd = _run_dir(tmp_path, cfg)
    rec = rd.load()
    here = rec["provenance"]["hardware"]["cpu"]
    rec["provenance"]["hardware"]["cpu"] = "Some Other CPU"
    rd.save(rec)
    import vpstudy.train as T

    real_prepare = T.prepare_data
    monkeypatch.setattr(T, "prepare_data", lambda c, d: pytest.fail("data preparation was reached"))
    with pytest.raises(runs.ResumeElsewhere, match=f"processor Some Other CPU vs {re.escape(here)} here.*--force"):
        train(cfg, tmp_path, progress=False, log=None)
    assert main(["train", *TINY_FLAGS, "--runs", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: run {rd.id} has a checkpoint from another machine or code")
    assert rd.checkpoint_path.exists()                   # nothing lost: it can still resume there

    commit = rec["provenance"]["git_commit"]
    rec["provenance"]["hardware"]["cpu"] = here          # the same machine, another torch build
    rec["provenance"]["torch_version"] = "0.0.1"
    rd.save(rec)
    with pytest.raises(runs.ResumeElsewhere, match=r"torch 0\.0\.1 vs .* here"):
        train(cfg, tmp_path, progress=False, log=None)
    rec["provenance"]["torch_version"] = torch.__version__   # ... and another commit
    rec["provenance"]["git_commit"] = "0" * 40
    rd.save(rec)
    with pytest.raises(runs.ResumeElsewhere, match=f"commit {'0' * 40} vs .* here"):
        train(cfg, tmp_path, progress=False, log=None)

    rec["provenance"]["git_commit"], rec["provenance"]["hardware"]["cpu"] = commit, "Some Other CPU"
    rd.save(rec)
    monkeypatch.setattr(T, "prepare_data", real_prepare)
    assert main(["train", *TINY_FLAGS, "--runs", str(tmp_path), "--force"]) == 0
    done = rd.load()
    assert done["status"] == "completed" and done["provenance"]["hardware"]["cpu"] == here
    assert done["provenance"]["resumed_at"] == []        # trained again from the start


# ---------------------------------------------------------------- 4. corrupt records


def test_corrupt_record_is_skipped_by_reports_and_named_by_training(trained_runs, tmp_path, capsys,
                                                                      no_data_preparation):
    import shutil

    src, rec, base = trained_runs
    root = tmp_path / "runs"
    shutil.copytree(src, root)
    cfg = make_config("smoke", **TINY)
    bad = _run_dir(root, cfg)
    bad.path.mkdir()
    bad.record_path.write_text('{"id": "half-writ')
    with pytest.warns(runs.UnreadableRecord, match=str(bad.record_path)):
        df = runs.load_runs(root)
    assert sorted(df["run_id"]) == sorted([rec["id"], base["id"]])
    with pytest.warns(runs.UnreadableRecord, match=str(bad.record_path)):
        assert main(["report", "--runs", str(root), "--out", str(tmp_path / "reports")]) == 0
    assert (tmp_path / "reports" / "README.md").exists()

    assert main(["train", *TINY_FLAGS, "--runs", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: run record {bad.record_path} cannot be read")


# ---------------------------------------------------------------- 5. any failure marks the record


def _train_raising(tmp_path, monkeypatch, error: BaseException) -> tuple[dict, runs.RunDir]:
    """Train TINY with a training stream that raises ``error``; the record and run directory."""
    import vpstudy.train as T

    def raising(cfg, data, epoch, ranks=None):
        raise error
        yield
    monkeypatch.setattr(T, "train_batches", raising)
    cfg = make_config("smoke", **TINY)
    with pytest.raises(type(error)):
        train(cfg, tmp_path, progress=False, log=None)
    return _run_dir(tmp_path, cfg).load(), _run_dir(tmp_path, cfg)


def test_any_error_during_training_marks_the_record_failed(tmp_path, monkeypatch):
    rec, rd = _train_raising(tmp_path, monkeypatch,
                             DataError("cannot read image file /data/bair/train/traj_7/0/3.png: truncated"))
    assert rec["status"] == "failed"
    assert rec["error"] == "DataError: cannot read image file /data/bair/train/traj_7/0/3.png: truncated"
    assert rec["provenance"]["end_time"]
    assert not (rd.path / "lock").exists()


def test_ctrl_c_marks_the_record_interrupted_not_failed(tmp_path, monkeypatch):
    rec, rd = _train_raising(tmp_path, monkeypatch, KeyboardInterrupt())
    assert (rec["status"], rec["error"]) == ("interrupted", "KeyboardInterrupt")
    assert not (rd.path / "lock").exists()


def test_sigterm_marks_the_run_interrupted_releases_the_lock_and_the_run_resumes(tmp_path):
    """What Slurm, Kubernetes and `timeout` send: one line, exit 143, and the same command
    resumes the run from its last epoch checkpoint."""
    import signal
    import time

    flags = [*TINY_FLAGS, "--epochs", "30", "--runs", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vpstudy", "train", *flags], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cfg = make_config("smoke", **{**TINY, "epochs": 30})
    rd = _run_dir(tmp_path, cfg)
    deadline = time.time() + 120
    while not rd.checkpoint_path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("interrupted (stopped by SIGTERM); a run in progress")
    assert "Traceback" not in err
    rec = rd.load()
    assert (rec["status"], rec["error"]) == ("interrupted", "RunInterrupted: stopped by SIGTERM")
    assert not (rd.path / "lock").exists() and len(rec["history"]) >= 1
    again = subprocess.run([sys.executable, "-m", "vpstudy", "train", *flags], env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resuming run {rd.id} after epoch" in again.stdout + again.stderr
    assert rd.load()["status"] == "completed"


def test_a_signal_while_the_epoch_is_written_waits_until_checkpoint_and_record_agree(tmp_path, monkeypatch):
    """SIGTERM sent right after the checkpoint is written (before the record is: the race that
    left a record one epoch behind its checkpoint) stops the run only once both are written."""
    import signal

    import vpstudy.train as T

    real_save = T.save_checkpoint
    written: list[int] = []

    def save_then_signal(path, cfg, epoch, *args):
        real_save(path, cfg, epoch, *args)
        written.append(epoch)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(T, "save_checkpoint", save_then_signal)
    cfg = make_config("smoke", **TINY)
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(runs.RunInterrupted, match="stopped by SIGTERM"):
        T.train(cfg, tmp_path, progress=False, log=None)
    rd = _run_dir(tmp_path, cfg)
    rec = rd.load()
    assert written == [0] and rec["status"] == "interrupted"
    assert [h["epoch"] for h in rec["history"]] == [1]       # the epoch the checkpoint holds
    assert signal.getsignal(signal.SIGTERM) == handler_before
    monkeypatch.setattr(T, "save_checkpoint", real_save)
    assert T.train(cfg, tmp_path, progress=False, log=None)["status"] == "completed"
    assert [h["epoch"] for h in rd.load()["history"]] == [1, 2]


# ---------------------------------------------------------------- 6. one-line errors, exit 2


def test_diverged_run_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import vpstudy.train as T

    monkeypatch.setattr(T, "loss_of", lambda model, x, y, criterion, progress: ((model(x) * float("nan")).mean(), {}))
    assert main(["train", *TINY_FLAGS, "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the training loss became nan") and "Traceback" not in err


def test_bad_runs_root_fails_before_data_preparation(tmp_path, capsys, no_data_preparation):
    a_file = tmp_path / "runs.txt"
    a_file.write_text("")
    for root in (a_file, a_file / "runs"):
        assert main(["train", *TINY_FLAGS, "--runs", str(root)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: runs root {root} is not a") and "Traceback" not in err
    if os.geteuid() != 0:                      # root writes anywhere: read-only means nothing then
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        assert main(["train", *TINY_FLAGS, "--runs", str(ro)]) == 2
        assert f"runs root {ro} is not a writable directory" in capsys.readouterr().err


def _study(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, match", [
    ('name = "x"\n[tables.T]\ncaption = "t"\n', "has no \\[\\[runs\\]\\] tables"),
    ('name = "x"\n[[runs]\ntable = "T"\n', "cannot be read"),
    ('nmae = "x"\n[[runs]]\ntable = "T"\nrow = "a"\n', "unknown top-level key\\(s\\) \\['nmae'\\]"),
])
def test_bad_study_file_is_a_one_line_error_naming_it(tmp_path, capsys, text, match):
    import re

    path = _study(tmp_path, text)
    assert main(["study", str(path), "--profile", "smoke", "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: study file {path}") and re.search(match, err)
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- 7. unchecked inputs


def _test_seq(path: Path, n: int) -> Path:
    np.save(path, np.zeros((20, n, 64, 64), np.uint8))
    return path


def test_test_file_with_too_few_or_no_sequences_is_refused_before_training(tmp_path, capsys):
    few = _test_seq(tmp_path / "few.npy", 3)
    with pytest.raises(DataError, match="holds 3 sequences, fewer than the 4 asked"):
        load_mnist_test_seq(few, num_sequences=4)
    assert load_mnist_test_seq(few, num_sequences=3).shape[0] == 3
    with pytest.raises(DataError, match="holds 0 sequences"):
        load_mnist_test_seq(_test_seq(tmp_path / "none.npy", 0))
    assert main(["train", *TINY_FLAGS, "--test-file", str(few), "--runs", str(tmp_path / "runs")]) == 2
    assert f"error: {few}: holds 3 sequences" in capsys.readouterr().err
    assert list((tmp_path / "runs").iterdir()) == []                # no run was started


def test_text_file_as_test_set_is_called_what_it_is(tmp_path):
    text = tmp_path / "mnist_test_seq.npy"
    text.write_text("0 1 2 3\n4 5 6 7\n")
    with pytest.raises(DataError, match="is not a .npy file") as e:
        load_mnist_test_seq(text)
    assert "pickled" not in str(e.value)


def test_extra_test_digits_x_names_the_parameter(monkeypatch):
    from vpstudy.notebook import ablation_config

    monkeypatch.setenv("VPSTUDY_PROFILE", "smoke")
    for bad in ("x", "3,x", "0", -1, 2.5):
        with pytest.raises(ValueError, match="extra_test_digits must be digit counts"):
            ablation_config({"extra_test_digits": bad})
    assert ablation_config({"extra_test_digits": "3, 4"}).extra_test_digits == (3, 4)


def test_bair_not_found_shows_both_layouts(tmp_path):
    from vpstudy.data.video_data import open_split

    cfg = make_config("smoke", dataset="bair", data_root=str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        open_split(cfg, "train")
    msg = str(e.value)
    assert "processed_data/{train,test}/<traj_folder>/<k>/<0..29>.png" in msg
    assert "softmotion30_44k" in msg


def test_temp_files_left_by_a_killed_write_are_removed_when_the_run_resumes(tmp_path):
    cfg = make_config("smoke", **TINY)
    train(cfg, tmp_path, progress=False, log=None, _stop_after_epoch=1)
    rd = _run_dir(tmp_path, cfg)
    left = [rd.path / f".{name}.{i:012x}.tmp" for i, name in enumerate((runs.CHECKPOINT, runs.SAMPLES, runs.RECORD))]
    for p in left:
        p.write_bytes(b"half a file")
    keep = rd.path / "notes.tmp"                  # not a name atomic_write_bytes makes
    keep.write_text("mine")
    lines = []
    assert train(cfg, tmp_path, progress=False, log=lines.append)["status"] == "completed"
    assert not any(p.exists() for p in left) and keep.exists()
    assert sum("a temp file left by an interrupted write" in line for line in lines) == 3


# ---------------------------------------------------------------- 8. one-line errors (issue 24)


def test_a_full_disk_is_a_one_line_error_naming_the_file_and_keeps_the_checkpoint(tmp_path, capsys, monkeypatch):
    import errno

    cfg = make_config("smoke", **TINY)
    train(cfg, tmp_path, progress=False, log=None, _stop_after_epoch=1)
    rd = _run_dir(tmp_path, cfg)
    good = rd.checkpoint_path.read_bytes()
    real_fsync = os.fsync

    def full(fd):
        if "checkpoint.pt" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)
    monkeypatch.setattr(runs.os, "fsync", full)
    assert main(["train", *TINY_FLAGS, "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no space left on the device (or quota) while writing {rd.checkpoint_path} (")
    assert err.count("\n") == 1 and "--runs" in err
    assert rd.checkpoint_path.read_bytes() == good and not list(rd.path.glob(".*.tmp"))
    assert rd.load()["status"] == "failed" and "no space left" in rd.load()["error"]


def test_a_test_set_too_large_for_the_memory_is_refused_before_it_is_allocated(tmp_path, capsys):
    from vpstudy.data.prepare import available_memory, fixed_sets_bytes

    cfg = make_config("smoke", **{**TINY, "test_sequences": 50_000_000})
    assert fixed_sets_bytes(cfg) == (4 + 50_000_000) * 20 * 64 * 64 * 5 > available_memory()
    assert main(["train", *TINY_FLAGS, "--test-sequences", "50000000", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the validation and test sets of this run need about 19,073.5 GiB of memory "
                          "(val_sequences=4, test_sequences=50,000,000")
    assert "lower test_sequences" in err and err.count("\n") == 1


def test_seed_out_of_range_names_the_seed_and_the_range():
    with pytest.raises(ValueError, match=r"seed=1180591620717411303424 is not a valid seed: a seed is an "
                                         r"integer from 0 to 9223372036854775807"):
        make_config("smoke", seed=2**70)
    assert make_config("smoke", seed=2**63 - 1).seed == 2**63 - 1


def test_a_completed_record_without_test_results_or_with_a_text_mse_is_skipped_by_the_report(
        trained_runs, tmp_path, capsys):
    import shutil
    import warnings

    src, rec, base = trained_runs
    root = tmp_path / "runs"
    shutil.copytree(src, root)
    broken = {}                                       # run id -> record path, in order
    for lambda2, test in ((0.1, None), (0.2, {"mse": "12.35", "ssim": 0.9})):
        cfg = make_config("smoke", lambda2=lambda2)
        rd = _run_dir(root, cfg)
        rd.save({"id": rd.id, "status": "completed", "config": cfg.to_dict(),
                 **({"test": test} if test else {})})
        broken[rd.id] = rd.record_path
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["report", "--runs", str(root), "--out", str(tmp_path / "reports")]) == 0
    said = {str(w.message) for w in caught if issubclass(w.category, runs.RefusedRecord)}
    missing, text = broken.values()
    assert said == {f"skipping run record {missing}: it is marked completed but has no test results",
                    f"skipping run record {text}: its test mse is '12.35', not a number"}
    assert sorted(r["id"] for r in runs.load_records(root)) == sorted([rec["id"], base["id"]])
