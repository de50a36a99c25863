"""A study as data, and the runner that executes it through the ablation notebook.

A study file (``vpstudy/studies/<name>.toml``) lists every table row of a paper as a set
of notebook parameters at the paper's settings, with the paper's numbers. Profiles map
the paper's settings to the scale of the run (``[profiles.<name>]``: an ``epochs_scale``,
a ``batch_scale`` and overrides); a row's ``at_profile.<name>`` table holds that row's own
settings at one profile (e.g. a learning rate chosen by a sweep at that scale), applied
after the profile's. :func:`study_runs` expands a study into concrete, validated configs;
:func:`run_study` executes each distinct config once per seed with papermill, keeps the
executed notebook beside its run record, skips completed runs, and carries on past
failures.
"""

from __future__ import annotations

import os
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from vpstudy import runs
from vpstudy.cli_args import config_flags, parse_config_flags
from vpstudy.config import BASELINES, PROFILES, TrainConfig, baseline_config, default_profile, make_config

STUDIES_DIR = Path(__file__).resolve().parent / "studies"
REPO = Path(__file__).resolve().parent.parent
ABLATION_NOTEBOOK = REPO / "notebooks" / "ablation.ipynb"   # in a source checkout, not in a wheel
ROW_KEYS = ("table", "row", "paper", "profiles", "at_profile", "seeds_at")
STUDY_KEYS = ("name", "title", "notebook", "defaults", "profiles", "tables", "runs", "metrics",
              "figures_table", "figures_extra_test")


def study_names() -> list[str]:
    return sorted(p.stem for p in STUDIES_DIR.glob("*.toml"))


def load_study(name: str) -> dict[str, Any]:
    """A study by name (``vpstudy/studies/<name>.toml``) or by the path of a .toml file."""
    path = Path(name) if name.endswith(".toml") else STUDIES_DIR / f"{name}.toml"
    if not path.exists():
        raise ValueError(f"unknown study {name!r}; available: {study_names()} (or a path to a .toml file)")
    try:
        with open(path, "rb") as f:
            study = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as e:
        raise ValueError(f"study file {path} cannot be read: {e}") from e
    _check_study(path, study)
    return study


def _check_study(path: Path, study: dict[str, Any]) -> None:
    """Unknown top-level keys, a study without ``[[runs]]`` tables and a malformed row are errors
    naming the file, found when the study loads rather than when a row is first expanded."""
    unknown = sorted(set(study) - set(STUDY_KEYS))
    if unknown:
        raise ValueError(f"study file {path}: unknown top-level key(s) {unknown}; allowed: {list(STUDY_KEYS)}")
    entries = study.get("runs")
    if not entries or not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"study file {path} has no [[runs]] tables; each run needs one, e.g.\n"
                         f'[[runs]]\ntable = "Table 1"\nrow = "baseline"\nmodel = "gsta"')
    for i, e in enumerate(entries, 1):
        missing = [k for k in ("table", "row") if k not in e]
        if missing:
            raise ValueError(f"study file {path}: [[runs]] entry {i} has no {' or '.join(missing)}")
        _check_at_profile(path, e)
        _check_seeds_at(path, e)
    _check_comparisons(path, study)


def _check_comparisons(path: Path, study: dict) -> None:
    """Each table's ``compare = [[row, reference], ...]`` (optionally ``[row, reference,
    [metrics]]``) names rows of that table and metrics the table reports."""
    for table, spec in study.get("tables", {}).items():
        rows = {e["row"] for e in study["runs"] if e["table"] == table}
        shown = spec.get("metrics", study.get("metrics", ["mse", "ssim"]))
        for pair in spec.get("compare", []):
            where = f"study file {path}, {table}: compare entry {pair!r}"
            if not isinstance(pair, list) or len(pair) not in (2, 3):
                raise ValueError(f"{where}: must be [row, reference] or [row, reference, [metrics]]")
            unknown = [r for r in pair[:2] if r not in rows]
            if unknown:
                raise ValueError(f"{where}: no row {unknown[0]!r} in {table}; its rows: {sorted(rows)}")
            extra = [m for m in (pair[2] if len(pair) == 3 else []) if m.partition("@")[0]
                     not in {x.partition("@")[0] for x in shown}]
            if extra:
                raise ValueError(f"{where}: metric(s) {extra} are not among the table's metrics {shown}")


def _check_seeds_at(path: Path, entry: dict) -> None:
    """A row's ``seeds_at = { cpu = 5 }``: known profiles, each a whole number of seeds >= 1."""
    at = entry.get("seeds_at", {})
    where = f"study file {path}, row {entry['table']} / {entry['row']!r}"
    if not isinstance(at, dict) or not all(type(v) is int and v >= 1 for v in at.values()):
        raise ValueError(f"{where}: seeds_at must map profile names to whole numbers of seeds >= 1, "
                         f"e.g. seeds_at = {{ cpu = 5 }}; got {at!r}")
    unknown = sorted(set(at) - set(PROFILES))
    if unknown:
        raise ValueError(f"{where}: seeds_at names unknown profile(s) {unknown}; profiles are {list(PROFILES)}")


def _check_at_profile(path: Path, entry: dict) -> None:
    """A row's ``at_profile`` maps known profile names to tables of settings."""
    at = entry.get("at_profile", {})
    where = f"study file {path}, row {entry['table']} / {entry['row']!r}"
    if not isinstance(at, dict) or not all(isinstance(v, dict) for v in at.values()):
        raise ValueError(f"{where}: at_profile must map profile names to tables of settings, "
                         f"e.g. at_profile = {{ cpu = {{ lr = 0.01 }} }}; got {at!r}")
    unknown = sorted(set(at) - set(PROFILES))
    if unknown:
        raise ValueError(f"{where}: at_profile names unknown profile(s) {unknown}; profiles are {list(PROFILES)}")


@dataclass(frozen=True)
class StudyRun:
    """One table row of a study, resolved to a concrete config at a profile and seed."""

    table: str
    row: str
    paper: dict
    params: dict            # notebook parameters (paper settings mapped to the profile)
    config: TrainConfig

    @property
    def run_id(self) -> str:
        return runs.run_id(self.config.identity())


def profile_params(study: dict, entry: dict, profile: str) -> dict[str, Any]:
    """The notebook parameters of one study entry at ``profile``."""
    prof = dict(study.get("profiles", {}).get(profile, {}))
    scale = float(prof.pop("epochs_scale", 1.0))
    batch_scale = float(prof.pop("batch_scale", 1.0))
    params = {**study.get("defaults", {}), **{k: v for k, v in entry.items() if k not in ROW_KEYS}}
    params["epochs"] = max(1, round(params["epochs"] * scale)) if "epochs" in params else None
    if "batch_size" in params and batch_scale != 1.0:
        params["batch_size"] = max(1, round(params["batch_size"] * batch_scale))
    for k, v in prof.items():
        params[k] = v
    params.update(entry.get("at_profile", {}).get(profile, {}))   # checked by _check_study
    params["profile"] = profile
    return {k: v for k, v in params.items() if v is not None}


def study_runs(name: str, profile: str | None = None, seeds: int = 1) -> list[StudyRun]:
    """Every (table row, seed) of the study as a validated config: ``seeds`` per row (seeds
    0..seeds-1), or more where the row's ``seeds_at`` asks for more at this profile (a comparison
    that needs more seeds to be detectable; the study file says which and why)."""
    study = load_study(name)
    profile = profile or default_profile()
    out = []
    for entry in study["runs"]:
        if profile not in entry.get("profiles", [profile]):
            continue
        baseline = entry.get("model") in BASELINES
        wanted = max(seeds, entry.get("seeds_at", {}).get(profile, 0))
        for seed in range(1 if baseline else wanted):
            params = {**profile_params(study, entry, profile), "seed": seed}
            cfg = make_config(**params)
            if baseline:                      # deterministic, trains nothing: one shared record
                cfg = baseline_config(cfg, entry["model"])
                params = {k: v for k, v in cfg.to_dict().items() if v is not None}
            out.append(StudyRun(entry["table"], entry["row"], entry.get("paper", {}), params, cfg))
    return out


def rows_by_run_id(profiles: Iterable[str], seeds: int) -> dict[str, list[tuple[str, str, str]]]:
    """Which (study, table, row) each run id of ``profiles`` and seeds < ``seeds`` stands for
    (a run shared by several rows, e.g. Table 1 'Disabled' = Table 2 'GELU', lists each)."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for name in study_names():
        for profile in profiles:
            for r in study_runs(name, profile, seeds):
                out.setdefault(r.run_id, []).append((name, r.table, r.row))
    return out


def profile_only_rows(name: str, profile: str) -> dict[tuple[str, str], list[str]]:
    """Table rows that do not run at ``profile``: (table, row) -> the profiles they run at."""
    return {(e["table"], e["row"]): e["profiles"] for e in load_study(name)["runs"]
            if profile not in e.get("profiles", [profile])}


def missing_data(cfg: TrainConfig) -> str | None:
    """Why ``cfg``'s dataset cannot be read here (None if it can). Moving MNIST is always there."""
    if cfg.dataset == "mmnist":
        return None
    from vpstudy.data.video_data import open_split

    try:
        open_split(cfg, "test")
    except (FileNotFoundError, ValueError) as e:
        return str(e).splitlines()[0]
    return None


def unique_runs(rows: list[StudyRun]) -> list[StudyRun]:
    seen: dict[str, StudyRun] = {}
    for r in rows:
        seen.setdefault(r.run_id, r)
    return list(seen.values())


# The kernel's own log: its TCP-transport warning (local kernel, loopback only) and the
# "KeyboardInterrupt caught" of a normal shutdown; cell errors still reach papermill.
QUIET_KERNEL = ["--IPKernelApp.log_level=CRITICAL"]


def execute_notebook(run: StudyRun, root: Path, threads: int) -> Path:
    """Execute the ablation notebook for ``run``; the executed copy is kept in the run directory."""
    import papermill as pm

    study_dir = root / run.run_id
    study_dir.mkdir(parents=True, exist_ok=True)
    out = study_dir / "ablation.ipynb"
    params = {k: v for k, v in run.params.items() if k != "extra_test_digits"}
    if run.config.extra_test_digits:
        params["extra_test_digits"] = ",".join(map(str, run.config.extra_test_digits))
    pm.execute_notebook(str(ABLATION_NOTEBOOK), str(out),
                        parameters={**params, "runs_root": str(root), "threads": threads or None},
                        cwd=str(REPO), progress_bar=False, kernel_name="python3",
                        extra_arguments=QUIET_KERNEL)
    return out


def train_command(run: StudyRun, root: Path) -> list[str]:
    """The ``python -m vpstudy train`` command line that trains ``run`` without a notebook.

    For machines without Jupyter (a cluster node, a bare GPU image): the same ``train()``
    that the notebook calls, the same record. Checked to give ``run``'s config before use.
    """
    args = ["train", *config_flags(run.params)]
    parsed = parse_config_flags(args[1:])
    if runs.run_id(parsed.identity()) != run.run_id:
        raise RuntimeError(f"the train command for {run.run_id} would run another config: {args}")
    return [sys.executable, "-m", "vpstudy", *args, "--runs", str(root), "--no-progress"]


def execute_command(run: StudyRun, root: Path, threads: int) -> Path:
    """Train ``run`` in a child ``python -m vpstudy train``; its output goes to ``train.log``
    (appended, each attempt under a header line). The child dies with this process
    (`vpstudy.lifeline`): a lost Dask worker leaves no training behind."""
    import socket
    import subprocess

    from vpstudy.lifeline import child_env

    study_dir = root / run.run_id
    study_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **child_env(), **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    command = train_command(run, root)
    log_path = study_dir / "train.log"
    with open(log_path, "a") as log:
        log.write(f"--- {runs.now()} on {socket.gethostname()} (runner pid {os.getpid()}): "
                  f"{' '.join(command)}\n")
        log.flush()
        start = log.tell()
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO), env=env)
    if done.returncode:
        with open(log_path) as f:
            f.seek(start)
            tail = f.read().strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"vpstudy train exited with {done.returncode}: {tail[0]}")
    return log_path


EXECUTORS = {"notebook": execute_notebook, "command": execute_command}


def _mark_failed(root: Path, run: StudyRun, error: str) -> None:
    runs.mark_failed(runs.RunDir(root / run.run_id), error, run.config.to_dict())


def _local_workers(cluster: str) -> int:
    n = cluster.split(":", 1)[1]
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f"cluster={cluster!r}: write local:N with N >= 1 worker processes")
    return int(n)


def dask_security(spec: str | None) -> Any:
    """Dask's TLS settings from ``--cluster-security CA,CERT,KEY`` (three PEM files: the
    certificate authority, and this client's certificate and key), with encryption required;
    None for None. The scheduler and workers take the same files (``dask scheduler
    --tls-ca-file CA --tls-cert CERT --tls-key KEY``, the same for ``dask worker``)."""
    if spec is None:
        return None
    files = [p.strip() for p in spec.split(",")]
    if len(files) != 3 or not all(files):
        raise ValueError(f"--cluster-security {spec!r}: give three PEM files, CA,CERT,KEY (the certificate "
                         f"authority, this client's certificate and its key)")
    missing = [p for p in files if not os.path.isfile(p)]
    if missing:
        raise ValueError(f"--cluster-security: no such file {missing[0]}")
    from distributed import Security

    ca, cert, key = files
    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)


def open_cluster_warning(address: str, security: Any) -> str | None:
    """A warning when a scheduler address is not on this machine's loopback and no TLS is set:
    plain Dask TCP has neither authentication nor encryption (whoever reaches the scheduler
    runs code on the workers)."""
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    if security is not None or address.startswith("local:"):
        return None
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        loopback = False
    if loopback:
        return None
    return (f"warning: the Dask scheduler {address} is not on this machine's loopback and no "
            f"--cluster-security is set: Dask's plain TCP has no authentication or encryption, so "
            f"anyone who can reach it can run code on the workers. Bind it to a private network "
            f"(dask scheduler --host 10.x.y.z) behind a firewall, or use TLS (tls:// and "
            f"--cluster-security CA,CERT,KEY)")


@contextmanager
def run_pool(jobs: int, cluster: str | None = None, security: Any = None) -> Iterator[tuple[Callable, Callable]]:
    """``(submit, as_completed)`` of the pool that executes a study's runs.

    Without ``cluster``: ``jobs`` threads here, each driving one run in a child process. With
    ``cluster``: Dask distributed, each run a task on a worker (give workers one thread each,
    e.g. ``dask worker ADDRESS --nthreads 1``, and a runs root they all see): ``local:N``
    starts N worker processes on this machine; any other value is a scheduler's address
    (``tcp://host:8786``), e.g. of a dask-jobqueue cluster on Slurm.
    """
    if not cluster:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            yield pool.submit, as_completed
        return
    try:
        from distributed import Client, LocalCluster
        from distributed import as_completed as dask_completed
    except ImportError as e:
        raise RuntimeError("--cluster needs Dask distributed: pip install -e '.[cluster]'") from e
    with ExitStack() as stack:
        if cluster.startswith("local:"):
            address = stack.enter_context(LocalCluster(n_workers=_local_workers(cluster), threads_per_worker=1,
                                                       processes=True, dashboard_address=None,
                                                       host="127.0.0.1", security=security))
        else:
            address = cluster
        client = stack.enter_context(Client(address, timeout=30, security=security))
        yield (lambda f, *a: client.submit(f, *a, pure=False)), dask_completed


def run_study(name: str, profile: str | None = None, seeds: int = 1, jobs: int = 1,
              root: str | os.PathLike | None = None, only: str | None = None,
              executor: str = "notebook", cluster: str | None = None, threads: int | None = None,
              cluster_security: str | None = None) -> int:
    """Run every distinct config of study ``name``; return 0, or 1 if any run failed or was lost
    with its Dask worker (a run another process is training is left to it: not a failure).

    ``threads``: torch threads per run (default: this machine's cores shared by its runs), e.g.
    1 to leave a core free for other work.

    ``cluster_security``: ``CA,CERT,KEY`` PEM files for Dask over TLS (`dask_security`).

    ``executor``: ``notebook`` (papermill, the executed notebook kept beside the record) or
    ``command`` (``python -m vpstudy train``, for machines without Jupyter). ``cluster``:
    where runs execute (:func:`run_pool`); None: ``jobs`` at a time on this machine.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is not allowed; choose one of {list(EXECUTORS)}")
    execute = EXECUTORS[executor]
    if executor == "notebook" and not ABLATION_NOTEBOOK.exists():
        raise FileNotFoundError(
            f"the ablation notebook {ABLATION_NOTEBOOK} is not here: vpstudy was installed without "
            f"its source checkout. Run the study with --executor command (the same training, "
            f"no notebook), or from a clone of the repository.")
    if threads is not None and threads < 1:
        raise ValueError(f"threads={threads} must be a positive integer (torch threads per run)")
    local = not cluster or cluster.startswith("local:")
    security = dask_security(cluster_security)    # a bad value stops here, before any work
    if cluster and (warning := open_cluster_warning(cluster, security)):
        print(warning, file=sys.stderr, flush=True)
    workers = _local_workers(cluster) if cluster and local else max(1, jobs)   # a bad value stops here
    profile = profile or default_profile()
    rows = study_runs(name, profile, seeds)
    if only:
        rows = [r for r in rows if only.lower() in r.table.lower()]
    todo = unique_runs(rows)
    absent: dict[str, str | None] = {}
    for r in todo:
        if r.config.dataset not in absent:        # look for each dataset once, not once per run
            absent[r.config.dataset] = missing_data(r.config)
    skipped = sorted({(r.table, r.row, r.config.dataset) for r in todo if absent[r.config.dataset]})
    for table, row, dataset in skipped:                # once per row, not once per seed
        print(f"skipping {table}: {row}: {dataset} data not found ({absent[dataset]})", flush=True)
    todo = [r for r in todo if not absent[r.config.dataset]]
    for (table, row), profs in profile_only_rows(name, profile).items():
        print(f"skipping {table}: {row}: runs only at profile(s) {profs}", flush=True)
    root = runs.runs_root(root).resolve()
    done = [r for r in todo if runs.RunDir(root / r.run_id).status() == "completed"]
    pending = [r for r in todo if r not in done]
    # another runner (a second `vpstudy study`, a cluster worker) is training these: leave them
    in_use = [r for r in pending if runs.RunDir(root / r.run_id).lock().held_by_another()]
    pending = [r for r in pending if r not in in_use]
    pending.sort(key=lambda r: r.config.seed)     # every row's first seed first, then the next
    for r in in_use:
        print(f"skipping {r.run_id} ({r.table}: {r.row}): in use by another process", flush=True)
    print(f"study {name} at profile {profile}: {len(todo)} distinct runs "
          f"({len(rows)} table rows), {len(done)} already completed, {len(in_use)} in use elsewhere, "
          f"{len(pending)} to run "
          f"{f'on Dask cluster {cluster}' if cluster else f'with {jobs} at once'}; runs root {root}",
          flush=True)
    # this machine's cores shared by its runs; on a remote cluster, each worker machine's default
    threads = threads or (max(1, (os.cpu_count() or 1) // workers) if local else 0)
    t0 = time.time()

    def one(run: StudyRun) -> tuple[StudyRun, str, str | None, float]:
        t = time.time()
        outcome, detail = attempt(run, root, lambda: execute(run, root, threads))
        return run, outcome, detail, time.time() - t

    counts = {DONE: 0, IN_USE: 0, LOST: 0, FAILED: 0}
    failures: list[tuple[StudyRun, str, str]] = []
    with run_pool(jobs, cluster, security) as (submit, completed):
        futures = {submit(one, r): r for r in pending}
        for i, fut in enumerate(completed(list(futures)), 1):
            try:
                run, outcome, detail, secs = fut.result()
            except Exception as e:  # noqa: BLE001 - the task itself is gone (Dask: KilledWorker)
                run, outcome, detail, secs = futures[fut], LOST, failure_text(e), time.time() - t0
            counts[outcome] += 1
            print(f"[{i}/{len(pending)}] {OUTCOME_WORDS[outcome]} {run.run_id} ({run.table}: {run.row}) "
                  f"in {secs:.0f}s" + (f": {detail}" if outcome == IN_USE else ""), flush=True)
            if outcome in (LOST, FAILED):
                failures.append((run, outcome, detail or ""))
    print(f"study {name}: {counts[DONE]} ran, {len(done)} skipped, {len(in_use) + counts[IN_USE]} in use "
          f"elsewhere, {counts[LOST]} lost with their worker, {counts[FAILED]} failed, "
          f"{time.time() - t0:.0f}s", flush=True)
    for run, outcome, err in failures:
        why = "lost with its worker (not a failure of the run; run the study again to resume it)" \
            if outcome == LOST else "failed"
        print(f"  {why}: {run.run_id} ({run.table}: {run.row}): {err.splitlines()[0][:300] if err else ''}",
              file=sys.stderr)
    return 1 if failures else 0


DONE, IN_USE, LOST, FAILED = "done", "in use", "lost", "failed"
OUTCOME_WORDS = {DONE: "done", IN_USE: "in use elsewhere", LOST: "LOST", FAILED: "FAILED"}
IN_USE_WAIT_S = 30.0      # a lock held when a run starts: wait this long for it to be released


def attempt(run: StudyRun, root: Path, execute: Callable[[], Any]) -> tuple[str, str | None]:
    """Execute one run: ``(DONE, None)``, ``(IN_USE, holder)`` when another process trains it
    (or trained it meanwhile), ``(FAILED, reason)`` otherwise (the record is marked failed).

    A lock held when the run starts is waited for ``IN_USE_WAIT_S`` s: a task rescheduled
    after its worker died finds the old child still releasing it."""
    rd = runs.RunDir(root / run.run_id)
    deadline = time.monotonic() + IN_USE_WAIT_S
    while rd.lock().held_by_another() and time.monotonic() < deadline:
        time.sleep(1.0)
    try:
        execute()
        return DONE, None
    except Exception as e:  # noqa: BLE001 - a failed run is recorded and the study goes on
        reason = failure_text(e)
        with suppress(runs.CorruptRecord, OSError):
            if rd.status() == "completed":
                return DONE, None                 # finished by another runner meanwhile
        lock = rd.lock()
        if lock.held_by_another() or reason.startswith("RunLockedError") or "is in use by another process" in reason:
            return IN_USE, f"trained by another process ({lock.describe_holder()}); left to it"
        _mark_failed(root, run, reason)
        return FAILED, reason


def failure_text(e: BaseException) -> str:
    """``Type: message`` of a failure; for an error inside the notebook (papermill), the
    notebook's own exception rather than papermill's wrapper (whose text starts with a rule)."""
    if getattr(e, "ename", None):
        return f"{e.ename}: {e.evalue}".rstrip(": ")
    return f"{type(e).__name__}: {e}".rstrip(": ")
