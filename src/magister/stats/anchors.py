"""Cheap evaluation with anchor items, after tinyBenchmarks (Polo et al., 2024).

Fit once on the models that already sat the whole exam: pick K anchor items that stand for
the rest, then estimate a new model's full-exam accuracy from its answers to the anchors.

Anchor selection clusters the items (k-means) and takes the item nearest each centre; an
anchor's weight is the share of items in its cluster. Items are embedded either by their
`correctness` vector (who got them right: tinyBenchmarks' "correctness" anchors) or by
their fitted `irt` parameters (discrimination and difficulty).

Estimators, under tinyBenchmarks' names:
- `anchor`: the weighted mean of the anchor answers (a stratified sample mean);
- `irt`: fit the new model's ability on the anchors; predict its accuracy on every item;
- `p_irt`: the anchors' observed answers plus the IRT prediction for the other items;
- `gp_irt`: lambda * anchor + (1 - lambda) * p_irt, lambda = mse(p_irt) / (mse(anchor) + mse(p_irt)).

The mean squared errors behind lambda, and the error bar of `gp_irt`, come from
cross-validation over the training models: each fold re-fits the IRT model and the anchors
without its models and estimates their accuracies from their anchor answers alone, so the
error bar is what the method achieved on models it had not seen.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from magister.errors import DataError
from magister.stats.irt import ItemParams, fit_2pl, fit_ability

Embedding = Literal["correctness", "irt"]


@dataclass(frozen=True)
class Estimate:
    """A model's estimated full-exam accuracy from its anchor answers."""

    anchors_sat: int
    anchor: float
    irt: float
    p_irt: float
    gp_irt: float
    se: float  # standard error of gp_irt, from cross-validation over the training models

    @property
    def ci(self) -> tuple[float, float]:
        return max(0.0, self.gp_irt - 1.96 * self.se), min(1.0, self.gp_irt + 1.96 * self.se)

    def to_dict(self) -> dict[str, Any]:
        low, high = self.ci
        return {**asdict(self), "ci_low": low, "ci_high": high}


@dataclass
class Anchors:
    """Everything needed to estimate a new model's accuracy from K anchor answers."""

    items: list[str]  # every item id of the exam, in the order of the fitted parameters
    anchor_index: list[int]
    weights: list[float]
    discrimination: np.ndarray
    difficulty: np.ndarray
    models: list[str]  # the training models
    embedding: Embedding
    lam: float
    cv: dict[str, float] = field(default_factory=dict)  # cross-validated errors of each estimator
    exam: str | None = None

    @property
    def anchor_ids(self) -> list[str]:
        return [self.items[i] for i in self.anchor_index]

    def estimate(self, answers: Mapping[str, bool]) -> Estimate:
        """Estimate full-exam accuracy from {anchor item id: right?} (anchors not sat are skipped)."""
        sat = [(pos, i) for pos, i in enumerate(self.anchor_index) if self.items[i] in answers]
        if not sat:
            raise ValueError("none of the anchor items was answered")
        positions = np.array([p for p, _ in sat])
        index = np.array([i for _, i in sat])
        y = np.array([float(answers[self.items[i]]) for i in index])
        anchor, irt, p_irt = _estimators(self._params(), index, np.asarray(self.weights)[positions], y,
                                         len(self.items))
        gp = self.lam * anchor + (1 - self.lam) * p_irt
        return Estimate(anchors_sat=len(index), anchor=anchor, irt=irt, p_irt=p_irt, gp_irt=gp,
                        se=self.cv.get("rmse_gp_irt", math.nan))

    def _params(self) -> ItemParams:
        return ItemParams(self.discrimination, self.difficulty, np.zeros((0, self.discrimination.shape[1])))

    def save(self, path: str | Path) -> None:
        data = {"format": "magister-anchors/1", "exam": self.exam, "embedding": self.embedding, "lam": self.lam,
                "cv": self.cv, "models": self.models, "anchors": self.anchor_ids, "weights": self.weights,
                "items": self.items, "discrimination": self.discrimination.round(5).tolist(),
                "difficulty": self.difficulty.round(5).tolist()}
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(path)  # never a half-written anchors file

    @classmethod
    def load(cls, path: str | Path) -> Anchors:
        from magister.jsonl import read_lines

        if not Path(path).is_file():
            raise DataError("no such file", path=str(path))
        try:
            data = json.loads("\n".join(read_lines(Path(path))))
        except json.JSONDecodeError as error:
            raise DataError(f"not valid JSON ({error.msg})", path=str(path), line=error.lineno) from None
        if not isinstance(data, dict) or data.get("format") != "magister-anchors/1":
            raise DataError("not a Magister anchors file (write one with `magister anchors`)", path=str(path))
        needed = ("items", "anchors", "weights", "discrimination", "difficulty", "models", "embedding", "lam", "cv")
        missing = [key for key in needed if key not in data]
        if missing:
            raise DataError(f"anchors file lacks {', '.join(missing)} (write it with `magister anchors`)",
                            path=str(path), field=missing[0])
        position = {item: i for i, item in enumerate(data["items"])}
        unknown = [a for a in data["anchors"] if a not in position]
        if unknown:
            raise DataError(f"anchor {unknown[0]!r} is not among the file's items", path=str(path), field="anchors")
        return cls(items=data["items"], anchor_index=[position[a] for a in data["anchors"]], weights=data["weights"],
                   discrimination=np.array(data["discrimination"], dtype=float),
                   difficulty=np.array(data["difficulty"], dtype=float), models=data["models"],
                   embedding=data["embedding"], lam=data["lam"], cv=data["cv"], exam=data.get("exam"))


def select_anchors(correct: np.ndarray, params: ItemParams, k: int, embedding: Embedding = "correctness",
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """K anchor items (indices) and their weights (cluster shares, summing to 1)."""
    from sklearn.cluster import KMeans

    n = correct.shape[1]
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of items ({n}), got {k}")
    if embedding == "correctness":
        points = np.nan_to_num(correct.T, nan=0.5)  # a missing answer sits halfway
    elif embedding == "irt":
        points = np.column_stack([params.discrimination, params.difficulty])
    else:
        raise ValueError(f"embedding must be 'correctness' or 'irt', not {embedding!r}")
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(points)
    index, weights = [], []
    for c in range(k):
        members = np.flatnonzero(km.labels_ == c)
        if len(members) == 0:
            continue
        distance = ((points[members] - km.cluster_centers_[c]) ** 2).sum(1)
        index.append(int(members[np.argmin(distance)]))
        weights.append(len(members) / n)
    return np.array(index), np.array(weights)


def _estimators(params: ItemParams, index: np.ndarray, weights: np.ndarray, y: np.ndarray,
                n_items: int) -> tuple[float, float, float]:
    """(anchor, irt, p_irt) estimates from answers y to the items at index."""
    anchor = float(weights @ y / weights.sum())
    p = params.probabilities(fit_ability(params, index, y))
    irt = float(p.mean())
    seen = np.zeros(n_items, dtype=bool)
    seen[index] = True
    p_irt = float((y.sum() + p[~seen].sum()) / n_items)
    return anchor, irt, p_irt


def _fit_select(correct: np.ndarray, k: int, dims: int, embedding: Embedding,
                seed: int) -> tuple[ItemParams, np.ndarray, np.ndarray]:
    params = fit_2pl(correct, dims=dims)
    index, weights = select_anchors(correct, params, k, embedding, seed)
    return params, index, weights


def fit_anchors(correct: np.ndarray, items: Sequence[str], models: Sequence[str], k: int = 100, dims: int = 1,
                embedding: Embedding = "correctness", folds: int = 3, seed: int = 0,
                exam: str | None = None) -> Anchors:
    """Fit the IRT model and the anchors on a models x items matrix (1, 0, NaN), with cross-validated errors."""
    correct = np.asarray(correct, dtype=float)
    m, n = correct.shape
    if m < 3:
        raise ValueError(f"anchors need at least 3 models that sat the whole exam, got {m}")
    if len(items) != n or len(models) != m:
        raise ValueError("items and models must match the matrix shape")
    truth = np.nanmean(correct, axis=1)
    errors: dict[str, list[float]] = {"anchor": [], "irt": [], "p_irt": []}
    order = np.random.default_rng(seed).permutation(m)
    for fold in np.array_split(order, min(folds, m)):
        train = np.setdiff1d(np.arange(m), fold)
        params, index, weights = _fit_select(correct[train], k, dims, embedding, seed)
        for model in fold:
            y = correct[model, index]
            sat = ~np.isnan(y)
            estimates = _estimators(params, index[sat], weights[sat], y[sat], n)
            for name, value in zip(("anchor", "irt", "p_irt"), estimates, strict=True):
                errors[name].append(value - truth[model])
    mse = {name: float(np.mean(np.square(e))) for name, e in errors.items()}
    lam = mse["p_irt"] / (mse["anchor"] + mse["p_irt"]) if mse["anchor"] + mse["p_irt"] > 0 else 0.5
    gp = lam * np.array(errors["anchor"]) + (1 - lam) * np.array(errors["p_irt"])
    cv = {f"mae_{name}": float(np.mean(np.abs(e))) for name, e in errors.items()}
    cv.update(mae_gp_irt=float(np.mean(np.abs(gp))), rmse_gp_irt=float(np.sqrt(np.mean(gp ** 2))), folds=len(
        np.array_split(order, min(folds, m))))
    params, index, weights = _fit_select(correct, k, dims, embedding, seed)
    return Anchors(items=list(items), anchor_index=index.tolist(), weights=weights.tolist(),
                   discrimination=params.discrimination, difficulty=params.difficulty, models=list(models),
                   embedding=embedding, lam=float(lam), cv=cv, exam=exam)


def read_matrix(path: str | Path) -> tuple[np.ndarray, list[str], list[str]]:
    """A correctness CSV: an item-id column first, then one 0/1 column per model (blank = not sat).

    Returns (models x items matrix, item ids, model names).
    """
    from magister.jsonl import read_lines

    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path=str(path))
    # UTF-8 (with or without a BOM); bad bytes are named by line
    reader = csv.reader(io.StringIO("\n".join(read_lines(path))))
    header = next(reader, None)
    if not header or len(header) < 2:
        raise DataError("expected a header: an item-id column, then one column per model", path=str(path),
                        line=1)
    items, rows = [], []
    for number, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise DataError(f"{len(row)} cells, the header has {len(header)}", path=str(path), line=number)
        values = []
        for name, cell in zip(header[1:], row[1:], strict=True):
            cell = cell.strip()
            if cell in ("", "nan", "NaN", "NA"):
                values.append(math.nan)
            elif cell in ("0", "1", "0.0", "1.0", "True", "False", "true", "false"):
                values.append(1.0 if cell in ("1", "1.0", "True", "true") else 0.0)
            else:
                raise DataError(f"expected 0, 1 or blank, got {cell!r}", path=str(path), line=number,
                                field=name)
        items.append(row[0])
        rows.append(values)
    if not rows:
        raise DataError("no items in the file", path=str(path))
    if len(set(items)) != len(items):
        raise DataError("item ids repeat", path=str(path), field=header[0])
    return np.array(rows).T, items, header[1:]
