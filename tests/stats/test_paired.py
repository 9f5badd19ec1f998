"""Paired comparison: McNemar's exact test and the paired bootstrap against known values."""

from __future__ import annotations

import numpy as np
import pytest

from magister.stats.paired import bootstrap_diff, compare, mcnemar


def test_mcnemar_matches_hand_computed_binomial() -> None:
    # 2 items only A got right, 8 only B got right, 5 both right, 5 both wrong.
    a = [True] * 2 + [False] * 8 + [True] * 5 + [False] * 5
    b = [False] * 2 + [True] * 8 + [True] * 5 + [False] * 5
    # two-sided exact: 2 * P(X <= 2 | n=10, p=1/2) = 2 * (1 + 10 + 45) / 1024
    assert mcnemar(a, b) == pytest.approx(112 / 1024)
    result = compare(a, b)
    assert result.test == "mcnemar-exact" and (result.a_only, result.b_only) == (2, 8)
    assert result.diff == pytest.approx(-0.3) and result.n == 20


def test_mcnemar_without_discordant_items_is_one() -> None:
    assert mcnemar([True, False], [True, False]) == 1.0


def test_bootstrap_interval_matches_the_normal_interval_for_large_n() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, 2000)
    b = np.clip(a - 0.05 + rng.normal(0, 0.2, 2000), 0, 1)
    low, high, p = bootstrap_diff(a, b, rounds=4000)
    d = a - b
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    assert low == pytest.approx(d.mean() - half, abs=0.003)
    assert high == pytest.approx(d.mean() + half, abs=0.003)
    assert p < 0.001


def test_bootstrap_of_no_difference_is_not_significant() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, 300)
    result = compare(a, a[::-1].copy(), rounds=2000)
    assert result.test == "paired-bootstrap" and result.ci_low < 0 < result.ci_high and result.p_value > 0.05


def test_unpaired_input_is_refused() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        compare([1, 0], [1])
    with pytest.raises(ValueError, match="no paired items"):
        compare([], [])
