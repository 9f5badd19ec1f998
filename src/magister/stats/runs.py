"""Scores over repeated training runs: uncertainty from the items and from the training itself.

Fine-tuning a small model is noisy: the same data with another training seed (shuffle order,
adapter initialisation) can move held-out accuracy by ten points or more. A test that holds
the trained models fixed (McNemar on one run each) counts only the items' variance and calls
such noise significant. Here every arm is trained with the same S seeds and sits the same n
items, so a score (or a paired difference between two arms) is an S x n grid `d[s, i]`, read
as a two-way crossed design with random seeds and random items:

    d[s, i] = mu + seed_s + item_i + residual

The grand mean's variance is var(seed)/S + var(item)/n + var(residual)/(S n). From the grid,
with row means over items and column means over seeds, the unbiased estimate is

    V = var(row means)/S + var(column means)/n - MSE/(S n)

(MSE: the two-way ANOVA residual mean square), and the t interval uses Satterthwaite's
degrees of freedom for the two leading terms: with few seeds and a large training spread
they are close to S - 1, as they should be. With one seed the training variance cannot be
measured, and the interval is the items' alone (a paired t on items), which says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RunsEstimate:
    """The mean of an S x n grid with its two-way interval; a difference of arms when `paired`."""

    seeds: int
    n: int
    mean: float
    ci_low: float
    ci_high: float
    p_value: float | None  # two-sided, H0: mean 0 (differences only)
    df: float
    per_seed: list[float]  # the mean of each training run
    seed_sd: float  # spread of the per-run means (0 with one seed)
    training_variance: bool  # False with one seed: the interval counts the items only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _grid(rows: Sequence[Sequence[float]]) -> np.ndarray:
    grid = np.asarray(rows, dtype=float)
    if grid.ndim != 2 or grid.shape[0] == 0 or grid.shape[1] < 2:
        raise ValueError(f"need a seeds x items grid with at least one seed and two items, got shape {grid.shape}")
    return grid


def _estimate(grid: np.ndarray, confidence: float, test: bool) -> RunsEstimate:
    from scipy import stats

    seeds, n = grid.shape
    rows, cols = grid.mean(axis=1), grid.mean(axis=0)
    mean = float(grid.mean())
    col_term = cols.var(ddof=1) / n
    if seeds > 1:
        row_term = rows.var(ddof=1) / seeds
        residual = grid - rows[:, None] - cols[None, :] + mean
        mse = float((residual**2).sum() / ((seeds - 1) * (n - 1)))
        variance = max(row_term + col_term - mse / (seeds * n), max(row_term, col_term))
        df = (row_term + col_term) ** 2 / (row_term**2 / (seeds - 1) + col_term**2 / (n - 1) + 1e-300)
    else:
        variance, df = col_term, float(n - 1)
    se = float(np.sqrt(variance))
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, df)) * se if se > 0 else 0.0  # identical arms: no spread
    p = None
    if test:
        p = 1.0 if se == 0 and mean == 0 else (0.0 if se == 0 else float(2 * stats.t.sf(abs(mean) / se, df)))
    return RunsEstimate(seeds=seeds, n=n, mean=mean, ci_low=mean - half, ci_high=mean + half, p_value=p,
                        df=float(df), per_seed=[float(r) for r in rows],
                        seed_sd=float(rows.std(ddof=1)) if seeds > 1 else 0.0, training_variance=seeds > 1)


def runs_interval(grades: Sequence[Sequence[float]], confidence: float = 0.95) -> RunsEstimate:
    """Mean score over S training runs of one arm on the same n items, with its interval (clipped to [0, 1])."""
    estimate = _estimate(_grid(grades), confidence, test=False)
    return replace(estimate, ci_low=max(0.0, estimate.ci_low), ci_high=min(1.0, estimate.ci_high))


def compare_trainings(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]],
                 confidence: float = 0.95) -> RunsEstimate:
    """A minus B, paired by training seed (row) and item (column): the difference, its interval and p-value."""
    x, y = _grid(a), _grid(b)
    if x.shape != y.shape:
        raise ValueError(f"paired runs need grids of one shape, got {x.shape} and {y.shape}")
    return _estimate(x - y, confidence, test=True)
