"""Run-directory locks: a holder's host, pid, start and heartbeat; a holder that stopped beating
(on any host) is taken over; takeover is atomic (one winner among racers)."""

import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from vpstudy import locks, runs

HOST = socket.gethostname()


def _fake(rd: runs.RunDir, pid: int, host: str, beat_age: float) -> None:
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.lock().path.write_text(locks.lock_text(pid, host, "theirs", beat=time.time() - beat_age))


def test_a_lock_records_host_pid_start_and_a_heartbeat_that_advances(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "HEARTBEAT_S", 0.05)
    rd = runs.RunDir(tmp_path / "r")
    with rd.lock() as lock:
        first = json.loads(lock.path.read_text())
        assert (first["pid"], first["host"]) == (os.getpid(), HOST) and first["started"]
        time.sleep(0.4)
        later = json.loads(lock.path.read_text())
        assert later["beat"] > first["beat"] and later["started"] == first["started"]
        assert lock.mine() and not rd.lock().held_by_another()
    assert not lock.path.exists()


@pytest.mark.parametrize("host", [HOST, "node-17.cluster"])
def test_a_holder_that_stopped_beating_is_taken_over_on_any_host(tmp_path, host):
    rd = runs.RunDir(tmp_path / "r")
    live = os.getppid()                            # a live pid: only the heartbeat can say it is stale
    _fake(rd, live, host, beat_age=10.0)
    with pytest.raises(runs.RunLockedError, match=f"pid {live} on host {host}, started .*last beat 10 s ago"):
        with rd.lock():
            pass
    assert rd.lock().held_by_another()
    _fake(rd, live, host, beat_age=locks.STALE_AFTER_S + 1)
    assert not rd.lock().held_by_another()
    with rd.lock() as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_a_legacy_lock_on_another_host_is_still_held_and_on_this_host_by_its_pid(tmp_path):
    rd = runs.RunDir(tmp_path / "r")
    rd.path.mkdir()
    rd.lock().path.write_text("12345 node-17.cluster\n")
    with pytest.raises(runs.RunLockedError, match="pid 12345 on host node-17.cluster; a lock without heartbeat"):
        with rd.lock():
            pass
    rd.lock().path.write_text(f"999999999 {HOST}\n")       # a dead pid here: stale
    with rd.lock():
        pass


def test_a_holder_whose_lock_was_taken_over_notices_and_stops(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "HEARTBEAT_S", 0.05)
    rd = runs.RunDir(tmp_path / "r")
    with rd.lock() as lock:
        lock.path.write_text(locks.lock_text(4242, "node-3", "theirs"))     # another took it over
        deadline = time.time() + 5
        while not lock.lost and time.time() < deadline:
            time.sleep(0.02)
        with pytest.raises(runs.RunLockedError, match="taken over by another process .*pid 4242 on host node-3"):
            lock.check_held()
    assert json.loads(lock.path.read_text())["token"] == "theirs"     # release leaves theirs alone


def test_racing_takeovers_of_a_stale_lock_have_exactly_one_winner(tmp_path):
    """300 trials, 8 racers each (threads: flock excludes open files, not processes), all
    starting together on a lock whose holder stopped beating; winners hold until every racer
    has tried. The old check-stale / unlink / O_EXCL-create steps let two win."""
    racers, trials = 8, 300
    counts = []
    with ThreadPoolExecutor(racers) as pool:
        for trial in range(trials):
            rd = runs.RunDir(tmp_path / f"r{trial}")
            _fake(rd, 999_999_999, HOST, beat_age=locks.STALE_AFTER_S + 1)    # dead pid, old beat
            start, tried = threading.Barrier(racers), threading.Barrier(racers)

            def race():
                start.wait()
                try:
                    with rd.lock():
                        tried.wait()
                        return 1
                except runs.RunLockedError:
                    tried.wait()
                    return 0
            counts.append(sum(pool.map(lambda _: race(), range(racers))))
    assert counts == [1] * trials, f"{sum(c > 1 for c in counts)} trials with two holders or more"
