"""Rankings from stored runs, and the compare, leaderboard and anchors commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from helpers import write_jsonl
from magister.cli import app
from magister.models.base import load_model
from magister.rankings import compare_runs, correctness_matrix, exam_leaderboard
from magister.sit import sit
from magister.store import Store
from magister.types import Exam, Item, Kind

runner = CliRunner()


def skewed_exam() -> Exam:
    """30 items, 25 of them 'negative': mock:first (always 'negative') gets 25 right, mock:last 5."""
    labels = ["negative", "positive"]
    return Exam(name="skewed", items=[Item(id=f"s{i}", input=f"text {i}", reference=labels[int(i >= 25)],
                                           kind=Kind.classification, labels=labels) for i in range(30)])


@pytest.fixture
def three_runs(store: Store) -> dict[str, str]:
    return {spec: sit(skewed_exam(), load_model(spec), store, progress=False).run_id
            for spec in ("mock:last", "mock:random?seed=1", "mock:first")}


def test_compare_runs_is_mcnemar_on_shared_items(store: Store, three_runs: dict[str, str]) -> None:
    result, a, b = compare_runs(store, three_runs["mock:first"], three_runs["mock:last"])
    assert a.model == "mock:first" and (result.a_only, result.b_only) == (25, 5)
    assert result.p_value == pytest.approx(stats.binomtest(25, 30).pvalue) and result.p_value < 0.001
    assert result.diff == pytest.approx(20 / 30) and result.ci_low > 0


def test_exam_leaderboard_orders_latest_runs(store: Store, three_runs: dict[str, str]) -> None:
    standings = exam_leaderboard(store, "skewed")
    assert [s.model for s in standings][0::2] == ["mock:first", "mock:last"]
    assert standings[0].rank == 1 and standings[-1].rank >= 2  # first's lower bound is above last's upper bound
    for s in standings:
        assert s.rank == 1 + sum(other.ci_low > s.ci_high for other in standings)
    assert standings[0].score == pytest.approx(25 / 30) and standings[0].n == 30


def test_correctness_matrix(store: Store, three_runs: dict[str, str]) -> None:
    matrix, items, models = correctness_matrix(store, "skewed")
    assert matrix.shape == (3, 30) and items[0] == "s0"
    row = matrix[models.index("mock:first")]
    assert row.sum() == 25 and not np.isnan(matrix).any()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_compare_and_leaderboard_commands(three_runs: dict[str, str], tmp_path: Path) -> None:
    out = json.loads(invoke("compare", three_runs["mock:first"], three_runs["mock:last"], "--json"))
    assert out["test"] == "mcnemar-exact" and out["a_only"] == 25 and out["p_value"] < 0.001
    board = json.loads(invoke("leaderboard", "--exam", "skewed", "--json"))
    assert [row["model"] for row in board][0] == "mock:first" and {"rank", "ci_low", "ci_high"} <= set(board[0])
    battles = write_jsonl(tmp_path / "battles.jsonl", [
        {"prompt_id": f"p{i}", "model_a": "x", "model_b": "y", "winner": "a" if i % 4 else "b"} for i in range(40)])
    rows = json.loads(invoke("leaderboard", "--battles", str(battles), "--rounds", "200", "--json"))
    assert [r["model"] for r in rows] == ["x", "y"] and set(rows[0]) >= {"model", "rating", "ci_low", "ci_high",
                                                                           "rank"}
    assert "no run 'nope'" in runner.invoke(app, ["compare", "nope", three_runs["mock:last"]]).output


def test_anchors_then_exam_estimate(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n_items, n_models = 60, 12
    difficulty = rng.normal(0, 1, n_items)
    ability = rng.normal(0, 1, n_models)
    y = (rng.random((n_models, n_items)) < 1 / (1 + np.exp(difficulty - ability[:, None]))).astype(int)
    csv = tmp_path / "correctness.csv"
    csv.write_text("item," + ",".join(f"m{i}" for i in range(n_models)) + "\n" + "".join(
        f"q{j}," + ",".join(str(v) for v in y[:, j]) + "\n" for j in range(n_items)))
    anchors = tmp_path / "anchors.json"
    fitted = json.loads(invoke("anchors", str(csv), "--k", "8", "--out", str(anchors), "--json"))
    assert fitted["k"] == 8 and fitted["models"] == n_models and 0 <= fitted["lambda"] <= 1
    exam = write_jsonl(tmp_path / "exam.jsonl", [
        {"id": f"q{j}", "text": f"question {j}", "label": ["neg", "pos"][j % 2]} for j in range(n_items)])
    out = json.loads(invoke("exam", str(exam), "--model", "mock:first", "--anchors", str(anchors), "--json"))
    assert out["n"] == 8 and out["estimate"]["anchors_sat"] == 8
    assert 0 <= out["estimate"]["ci_low"] <= out["estimate"]["gp_irt"] <= out["estimate"]["ci_high"] <= 1
    short = write_jsonl(tmp_path / "short.jsonl", [{"id": "q0", "text": "x", "label": "neg"}])
    result = runner.invoke(app, ["exam", str(short), "--model", "mock:first", "--anchors", str(anchors)])
    assert result.exit_code == 1 and "anchor items are not in" in result.output


def test_item_difficulty_from_the_models_that_sat_an_exam(store: Store, three_runs: dict[str, str]) -> None:
    from magister.rankings import item_difficulty

    rows, models = item_difficulty(store, "skewed")
    assert sorted(models) == sorted(three_runs) and len(rows) == 30
    by_id = {r["item_id"]: r for r in rows}
    matrix, items, _ = correctness_matrix(store, "skewed")
    for j, item in enumerate(items):
        assert by_id[item]["share_correct"] == pytest.approx(matrix[:, j].mean())
    shares = [r["share_correct"] for r in rows]
    assert shares == sorted(shares)  # hardest first
    hard, easy = [r for r in rows if r["share_correct"] < 0.5], [r for r in rows if r["share_correct"] > 0.5]
    assert max(r["irt_difficulty"] for r in easy) < min(r["irt_difficulty"] for r in hard)


def test_cli_difficulty_keeps_the_hard_items(store: Store, three_runs: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "hard.jsonl"
    result = runner.invoke(app, ["difficulty", "skewed", "--keep", "hard", "-o", str(out)])
    assert result.exit_code == 0, result.output
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert kept and all(k["share_correct"] <= 0.5 and k["irt_difficulty"] is not None for k in kept)
    assert {k["reference"] for k in kept} <= {"negative", "positive"} and kept[0]["kind"] == "classification"
