"""Scores over repeated training runs: hand-computed values, the one-seed case, and coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from magister.stats.paired import mcnemar
from magister.stats.runs import compare_trainings, runs_interval


def test_one_seed_is_a_paired_t_test_on_items() -> None:
    a, b = [[1, 1, 1, 0, 1, 1]], [[0, 1, 0, 0, 1, 0]]
    result = compare_trainings(a, b)
    expected = stats.ttest_1samp(np.array(a[0]) - np.array(b[0]), 0.0)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.df == 5 and not result.training_variance and result.seed_sd == 0.0


def test_two_seeds_by_hand() -> None:
    # d = [[1,1,0,0],[1,1,1,1]]: run means .5 and 1, item means 1, 1, .5, .5, grand mean .75.
    # var(run means)/2 = .0625, var(item means)/4 = 1/48, residuals all +-.25 so MSE = .5/3,
    # V = .0625 + 1/48 - (1/6)/8 = .0625; df = (1/12)^2 / (.0625^2 + (1/48)^2 / 3).
    result = compare_trainings([[1, 1, 0, 0], [1, 1, 1, 1]], [[0, 0, 0, 0], [0, 0, 0, 0]])
    df = (1 / 12) ** 2 / (0.0625**2 + (1 / 48) ** 2 / 3)
    assert result.mean == pytest.approx(0.75) and result.df == pytest.approx(df)
    assert result.ci_high - result.mean == pytest.approx(stats.t.ppf(0.975, df) * 0.25)
    assert result.p_value == pytest.approx(2 * stats.t.sf(3.0, df))
    assert result.per_seed == [0.5, 1.0] and result.training_variance


def test_interval_of_one_arm_is_clipped_to_unit_range() -> None:
    result = runs_interval([[1, 1, 1, 0], [1, 1, 1, 1], [0, 1, 1, 1]])
    assert 0.0 <= result.ci_low <= result.mean <= result.ci_high <= 1.0 and result.p_value is None


def test_training_noise_widens_the_interval_that_mcnemar_would_ignore() -> None:
    # Two arms equal in truth; run-to-run noise shifts whole runs. Three seeds: no significance.
    rng = np.random.default_rng(0)
    items = rng.normal(0, 1.5, 400)
    def arm(shifts: list[float]) -> np.ndarray:
        return np.array([(items + s + rng.normal(0, 1, 400)) > 0 for s in shifts], dtype=float)
    a, b = arm([1.0, -0.8, 0.3]), arm([-0.6, 0.9, 0.1])
    assert all(mcnemar(a[s].astype(bool), b[s].astype(bool)) < 0.001 for s in range(3))  # each run alone
    result = compare_trainings(a, b)
    assert result.p_value > 0.5 and result.seed_sd > 0.2 and result.df < 3


def test_coverage_of_a_random_effects_grid() -> None:
    # mu + seed + item + residual with known mu: the 95% interval should cover mu about 95% of the time.
    rng = np.random.default_rng(1)
    covered, trials = 0, 400
    for _ in range(trials):
        grid = 0.1 + rng.normal(0, 0.05, (4, 1)) + rng.normal(0, 0.3, (1, 60)) + rng.normal(0, 0.2, (4, 60))
        low, high = compare_trainings(grid, np.zeros_like(grid)).ci_low, compare_trainings(grid, np.zeros_like(grid)).ci_high
        covered += low <= 0.1 <= high
    assert 0.92 <= covered / trials <= 0.99


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="grids of one shape"):
        compare_trainings([[1, 0, 1]], [[1, 0]])
    with pytest.raises(ValueError, match="seeds x items"):
        runs_interval([1, 0, 1])


def test_identical_arms_differ_by_zero_with_a_zero_width_interval() -> None:
    grades = [[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 1]]  # e.g. an ablation that kept exactly the same data
    same = compare_trainings(grades, grades)
    assert (same.mean, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
