"""Load: many trainers and the report on one runs root at once (issue 9).

Eight processes train different smoke configs into one runs root while two more race on
one config, and the report is rebuilt in a loop meanwhile. Every run must end completed or
cleanly refused (exit 2, one ``error:`` line naming the lock's holder), no record may be
corrupt, and every report must be readable.
"""

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from vpstudy import runs

REPO = Path(__file__).resolve().parent.parent
COMMON = ["--profile", "smoke", "--batch-size", "4", "--sequences-per-epoch", "8", "--val-sequences", "4",
          "--test-sequences", "4", "--no-progress", "--no-baselines", "--precision", "fp32"]
DIFFERENT = ([["--model", "last-frame", "--seed", str(s)] for s in range(5)]
             + [["--model", "poolformer", "--seed", str(s)] for s in range(3)])
RACING = ["--model", "poolformer", "--seed", "7", "--epochs", "2"]
LIMIT_S = float(os.environ.get("VPSTUDY_LOAD_TEST_LIMIT_S", 110))   # CI: two minutes in all


def _start(root: Path, cache: Path, flags: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "VPSTUDY_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "vpstudy", "train", *COMMON, *flags, "--runs", str(root)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _report_once(root: Path, out: Path) -> bool:
    """Build the report; False while no run has completed yet (the only error allowed)."""
    from vpstudy.report import build_report

    try:
        readme = build_report(root, out)
    except runs.RunsRootError as e:
        assert "holds no completed run records" in str(e)
        return False
    assert readme.read_text().startswith("# vpstudy report")
    return True


@pytest.mark.slow
def test_concurrent_trainers_and_reports_leave_every_record_whole(tmp_path):
    root, cache, out = tmp_path / "runs", tmp_path / "cache", tmp_path / "reports"
    root.mkdir()
    t0 = time.time()
    procs = [_start(root, cache, f) for f in DIFFERENT] + [_start(root, cache, RACING) for _ in range(2)]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            while any(p.poll() is None for p in procs):
                _report_once(root, out)
                assert time.time() - t0 < LIMIT_S, f"load test slower than {LIMIT_S}s"
                time.sleep(1.0)
            assert _report_once(root, out)
        results = [(p.returncode, *p.communicate()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert not [w for w in caught if issubclass(w.category, runs.UnreadableRecord)]

    for rc, out_, err in results[: len(DIFFERENT)]:
        assert rc == 0, err
    racers = results[len(DIFFERENT):]
    assert any(rc == 0 for rc, _, _ in racers), racers
    for rc, _, err in racers:
        if rc:
            assert rc == 2 and err.startswith("error: run directory ") and err.count("\n") == 1, err
            assert "is in use by another process (pid " in err and " on host " in err

    dirs = sorted(p.name for p in root.iterdir())
    assert len(dirs) == len(DIFFERENT) + 1 and not any(".replaced-" in d for d in dirs)
    for d in dirs:
        rec = json.loads((root / d / "record.json").read_text())
        assert rec["status"] == "completed" and rec["error"] is None, d
        # no lock, no temp file (the lock's flock guard file stays: unlinking it would race)
        assert sorted(set(os.listdir(root / d)) - {".lock-guard"}) in (
            ["checkpoint.pt", "per_sequence.npz", "record.json", "samples.npz"],
            ["per_sequence.npz", "record.json", "samples.npz"]), d
