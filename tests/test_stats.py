"""Comparisons over seeds: paired, pooled and Welch intervals, Holm, the smallest detectable
difference, seeds needed, and the verdict sentences built on them; and the report's confound
check on records whose arms differ in device."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from vpstudy.stats import compare, holm, paired, pooled, seeds_needed, verdict


def test_welch_interval_matches_the_textbook_formula():
    a, b = [40.1, 41.0, 40.6], [42.3, 41.9, 42.8, 42.0]
    d = compare(a, b)
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 4
    dof = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    half = scipy_stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    assert d.diff == pytest.approx(np.mean(a) - np.mean(b))
    assert (d.low, d.high) == pytest.approx((d.diff - half, d.diff + half))
    # scipy's Welch test agrees on significance at the same level
    p = scipy_stats.ttest_ind(a, b, equal_var=False).pvalue
    assert d.detected == (p < 0.05)


def test_a_known_difference_is_detected_and_a_zero_difference_is_not():
    rng = np.random.default_rng(0)
    ref = 100 + rng.normal(0, 1, 3)
    shifted = ref - 10 + rng.normal(0, 1, 3)          # 10 units better, noise 1
    d = compare(shifted, ref)
    assert d.detected and d.high < 0
    same = compare(ref + rng.normal(0, 1, 3), ref)    # same mean, noise 1
    assert not same.detected and same.low < 0 < same.high
    assert d.relative == pytest.approx(d.diff / np.mean(ref))


def test_one_seed_gives_no_interval_and_no_detection():
    d = compare([1.0], [2.0, 2.1])
    assert not d.has_interval and not d.detected
    assert "not testable" in verdict("a vs b", "mse", d)


def test_verdicts_say_what_was_found_and_flag_a_reversed_direction():
    better = compare([10.0, 10.2, 9.9], [12.0, 12.1, 11.8])
    text = verdict("StarReLU vs GELU", "mse", better, paper_diff=+0.05, paper_reference=41.28)
    assert "detected, better than the reference" in text
    assert "disagrees with the paper" in text
    assert "paper +0.05 (+0.1%)" in text
    noise = compare([10.0, 12.0, 11.0], [11.0, 10.0, 12.0])
    assert "not detected; smallest detectable difference at 80% power ≈" in verdict(
        "x vs y", "ssim", noise, paper_diff=0.01)
    worse_ssim = compare([0.5, 0.51, 0.5], [0.6, 0.61, 0.6])
    assert "worse than the reference" in verdict("x vs y", "ssim", worse_ssim)


def test_paired_interval_and_p_match_scipys_paired_t_test():
    row = {0: 40.1, 1: 41.0, 2: 40.6, 3: 40.9}
    ref = {0: 40.5, 1: 41.6, 2: 40.9, 3: 41.2, 9: 50.0}      # seed 9 has no pair: left out
    d = paired(row, ref)
    diffs = np.array([row[s] - ref[s] for s in range(4)])
    test = scipy_stats.ttest_rel([row[s] for s in range(4)], [ref[s] for s in range(4)])
    ci = test.confidence_interval(0.95)
    assert (d.design, d.n_row, d.dof) == ("paired", 4, 3)
    assert d.diff == pytest.approx(diffs.mean())
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high))
    assert d.p == pytest.approx(test.pvalue)
    # pairing removes the shared seed effect: the same values unpaired cannot see it
    assert d.detected and not compare(list(row.values()), [ref[s] for s in range(4)]).detected


def test_pooled_contrast_matches_statsmodels_ols_with_config_and_seed_effects():
    sm = pytest.importorskip("statsmodels.formula.api")
    import pandas as pd

    rng = np.random.default_rng(1)
    effect = {"a": 0.0, "b": -0.8, "c": 0.3}
    seed_effect = rng.normal(0, 1.0, 4)
    table = {c: {s: 20 + e + seed_effect[s] + rng.normal(0, 0.2) for s in range(4)} for c, e in effect.items()}
    del table["c"][3]                                             # unbalanced on purpose
    d = pooled(table, "b", "a")
    df = pd.DataFrame([(c, s, v) for c, vs in table.items() for s, v in vs.items()],
                      columns=["config", "seed", "y"])
    fit = sm.ols("y ~ C(config) + C(seed)", df).fit()
    name = "C(config)[T.b]"                                        # b - a, a the baseline level
    assert d.diff == pytest.approx(fit.params[name])
    assert d.se == pytest.approx(fit.bse[name])
    assert d.dof == fit.df_resid == 11 - 6
    assert (d.low, d.high) == pytest.approx(tuple(fit.conf_int().loc[name]))
    assert d.p == pytest.approx(fit.pvalues[name])


def test_holm_matches_statsmodels_and_skips_untested_entries():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = [0.01, 0.04, 0.03, 0.005, 0.2]
    expected = multitest.multipletests(p, method="holm")[1]
    assert holm(p) == pytest.approx(list(expected))
    assert math.isnan(holm([0.01, math.nan, 0.04])[1])                       # nan stays nan
    assert holm([0.01, math.nan, 0.04])[::2] == pytest.approx([0.02, 0.04])


def test_smallest_detectable_difference_has_the_stated_power():
    """Simulate the paired design: a true difference equal to the detectable one is detected
    in about 80% of experiments (the noncentral-t power of a two-sided test)."""
    rng = np.random.default_rng(2)
    sd, n = 0.3, 5
    probe = paired({s: rng.normal(0, sd) for s in range(n)}, {s: 0.0 for s in range(n)})
    mdd_for_true_sd = probe.detectable() / probe.se * sd / math.sqrt(n)
    hits = 0
    trials = 4000
    for _ in range(trials):
        row = {s: mdd_for_true_sd + rng.normal(0, sd) for s in range(n)}
        hits += paired(row, {s: 0.0 for s in range(n)}).detected
    assert 0.75 < hits / trials < 0.85
    # seeds_needed inverts it: n seeds suffice for that effect, n - 1 do not
    assert seeds_needed(mdd_for_true_sd, sd, "paired") == n
    assert seeds_needed(0.0, sd) is None and seeds_needed(1e-6, sd) is None


def test_holm_verdict_and_confounded_verdict():
    d = paired({0: 10.0, 1: 10.2, 2: 9.9}, {0: 12.0, 1: 12.1, 2: 11.8})
    assert "detected, better" in verdict("x", "mse", d, holm_p=0.01)
    text = verdict("x", "mse", d, holm_p=0.2)
    assert "not detected" in text and "unadjusted interval excludes 0" in text
    assert "confounded (device cpu vs cuda); not tested" in verdict("x", "mse", d, confounded="device cpu vs cuda")


def _record(model, seed, mse, device="cpu", precision="fp32", commit=None, machine="A"):
    return {"config": {"model": model, "seed": seed}, "test": {"mse": mse},
            "provenance": {"hardware": {"device": device, "cpu": machine, "name": f"CPU ({machine}, 1 thread)"},
                           "precision": precision,
                           "torch_version": "2.13.0+cpu", "git_commit": commit}}


def test_a_seed_split_across_machines_is_no_pair_and_arms_without_pairs_are_confounded():
    from vpstudy.report.comparisons import adjust_for_multiplicity, table_comparisons
    from vpstudy.report.records import confounds

    def arm(model, machines, mse=19.0, step=0.0):
        return [_record(model, s, mse + step * s, machine=m) for s, m in enumerate(machines)]

    # seeds 0-2 on machine A, 3-4 on machine B, in both arms: every pair on one machine
    assert confounds(arm("gsta", "AAABB"), arm("gsta", "AAABB")) is None
    assert confounds(arm("gsta", "AAABB"), arm("gsta", "AAA")) is None       # seeds 3-4 unpaired
    assert confounds(arm("gsta", "AAABB"), arm("gsta", "AAAAB")) is None     # seed 3 is no pair
    # no two seeds on one machine in both arms: unpaired across machines, confounded
    text = confounds(arm("gsta", "AAA"), arm("gsta", "BBB"))
    assert text == "fewer than two seeds trained on one machine in both arms (row on A, reference on B)"
    assert confounds(arm("gsta", "ABB"), arm("gsta", "BAA")) == (
        "fewer than two seeds trained on one machine in both arms (row on A and B, reference on A and B)")
    assert confounds(arm("gsta", "A"), arm("gsta", "AA")) is None            # one machine: Welch is fine
    other_threads = arm("gsta", "AAA")
    other_threads[1]["provenance"]["hardware"]["name"] = "CPU (A, 2 threads)"   # same CPU, other threads
    assert confounds(arm("gsta", "AAA"), other_threads) is None

    # the paired interval uses the four same-machine pairs only: seed 3's values (a +5 offset
    # on machine B in the row) would move the mean difference from 1.0 to 2.0
    row = arm("gsta", "AAABB", mse=20.0, step=0.1)
    row[3]["test"]["mse"] += 5.0
    ref = arm("gsta", "AAAAB", step=0.1)
    row[1]["test"]["mse"] += 0.01                   # a little noise, for an interval
    recs_of = {("T", "r"): row, ("T", "ref"): ref}
    entries = {("T", "r"): {}, ("T", "ref"): {}}
    for r in row + ref:
        r["history"] = [{}]
    (c,) = table_comparisons("T", [("r", "ref", ["mse"])], recs_of, entries)
    assert c["design"] == "paired" and c["seeds"] == (4, 4) and c["left_out"] == [3]
    assert c["diff"] == pytest.approx(1.0025) and c["confounded"] is None
    adjust_for_multiplicity([c])
    assert "(paired over 4 seeds)" in c["verdict"]
    assert c["verdict"].endswith("Seed 3 left out of the pairs: the arms trained it on different machines.")


def test_arms_on_different_devices_precisions_or_dirty_trees_are_confounded():
    from vpstudy.report.records import confounds, design_text

    cpu = [_record("poolformer", s, 19.0 + s) for s in range(3)]
    gpu = [_record("poolformer", s, 19.5 + s, device="cuda") for s in range(3)]
    bf16 = [_record("crevnet", s, 18.0, precision="bf16 autocast") for s in range(3)]
    assert confounds(cpu, [_record("poolformer", s, 20.0) for s in range(3)]) is None
    assert confounds(gpu, cpu) == "device cuda vs cpu"
    assert "precision bf16 autocast vs fp32" in confounds(bf16, cpu)
    mixed = cpu[:2] + gpu[2:]
    assert "the row mixes device cpu and cuda" in confounds(mixed, cpu)
    dirty = [_record("poolformer", s, 19.0, commit="abc+dirty") for s in range(3)]
    assert "uncommitted tree" in confounds(dirty, cpu)
    assert design_text(cpu) == "cpu, fp32, torch 2.13, poolformer v0"
    assert "(seeds 2)" in design_text(mixed)
    # every reason is named: a reference mixing devices that also differs in precision
    both = confounds(bf16, mixed)
    assert both == "the reference mixes device cpu and cuda; precision bf16 autocast vs fp32", both


def test_gsta_records_before_the_depthwise_change_are_another_code_version():
    """56fcafd changed gSTA's numbers; a record of its parent commit is version 0."""
    import subprocess

    from vpstudy.report.records import code_version, confounds

    try:
        parent = subprocess.run(["git", "rev-parse", "56fcafd^"], capture_output=True, text=True,
                                check=True).stdout.strip()
        head = subprocess.run(["git", "rev-parse", "56fcafd"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git history here")
    old, new = _record("gsta", 0, 17.3, commit=parent), _record("gsta", 0, 17.0, commit=head)
    assert (code_version(old), code_version(new)) == ("gsta v0", "gsta v1")
    assert confounds([old], [new]) == "code gsta v0 vs gsta v1"
    assert confounds([_record("poolformer", 0, 18.9, commit=parent)], [new]) is None   # other models


def test_a_detected_difference_smaller_than_the_seed_spread_is_only_tentative():
    """Pairing can resolve a 0.05 difference between rows whose seeds spread by 0.15; the
    verdict must not present it as a finding."""
    row, ref = {0: 19.60, 1: 19.75, 2: 19.90}, {0: 19.65, 1: 19.80, 2: 19.96}
    d = paired(row, ref)
    assert d.detected
    text = verdict("x", "mse", d, holm_p=0.03, seed_sd=0.15)
    assert "tentatively detected" in text and "seed-to-seed sd (0.15)" in text
    assert "tentatively" not in verdict("x", "mse", d, holm_p=0.03, seed_sd=0.01)


def test_seeds_needed_under_holm_uses_the_strictest_step_of_the_family():
    """The seeds-needed table's last column: the observed effect at 5%/m, the level Holm
    applies first; more seeds than at the unadjusted 5%, and exactly seeds_needed at 5%/m."""
    from vpstudy.report.comparisons import adjust_for_multiplicity, seeds_needed_rows

    def comparison(row: dict, ref: dict, name: str) -> dict:
        d = paired(row, ref)
        return {"table": "T", "row": name, "reference": "ref", "metric": "mse", "difference": d,
                "pooled": None, "diff": d.diff, "confounded": None, "holm_p": math.nan,
                "detected_holm": False, "tentative": False, "paper_diff": -1.0,
                "paper_reference": 20.0, "seed_sd": None}

    ref = {0: 20.0, 1: 20.4, 2: 19.8}
    family = [comparison({0: 19.5, 1: 20.3, 2: 19.5}, ref, "a"),     # differences -0.5, -0.1, -0.3
              comparison({0: 19.8, 1: 20.0, 2: 19.8}, ref, "b")]     # -0.2, -0.4, 0.0
    adjust_for_multiplicity(family)
    rows = seeds_needed_rows(family)
    assert [r["family size"] for r in rows] == [2, 2]
    for r in rows:
        spread = r["spread"]
        assert r["seeds for the observed effect under Holm"] == seeds_needed(
            r["observed effect"], spread, "paired", level=1 - 0.05 / 2)
        assert r["seeds for the observed effect under Holm"] > r["seeds for the observed effect"]
    assert [r["observed effect"] for r in rows] == pytest.approx([-0.3, -0.2])
    assert [r["spread"] for r in rows] == pytest.approx([0.2, 0.2])       # sd of the differences


def test_per_frame_means_over_seeds_keep_only_the_metrics_every_seed_recorded():
    """A seed recorded before a per-frame metric existed (sharpness) next to one recorded after:
    the figure's mean over seeds uses the metrics both have (a KeyError stopped the report)."""
    from vpstudy.report.figures import _mean_test

    old = {"test": {"per_frame": {"mse": [1.0, 3.0], "ssim": [0.5, 0.7]}}}
    new = {"test": {"per_frame": {"mse": [3.0, 5.0], "ssim": [0.7, 0.9], "sharpness": [0.6, 0.5]}}}
    for recs in ([old, new], [new, old]):
        got = _mean_test(recs)["per_frame"]
        assert sorted(got) == ["mse", "ssim"]
        assert got["mse"] == pytest.approx([2.0, 4.0]) and got["ssim"] == pytest.approx([0.6, 0.8])
