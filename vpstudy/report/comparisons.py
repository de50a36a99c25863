"""The report's seed comparisons: for each pair of rows a table compares, the difference over
seeds with its interval and a verdict sentence (`vpstudy.stats`).
"""

from __future__ import annotations

from vpstudy import stats
from vpstudy.report.records import DIGITS, metric_values


def table_comparisons(table: str, pairs: list[tuple[str, str]], recs_of: dict, entries: dict,
                       metrics: list[str]) -> list[dict]:
    """For each compared (row, reference) pair with records and each metric: the difference
    over seeds, its 95% interval (Welch), the paper's difference and a verdict sentence."""
    comparisons = []
    for row, ref in pairs:
        a, b = recs_of.get((table, row), []), recs_of.get((table, ref), [])
        for m in metrics:
            va, vb = metric_values(a, m), metric_values(b, m)
            if not va or not vb:
                continue
            d = stats.compare(va, vb)
            pa = entries[(table, row)].get("paper", {}).get(m)
            pb = entries[(table, ref)].get("paper", {}).get(m)
            paper_diff = pa - pb if pa is not None and pb is not None else None
            digits = DIGITS.get(m.partition("@")[0], 4)
            comparisons.append({
                "row": row, "reference": ref, "metric": m, "diff": d.diff, "low": d.low,
                "high": d.high, "detected": d.detected, "seeds": (d.n_row, d.n_ref),
                "paper_diff": paper_diff,
                "verdict": stats.verdict(f"{row} vs {ref}", m, d, paper_diff, pb, digits)})
    return comparisons
