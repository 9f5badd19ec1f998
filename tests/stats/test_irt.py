"""The 2PL model recovers the parameters of data simulated from it."""

from __future__ import annotations

import numpy as np
import pytest

from magister.stats.irt import fit_2pl, fit_ability


def simulate(models: int, items: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1, models)
    a = rng.lognormal(0, 0.25, items)
    b = rng.normal(0, 1, items)
    p = 1 / (1 + np.exp(-(np.outer(theta, a) - b)))
    return (rng.random(p.shape) < p).astype(float), theta, a, b


def test_fit_recovers_simulated_parameters() -> None:
    y, theta, a, b = simulate(200, 300)
    params = fit_2pl(y)
    assert np.corrcoef(params.ability[:, 0], theta)[0, 1] > 0.97
    assert np.corrcoef(params.difficulty, b)[0, 1] > 0.97
    assert np.corrcoef(params.discrimination[:, 0], a)[0, 1] > 0.5
    # Standardised: training abilities have mean 0 and variance 1.
    assert params.ability.mean() == pytest.approx(0, abs=1e-6) and params.ability.std(ddof=1) == pytest.approx(1)
    # In-sample predicted accuracy per model tracks the observed accuracy.
    predicted = params.probabilities(params.ability).mean(axis=1)
    assert np.abs(predicted - y.mean(axis=1)).mean() < 0.02


def test_missing_answers_are_ignored() -> None:
    y, theta, _, _ = simulate(100, 200, seed=1)
    holes = y.copy()
    holes[np.random.default_rng(2).random(y.shape) < 0.2] = np.nan
    params = fit_2pl(holes)
    assert np.corrcoef(params.ability[:, 0], theta)[0, 1] > 0.95


def test_new_model_ability_from_a_subset_of_items() -> None:
    y, theta, _, _ = simulate(201, 400, seed=3)
    params = fit_2pl(y[:200])
    new = fit_ability(params, np.arange(400), y[200])
    known = fit_ability(params, np.arange(400), y[0])
    assert known == pytest.approx(params.ability[0], abs=0.15)  # same model, same items: same ability
    truth = params.probabilities(new).mean()
    assert abs(truth - y[200].mean()) < 0.05


def test_multidimensional_fit_runs_and_whitens() -> None:
    y, _, _, _ = simulate(60, 80, seed=4)
    params = fit_2pl(y, dims=2)
    assert params.dims == 2 and params.discrimination.shape == (80, 2)
    assert np.allclose(np.cov(params.ability, rowvar=False), np.eye(2), atol=1e-6)


def test_too_small_matrix_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        fit_2pl(np.ones((1, 5)))
