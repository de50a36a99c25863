"""Comparisons over seeds: is a difference between two table rows larger than the seed noise?

    d = paired({0: 40.1, 1: 41.0, 2: 40.6}, {0: 42.3, 1: 41.9, 2: 42.8})   # arms share seeds
    d = compare([40.1, 41.0, 40.6], [42.3, 41.9, 42.8])                    # Welch, unpaired
    d = pooled(table, "StarReLU", "GELU")          # config + seed model over a whole table
    d.diff, d.low, d.high, d.p, d.detected         # mean difference, 95% CI, p, CI excludes 0
    d.detectable()                                 # smallest |difference| seen with 80% power
    holm([d1.p, d2.p, ...])                        # Holm-adjusted p-values of a family

The design: arms with the same seed share the initialisation and the training stream (same
batch size, same device), so the **paired** interval over common seeds (t on the seed-wise
differences, n - 1 degrees of freedom) is the primary one where both arms have two or more
seeds in common. **Pooled**: an additive model of a table's records, value = config effect +
seed effect + noise, fitted by least squares, gives the contrast of two configs with the
residual variance pooled over every config of the table (more degrees of freedom; it assumes
one noise level for the table). **Welch**'s interval (unequal variances) is the fallback for
arms without common seeds. With fewer than two values on either side there is no interval
and nothing is declared detected.

Many comparisons: `holm` adjusts the p-values of one family (a study) for multiplicity;
a comparison is detected after adjustment when its Holm p-value is below 1 - ``level``.
`Difference.detectable` is the smallest difference the design detects with 80% power at the
unadjusted level, ``(t_{1-a/2} + t_{power}) * se``; `seeds_needed` inverts it for a given
effect and spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as _scipy_stats

LEVEL = 0.95
POWER = 0.8
LOWER_IS_BETTER = {"mse": True, "mae": True, "ssim": False, "ssim_strict": False, "psnr": False}


@dataclass(frozen=True)
class Difference:
    """``row − reference`` over seeds: mean difference, its standard error and interval."""

    diff: float
    low: float
    high: float
    n_row: int
    n_ref: int
    reference_mean: float
    level: float = LEVEL
    se: float = math.nan
    dof: float = math.nan
    design: str = "welch"          # "paired" (n_row = n_ref = pairs), "pooled" or "welch"

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def detected(self) -> bool:
        """The interval excludes zero (no multiplicity adjustment)."""
        return self.has_interval and (self.low > 0 or self.high < 0)

    @property
    def relative(self) -> float:
        """The difference as a fraction of the reference row's mean."""
        return self.diff / self.reference_mean if self.reference_mean else math.nan

    @property
    def p(self) -> float:
        """Two-sided p-value of ``diff = 0`` (nan without an interval)."""
        if not self.has_interval:
            return math.nan
        if self.se == 0:
            return 0.0 if self.diff != 0 else 1.0
        return float(2 * _scipy_stats.t.sf(abs(self.diff) / self.se, self.dof))

    def detectable(self, power: float = POWER) -> float:
        """Smallest |difference| this design detects with probability ``power`` at ``level``."""
        if not self.has_interval:
            return math.nan
        return _detectable(self.se, self.dof, self.level, power)


def _detectable(se: float, dof: float, level: float, power: float) -> float:
    return float((_scipy_stats.t.ppf(0.5 + level / 2, dof) + _scipy_stats.t.ppf(power, dof)) * se)


def _interval(diff: float, se: float, dof: float, n_row: int, n_ref: int, ref_mean: float,
              level: float, design: str) -> Difference:
    half = float(_scipy_stats.t.ppf(0.5 + level / 2, dof)) * se if se > 0 else 0.0
    return Difference(diff, diff - half, diff + half, n_row, n_ref, ref_mean, level, se, dof, design)


def _no_interval(diff: float, n_row: int, n_ref: int, ref_mean: float, level: float, design: str) -> Difference:
    return Difference(diff, math.nan, math.nan, n_row, n_ref, ref_mean, level, math.nan, math.nan, design)


def compare(row: Sequence[float], reference: Sequence[float], level: float = LEVEL) -> Difference:
    """Welch's ``level`` interval for mean(row) − mean(reference)."""
    a = [float(v) for v in row]
    b = [float(v) for v in reference]
    if not a or not b:
        raise ValueError("compare needs at least one value on each side")
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    diff = ma - mb
    if len(a) < 2 or len(b) < 2:
        return _no_interval(diff, len(a), len(b), mb, level, "welch")
    va = sum((v - ma) ** 2 for v in a) / (len(a) - 1) / len(a)
    vb = sum((v - mb) ** 2 for v in b) / (len(b) - 1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(diff, diff, diff, len(a), len(b), mb, level, 0.0, len(a) + len(b) - 2, "welch")
    dof = (va + vb) ** 2 / ((va ** 2) / (len(a) - 1) + (vb ** 2) / (len(b) - 1))
    return _interval(diff, se, dof, len(a), len(b), mb, level, "welch")


def paired(row: Mapping[int, float], reference: Mapping[int, float], level: float = LEVEL) -> Difference:
    """The paired ``level`` interval over the seeds both arms have: t on the seed-wise
    differences (n - 1 degrees of freedom). ``reference_mean`` is over those seeds too."""
    seeds = sorted(set(row) & set(reference))
    if not seeds:
        raise ValueError("paired needs at least one seed that both arms have")
    d = np.array([float(row[s]) - float(reference[s]) for s in seeds])
    ref_mean = float(np.mean([float(reference[s]) for s in seeds]))
    n = len(seeds)
    if n < 2:
        return _no_interval(float(d.mean()), n, n, ref_mean, level, "paired")
    se = float(d.std(ddof=1) / math.sqrt(n))
    return _interval(float(d.mean()), se, n - 1, n, n, ref_mean, level, "paired")


def pooled(table: Mapping[str, Mapping[int, float]], row: str, reference: str,
           level: float = LEVEL) -> Difference:
    """``row − reference`` from an additive model of a whole table, fitted by least squares:
    value[config, seed] = config effect + seed effect + noise, one noise variance for all.

    table: ``{config: {seed: value}}`` (every config of the table, any seeds). The contrast's
    standard error uses the residual variance with n − rank degrees of freedom; without a
    residual degree of freedom there is no interval.
    """
    if row not in table or reference not in table or not table[row] or not table[reference]:
        raise ValueError(f"pooled needs values for both {row!r} and {reference!r}")
    configs = sorted(table)
    seeds = sorted({s for v in table.values() for s in v})
    obs = [(c, s, float(v)) for c in configs for s, v in sorted(table[c].items())]
    X = np.zeros((len(obs), len(configs) + len(seeds) - 1))
    for i, (c, s, _) in enumerate(obs):
        X[i, configs.index(c)] = 1.0
        if seeds.index(s) > 0:                           # the first seed is the baseline level
            X[i, len(configs) + seeds.index(s) - 1] = 1.0
    y = np.array([v for _, _, v in obs])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    contrast = np.zeros(X.shape[1])
    contrast[configs.index(row)], contrast[configs.index(reference)] = 1.0, -1.0
    diff = float(contrast @ beta)
    ref_mean = float(np.mean(list(table[reference].values())))
    n_row, n_ref = len(table[row]), len(table[reference])
    dof = len(obs) - np.linalg.matrix_rank(X)
    if dof < 1:
        return _no_interval(diff, n_row, n_ref, ref_mean, level, "pooled")
    resid = y - X @ beta
    sigma2 = float(resid @ resid) / dof
    se = math.sqrt(max(0.0, float(contrast @ np.linalg.pinv(X.T @ X) @ contrast) * sigma2))
    return _interval(diff, se, dof, n_row, n_ref, ref_mean, level, "pooled")


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (nan entries are left out of the family and stay nan)."""
    idx = [i for i, p in enumerate(pvalues) if math.isfinite(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def seeds_needed(effect: float, spread: float, design: str = "paired", level: float = LEVEL,
                 power: float = POWER, most: int = 100) -> int | None:
    """Seeds per arm that detect ``effect`` with probability ``power`` at ``level``.

    spread: the sd of the seed-wise differences (``paired``) or of one arm's values
    (``welch``: two arms of that sd, Welch's degrees of freedom 2(n - 1)). None if more than
    ``most`` would be needed or the effect is zero."""
    if not (math.isfinite(effect) and math.isfinite(spread)) or effect == 0:
        return None
    for n in range(2, most + 1):
        if design == "paired":
            se, dof = spread / math.sqrt(n), n - 1
        else:
            se, dof = spread * math.sqrt(2 / n), 2 * (n - 1)
        if _detectable(se, dof, level, power) <= abs(effect):
            return n
    return None


def _better_or_worse(metric: str, diff: float) -> str:
    if metric.partition("@")[0] == "sharpness":      # no better direction: say which way
        return "sharper" if diff > 0 else "less sharp"
    lower = LOWER_IS_BETTER.get(metric.partition("@")[0], True)
    return "better" if (diff < 0) == lower else "worse"


DESIGN_TEXT = {"paired": "paired over {n} seeds", "welch": "Welch, seeds {a} vs {b}",
               "pooled": "pooled table model"}


def verdict(label: str, metric: str, d: Difference, paper_diff: float | None = None,
            paper_reference: float | None = None, digits: int = 2, *,
            holm_p: float | None = None, secondary: Difference | None = None,
            confounded: str | None = None, seed_sd: float | None = None) -> str:
    """One sentence: what the paper found, what this run found, and what a referee may conclude.

    With ``holm_p`` the verdict is the multiplicity-adjusted one (detected when
    ``holm_p < 1 - level``); ``secondary`` (the pooled interval) is named beside the primary
    one; ``confounded`` (what the arms differ in besides the row) stops any verdict. A detected
    difference smaller than ``seed_sd`` (the rows' seed-to-seed sd) is called tentative: the
    pairing resolves it, but one more seed could move it by as much."""
    f = f"{{:+.{digits}f}}"
    parts = [f"**{label}** ({metric}):"]
    if paper_diff is not None:
        rel = f" ({paper_diff / paper_reference:+.1%})" if paper_reference else ""
        parts.append(f"paper {f.format(paper_diff)}{rel};")
    here = f"here {f.format(d.diff)} ({d.relative:+.1%})"
    if confounded:
        parts.append(f"{here}: confounded ({confounded}); not tested.")
        return " ".join(parts)
    if not d.has_interval:
        parts.append(f"{here} from {d.n_row} and {d.n_ref} seed(s): no interval, not testable.")
        return " ".join(parts)
    design = DESIGN_TEXT[d.design].format(n=d.n_row, a=d.n_row, b=d.n_ref)
    ci = f"{d.level:.0%} CI {f.format(d.low)}..{f.format(d.high)} ({design})"
    if secondary is not None and secondary.has_interval:
        ci += f"; {DESIGN_TEXT[secondary.design]} {f.format(secondary.low)}..{f.format(secondary.high)}"
        if secondary.detected != d.detected:
            ci += " (the two disagree)"
    detected = d.detected if holm_p is None else holm_p < 1 - d.level
    adjusted = "" if holm_p is None else f", Holm p = {holm_p:.3g}"
    if not detected:
        parts.append(f"{here}, {ci}{adjusted}: not detected; smallest detectable difference at "
                     f"{POWER:.0%} power ≈ {abs(d.detectable()):.{digits}f}.")
    else:
        if seed_sd is not None and abs(d.diff) < seed_sd:
            parts.append(f"{here}, {ci}{adjusted}: tentatively detected, {_better_or_worse(metric, d.diff)} "
                         f"than the reference, but smaller than the rows' seed-to-seed sd "
                         f"({seed_sd:.{digits}f}): not a finding until more seeds confirm it.")
        else:
            parts.append(f"{here}, {ci}{adjusted}: detected, {_better_or_worse(metric, d.diff)} than the reference.")
        if paper_diff is not None and paper_diff != 0 and (paper_diff > 0) != (d.diff > 0):
            parts.append("The direction disagrees with the paper's.")
    if holm_p is not None and d.detected and not detected:
        parts.append("(The unadjusted interval excludes 0.)")
    return " ".join(parts)
