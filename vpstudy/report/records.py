"""Reading the run records the report is made from: completed records by run id, one metric
of a record ("mse" on the main test set, "mse@3" on the 3-digit one), and what a record's
numbers depend on besides its config (`design_class`: device, precision, torch, code version),
from which `confounds` says whether two arms of a comparison are comparable.
"""

from __future__ import annotations

import functools
import subprocess

import numpy as np

from vpstudy import metrics, runs

DIGITS = {"mse": 2, "mae": 2, "ssim": 4, "ssim_strict": 4, "psnr": 2, "sharpness": 3}
SAMPLES_ONLY = {"sharpness"}   # reported on each run's recorded samples (see `metric_of`)


def mean_std_text(mean: float, std: float | None, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "–"
    s = f"{mean:.{digits}f}"
    return s + (f" ± {std:.{digits}f}" if std is not None and not np.isnan(std) else "")


def records_by_id(root) -> dict[str, list[dict]]:
    """Completed records by run id (seeds of one config are found through their own ids).

    A missing runs root, or one without completed records, raises :class:`runs.RunsRootError`:
    the report never replaces its tables with empty ones.
    """
    base = runs.existing_runs_root(root)
    out: dict[str, dict] = {}
    for rec in runs.load_records(base, "completed"):
        out[rec["id"]] = rec
    if not out:
        raise runs.RunsRootError(f"runs root {base} holds no completed run records; nothing to "
                                 f"report (the reports are left as they are). Pass --runs (or set "
                                 f"${runs.RUNS_ENV}) to the folder holding the run directories")
    return out


def metric_of(rec: dict, metric: str) -> float | None:
    """``metric`` of a record: ``"mse"`` on the main test set, ``"mse@3"`` on the 3-digit one.

    A metric of ``SAMPLES_ONLY`` (sharpness, added after most records were made) is computed on
    the predictions every run keeps in ``samples.npz`` (the first 10 sequences of the fixed
    test set, uint8): the same sequences for every record, old or new, so arms compare.
    """
    name, _, extra = metric.partition("@")
    if name in SAMPLES_ONLY:
        return _on_samples(rec.get("_dir"), name, extra)
    res = (rec.get("extra_tests") or {}).get(extra) if extra else rec.get("test")
    return None if res is None else res.get(name)


@functools.lru_cache(maxsize=None)
def _on_samples(run_dir: str | None, name: str, extra: str) -> float | None:
    path = runs.RunDir(run_dir).samples_path if run_dir else None
    if path is None or not path.exists():
        return None
    suffix = f"_{extra}" if extra else ""
    with np.load(path) as z:
        if f"predictions{suffix}" not in z:
            return None
        pred, target = (z[k + suffix].astype(np.float64) / 255.0 for k in ("predictions", "targets"))
    return float(metrics.per_frame_metrics(pred, target)[name].mean())


def metric_values(recs: list[dict], metric: str) -> list[float]:
    return [v for v in (metric_of(r, metric) for r in recs) if v is not None]


# ---------------------------------------------------------------- what an arm's numbers depend on

# Commits after which a model computes different numbers from the same seed (same parameters,
# other rounding), with what changed. A record's code version for its model is the number of
# these changes its commit contains (`git merge-base --is-ancestor`).
NUMERICS_CHANGES: dict[str, list[tuple[str, str]]] = {
    "gsta": [("56fcafd", "depthwise convolutions in fp32 on CPUs, padding-only taps skipped")],
    "gsta-l": [("56fcafd", "depthwise convolutions in fp32 on CPUs, padding-only taps skipped")],
    "sepcrev": [("81d784a", "small-map fast path (frames up to 32x32): depthwise convs as Toeplitz "
                            "matmuls, fused gates; predictions within 3e-7 relative in fp32")],
}


@functools.lru_cache(maxsize=None)
def _contains(commit: str, change: str) -> bool | None:
    """Does ``commit`` contain ``change``? None when git cannot tell (no checkout, unknown commit)."""
    try:
        done = subprocess.run(["git", "merge-base", "--is-ancestor", change, commit],
                              cwd=runs.project_dir(), capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: True, 1: False}.get(done.returncode)


def code_version(rec: dict) -> str:
    """The version of the code that computes a record's model's numbers: 'gsta v1' (changes of
    NUMERICS_CHANGES contained), 'uncommitted tree' (a ``+dirty`` commit: anything may differ)
    or 'gsta (unknown commit)' when git cannot resolve the commit."""
    model = rec["config"]["model"]
    commit = (rec.get("provenance") or {}).get("git_commit") or ""
    if commit.endswith("+dirty"):
        return "uncommitted tree"
    changes = NUMERICS_CHANGES.get(model, [])
    if not changes:
        return f"{model} v0"
    contained = [_contains(commit, c) for c, _ in changes] if commit else [None]
    if None in contained:
        return f"{model} (unknown commit)"
    return f"{model} v{sum(contained)}"


def design_class(rec: dict) -> dict[str, str]:
    """What a record's numbers depend on besides its config: device class, precision, the
    torch version (major.minor) and the model's code version."""
    prov = rec.get("provenance") or {}
    torch_version = ".".join((prov.get("torch_version") or "?").split("+")[0].split(".")[:2])
    return {"device": (prov.get("hardware") or {}).get("device", "?"),
            "precision": prov.get("precision", "?"), "torch": torch_version,
            "code": code_version(rec)}


def design_text(recs: list[dict]) -> str:
    """The design classes of a row's records: 'cpu, fp32, torch 2.13, crevnet v0' (one line
    per distinct class, with its seeds, when a row mixes several)."""
    classes: dict[tuple, list[int]] = {}
    for r in recs:
        c = design_class(r)
        classes.setdefault((c["device"], c["precision"], f"torch {c['torch']}", c["code"]), []).append(
            r["config"]["seed"])
    if len(classes) == 1:
        return ", ".join(next(iter(classes)))
    return "; ".join(f"{', '.join(k)} (seeds {', '.join(map(str, sorted(s)))})" for k, s in classes.items())


def block_of(rec: dict) -> tuple[int, str]:
    """A record's block, (seed, machine): two arms pair on a block, the same seed (initial
    weights, training videos) trained on the same processor (the kernels' numerics); a seed
    both arms trained on different machines is no pair."""
    return rec["config"]["seed"], runs.machine_name(rec.get("provenance"))


def confounds(row: list[dict], reference: list[dict]) -> str | None:
    """What the arms of a comparison differ in besides their configs, or None when nothing:
    records of an uncommitted tree (their code is unknowable), a row mixing device classes,
    precisions, torch versions or code versions, or two arms that differ in one of them (the
    code version only where both arms run the same model); every reason found is named.
    Records whose commit git cannot resolve (no checkout) read '(unknown commit)' and are
    compared as one version."""
    found = []
    classes = {"row": [design_class(r) for r in row], "reference": [design_class(r) for r in reference]}
    seen = {name: {key: sorted({c[key] for c in arm}) for key in ("device", "precision", "torch", "code")}
            for name, arm in classes.items()}
    for name, arm in classes.items():
        if any(c["code"] == "uncommitted tree" for c in arm):
            found.append(f"the {name} has records of an uncommitted tree")
        found += [f"the {name} mixes {key} {' and '.join(v)}" for key, v in seen[name].items() if len(v) > 1]
    same_model = row[0]["config"]["model"] == reference[0]["config"]["model"]
    for key in ("device", "precision", "torch") + (("code",) if same_model else ()):
        a, b = seen["row"][key], seen["reference"][key]
        if set(a).isdisjoint(b):              # every reason is named, not the first one alone
            found.append(f"{key} {' and '.join(a)} vs {' and '.join(b)}")
    # a seed both arms have is a pair only if both trained on the same machine (rows may hold
    # seeds from several machines of one device class: their pairs still cancel the machine;
    # `comparisons` leaves a split seed out of the pairs). Without two such pairs the arms
    # compare unpaired, which cancels the machine only when both trained on one and the same.
    machines = {name: {block_of(r) for r in arm} for name, arm in (("row", row), ("reference", reference))}
    on = {name: sorted({m for _, m in blocks}) for name, blocks in machines.items()}
    if (len(machines["row"] & machines["reference"]) < 2 and (len(on["row"]) > 1 or on["row"] != on["reference"])
            and classes["row"][0]["device"] == classes["reference"][0]["device"]):   # else: said already
        found.append(f"fewer than two seeds trained on one machine in both arms (row on "
                     f"{' and '.join(on['row'])}, reference on {' and '.join(on['reference'])})")
    return "; ".join(found) or None
