"""Run records: one directory per run, written atomically, loaded into a DataFrame.

Layout of a run directory ``<runs root>/<run id>/``::

    record.json      config, status, provenance, per-epoch history, test metrics, efficiency
    checkpoint.pt    model + optimizer + scheduler state after the last finished epoch
    samples.npz      inputs, targets and predictions of the first test sequences (uint8)
    ablation.ipynb   the executed notebook, when the run came from the notebook study

The run id is derived from the config's identity (every field that changes the result),
so the same config and seed always map to the same directory: a completed run is found
and not recomputed, a crashed one is resumed, and a forced re-run moves the old directory
aside (``<id>.replaced-<time>``) instead of overwriting it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

RUNS_ENV = "VPSTUDY_RUNS"
RECORD = "record.json"
CHECKPOINT = "checkpoint.pt"
SAMPLES = "samples.npz"
LOCK = "lock"


REPO = Path(__file__).resolve().parent.parent


def project_dir() -> Path:
    """The checkout's root when vpstudy runs from a source checkout, else the working directory.

    Notebooks run with their own folder as working directory; resolving default paths
    against the checkout keeps the CLI, papermill and JupyterLab on the same ``runs/``.
    """
    return REPO if (REPO / "pyproject.toml").exists() else Path.cwd()


def runs_root(root: str | os.PathLike | None = None) -> Path:
    """The runs root: ``root``, else ``$VPSTUDY_RUNS``, else ``runs/`` in the project directory."""
    return Path(root or os.environ.get(RUNS_ENV) or project_dir() / "runs")


def json_dumps(obj: Any) -> str:
    """Canonical JSON (sorted keys), used for hashing and for comparing configs."""
    return json.dumps(obj, sort_keys=True, default=str)


def json_loads(s: str) -> Any:
    return json.loads(s)


def run_id(identity: dict[str, Any]) -> str:
    """A readable, stable id: model, profile, seed and a hash of the whole identity."""
    blob = json_dumps(identity).encode()
    digest = hashlib.sha256(blob).hexdigest()[:10]
    return f"{identity['model']}-{identity['profile']}-s{identity['seed']}-{digest}"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)          # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- provenance


def git_commit(repo: Path | None = None) -> str | None:
    """The current commit of the vpstudy checkout, with ``+dirty`` if tracked files changed."""
    repo = repo or REPO
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"device": device, "cpu": cpu_name(), "cpu_threads": torch.get_num_threads(),
                            "host": socket.gethostname()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    info["name"] = info.get("gpu") or f"CPU ({info['cpu']}, {info['cpu_threads']} threads)"
    return info


def provenance(device: str, data_source: str, seed: int) -> dict[str, Any]:
    import torch

    import vpstudy

    return {
        "vpstudy_version": vpstudy.__version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "hardware": hardware(device),
        "data_source": data_source,
        "seed": seed,
        "start_time": now(),
    }


# ---------------------------------------------------------------- run directory


class RunLockedError(RuntimeError):
    pass


class RunDir:
    """One run's directory: its record, checkpoint, samples and lock."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def record_path(self) -> Path:
        return self.path / RECORD

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def samples_path(self) -> Path:
        return self.path / SAMPLES

    def exists(self) -> bool:
        return self.record_path.exists()

    def load(self) -> dict[str, Any]:
        return read_json(self.record_path)

    def save(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.record_path, record)

    def status(self) -> str | None:
        return self.load().get("status") if self.exists() else None

    def move_aside(self) -> Path:
        """Rename this directory to ``<id>.replaced-<time>`` so nothing is overwritten."""
        stamp = _dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.replaced-{stamp}")
        self.path.rename(target)
        return target

    def lock(self) -> "_Lock":
        return _Lock(self.path / LOCK)


class _Lock:
    """An exclusive lock file holding the owner's pid; a stale lock (dead pid) is taken over."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> "_Lock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                with os.fdopen(fd, "w") as f:
                    f.write(f"{os.getpid()} {socket.gethostname()}\n")
                return self
            except FileExistsError:
                if self._stale():
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunLockedError(
                    f"run directory {self.path.parent} is in use by another process "
                    f"({self.path.read_text().strip()}); wait for it to finish, or delete "
                    f"{self.path} if that process is gone"
                )
        raise RunLockedError(f"could not lock {self.path}")

    def _stale(self) -> bool:
        try:
            pid_s, host = self.path.read_text().split()
            if host != socket.gethostname():
                return False
            os.kill(int(pid_s), 0)
            return False
        except ProcessLookupError:
            return True
        except (ValueError, OSError):
            return True

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)


def iter_run_dirs(root: str | os.PathLike | None = None) -> Iterator[RunDir]:
    base = runs_root(root)
    if not base.is_dir():
        return
    for p in sorted(base.iterdir()):
        if p.is_dir() and ".replaced-" not in p.name and (p / RECORD).exists():
            yield RunDir(p)


def load_records(root: str | os.PathLike | None = None, status: str | None = "completed") -> list[dict]:
    """Every run record under ``root`` (only those with ``status``, unless None)."""
    out = []
    for rd in iter_run_dirs(root):
        rec = rd.load()
        if status is None or rec.get("status") == status:
            rec["_dir"] = str(rd.path)
            out.append(rec)
    return out


def flatten_record(rec: dict[str, Any]) -> dict[str, Any]:
    """One row: config fields, test metrics (``test_<name>``), efficiency, provenance."""
    row: dict[str, Any] = {"run_id": rec.get("id"), "status": rec.get("status"), "dir": rec.get("_dir")}
    for k, v in rec.get("config", {}).items():
        row[k] = tuple(v) if isinstance(v, list) else v
    for k, v in (rec.get("test") or {}).items():
        if isinstance(v, (int, float)):
            row[f"test_{k}"] = v
    for n, res in (rec.get("extra_tests") or {}).items():
        for k, v in res.items():
            if isinstance(v, (int, float)):
                row[f"test{n}_{k}"] = v
    for k, v in (rec.get("efficiency") or {}).items():
        if isinstance(v, (int, float)):
            row[k] = v
    prov = rec.get("provenance") or {}
    row["hardware"] = (prov.get("hardware") or {}).get("name")
    row["git_commit"] = prov.get("git_commit")
    row["data_source"] = prov.get("data_source")
    row["wall_time_s"] = prov.get("wall_time_s")
    row["epochs_done"] = len(rec.get("history") or [])
    return row


def load_runs(root: str | os.PathLike | None = None, status: str | None = "completed"):
    """Every run under ``root`` as a pandas DataFrame, one row per run (see :func:`flatten_record`)."""
    import pandas as pd

    rows = [flatten_record(r) for r in load_records(root, status)]
    return pd.DataFrame(rows)
