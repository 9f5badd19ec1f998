"""Confidence intervals for an exam score.

Accuracy (right/wrong grades) uses the Wilson score interval, which stays inside [0, 1]
and keeps its coverage for small n and for accuracies near 0 or 1, where the normal
(Wald) interval fails. Mean scores in [0, 1] use the t interval.
"""

from __future__ import annotations

import math


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    from scipy import stats  # imported here: scipy costs a second at start-up

    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """t interval for a mean of scores, clipped to [0, 1]."""
    n = len(values)
    if n < 2:
        return 0.0, 1.0
    from scipy import stats

    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(1 - (1 - confidence) / 2, n - 1) * sd / math.sqrt(n)
    return max(0.0, mean - half), min(1.0, mean + half)
