"""Check a judge against human labels before anyone trusts it (`magister judge-check`).

Reads human-labelled JSONL, grades every row with the judge, and reports agreement with
each human column (Cohen's kappa with a bootstrap CI, accuracy), correlations for scores,
and, as the ceiling, the agreement of the humans with each other. With three or more
human columns it runs the alternative annotator test.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from magister.errors import ConfigError, DataError
from magister.graders.deterministic import GRADERS
from magister.jsonl import read_numbered
from magister.judges import prompts
from magister.judges.judge import Judge, position_bias
from magister.stats.agreement import alt_test, bootstrap_ci, correlations, kappa, paired_kappa_difference
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


def read_labelled(path: str | Path, needed: list[str], columns: Columns,
                  limit: int | None) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """The rows and each human column's labels, checked before any judge call: a rating that is not a
    finite number (with --match-threshold), or a missing or NaN label, names its line and field."""
    numbered = read_numbered(path, needed, limit)
    humans: list[list[Any]] = [[] for _ in columns.human]
    texts = [name for name in needed if name not in columns.human]
    for line, row in numbered:
        for name in texts:
            if not isinstance(row[name], str):
                raise DataError(f"expected text, got {type(row[name]).__name__} {str(row[name])[:40]!r}",
                                path=str(path), line=line, field=name)
        for column, name in zip(humans, columns.human):
            value = row[name]
            if isinstance(value, float) and not math.isfinite(value):
                raise DataError(f"the human label is {value}", path=str(path), line=line, field=name)
            if columns.match_threshold is not None:
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    number = math.nan
                if isinstance(value, bool) or not math.isfinite(number):
                    raise DataError(f"--match-threshold needs a numeric rating, got {value!r}", path=str(path),
                                    line=line, field=name)
            column.append(_label(value, columns.match_threshold))
    return [row for _, row in numbered], humans


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
    # the same judge (defences, cascade, calibration), with an empty cache
    fresh = Judge(judge.model, Store(":memory:"), guarded=judge.guarded, calibration=judge.calibration,
                  cascade=judge.cascade, calibrate_choices=judge.calibrate_choices)
    try:
        first, second = grade(judge), grade(fresh)
    finally:
        fresh.store.close()
    return float(np.mean([a == b for a, b in zip(first, second)]))


CALIBRATED = ("match", "rubric")  # graders whose score a calibration turns into verdicts


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


def labelled_answers(rows: list[dict[str, Any]], columns: Columns) -> tuple[list[Item], list[Answer]]:
    """The rows of a human-labelled file as free-form items and the answers to grade."""
    items = [Item(id=str(r.get("id", n)), input=r[columns.question], reference=str(r.get(columns.reference) or ""),
                  kind=Kind.free_form) for n, r in enumerate(rows)]
    answers = [Answer(item_id=i.id, text=str(r[columns.response]), request_key="human-labelled")
               for i, r in zip(items, rows)]
    return items, answers


def _consensus(humans: list[list[Any]]) -> list[Any]:
    """One label per row: the humans' majority (for booleans, ties go to 'right' only if most say so)."""
    if len(humans) == 1:
        return humans[0]
    if all(isinstance(v, bool) for col in humans for v in col):
        return [sum(col[i] for col in humans) * 2 > len(humans) for i in range(len(humans[0]))]
    return humans[0]


def confusion(verdicts: Sequence[bool], truth: Sequence[bool]) -> dict[str, int]:
    """Counts of the grader's verdict against the human one: tp (both right), fp, fn, tn."""
    pairs = list(zip(verdicts, truth))
    return {"tp": sum(v and t for v, t in pairs), "fp": sum(v and not t for v, t in pairs),
            "fn": sum(t and not v for v, t in pairs), "tn": sum(not v and not t for v, t in pairs)}


def calibration_curve(scores: Sequence[float], truth: Sequence[bool], bins: int = 10) -> list[dict[str, float]]:
    """Reliability: the grader's scores in `bins` equal-width bins, with the share the humans called right."""
    out = []
    edges = np.linspace(0, 1, bins + 1)
    s, t = np.asarray(scores, dtype=float), np.asarray(truth, dtype=bool)
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (s >= low) & ((s < high) if high < 1 else (s <= high))
        if inside.any():
            out.append({"low": float(low), "high": float(high), "n": int(inside.sum()),
                        "mean_score": float(s[inside].mean()), "human_right": float(t[inside].mean())})
    return out


def _calibrate(rows: list[dict[str, Any]], items: list[Item], grades: list[Grade], humans: list[list[Any]],
               consensus: list[Any], columns: Columns, folds: int, judge: Judge) -> dict[str, Any]:
    from magister.judges.calibrate import features, fit

    x = [features(i.reference, str(r[columns.response]), g.score) for i, r, g in zip(items, rows, grades)]
    fitted = fit(x, [bool(v) for v in consensus], folds=folds)
    fitted.judge, fitted.source, fitted.grader = judge.model.spec, "", grades[0].grader if grades else "match"
    fitted.prompt = prompts.version(fitted.grader, judge.guarded)
    held = {method: {**_agreement(r["verdicts"], humans), "in_sample_kappa_vs_consensus": r["in_sample_kappa"],
                     "heldout_kappa_vs_consensus": r["kappa"]} for method, r in fitted.heldout.items()}
    chosen = fitted.heldout[fitted.method]["verdicts"]
    return {"calibration": {"method": fitted.method, "threshold": fitted.threshold, "folds": folds,
                            "verdicts": chosen, "heldout": held, **_agreement(chosen, humans)},
            "_calibration": fitted}


def _check_deterministic(path: str | Path, grader: str, columns: Columns, limit: int | None,
                         started: float) -> dict[str, Any]:
    rows, humans = read_labelled(path, [columns.question, columns.response, *columns.human], columns, limit)
    items, answers = labelled_answers(rows, columns)
    grades = [GRADERS[grader](i, a) for i, a in zip(items, answers)]
    verdicts = [bool(g.correct) for g in grades]
    report: dict[str, Any] = {"path": str(path), "grader": grader, "judge": "-", "n": len(rows),
                              "parse_failures": sum(not g.parsed for g in grades), **_agreement(verdicts, humans)}
    consensus = _consensus(humans)
    if all(isinstance(v, bool) for v in consensus):
        report["confusion"] = confusion(verdicts, consensus)
    _warn_constant(report, verdicts)
    elapsed = time.perf_counter() - started
    report.update(usage=None, tokens_per_grade=0.0, grades_per_s=len(rows) / max(elapsed, 1e-9), wall_s=elapsed,
                  repeat_agreement=1.0)
    return report


def _warn_constant(report: dict[str, Any], verdicts: Sequence[Any] | None = None) -> None:
    """A grader that gives one verdict on every row agrees with nobody: say so instead of a bare kappa of 0."""
    if verdicts is None:
        m = report.get("confusion")
        if not m:
            return
        verdicts = [True] * (m["tp"] + m["fp"]) + [False] * (m["fn"] + m["tn"])
    given = set(verdicts)
    if len(given) == 1 and len(verdicts) > 1:
        (only,) = given
        said = {True: "right", False: "wrong"}.get(only, str(only)) if isinstance(only, bool) else str(only)
        report["warning"] = (f"the grader called every one of the {len(verdicts)} rows '{said}': its kappa is 0 by "
                             "construction and says nothing about the answers")


def check(path: str | Path, grader: str, judge: Judge | None, columns: Columns, limit: int | None = None, *,
          baseline: str | None = None, calibrate: bool = False, folds: int = 5) -> dict[str, Any]:
    """Grade a human-labelled file with the judge (or a deterministic grader) and report the agreement.

    `baseline`: a deterministic grader graded on the same rows, with a paired bootstrap test of the
    kappa difference. `calibrate` (match, rubric): fit a calibration with `folds`-fold cross-validation and
    report its held-out agreement (`report["calibration"]`, and the fitted object under "_calibration").
    """
    started = time.perf_counter()
    if grader in GRADERS:
        return _check_deterministic(path, grader, columns, limit, started)
    if judge is None:
        raise ConfigError(f"grader '{grader}' needs a judge")
    report: dict[str, Any] = {"path": str(path), "grader": grader, "judge": judge.model.spec, "guarded": judge.guarded}
    if grader == "pairwise":
        rows, humans = read_labelled(path, [columns.instruction, columns.response_a, columns.response_b,
                                            *columns.human], replace(columns, match_threshold=None), limit)
        pairs = [(r[columns.instruction], r[columns.response_a], r[columns.response_b]) for r in rows]
        verdicts = judge.pairwise(pairs)
        winners = [v.winner for v in verdicts]
        report.update(n=len(rows), parse_failures=sum(not v.parsed for v in verdicts),
                      flip_rate=float(np.mean([v.flipped for v in verdicts])),
                      tie_rate=float(np.mean([w == "tie" for w in winners])),
                      position_bias=position_bias(verdicts), **_agreement(winners, humans))
        report["debiased"] = _agreement([v.debiased for v in verdicts], humans)
        sample = pairs[:REPEAT_SAMPLE]
        report["repeat_agreement"] = _repeat_agreement(lambda j: [v.winner for v in j.pairwise(sample)], judge)
    elif grader in ("match", "checklist", "rubric"):
        rows, humans = read_labelled(path, [columns.question, columns.response, *columns.human], columns, limit)
        items, answers = labelled_answers(rows, columns)

        def grade_all(j: Judge, its: list[Item] = items, ans: list[Answer] = answers) -> list[Grade]:
            return getattr(j, grader)(its, ans)

        grades = grade_all(judge)
        verdicts = [bool(g.correct) for g in grades]
        report.update(n=len(rows), parse_failures=sum(not g.parsed for g in grades), **_agreement(verdicts, humans))
        consensus = _consensus(humans)
        if all(isinstance(v, bool) for v in consensus):
            report["confusion"] = confusion(verdicts, consensus)
            report["calibration_curve"] = calibration_curve([g.score for g in grades], consensus)
        if grader == "match" and judge.cascade:
            report["judge_share"] = judge.usage.judged / max(len(rows), 1)
        if calibrate:
            if grader not in CALIBRATED:
                raise ConfigError(f"--calibrate fits the verdicts of {' and '.join(CALIBRATED)}, not '{grader}'")
            report.update(_calibrate(rows, items, grades, humans, consensus, columns, folds, judge))
        if baseline is not None:
            base = [bool(GRADERS[baseline](i, a).correct) for i, a in zip(items, answers)]
            report["baseline"] = {"grader": baseline, **_agreement(base, humans)}
            mine = report.get("calibration", {}).get("verdicts", verdicts)
            report["vs_baseline"] = paired_kappa_difference(mine, base, humans)
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
    _warn_constant(report)
    usage = judge.usage
    grades_n = report["n"]
    report["usage"] = usage.to_dict()
    # per grade the judge paid for: a cached call costs nothing, so scale by the share of calls that were new
    paid = grades_n * usage.calls / max(usage.calls + usage.cached, 1)
    report["tokens_per_grade"] = (usage.prompt_tokens + usage.completion_tokens) / max(paid, 1e-9)
    report["grades_per_s"] = paid / max(usage.seconds, 1e-9)
    report["wall_s"] = time.perf_counter() - started
    return report
