"""Paired comparison of two sets of grades on the same items.

Two models that sat the same exam are compared item by item, not by their two accuracies:
the pairing removes the variance of item difficulty, which is most of the variance.

- Right/wrong grades: McNemar's exact test. Only the discordant items carry information
  (A right and B wrong: `a_only`; the reverse: `b_only`); under H0 each discordant item is
  a fair coin, so the p-value is a two-sided binomial test of a_only out of a_only + b_only.
  The difference in accuracy gets a Newcombe-style paired interval from the bootstrap below.
- Scores in [0, 1]: the paired bootstrap. Items are resampled with replacement, keeping
  each item's two scores together; the 95% interval is the percentile interval of the mean
  difference, and the two-sided p-value is the bootstrap's estimate of how often a
  difference as far from zero arises when the observed difference is centred on zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """A minus B on the same n items."""

    n: int
    mean_a: float
    mean_b: float
    diff: float  # mean_a - mean_b
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # "mcnemar-exact" or "paired-bootstrap"
    a_only: int | None = None  # items A got right and B wrong (McNemar only)
    b_only: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value for paired right/wrong outcomes."""
    from scipy import stats

    x, y = _pair(a, b)
    a_only, b_only = int(np.sum(x & ~y)), int(np.sum(~x & y))
    if a_only + b_only == 0:
        return 1.0
    return float(stats.binomtest(a_only, a_only + b_only, 0.5).pvalue)


def bootstrap_diff(a: Sequence[float], b: Sequence[float], rounds: int = 10_000, seed: int = 0,
                   confidence: float = 0.95) -> tuple[float, float, float]:
    """Paired bootstrap of mean(a) - mean(b): (ci_low, ci_high, two-sided p-value)."""
    x, y = _pair(a, b, dtype=float)
    d = x - y
    rng = np.random.default_rng(seed)
    values, counts = np.unique(d, return_counts=True)
    if len(values) <= 1000:
        # Resampling n items with replacement draws each distinct difference a multinomial number of times:
        # the same distribution of means, at a cost that does not grow with n (right/wrong grades have 3 values).
        means = rng.multinomial(len(d), counts / len(d), size=rounds) @ values / len(d)
    else:
        means = np.empty(rounds)
        chunk = max(1, 2_000_000 // len(d))  # rows of the index matrix: about 16 MB at a time
        for start in range(0, rounds, chunk):
            stop = min(rounds, start + chunk)
            means[start:stop] = d[rng.integers(0, len(d), size=(stop - start, len(d)))].mean(axis=1)
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    observed = d.mean()
    # Shift the bootstrap distribution to H0 (mean 0) and count differences at least as extreme.
    extreme = np.sum(np.abs(means - observed) >= abs(observed) - 1e-12)
    p = min(1.0, (extreme + 1) / (rounds + 1))
    return float(low), float(high), float(p)


def compare(a: Sequence[float], b: Sequence[float], binary: bool | None = None, rounds: int = 10_000,
            seed: int = 0) -> Comparison:
    """Compare paired grades: McNemar for right/wrong (binary), paired bootstrap for scores."""
    x, y = _pair(a, b, dtype=float)
    if binary is None:
        binary = bool(np.isin(x, (0.0, 1.0)).all() and np.isin(y, (0.0, 1.0)).all())
    low, high, p = bootstrap_diff(x, y, rounds=rounds, seed=seed)
    if binary:
        xb, yb = x.astype(bool), y.astype(bool)
        return Comparison(n=len(x), mean_a=float(x.mean()), mean_b=float(y.mean()), diff=float(x.mean() - y.mean()),
                          ci_low=low, ci_high=high, p_value=mcnemar(xb, yb), test="mcnemar-exact",
                          a_only=int(np.sum(xb & ~yb)), b_only=int(np.sum(~xb & yb)))
    return Comparison(n=len(x), mean_a=float(x.mean()), mean_b=float(y.mean()), diff=float(x.mean() - y.mean()),
                      ci_low=low, ci_high=high, p_value=p, test="paired-bootstrap")


def _pair(a: Sequence[Any], b: Sequence[Any], dtype: type = bool) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=dtype), np.asarray(b, dtype=dtype)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired grades need two equal-length lists, got {x.shape} and {y.shape}")
    if len(x) == 0:
        raise ValueError("no paired items to compare")
    return x, y
