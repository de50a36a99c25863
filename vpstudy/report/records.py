"""Reading the run records the report is made from: completed records by run id, and one
metric of a record ("mse" on the main test set, "mse@3" on the 3-digit one).
"""

from __future__ import annotations

import numpy as np

from vpstudy import runs

DIGITS = {"mse": 2, "mae": 2, "ssim": 4, "ssim_strict": 4, "psnr": 2}


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
    """``metric`` of a record: ``"mse"`` on the main test set, ``"mse@3"`` on the 3-digit one."""
    name, _, extra = metric.partition("@")
    res = (rec.get("extra_tests") or {}).get(extra) if extra else rec.get("test")
    return None if res is None else res.get(name)


def metric_values(recs: list[dict], metric: str) -> list[float]:
    return [v for v in (metric_of(r, metric) for r in recs) if v is not None]
