"""Comparisons over seeds: Welch intervals and the verdict sentences built on them."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from vpstudy.stats import compare, verdict


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
    assert "not detectable at this scale" in verdict("x vs y", "ssim", noise, paper_diff=0.01)
    worse_ssim = compare([0.5, 0.51, 0.5], [0.6, 0.61, 0.6])
    assert "worse than the reference" in verdict("x vs y", "ssim", worse_ssim)
