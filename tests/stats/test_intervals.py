"""Confidence intervals against hand-computed values."""

from __future__ import annotations

import math

import pytest

from magister.stats import mean_ci, wilson


def test_wilson_known_values() -> None:
    # 8/10 at 95%: centre (0.8 + 1.92/10) / 1.384 = 0.7167, half-width 0.2266 (Newcombe 1998, method 3).
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_wilson_stays_in_unit_interval_and_narrows() -> None:
    assert wilson(100, 100)[1] == pytest.approx(1.0)
    assert wilson(500, 1000)[1] - wilson(500, 1000)[0] < wilson(5, 10)[1] - wilson(5, 10)[0]


def test_mean_ci_t_interval() -> None:
    values = [0.0, 0.5, 1.0, 0.5]
    sd = math.sqrt(((0.5) ** 2 * 2) / 3)
    half = 3.182446 * sd / 2  # t(0.975, df=3)
    low, high = mean_ci(values)
    assert low == pytest.approx(max(0, 0.5 - half), abs=1e-5) and high == pytest.approx(min(1, 0.5 + half), abs=1e-5)
