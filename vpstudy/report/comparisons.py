"""The report's seed comparisons: for each pair of rows a table compares, the difference over
seeds, its intervals and a verdict a referee can check (`vpstudy.stats`).

    comps = table_comparisons("Table 2", [(row, ref, ["mse", "ssim"]), ...], recs_of, entries)
    adjust_for_multiplicity(every_comparison_of_the_study)    # Holm p, verdicts
    seeds_needed_rows(every_comparison_of_the_study)          # how many seeds each claim needs

Per comparison: the primary interval is seed-paired where the arms share two or more seeds
trained on one machine (a block: `records.block_of`), else Welch's; the secondary one comes from the
table's additive config + block model (`stats.pooled`). A comparison whose arms differ in
device, precision, torch or code version, or share fewer than two seeds trained on one machine
without both training on one (`records.confounds`), is *confounded*: it gets no verdict and is
left out of the family.
"""

from __future__ import annotations

import math
from statistics import stdev

from vpstudy import stats
from vpstudy.report.records import DIGITS, block_of, confounds, metric_of


def _by_block(recs: list[dict], metric: str) -> dict[tuple[int, str], float]:
    """Values by block, (seed, machine) (`records.block_of`)."""
    return {block_of(r): v for r in recs if (v := metric_of(r, metric)) is not None}


def left_out_seeds(row: dict, reference: dict) -> list[int]:
    """Seeds both arms have that are no pair (each arm trained them on another machine)."""
    shared = {s for s, _ in row} & {s for s, _ in reference}
    return sorted(shared - {s for s, _ in set(row) & set(reference)})


def left_out_text(seeds: list[int]) -> str:
    """'seed 3' or 'seeds 3, 4': the seeds a comparison leaves out of its pairs."""
    return f"seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}"


def table_comparisons(table: str, pairs: list[tuple[str, str, list[str]]], recs_of: dict,
                      entries: dict) -> list[dict]:
    """For each compared (row, reference, metrics) with records and each of its metrics: the
    primary and pooled differences, the paper's difference and what confounds the arms, if
    anything. Verdicts come with `adjust_for_multiplicity` (they need the whole study's family)."""
    trained = [k for k in recs_of if k[0] == table and recs_of[k] and recs_of[k][0].get("history")]
    table_values = {m: {k[1]: _by_block(recs_of[k], m) for k in trained}       # pooled model
                    for m in {m for *_, ms in pairs for m in ms}}
    comparisons = []
    for row, ref, metrics in pairs:
        a, b = recs_of.get((table, row), []), recs_of.get((table, ref), [])
        if not a or not b:
            continue
        confounded = confounds(a, b)
        for m in metrics:
            va, vb = _by_block(a, m), _by_block(b, m)
            if not va or not vb:
                continue
            common = set(va) & set(vb)
            d = stats.paired(va, vb) if len(common) >= 2 else stats.compare(list(va.values()), list(vb.values()))
            values = table_values[m]
            pooled = stats.pooled(values, row, ref) if row in values and ref in values else None
            sds = [stdev(v.values()) for v in (va, vb) if len(v) > 1]
            pa = entries[(table, row)].get("paper", {}).get(m)
            pb = entries[(table, ref)].get("paper", {}).get(m)
            comparisons.append({
                "table": table, "row": row, "reference": ref, "metric": m, "difference": d,
                "pooled": pooled, "diff": d.diff, "low": d.low, "high": d.high,
                "detected": d.detected and not confounded, "seeds": (d.n_row, d.n_ref),
                "design": d.design, "paper_diff": pa - pb if pa is not None and pb is not None else None,
                "paper_reference": pb, "confounded": confounded, "holm_p": math.nan,
                "detected_holm": False, "tentative": False, "detectable": d.detectable(),
                "seed_sd": sum(sds) / len(sds) if sds else None,
                "left_out": left_out_seeds(va, vb) if d.design == "paired" else []})
    return comparisons


def adjust_for_multiplicity(comparisons: list[dict]) -> None:
    """Holm over one family (a study's comparisons at a profile, every metric), then each
    comparison's verdict. Confounded comparisons and those without an interval are not tested."""
    tested = [c for c in comparisons if not c["confounded"] and c["difference"].has_interval]
    for c, p in zip(tested, stats.holm([c["difference"].p for c in tested])):
        c["holm_p"], c["detected_holm"] = p, p < 1 - c["difference"].level
        c["tentative"] = c["detected_holm"] and c["seed_sd"] is not None and abs(c["diff"]) < c["seed_sd"]
    for c in comparisons:
        c["family_size"] = len(tested)
        c["verdict"] = stats.verdict(
            f"{c['table']}: {c['row']} vs {c['reference']}", c["metric"], c["difference"],
            c["paper_diff"], c["paper_reference"], DIGITS.get(c["metric"].partition("@")[0], 4),
            holm_p=c["holm_p"] if math.isfinite(c["holm_p"]) else None, secondary=c["pooled"],
            confounded=c["confounded"], seed_sd=c["seed_sd"])
        if c.get("left_out") and not c["confounded"]:
            c["verdict"] += (f" {left_out_text(c['left_out']).capitalize()} left out of the pairs: the arms "
                             f"trained {'them' if len(c['left_out']) > 1 else 'it'} on different machines.")


def seeds_needed_rows(comparisons: list[dict]) -> list[dict]:
    """For each tested comparison with a paper difference: the spread of its design (sd of the
    seed-wise differences, or of one arm for Welch), the paper's effect at this scale (its
    relative change times our reference mean), the observed effect, and the seeds per arm that
    would detect each with 80% power at the 5% level (unadjusted), and the observed effect at
    5%/m, the level Holm applies to the first of the family's m comparisons (enough seeds
    there detect it under Holm whatever the other comparisons show)."""
    out = []
    for c in comparisons:
        d = c["difference"]
        if c["confounded"] or not d.has_interval:
            continue
        if d.design == "paired":
            spread = d.se * math.sqrt(d.n_row)
        else:                                    # Welch: the arms' pooled sd
            spread = d.se / math.sqrt(1 / d.n_row + 1 / d.n_ref)
        paper_effect = (c["paper_diff"] / c["paper_reference"] * d.reference_mean
                        if c["paper_diff"] is not None and c["paper_reference"] else math.nan)
        out.append({"table": c["table"], "comparison": f"{c['row']} vs {c['reference']}",
                    "metric": c["metric"], "design": d.design, "seeds now": d.n_row,
                    "spread": spread, "paper effect here": paper_effect,
                    "seeds for the paper effect": stats.seeds_needed(paper_effect, spread, d.design),
                    "observed effect": d.diff,
                    "seeds for the observed effect": stats.seeds_needed(d.diff, spread, d.design),
                    "family size": c["family_size"],
                    "seeds for the observed effect under Holm": stats.seeds_needed(
                        d.diff, spread, d.design, level=1 - (1 - d.level) / max(1, c["family_size"]))})
    return out
