"""Agreement between a judge and human annotators.

- Cohen's kappa (chance-corrected agreement) for labels; the quadratic-weighted kappa for
  ordinal scores, where 4 vs 5 is a smaller disagreement than 1 vs 5.
- A bootstrap 95% CI over items for any agreement statistic.
- The alternative annotator test (Calderon et al., 2025, "The Alternative Annotator Test
  for LLM-as-a-Judge"): can the judge replace one of the humans? For each annotator j, on
  the items j labelled, compare how well the judge agrees with the *other* annotators with
  how well j agrees with them; test H0 "the judge's advantage probability is at least
  epsilon below j's" with a one-sided paired t-test, correct the p-values over annotators
  with Benjamini-Yekutieli, and pass when the judge wins against at least half of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def kappa(a: Sequence[Any], b: Sequence[Any], weights: str | None = None) -> float:
    """Cohen's kappa; `weights='quadratic'` (or 'linear') for ordinal labels."""
    if len(a) != len(b) or not len(a):
        raise ValueError("kappa needs two equal-length, non-empty label lists")
    if len(set(a) | set(b)) < 2:
        return 1.0  # one label everywhere: perfect agreement (sklearn would divide by zero)
    if weights is None and all(isinstance(v, (bool, np.bool_)) for v in (*a, *b)):
        x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)  # the binary case, fast (bootstraps call it often)
        observed = float(np.mean(x == y))
        px, py = float(x.mean()), float(y.mean())
        expected = px * py + (1 - px) * (1 - py)
        return 0.0 if expected == 1 else (observed - expected) / (1 - expected)
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(list(a), list(b), weights=weights))


def bootstrap_ci(statistic: Callable[..., float], *columns: Sequence[Any], rounds: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> tuple[float, float]:
    """Percentile CI of statistic(*columns) over items resampled with replacement."""
    arrays = [np.asarray(c, dtype=object) for c in columns]
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        pick = rng.integers(0, n, n)
        try:
            values.append(statistic(*[a[pick].tolist() for a in arrays]))
        except ValueError:
            continue
    values = [v for v in values if not np.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    alpha = 1 - confidence
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def correlations(judge: Sequence[float], human: Sequence[float]) -> dict[str, float]:
    """Spearman, Kendall and Pearson correlations of judge scores with human scores."""
    from scipy import stats

    x, y = np.asarray(judge, dtype=float), np.asarray(human, dtype=float)
    if np.std(x) == 0 or np.std(y) == 0:
        return {"spearman": float("nan"), "kendall": float("nan"), "pearson": float("nan")}
    return {"spearman": float(stats.spearmanr(x, y)[0]), "kendall": float(stats.kendalltau(x, y)[0]),
            "pearson": float(stats.pearsonr(x, y)[0])}


@dataclass(frozen=True)
class AltTest:
    """Result of the alternative annotator test."""

    epsilon: float
    winning_rate: float  # share of annotators the judge can replace (H0 rejected after BY correction)
    advantage_probability: float  # mean over annotators of the judge's advantage probability
    passed: bool  # winning_rate >= 0.5
    p_values: list[float]  # per annotator, before correction
    annotators: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def alt_test(judge: Sequence[Any], humans: Sequence[Sequence[Any]], epsilon: float = 0.2, q: float = 0.05,
             similarity: Callable[[Any, Any], float] | None = None) -> AltTest:
    """The alternative annotator test. `humans[j][i]` is annotator j's label of item i (None: not labelled)."""
    from scipy import stats

    sim = similarity or (lambda x, y: float(x == y))
    m = len(humans)
    if m < 3:
        raise ValueError(f"the alternative annotator test needs at least 3 annotators, got {m}")
    p_values, advantages = [], []
    for j in range(m):
        w_judge, w_human = [], []
        for i, label in enumerate(humans[j]):
            others = [humans[k][i] for k in range(m) if k != j and humans[k][i] is not None]
            if label is None or not others:
                continue
            s_judge = np.mean([sim(judge[i], o) for o in others])
            s_human = np.mean([sim(label, o) for o in others])
            w_judge.append(float(s_judge >= s_human))
            w_human.append(float(s_human >= s_judge))
        d = np.array(w_human) - np.array(w_judge)
        advantages.append(float(np.mean(w_judge)) if w_judge else float("nan"))
        if len(d) < 2:
            p_values.append(1.0)
        elif np.std(d) == 0:
            p_values.append(0.0 if d.mean() < epsilon else 1.0)
        else:
            # H0: mean(d) >= epsilon (the judge is worse than annotator j by epsilon or more)
            p_values.append(float(stats.ttest_1samp(d, epsilon, alternative="less").pvalue))
    rejected = _benjamini_yekutieli(p_values, q)
    rate = float(np.mean(rejected))
    return AltTest(epsilon=epsilon, winning_rate=rate, advantage_probability=float(np.nanmean(advantages)),
                   passed=rate >= 0.5, p_values=p_values, annotators=m)


def _benjamini_yekutieli(p_values: Sequence[float], q: float) -> list[bool]:
    """Which hypotheses the Benjamini-Yekutieli procedure rejects at FDR q."""
    m = len(p_values)
    order = np.argsort(p_values)
    c = np.sum(1.0 / np.arange(1, m + 1))
    passed = [p_values[idx] <= (rank + 1) * q / (m * c) for rank, idx in enumerate(order)]
    largest = max((rank for rank, ok in enumerate(passed) if ok), default=-1)
    rejected = [False] * m
    for rank, idx in enumerate(order):
        rejected[idx] = rank <= largest
    return rejected


def paired_kappa_difference(a: Sequence[Any], b: Sequence[Any], humans: Sequence[Sequence[Any]],
                            rounds: int = 2000, seed: int = 0) -> dict[str, float]:
    """Kappa of grader a minus kappa of grader b (each the mean over the human columns), on the same rows,
    with a paired bootstrap over rows: the 95% CI and the two-sided p-value of 'no difference'."""

    def mean_kappa(grader: Sequence[Any], pick: np.ndarray | None = None) -> float:
        rows = range(len(grader)) if pick is None else pick
        return float(np.mean([kappa([grader[i] for i in rows], [h[i] for i in rows]) for h in humans]))

    observed = mean_kappa(a) - mean_kappa(b)
    rng = np.random.default_rng(seed)
    n = len(a)
    diffs = []
    for _ in range(rounds):
        pick = rng.integers(0, n, n)
        diffs.append(mean_kappa(a, pick) - mean_kappa(b, pick))
    values = np.array(diffs)
    p = 2 * min(float(np.mean(values <= 0)), float(np.mean(values >= 0)))
    low, high = np.quantile(values, [0.025, 0.975])
    return {"difference": observed, "ci_low": float(low), "ci_high": float(high), "p_value": min(p, 1.0),
            "rounds": rounds}
