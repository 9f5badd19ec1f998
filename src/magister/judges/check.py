"""Check a judge against human labels before anyone trusts it (`magister judge-check`).

Reads human-labelled JSONL, grades every row with the judge, and reports agreement with
each human column (Cohen's kappa with a bootstrap CI, accuracy), correlations for scores,
and, as the ceiling, the agreement of the humans with each other. With three or more
human columns it runs the alternative annotator test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from magister.errors import ConfigError
from magister.jsonl import read_rows
from magister.judges.judge import Judge, position_bias
from magister.stats.agreement import alt_test, bootstrap_ci, correlations, kappa
from magister.store import Store
from magister.types import Answer, Grade, Item, Kind

REPEAT_SAMPLE = 20


@dataclass
class Columns:
    """Which JSONL fields hold what."""

    question: str = "question"
    reference: str = "reference"
    response: str = "response"
    instruction: str = "instruction"
    response_a: str = "response_a"
    response_b: str = "response_b"
    human: list[str] = field(default_factory=lambda: ["human"])
    match_threshold: float | None = None  # numeric human ratings: match = rating >= threshold


def _label(value: Any, threshold: float | None) -> Any:
    if threshold is not None:
        return bool(float(value) >= threshold)
    if isinstance(value, str):
        return value.strip().lower()
    return bool(value) if isinstance(value, bool) or value in (0, 1) else value


def _agreement(judge: Sequence[Any], humans: list[list[Any]], weights: str | None = None) -> dict[str, Any]:
    """Mean kappa and accuracy of the judge against each human column, with a bootstrap CI of the kappa."""

    def mean_kappa(j: list[Any], *hs: list[Any]) -> float:
        return float(np.mean([kappa(j, h, weights) for h in hs]))

    out: dict[str, Any] = {
        "kappa": mean_kappa(list(judge), *humans),
        "kappa_ci": list(bootstrap_ci(mean_kappa, judge, *humans)),
        "accuracy": float(np.mean([np.mean([a == b for a, b in zip(judge, h)]) for h in humans])),
        "kappa_per_human": [kappa(judge, h, weights) for h in humans],
    }
    if len(humans) >= 2:
        pairs = [(a, b) for i, a in enumerate(humans) for b in humans[i + 1:]]
        out["human_human_kappa"] = float(np.mean([kappa(a, b, weights) for a, b in pairs]))
        out["human_human_accuracy"] = float(np.mean([np.mean([x == y for x, y in zip(a, b)]) for a, b in pairs]))
    if len(humans) >= 3:
        out["alt_test"] = alt_test(list(judge), humans).to_dict()
    return out


def _repeat_agreement(grade: Callable[[Judge], list[Any]], judge: Judge) -> float:
    """Agreement of a second, uncached judgment with the first on a sample (backend nondeterminism)."""
    fresh = Judge(judge.model, Store(":memory:"), guarded=judge.guarded)
    try:
        first, second = grade(judge), grade(fresh)
    finally:
        fresh.store.close()
    return float(np.mean([a == b for a, b in zip(first, second)]))


def checklist_features(grade: Grade) -> list[float]:
    """Summary of a checklist grade's per-question P(yes): mean, min, max, share above 0.5."""
    p = [x for x in json.loads(grade.raw or "{}").get("p_yes", []) if x is not None] or [0.0]
    return [float(np.mean(p)), min(p), max(p), float(np.mean([x >= 0.5 for x in p]))]


def fit_checklist(grades: Sequence[Grade], labels: Sequence[Any], folds: int = 5) -> list[bool] | None:
    """Cross-validated verdicts of a small logistic regression from checklist features to human labels.

    RocketEval fits such a regressor per exam from a few labels; with cross-validation every
    verdict comes from a model that did not see its own label. None when there are too few
    labels of each class to fit (the unsupervised score is then the answer).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    y = np.array([bool(v) for v in labels])
    if min(y.sum(), (~y).sum()) < folds:
        return None
    x = np.array([checklist_features(g) for g in grades])
    return cross_val_predict(LogisticRegression(), x, y, cv=folds).astype(bool).tolist()


def check(path: str | Path, grader: str, judge: Judge, columns: Columns, limit: int | None = None) -> dict[str, Any]:
    """Grade a human-labelled file with the judge and report the agreement."""
    started = time.perf_counter()
    report: dict[str, Any] = {"path": str(path), "grader": grader, "judge": judge.model.spec, "guarded": judge.guarded}
    if grader == "pairwise":
        rows = read_rows(path, [columns.instruction, columns.response_a, columns.response_b, *columns.human], limit)
        pairs = [(r[columns.instruction], r[columns.response_a], r[columns.response_b]) for r in rows]
        verdicts = judge.pairwise(pairs)
        humans = [[_label(r[h], None) for r in rows] for h in columns.human]
        winners = [v.winner for v in verdicts]
        report.update(n=len(rows), parse_failures=sum(not v.parsed for v in verdicts),
                      flip_rate=float(np.mean([v.flipped for v in verdicts])),
                      tie_rate=float(np.mean([w == "tie" for w in winners])),
                      position_bias=position_bias(verdicts), **_agreement(winners, humans))
        report["debiased"] = _agreement([v.debiased for v in verdicts], humans)
        sample = pairs[:REPEAT_SAMPLE]
        report["repeat_agreement"] = _repeat_agreement(lambda j: [v.winner for v in j.pairwise(sample)], judge)
    elif grader in ("match", "checklist", "rubric"):
        rows = read_rows(path, [columns.question, columns.response, *columns.human], limit)
        items = [Item(id=str(r.get("id", n)), input=r[columns.question], reference=str(r.get(columns.reference) or ""),
                      kind=Kind.free_form) for n, r in enumerate(rows)]
        answers = [Answer(item_id=i.id, text=str(r[columns.response]), request_key="human-labelled")
                   for i, r in zip(items, rows)]

        def grade_all(j: Judge, its: list[Item] = items, ans: list[Answer] = answers) -> list[Grade]:
            return getattr(j, grader)(its, ans)

        grades = grade_all(judge)
        humans = [[_label(r[h], columns.match_threshold) for r in rows] for h in columns.human]
        report.update(n=len(rows), parse_failures=sum(not g.parsed for g in grades),
                      **_agreement([bool(g.correct) for g in grades], humans))
        if grader == "checklist":
            fitted = fit_checklist(grades, humans[0])
            if fitted is not None:
                report["fitted"] = _agreement(fitted, humans)
        raw_humans = [[r[h] for r in rows] for h in columns.human]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for col in raw_humans for v in col):
            report["correlations"] = correlations([g.score for g in grades], np.mean(raw_humans, axis=0).tolist())
            if grader == "rubric":  # ordinal: the judge's rounded expected score vs each human's score
                ordinal = [int(round(float(g.extracted))) if g.extracted else 1 for g in grades]
                ints = [[int(v) for v in col] for col in raw_humans]
                report["weighted_kappa"] = _agreement(ordinal, ints, weights="quadratic")
        k = min(REPEAT_SAMPLE, len(items))
        report["repeat_agreement"] = _repeat_agreement(
            lambda j: [g.correct for g in grade_all(j, items[:k], answers[:k])], judge)
    else:
        raise ConfigError(f"unknown judged grader '{grader}'; choose match, checklist, rubric or pairwise")
    usage = judge.usage
    grades_n = report["n"]
    report["usage"] = usage.to_dict()
    report["tokens_per_grade"] = (usage.prompt_tokens + usage.completion_tokens) / grades_n
    report["grades_per_s"] = grades_n / max(usage.seconds, 1e-9)  # time in judge calls (cached calls are free)
    report["wall_s"] = time.perf_counter() - started
    return report
