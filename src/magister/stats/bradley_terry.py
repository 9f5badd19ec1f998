"""A Bradley-Terry leaderboard from pairwise battles, with confidence intervals that resample prompts.

Model: P(i beats j) = sigmoid(beta_i - beta_j). The betas are fitted by maximum likelihood
(a tie counts as half a win for each side), with a very weak ridge so that a model that
never loses still gets a finite rating. Ratings are on the Elo scale: 400 / ln(10) * beta,
shifted so that the mean rating is 1000, or so that a named anchor model sits at 1000.

Confidence intervals come from the bootstrap. Battles on the same prompt are not
independent (a hard prompt makes every model lose; a prompt one model's style suits makes
it win every battle there), so the default resamples *prompts* and moves all battles of a
drawn prompt together. Resampling single battles ("game" bootstrap, as arena-hard-auto
does) treats them as independent and gives intervals that are too narrow; it is kept for
comparison. Rank = 1 + the number of models whose lower bound is above this model's upper
bound, so models whose intervals overlap share a rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from magister.errors import DataError
from magister.jsonl import read_numbered

Winner = Literal["a", "b", "tie"]
ELO_SCALE = 400.0
ELO_BASE = 1000.0
RIDGE = 1e-6


@dataclass(frozen=True)
class Battle:
    """One judged comparison of two models' responses to the same prompt."""

    prompt_id: str
    model_a: str
    model_b: str
    winner: Winner


@dataclass(frozen=True)
class Rating:
    """A model's place on the leaderboard."""

    model: str
    rating: float
    ci_low: float
    ci_high: float
    rank: int
    battles: int
    unbounded: str | None = None  # "above": never lost a battle; "below": never won (or drew) one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Encoded:
    """Battles as integer arrays: the form every fit and bootstrap round works on."""

    def __init__(self, battles: Sequence[Battle]) -> None:
        if not battles:
            raise ValueError("no battles to rank")
        self.models = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
        index = {m: i for i, m in enumerate(self.models)}
        prompts = {p: i for i, p in enumerate(dict.fromkeys(b.prompt_id for b in battles))}
        a = np.array([index[b.model_a] for b in battles])
        b_ = np.array([index[b.model_b] for b in battles])
        score = np.array([{"a": 1.0, "b": 0.0, "tie": 0.5}[b.winner] for b in battles])
        # Orient every battle as (low index, high index) so that battles of one pair aggregate.
        swap = a > b_
        self.low, self.high = np.where(swap, b_, a), np.where(swap, a, b_)
        self.score_low = np.where(swap, 1.0 - score, score)
        m = len(self.models)
        pair_id = self.low * m + self.high
        self.pairs, self.pair_of = np.unique(pair_id, return_inverse=True)
        self.pair_low, self.pair_high = self.pairs // m, self.pairs % m
        self.prompt = np.array([prompts[b.prompt_id] for b in battles])
        self.n_prompts = len(prompts)
        self.counts = np.bincount(np.concatenate([a, b_]), minlength=m)

    def unbounded(self) -> list[str | None]:
        """Per model: 'above' if it lost no battle, 'below' if it won (or drew) none, else None."""
        m = len(self.models)
        points = np.bincount(self.low, weights=self.score_low, minlength=m) + np.bincount(
            self.high, weights=1.0 - self.score_low, minlength=m)
        return ["above" if points[i] == self.counts[i] else "below" if points[i] == 0 else None for i in range(m)]

    def fit(self, weights: np.ndarray | None = None, start: np.ndarray | None = None) -> np.ndarray:
        """Maximum-likelihood betas (mean zero) for battles weighted by `weights`."""
        from scipy.optimize import minimize

        w = np.ones(len(self.low)) if weights is None else weights
        n_pair = np.bincount(self.pair_of, weights=w, minlength=len(self.pairs))
        wins = np.bincount(self.pair_of, weights=w * self.score_low, minlength=len(self.pairs))
        m = len(self.models)

        def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
            margin = beta[self.pair_low] - beta[self.pair_high]
            # -[W log s(x) + (N - W) log s(-x)] written with logaddexp for stability.
            nll = np.sum(wins * np.logaddexp(0, -margin) + (n_pair - wins) * np.logaddexp(0, margin))
            g = wins - n_pair / (1 + np.exp(-margin))  # d(log-likelihood)/d(margin)
            grad = -np.bincount(self.pair_low, weights=g, minlength=m) + np.bincount(self.pair_high, weights=g,
                                                                                       minlength=m)
            return nll + RIDGE * beta @ beta, grad + 2 * RIDGE * beta

        x0 = np.zeros(m) if start is None else start
        result = minimize(loss, x0, jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-9})
        return result.x - result.x.mean()


def to_elo(beta: np.ndarray, models: list[str], anchor: str | None = None) -> np.ndarray:
    """Betas (natural-log odds) to Elo-scale ratings: mean 1000, or the anchor model at 1000."""
    points = beta * ELO_SCALE / math.log(10)
    if anchor is None:
        return points - points.mean(axis=-1, keepdims=True) + ELO_BASE
    if anchor not in models:
        raise ValueError(f"anchor model '{anchor}' is in no battle (models: {', '.join(models)})")
    return points - points[..., [models.index(anchor)]] + ELO_BASE


def fit(battles: Sequence[Battle], anchor: str | None = None) -> dict[str, float]:
    """Bradley-Terry ratings on the Elo scale, without intervals."""
    enc = _Encoded(battles)
    return dict(zip(enc.models, to_elo(enc.fit(), enc.models, anchor).tolist(), strict=True))


def leaderboard(battles: Sequence[Battle], rounds: int = 1000, resample: Literal["prompt", "game"] = "prompt",
                anchor: str | None = None, seed: int = 0, confidence: float = 0.95) -> list[Rating]:
    """Ratings with bootstrap intervals and ranks, best first."""
    enc = _Encoded(battles)
    beta = enc.fit()
    rng = np.random.default_rng(seed)
    samples = np.empty((rounds, len(enc.models)))
    for r in range(rounds):
        if resample == "prompt":
            drawn = np.bincount(rng.integers(0, enc.n_prompts, enc.n_prompts), minlength=enc.n_prompts)
            weights = drawn[enc.prompt].astype(float)
        elif resample == "game":
            weights = np.bincount(rng.integers(0, len(enc.low), len(enc.low)), minlength=len(enc.low)).astype(float)
        else:
            raise ValueError(f"resample must be 'prompt' or 'game', not {resample!r}")
        samples[r] = enc.fit(weights, start=beta)
    ratings = to_elo(beta, enc.models, anchor)
    boot = to_elo(samples, enc.models, anchor)
    alpha = 1 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    # A model that never lost (or never won) has no finite maximum-likelihood rating: its point comes from the
    # small ridge prior, and every bootstrap round repeats the same clean sweep, so the percentile interval
    # collapses. Its open end is infinite, and flagged, instead of a falsely narrow interval.
    unbounded = enc.unbounded()
    low = np.where([u == "below" for u in unbounded], -np.inf, low)
    high = np.where([u == "above" for u in unbounded], np.inf, high)
    if anchor is not None:  # the anchor is fixed by definition: its interval is the point
        k = enc.models.index(anchor)
        low[k] = high[k] = ratings[k]
    rows = [Rating(model=m, rating=float(ratings[i]), ci_low=float(low[i]), ci_high=float(high[i]),
                   rank=1 + int(np.sum(low > high[i])), battles=int(enc.counts[i]), unbounded=unbounded[i])
            for i, m in enumerate(enc.models)]
    return sorted(rows, key=lambda r: -r.rating)


def load_battles(path: str | Path) -> list[Battle]:
    """Read battles from JSONL: one `{prompt_id, model_a, model_b, winner: a|b|tie}` per line."""
    battles = []
    for number, row in read_numbered(path, ["prompt_id", "model_a", "model_b", "winner"]):
        winner = str(row["winner"]).lower()
        if winner not in ("a", "b", "tie"):
            raise DataError(f"must be a, b or tie, not {row['winner']!r}", path=str(path), line=number,
                            field="winner")
        if row["model_a"] == row["model_b"]:
            raise DataError("a model cannot battle itself", path=str(path), line=number, field="model_b")
        battles.append(Battle(str(row["prompt_id"]), str(row["model_a"]), str(row["model_b"]), winner))  # type: ignore[arg-type]
    return battles
