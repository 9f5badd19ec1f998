"""Turn a judge's P(yes) (or rubric score) into verdicts that agree with people: calibration fitted on
human labels.

A judge's ranking signal (how P(yes) orders the answers) is often good while its cut at 0.5 is
not: a judge that says "yes" too rarely loses most of its agreement at that cut. From a file
of human-labelled answers, `fit` learns, with k-fold cross-validation, two ways to decide:

- `threshold`: the cut on P(yes) that maximises Cohen's kappa (for `rubric`: on the normalised
  expected score, which stands in for P(yes) everywhere below);
- `logistic`: a small logistic regression over the judge's P(yes) (and its log-odds), the
  deterministic `rules` verdict, and token F1 between answer and reference, cut where it
  maximises kappa.

Each held-out fold is decided by a model fitted on the other folds only, so the reported
kappa is the held-out one, never the in-sample one (both are kept, to show the gap). The
method with the better held-out kappa is refitted on all rows and saved as a JSON file that
`magister exam --grader match --calibration FILE` (or `--grader rubric`) applies; the run's config names the file
and its hash, so a stored grade traces back to the calibration that produced it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from magister.errors import ConfigError
from magister.graders.deterministic import rules_match, token_f1

FEATURES = ("p_yes", "logit_p_yes", "rules", "token_f1")


def features(reference: str, response: str, p_yes: float | None) -> list[float]:
    """The calibration features of one judged answer (an unreadable verdict counts as P(yes) = 0.5)."""
    p = 0.5 if p_yes is None else min(max(p_yes, 1e-6), 1 - 1e-6)
    return [p, math.log(p / (1 - p)), float(rules_match(reference, response)), token_f1(reference, response)]


@dataclass
class Calibration:
    """A fitted decision rule for a yes/no judge, with the held-out agreement it earned."""

    method: str  # "threshold" or "logistic"
    threshold: float  # on P(yes) (threshold) or on the logistic probability (logistic)
    coef: list[float] = field(default_factory=list)
    intercept: float = 0.0
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    grader: str = "match"
    prompt: str = ""  # `prompts.version(grader)` when fitted ("" in files from before it was recorded)
    judge: str = ""
    source: str = ""
    n: int = 0
    heldout: dict[str, Any] = field(default_factory=dict)  # per method: held-out kappa, CI, accuracy; in-sample

    def probability(self, row: Sequence[float]) -> float:
        """P(right) for one feature row: P(yes) itself, or the logistic model's probability."""
        if self.method == "threshold":
            return float(row[0])
        z = self.intercept + sum(c * x for c, x in zip(self.coef, row))
        return 1 / (1 + math.exp(-z))

    def decide(self, row: Sequence[float]) -> tuple[bool, float]:
        p = self.probability(row)
        return p >= self.threshold, p

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        data = self.to_dict()  # the per-row held-out verdicts stay in the report, not in the file
        data["heldout"] = {m: {k: v for k, v in r.items() if k != "verdicts"} for m, r in self.heldout.items()}
        path.write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, path: Path) -> Calibration:
        try:
            data = json.loads(Path(path).read_text())
            calibration = cls(**data)
        except (OSError, ValueError, TypeError) as error:
            raise ConfigError(f"{path}: not a calibration file from `magister calibrate` ({error})") from None
        if calibration.method not in ("threshold", "logistic"):
            raise ConfigError(f"{path}: unknown calibration method '{calibration.method}'")
        if calibration.grader not in ("match", "rubric"):
            raise ConfigError(f"{path}: a calibration for the '{calibration.grader}' grader; match or rubric expected")
        return calibration

    @staticmethod
    def fingerprint(path: Path) -> str:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The cut on `scores` that maximises Cohen's kappa with `labels` (midpoints between distinct scores)."""
    from magister.stats.agreement import kappa

    values = np.unique(scores)
    cuts = np.concatenate([[values[0] - 1e-9], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-9]])
    if len(cuts) > 201:  # a grid of quantiles is enough
        cuts = np.unique(np.quantile(scores, np.linspace(0, 1, 201)))
    best, best_kappa = 0.5, -2.0
    for cut in cuts:
        predicted = scores >= cut
        k = kappa(predicted.tolist(), labels.tolist()) if predicted.any() and not predicted.all() else 0.0
        if k > best_kappa:
            best, best_kappa = float(cut), k
    return best


def _fit_one(method: str, x: np.ndarray, y: np.ndarray) -> Calibration:
    if method == "threshold":
        return Calibration(method="threshold", threshold=best_threshold(x[:, 0], y))
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    calibration = Calibration(method="logistic", threshold=0.5, coef=model.coef_[0].tolist(),
                              intercept=float(model.intercept_[0]))
    probabilities = np.array([calibration.probability(row) for row in x])
    calibration.threshold = best_threshold(probabilities, y)
    return calibration


def heldout_verdicts(method: str, x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each row's verdict from a calibration fitted on the other folds (stratified k-fold)."""
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros(len(y), dtype=bool)
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y):
        fitted = _fit_one(method, x[train], y[train])
        out[test] = [fitted.decide(row)[0] for row in x[test]]
    return out


def fit(rows: Sequence[Sequence[float]], labels: Sequence[bool], *, folds: int = 5, seed: int = 0,
        methods: Sequence[str] = ("threshold", "logistic")) -> Calibration:
    """Fit every method with cross-validation, keep the one with the best held-out kappa, refit it on all rows."""
    from magister.stats.agreement import bootstrap_ci, kappa

    x, y = np.asarray(rows, dtype=float), np.asarray(labels, dtype=bool)
    if min(int(y.sum()), int((~y).sum())) < folds:
        raise ConfigError(f"calibration needs at least {folds} human labels of each verdict (has {int(y.sum())} "
                          f"right and {int((~y).sum())} wrong)")
    report: dict[str, Any] = {}
    for method in methods:
        held = heldout_verdicts(method, x, y, folds, seed)
        everything = _fit_one(method, x, y)
        in_sample = np.array([everything.decide(row)[0] for row in x])
        report[method] = {"kappa": kappa(held.tolist(), y.tolist()),
                          "kappa_ci": list(bootstrap_ci(lambda a, b: kappa(a, b), held.tolist(), y.tolist())),
                          "accuracy": float(np.mean(held == y)), "in_sample_kappa": kappa(in_sample.tolist(),
                                                                                           y.tolist()),
                          "verdicts": held.tolist()}
    chosen = max(methods, key=lambda m: report[m]["kappa"])
    calibration = _fit_one(chosen, x, y)
    calibration.n, calibration.heldout = len(y), report
    return calibration


__all__ = ["Calibration", "FEATURES", "best_threshold", "features", "fit", "heldout_verdicts"]
