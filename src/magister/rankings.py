"""Rankings from stored runs: paired comparison of two runs, a leaderboard per exam, and the
correctness matrix (models x items) that cheap evaluation fits its anchors on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from magister.errors import ConfigError
from magister.stats.intervals import mean_ci, wilson
from magister.stats.paired import Comparison, compare
from magister.store import RunRow, Store
from magister.types import Grade


def find_run(store: Store, run_id: str) -> RunRow:
    """A run by its id or a unique start or ending of it; a clear error otherwise."""
    try:
        return store.run(run_id)
    except KeyError as error:
        found = str(error.args[0]) if error.args else run_id
        raise ConfigError(f"no run '{run_id}' (see `magister runs`)" if found == run_id else f"run id {found}") from None


def _grades(store: Store, run_id: str) -> dict[str, Grade]:
    return {grade.item_id: grade for _, grade in store.answers(run_id)}


def _value(grade: Grade) -> float:
    return float(grade.correct) if grade.correct is not None else grade.score


def compare_runs(store: Store, run_a: str, run_b: str, rounds: int = 10_000) -> tuple[Comparison, RunRow, RunRow]:
    """A minus B on the items both runs answered: McNemar for right/wrong grades, paired bootstrap for scores.
    The pairs come from one SQL join, so a run of 100,000 items costs two columns of numbers."""
    a, b = find_run(store, run_a), find_run(store, run_b)
    rows = store.paired_grades(a.id, b.id)
    if not rows:
        raise ConfigError(f"runs {a.id} and {b.id} share no items: a paired comparison needs the same exam")
    binary = all(r[0] is not None and r[2] is not None for r in rows)
    values_a = [float(r[0]) if r[0] is not None else r[1] for r in rows]
    values_b = [float(r[2]) if r[2] is not None else r[3] for r in rows]
    return compare(values_a, values_b, binary=binary, rounds=rounds), a, b


@dataclass(frozen=True)
class Standing:
    """One model's latest finished run on an exam."""

    model: str
    run_id: str
    n: int
    score: float
    ci_low: float
    ci_high: float
    rank: int

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "run_id": self.run_id, "n": self.n, "accuracy": self.score,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "rank": self.rank}


def latest_runs(store: Store, exam: str) -> list[RunRow]:
    """The latest finished run of each model on the exam with this name (its latest version)."""
    runs = [r for r in store.runs(exam=exam, limit=100_000) if r.status == "finished"]
    if not runs:
        raise ConfigError(f"no finished runs of exam '{exam}' (see `magister runs`)")
    version = runs[0].exam_version  # newest first: rank only runs of the newest version of the exam
    latest: dict[str, RunRow] = {}
    for run in runs:
        if run.exam_version == version and run.model not in latest:
            latest[run.model] = run
    return list(latest.values())


def exam_leaderboard(store: Store, exam: str) -> list[Standing]:
    """Accuracy (or mean score) per model with 95% CIs, best first; rank as in the battle leaderboard."""
    rows = []
    for run in latest_runs(store, exam):
        values = [_value(g) for g in _grades(store, run.id).values()]
        if all(v in (0.0, 1.0) for v in values):
            low, high = wilson(int(sum(values)), len(values))
        else:
            low, high = mean_ci(values)
        rows.append((run, len(values), float(np.mean(values)) if values else 0.0, float(low), float(high)))
    standings = [Standing(model=run.model, run_id=run.id, n=n, score=score, ci_low=low, ci_high=high,
                          rank=1 + sum(int(other[3] > high) for other in rows)) for run, n, score, low, high in rows]
    return sorted(standings, key=lambda s: -s.score)


def correctness_matrix(store: Store, exam: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Models x items matrix of right (1) / wrong (0) / not answered (NaN) from the latest runs on an exam."""
    runs = latest_runs(store, exam)
    items = [item.id for item in store.exam(runs[0].exam_version).items]
    position = {item: j for j, item in enumerate(items)}
    matrix = np.full((len(runs), len(items)), np.nan)
    for i, run in enumerate(runs):
        for item, grade in _grades(store, run.id).items():
            if grade.correct is not None:
                matrix[i, position[item]] = float(grade.correct)
    return matrix, items, [run.model for run in runs]


def item_difficulty(store: Store, exam: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Per item of an exam: the share of models that got it right and its IRT difficulty (2PL, when two or
    more models sat it), from the latest run of each model; hardest first. Also returns the models."""
    from magister.stats.irt import fit_2pl

    matrix, items, models = correctness_matrix(store, exam)
    answered = ~np.isnan(matrix)
    share = np.where(answered.any(axis=0), np.nansum(matrix, axis=0) / np.maximum(answered.sum(axis=0), 1), np.nan)
    difficulty = fit_2pl(matrix).difficulty if len(models) >= 2 else np.full(len(items), np.nan)
    rows = [{"item_id": item, "models": int(answered[:, j].sum()), "share_correct": float(share[j]),
             "irt_difficulty": None if np.isnan(difficulty[j]) else float(difficulty[j])}
            for j, item in enumerate(items)]
    rows.sort(key=lambda r: (r["share_correct"], -(r["irt_difficulty"] or 0.0)))
    return rows, models
