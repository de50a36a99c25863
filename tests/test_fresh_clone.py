"""A new user's path: the README's examples, run with their default settings in a fresh clone,
leave the repository clean (runs started by hand go to the git-ignored runs-scratch/) and a
config the study recorded is loaded, not trained again."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def fresh_clone(tmp_path) -> Path:
    """The working tree's files (tracked and untracked, not ignored) as a new repository with
    one commit: a fresh clone of exactly the code under test."""
    try:
        files = _git(REPO, "ls-files", "-co", "--exclude-standard", "-z").split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / name)
    _git(clone.parent, "init", "-q", str(clone))
    _git(clone, "add", "-A")
    _git(clone, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "fresh")
    return clone


def _env(clone: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPSTUDY_")}
    return {**env, "PYTHONPATH": str(clone), "VPSTUDY_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_readme_examples_leave_a_fresh_clone_clean(fresh_clone, tmp_path):
    env = _env(fresh_clone, tmp_path)
    smoke = subprocess.run([sys.executable, "-m", "vpstudy", "train", "--model", "gsta", "--profile",
                            "smoke", "--json", "--no-progress"], cwd=fresh_clone, env=env,
                           capture_output=True, text=True, timeout=600)
    assert smoke.returncode == 0, smoke.stderr
    record = json.loads(smoke.stdout.strip().splitlines()[-1])
    assert (fresh_clone / "runs-scratch" / record["id"] / "record.json").is_file()
    papermill = subprocess.run([sys.executable, "-m", "papermill", "notebooks/ablation.ipynb", "out.ipynb",
                                "-p", "profile", "smoke", "-p", "model", "poolformer"],
                               cwd=fresh_clone, env=env, capture_output=True, text=True, timeout=600)
    assert papermill.returncode == 0, papermill.stderr[-2000:]
    assert (fresh_clone / "runs-scratch").is_dir() and (fresh_clone / "out.ipynb").is_file()
    assert _git(fresh_clone, "status", "--porcelain") == ""


def test_a_config_the_study_recorded_is_loaded_from_runs_not_trained(fresh_clone, tmp_path):
    """The README's recorded example (Table 4, seed 2) comes back from the committed runs/."""
    from vpstudy import runs
    from vpstudy.config import make_config

    cfg = make_config("cpu", model="gsta", activation="starrelu", lambda1=0.5, lambda2=0.1, seed=2)
    rid = runs.run_id(cfg.identity())
    if not (fresh_clone / "runs" / rid / "record.json").is_file():
        pytest.skip(f"{rid} is not among the committed records")
    code = ("import json, sys; from vpstudy.config import make_config; from vpstudy.train import train; "
            "r = train(make_config('cpu', model='gsta', activation='starrelu', lambda1=0.5, lambda2=0.1, "
            "seed=2), progress=False, log=print); print(json.dumps({'dir': r['_dir'], 'status': r['status']}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=fresh_clone, env=_env(fresh_clone, tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "is recorded in the study's runs" in done.stdout
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert (out["status"], Path(out["dir"])) == ("completed", fresh_clone / "runs" / rid)
    assert not (fresh_clone / "runs-scratch").exists()
    assert _git(fresh_clone, "status", "--porcelain") == ""


@pytest.mark.slow
def test_predict_with_the_shipped_weights_in_a_fresh_clone(fresh_clone, tmp_path, real_clip):
    """No run trained: the shipped weights predict a test sequence and a real clip."""
    env = _env(fresh_clone, tmp_path)
    for name, source in (("test7", ["--test-index", "7"]), ("bikes", ["--video", str(real_clip("bikes.mp4"))])):
        out = tmp_path / f"{name}.gif"
        done = subprocess.run([sys.executable, "-m", "vpstudy", "predict", "--model", "gsta", *source,
                               "--out", str(out), "--no-progress"], cwd=fresh_clone, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "shipped gsta weights" in done.stdout and out.is_file()
    assert not (fresh_clone / "runs-scratch").exists()
    assert _git(fresh_clone, "status", "--porcelain") == ""
