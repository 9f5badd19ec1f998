"""Agreement statistics against hand-computed values."""

from __future__ import annotations

import pytest

from magister.stats.agreement import _benjamini_yekutieli, alt_test, bootstrap_ci, correlations, kappa


def test_kappa_by_hand() -> None:
    a = [1, 1, 1, 1, 0, 0, 0, 0, 1, 0]
    b = [1, 1, 1, 0, 0, 0, 0, 1, 1, 0]
    # observed 8/10; expected 0.5*0.5 + 0.5*0.5 = 0.5; kappa = (0.8 - 0.5) / 0.5
    assert kappa(a, b) == pytest.approx(0.6)
    assert kappa([1, 1], [1, 1]) == 1.0


def test_weighted_kappa_by_hand() -> None:
    # Two raters on a 3-point scale; quadratic weights w_ij = (i - j)^2 / (k - 1)^2
    a = [1, 2, 3, 1]
    b = [1, 3, 3, 2]
    # observed weighted disagreement: (0 + 1/4 + 0 + 1/4) / 4 = 0.125
    # expected: marginals a = {1: .5, 2: .25, 3: .25}, b = {1: .25, 2: .25, 3: .5}
    pa, pb = {1: 0.5, 2: 0.25, 3: 0.25}, {1: 0.25, 2: 0.25, 3: 0.5}
    expected = sum(pa[i] * pb[j] * (i - j) ** 2 / 4 for i in pa for j in pb)
    assert kappa(a, b, "quadratic") == pytest.approx(1 - 0.125 / expected)


def test_bootstrap_ci_brackets_the_estimate() -> None:
    a = [1, 0] * 30
    b = [1, 0] * 25 + [0, 1] * 5
    low, high = bootstrap_ci(kappa, a, b, rounds=500)
    assert low < kappa(a, b) < high and high - low < 0.6


def test_correlations() -> None:
    c = correlations([0.1, 0.4, 0.35, 0.8], [1, 2, 3, 4])
    assert c["spearman"] == pytest.approx(0.8) and c["kendall"] == pytest.approx(2 / 3)


def test_benjamini_yekutieli() -> None:
    # m = 3, c = 1 + 1/2 + 1/3 = 11/6; thresholds q * k / (m c) = 0.00909, 0.01818, 0.02727 at q = 0.05
    assert _benjamini_yekutieli([0.001, 0.02, 0.5], 0.05) == [True, False, False]
    assert _benjamini_yekutieli([0.001, 0.015, 0.02], 0.05) == [True, True, True]


def test_alt_test_constructed_case() -> None:
    # Three annotators who agree on 40 items; a judge that always agrees with them passes,
    # a judge that is wrong on every other item fails.
    truth = [i % 2 for i in range(40)]
    humans = [list(truth), list(truth), list(truth)]
    good = alt_test(truth, humans)
    assert good.passed and good.winning_rate == 1.0 and good.advantage_probability == 1.0
    bad_judge = [t if i % 2 else 1 - t for i, t in enumerate(truth)]
    bad = alt_test(bad_judge, humans)
    assert not bad.passed and bad.advantage_probability == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 3 annotators"):
        alt_test(truth, humans[:2])
