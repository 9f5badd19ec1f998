"""Anchor items (tinyBenchmarks): deterministic selection, estimates, the file and the CSV reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from magister.errors import DataError
from magister.stats.anchors import Anchors, fit_anchors, read_matrix, select_anchors
from magister.stats.irt import fit_2pl


def matrix(models: int = 30, items: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1, models)
    b = rng.normal(0, 1.2, items)
    a = rng.lognormal(0, 0.3, items)
    return (rng.random((models, items)) < 1 / (1 + np.exp(-(np.outer(theta, a) - b)))).astype(float)


@pytest.mark.parametrize("embedding", ["correctness", "irt"])
def test_selection_is_deterministic_with_a_seed(embedding: str) -> None:
    y = matrix()
    params = fit_2pl(y)
    first = select_anchors(y, params, 20, embedding, seed=7)  # type: ignore[arg-type]
    again = select_anchors(y, params, 20, embedding, seed=7)  # type: ignore[arg-type]
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    index, weights = first
    assert len(set(index.tolist())) == len(index) <= 20 and weights.sum() == pytest.approx(1)


def test_estimates_of_a_held_out_model() -> None:
    y = matrix(models=41)
    items = [f"i{j}" for j in range(y.shape[1])]
    anchors = fit_anchors(y[:40], items, [f"m{i}" for i in range(40)], k=60, seed=0)
    assert 0 <= anchors.lam <= 1 and anchors.cv["folds"] == 3 and anchors.cv["rmse_gp_irt"] > 0
    estimate = anchors.estimate({items[i]: bool(y[40, i]) for i in anchors.anchor_index})
    assert estimate.anchors_sat == len(anchors.anchor_index)
    truth = y[40].mean()
    for value in (estimate.anchor, estimate.irt, estimate.p_irt, estimate.gp_irt):
        assert abs(value - truth) < 0.1
    low, high = estimate.ci
    assert low < estimate.gp_irt < high


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    y = matrix(models=10, items=100)
    items = [f"i{j}" for j in range(100)]
    anchors = fit_anchors(y, items, [f"m{i}" for i in range(10)], k=10, exam="toy")
    path = tmp_path / "anchors.json"
    anchors.save(path)
    loaded = Anchors.load(path)
    assert loaded.anchor_ids == anchors.anchor_ids and loaded.exam == "toy" and loaded.lam == anchors.lam
    answers = {item: True for item in anchors.anchor_ids[:5]}
    assert loaded.estimate(answers).gp_irt == pytest.approx(anchors.estimate(answers).gp_irt, abs=1e-4)
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(DataError, match="not a Magister anchors file"):
        Anchors.load(tmp_path / "other.json")


def test_read_matrix_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "correctness.csv"
    path.write_text("question_id,model-a,model-b\nq1,1,0\nq2,,1\n")
    y, items, models = read_matrix(path)
    assert items == ["q1", "q2"] and models == ["model-a", "model-b"] and y.shape == (2, 2)
    assert np.isnan(y[0, 1]) and y[1, 1] == 1.0
    path.write_text("question_id,model-a,model-b\nq1,1,0\nq2,yes,1\n")
    with pytest.raises(DataError, match=r"correctness.csv:3: expected 0, 1 or blank.*\(field 'model-a'\)"):
        read_matrix(path)
    path.write_text("question_id,model-a\nq1,1,0\n")
    with pytest.raises(DataError, match=r":2: 3 cells, the header has 2"):
        read_matrix(path)
