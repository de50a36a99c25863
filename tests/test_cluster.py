"""Studies on a cluster: a smoke study through a local 2-worker Dask cluster gives the same
records as the local runner."""

import json

import pytest

from vpstudy.study import run_study, study_runs

pytest.importorskip("distributed")


@pytest.mark.slow
def test_dask_cluster_runs_a_study_like_the_local_runner(tmp_path):
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert run_study("simvp", "smoke", only="Table 2", jobs=2, root=local, executor="command") == 0
    assert run_study("simvp", "smoke", only="Table 2", root=dask, executor="command", cluster="local:2") == 0
    ids = {r.run_id for r in study_runs("simvp", "smoke") if r.table == "Table 2"}
    assert len(ids) == 2
    for run_id in ids:
        a = json.loads((local / run_id / "record.json").read_text())
        b = json.loads((dask / run_id / "record.json").read_text())
        assert a["status"] == b["status"] == "completed"
        assert a["config"] == b["config"]
        for metric in ("mse", "ssim"):       # same seed, same thread count: the same numbers
            assert b["test"][metric] == pytest.approx(a["test"][metric], rel=1e-6), (run_id, metric)


def test_bad_cluster_value_stops_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="local:N"):
        run_study("simvp", "smoke", root=tmp_path, cluster="local:zero")
    assert not any(tmp_path.iterdir())


def test_bad_thread_count_stops_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="threads=0"):
        run_study("simvp", "smoke", root=tmp_path, threads=0)
    assert not any(tmp_path.iterdir())


def test_missing_notebook_stops_before_any_work(tmp_path, monkeypatch):
    import vpstudy.study as study

    monkeypatch.setattr(study, "ABLATION_NOTEBOOK", tmp_path / "nowhere" / "ablation.ipynb")
    with pytest.raises(FileNotFoundError, match="--executor command"):
        run_study("simvp", "smoke", root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_run_another_runner_is_training_is_left_alone(tmp_path, capsys, lock_held_elsewhere):
    from vpstudy import runs

    first, second = sorted({r.run_id for r in study_runs("simvp", "smoke") if r.table == "Table 2"})
    busy = runs.RunDir(tmp_path / first)
    lock_held_elsewhere(busy)
    assert run_study("simvp", "smoke", only="Table 2", root=tmp_path, executor="command") == 0
    out = capsys.readouterr().out
    assert f"skipping {first} (Table 2: " in out and "1 in use elsewhere" in out
    assert not busy.exists()                                  # no record written for it, not "failed"
    assert runs.RunDir(tmp_path / second).status() == "completed"


def _table2(tmp_path):
    from vpstudy import runs

    first, second = sorted({r.run_id for r in study_runs("simvp", "smoke") if r.table == "Table 2"})
    return runs.RunDir(tmp_path / first), runs.RunDir(tmp_path / second)


def test_a_run_another_runner_starts_meanwhile_is_in_use_not_failed(tmp_path, capsys, monkeypatch,
                                                                   lock_held_elsewhere):
    """Two runners on one root: the run the other one took after this one looked is reported in
    use (exit 0); a run that failed in its notebook names the notebook's error, not papermill's
    empty wrapper."""
    from papermill.exceptions import PapermillExecutionError

    import vpstudy.study as study

    busy, broken = _table2(tmp_path)

    def execute(run, root, threads):
        if run.run_id == busy.id:              # the other runner took it after this one looked
            lock_held_elsewhere(busy)
            raise PapermillExecutionError(3, 3, "train(cfg)", "RunLockedError",
                                          f"run directory {busy.path} is in use by another process", [])
        raise PapermillExecutionError(3, 3, "train(cfg)", "ValueError", "lr must be a number in (0, 1)", [])

    monkeypatch.setitem(study.EXECUTORS, "command", execute)
    monkeypatch.setattr(study, "IN_USE_WAIT_S", 0.0)
    monkeypatch.setattr(study, "_mark_failed", lambda root, run, error: None if run.run_id == broken.id
                        else pytest.fail("marked a run another process trains"))
    assert run_study("simvp", "smoke", only="Table 2", root=tmp_path, executor="command") == 1
    out, err = capsys.readouterr()
    assert f"in use elsewhere {busy.id} (Table 2: " in out and "trained by another process (pid " in out
    assert f"FAILED {broken.id}" in out and f"FAILED {busy.id}" not in out
    assert "1 in use elsewhere, 0 lost with their worker, 1 failed" in out
    assert f"failed: {broken.id} (Table 2: " in err
    assert err.strip().endswith("): ValueError: lr must be a number in (0, 1)")
    assert busy.id not in err


def test_a_run_lost_with_its_dask_worker_is_not_reported_as_failed(tmp_path, capsys, monkeypatch):
    from concurrent.futures import Future, as_completed
    from contextlib import contextmanager

    import vpstudy.study as study

    lost, ok = _table2(tmp_path)

    @contextmanager
    def pool(jobs, cluster=None, security=None):
        def submit(f, run):
            fut = Future()
            if run.run_id == lost.id:
                fut.set_exception(RuntimeError(f"Attempted to run task {run.run_id} on 3 different workers, "
                                               f"but all those workers died while running it"))
            else:
                fut.set_result(f(run))
            return fut
        yield submit, as_completed

    monkeypatch.setattr(study, "run_pool", pool)
    monkeypatch.setitem(study.EXECUTORS, "command", lambda run, root, threads: None)
    assert run_study("simvp", "smoke", only="Table 2", root=tmp_path, executor="command") == 1
    out, err = capsys.readouterr()
    assert f"LOST {lost.id}" in out and f"done {ok.id}" in out
    assert "0 in use elsewhere, 1 lost with their worker, 0 failed" in out
    assert f"lost with its worker (not a failure of the run; run the study again to resume it): {lost.id}" in err


def test_a_train_child_dies_with_the_worker_that_started_it(tmp_path):
    """SIGKILL the process that runs `execute_command` (a Dask worker killed): its `vpstudy train`
    child notices, marks the run interrupted and releases the lock, and the run resumes."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from vpstudy import runs
    from vpstudy.locks import _alive

    repo = Path(__file__).resolve().parent.parent
    script = (
        "import sys\nfrom pathlib import Path\nfrom vpstudy.study import StudyRun, execute_command\n"
        "from vpstudy.config import make_config\n"
        "cfg = make_config('smoke', model='poolformer', epochs=30, batch_size=2, sequences_per_epoch=4,"
        " val_sequences=4, test_sequences=4)\n"
        "execute_command(StudyRun('T', 'r', {}, {**{k: v for k, v in cfg.to_dict().items() if v is not None"
        " and k not in ('device', 'compile')}, 'extra_test_digits': []}, cfg), Path(sys.argv[1]), 1)\n")
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    worker = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], env=env, cwd=repo)
    deadline = time.time() + 120
    while not list(tmp_path.glob("*/checkpoint.pt")) and time.time() < deadline and worker.poll() is None:
        time.sleep(0.1)
    assert worker.poll() is None, "the worker ended before the run's first checkpoint"
    (rd,) = [runs.RunDir(p.parent) for p in tmp_path.glob("*/checkpoint.pt")]
    child = rd.lock().holder().pid
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    deadline = time.time() + 60
    while _alive(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the train child outlived its worker"
    rec = rd.load()
    assert (rec["status"], rec["error"]) == ("interrupted", "RunInterrupted: stopped by SIGTERM")
    assert not rd.lock().path.exists()
    assert (rd.path / "train.log").read_text().startswith("--- ")


def test_an_open_scheduler_address_is_warned_about_and_tls_files_are_checked(tmp_path, capsys):
    from vpstudy.study import dask_security, open_cluster_warning

    for address in ("tcp://10.1.2.3:8786", "203.0.113.7:8786"):
        warning = open_cluster_warning(address, None)
        assert warning.startswith(f"warning: the Dask scheduler {address} is not on this machine's loopback")
        assert "--cluster-security CA,CERT,KEY" in warning
    for address in ("tcp://127.0.0.1:8786", "tcp://localhost:8786", "local:2"):
        assert open_cluster_warning(address, None) is None
    files = []
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
        files.append(str(tmp_path / name))
    security = dask_security(",".join(files))
    assert security.require_encryption and security.tls_ca_file == files[0]
    assert (security.tls_client_cert, security.tls_client_key) == tuple(files[1:])
    assert open_cluster_warning("tls://10.1.2.3:8786", security) is None
    with pytest.raises(ValueError, match="three PEM files, CA,CERT,KEY"):
        dask_security(files[0])
    with pytest.raises(ValueError, match=f"no such file {tmp_path / 'nope.pem'}"):
        dask_security(f"{files[0]},{files[1]},{tmp_path / 'nope.pem'}")
    with pytest.raises(ValueError, match="three PEM files"):           # before any work
        run_study("simvp", "smoke", root=tmp_path / "runs", cluster="tcp://10.1.2.3:8786", cluster_security="x")
    assert not (tmp_path / "runs").exists()
