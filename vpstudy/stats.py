"""Comparisons over seeds: is a difference between two table rows larger than the seed noise?

    d = compare([40.1, 41.0, 40.6], [42.3, 41.9, 42.8])       # row vs reference row
    d.diff, d.low, d.high, d.detected                          # mean difference, 95% CI, CI excludes 0
    verdict("StarReLU vs GELU", "mse", d, paper_diff=-0.05)    # one sentence for the report

The interval is Welch's t interval for the difference of two means (unequal variances,
Welch–Satterthwaite degrees of freedom): the right tool for a few seeds per row, where a
bootstrap over three values cannot resolve a 95% interval. With fewer than two seeds on
either side there is no interval and nothing is declared detected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from scipy import stats as _scipy_stats

LEVEL = 0.95
LOWER_IS_BETTER = {"mse": True, "mae": True, "ssim": False, "ssim_strict": False, "psnr": False}


@dataclass(frozen=True)
class Difference:
    """``row − reference`` over seeds: mean difference and its confidence interval."""

    diff: float
    low: float
    high: float
    n_row: int
    n_ref: int
    reference_mean: float
    level: float = LEVEL

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def detected(self) -> bool:
        """The interval excludes zero."""
        return self.has_interval and (self.low > 0 or self.high < 0)

    @property
    def relative(self) -> float:
        """The difference as a fraction of the reference row's mean."""
        return self.diff / self.reference_mean if self.reference_mean else math.nan


def compare(row: Sequence[float], reference: Sequence[float], level: float = LEVEL) -> Difference:
    """Welch's ``level`` interval for mean(row) − mean(reference)."""
    a = [float(v) for v in row]
    b = [float(v) for v in reference]
    if not a or not b:
        raise ValueError("compare needs at least one value on each side")
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    diff = ma - mb
    if len(a) < 2 or len(b) < 2:
        return Difference(diff, math.nan, math.nan, len(a), len(b), mb, level)
    va = sum((v - ma) ** 2 for v in a) / (len(a) - 1) / len(a)
    vb = sum((v - mb) ** 2 for v in b) / (len(b) - 1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(diff, diff, diff, len(a), len(b), mb, level)
    dof = (va + vb) ** 2 / ((va ** 2) / (len(a) - 1) + (vb ** 2) / (len(b) - 1))
    half = float(_scipy_stats.t.ppf(0.5 + level / 2, dof)) * se
    return Difference(diff, diff - half, diff + half, len(a), len(b), mb, level)


def _better_or_worse(metric: str, diff: float) -> str:
    lower = LOWER_IS_BETTER.get(metric.partition("@")[0], True)
    return "better" if (diff < 0) == lower else "worse"


def verdict(label: str, metric: str, d: Difference, paper_diff: float | None = None,
            paper_reference: float | None = None, digits: int = 2) -> str:
    """One sentence: what the paper found, what this run found, and whether it is detectable."""
    f = f"{{:+.{digits}f}}"
    parts = [f"**{label}** ({metric}):"]
    if paper_diff is not None:
        rel = f" ({paper_diff / paper_reference:+.1%})" if paper_reference else ""
        parts.append(f"paper {f.format(paper_diff)}{rel};")
    here = f"here {f.format(d.diff)} ({d.relative:+.1%})"
    if not d.has_interval:
        parts.append(f"{here} from {d.n_row} and {d.n_ref} seed(s): no interval, not testable.")
        return " ".join(parts)
    ci = f"{d.level:.0%} CI {f.format(d.low)}..{f.format(d.high)}, seeds {d.n_row} vs {d.n_ref}"
    if not d.detected:
        parts.append(f"{here}, {ci}: not detectable at this scale.")
    else:
        parts.append(f"{here}, {ci}: detected, {_better_or_worse(metric, d.diff)} than the reference.")
        if paper_diff is not None and paper_diff != 0 and (paper_diff > 0) != (d.diff > 0):
            parts.append("The direction disagrees with the paper's.")
    return " ".join(parts)
