"""Bradley-Terry: hand-checked cases, an independent logistic-regression fit, and the bootstrap."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from magister.errors import DataError
from magister.stats.bradley_terry import Battle, _Encoded, fit, leaderboard, load_battles


def battles_from(rows: list[tuple[str, str, str]]) -> list[Battle]:
    return [Battle(f"p{i}", a, b, w) for i, (a, b, w) in enumerate(rows)]  # type: ignore[arg-type]


def test_two_models_three_wins_of_four() -> None:
    # MLE: P(A beats B) = 3/4, so beta_A - beta_B = ln 3 and the Elo gap is 400 log10 3.
    ratings = fit(battles_from([("A", "B", "a")] * 3 + [("A", "B", "b")]))
    gap = 400 * math.log10(3)
    assert ratings["A"] == pytest.approx(1000 + gap / 2, abs=0.01)
    assert ratings["B"] == pytest.approx(1000 - gap / 2, abs=0.01)


def test_ties_are_half_wins_and_sides_do_not_matter() -> None:
    even = fit(battles_from([("A", "B", "a"), ("B", "A", "a"), ("A", "B", "tie"), ("B", "A", "tie")]))
    assert even["A"] == pytest.approx(even["B"], abs=1e-6)
    # one win and two ties out of three = 2/3
    ratings = fit(battles_from([("A", "B", "a"), ("A", "B", "tie"), ("B", "A", "tie")]))
    assert ratings["A"] - ratings["B"] == pytest.approx(400 * math.log10(2), abs=0.01)


def test_anchor_model_sits_at_1000() -> None:
    ratings = fit(battles_from([("A", "B", "a")] * 3 + [("A", "B", "b")]), anchor="B")
    assert ratings["B"] == pytest.approx(1000) and ratings["A"] == pytest.approx(1000 + 400 * math.log10(3), abs=0.01)
    with pytest.raises(ValueError, match="anchor model 'C'"):
        fit(battles_from([("A", "B", "a")]), anchor="C")


def simulated(n_prompts: int = 200, seed: int = 0) -> list[Battle]:
    rng = np.random.default_rng(seed)
    strength = {"m0": 0.0, "m1": 0.6, "m2": 1.2, "m3": -0.4}
    names = list(strength)
    out = []
    for p in range(n_prompts):
        for _ in range(3):
            a, b = rng.choice(names, 2, replace=False)
            win = 1 / (1 + math.exp(strength[b] - strength[a]))
            u = rng.random()
            out.append(Battle(f"p{p}", a, b, "tie" if abs(u - win) < 0.05 else ("a" if u < win else "b")))
    return out


def test_fit_agrees_with_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression

    battles = simulated()
    enc = _Encoded(battles)
    rows, labels, weights = [], [], []
    for b in battles:  # each battle as a win and a loss, weighted by its score (a tie is half of each)
        x = np.zeros(len(enc.models))
        x[enc.models.index(b.model_a)], x[enc.models.index(b.model_b)] = 1, -1
        score = {"a": 1.0, "b": 0.0, "tie": 0.5}[b.winner]
        rows += [x, x]
        labels += [1, 0]
        weights += [score, 1 - score]
    lr = LogisticRegression(fit_intercept=False, C=1e8, tol=1e-10, max_iter=10_000)
    lr.fit(np.array(rows), np.array(labels), sample_weight=np.array(weights))
    independent = lr.coef_[0] - lr.coef_[0].mean()
    assert np.allclose(enc.fit(), independent, atol=1e-4)


def test_leaderboard_orders_models_and_covers_the_truth() -> None:
    board = leaderboard(simulated(), rounds=300)
    assert [r.model for r in board] == ["m2", "m1", "m0", "m3"]
    assert all(r.ci_low <= r.rating <= r.ci_high for r in board)
    assert board[0].rank == 1 and board[-1].rank == 4
    assert sum(r.battles for r in board) == 2 * 600


def test_rank_counts_models_clearly_above() -> None:
    # Two near-equal models share rank 1; the third is clearly below both.
    rows = [("A", "B", "a"), ("A", "B", "b")] * 20 + [("A", "C", "a")] * 20 + [("B", "C", "a")] * 20
    board = {r.model: r for r in leaderboard(battles_from(rows), rounds=300)}
    assert board["A"].rank == board["B"].rank == 1 and board["C"].rank == 3


def test_prompt_bootstrap_is_wider_when_battles_of_a_prompt_are_copies() -> None:
    # Every prompt's battles repeated 9 times: 9x fewer independent outcomes than battles.
    base = simulated(n_prompts=60, seed=3)
    copies = [b for b in base for _ in range(9)]
    prompt = {r.model: r.ci_high - r.ci_low for r in leaderboard(copies, rounds=400, resample="prompt")}
    game = {r.model: r.ci_high - r.ci_low for r in leaderboard(copies, rounds=400, resample="game")}
    ratio = np.mean([prompt[m] / game[m] for m in prompt])
    assert 2.3 < ratio < 3.7  # about sqrt(9) = 3


def test_load_battles_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "battles.jsonl"
    rows = [{"prompt_id": 1, "model_a": "x", "model_b": "y", "winner": "A"},
            {"prompt_id": 2, "model_a": "x", "model_b": "y", "winner": "draw"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=r"battles.jsonl:2: must be a, b or tie.*\(field 'winner'\)"):
        load_battles(path)
    path.write_text(json.dumps({"prompt_id": 1, "model_a": "x", "winner": "a"}))
    with pytest.raises(DataError, match=r":1: missing \(field 'model_b'\)"):
        load_battles(path)
    path.write_text(json.dumps(rows[0]))
    assert load_battles(path) == [Battle("1", "x", "y", "a")]


def test_an_undefeated_model_gets_an_open_interval_not_a_point() -> None:
    rows = [("A", "B", "a")] * 6 + [("B", "C", "a"), ("B", "C", "b"), ("B", "C", "a"), ("A", "C", "a")]
    board = {r.model: r for r in leaderboard(battles_from(rows), rounds=50)}
    assert board["A"].unbounded == "above" and board["A"].ci_high == math.inf
    assert board["A"].ci_low < board["A"].rating  # the lower end is still measured
    assert board["C"].unbounded is None and board["B"].unbounded is None and math.isfinite(board["B"].ci_high)
    swept = {r.model: r for r in leaderboard(battles_from([("A", "B", "a")] * 4), rounds=20)}
    assert swept["B"].unbounded == "below" and swept["B"].ci_low == -math.inf


def test_the_anchor_interval_is_its_point(tmp_path: Path) -> None:
    rows = [("A", "B", "a"), ("A", "B", "b"), ("A", "B", "a"), ("B", "C", "a"), ("C", "B", "a"), ("A", "C", "b")]
    board = {r.model: r for r in leaderboard(battles_from(rows), rounds=50, anchor="B")}
    assert board["B"].rating == board["B"].ci_low == board["B"].ci_high == pytest.approx(1000)
    from typer.testing import CliRunner

    from magister.cli import app

    path = tmp_path / "b.jsonl"
    path.write_text("".join(json.dumps({"prompt_id": f"p{k}", "model_a": a, "model_b": b, "winner": w}) + "\n"
                            for k, (a, b, w) in enumerate(rows + [("D", "A", "a")] * 3)))
    result = CliRunner().invoke(app, ["leaderboard", "--battles", str(path), "--anchor", "B", "--rounds", "30"])
    assert result.exit_code == 0 and "point by construction" in result.output
    assert "D lost none of its 3 battles" in " ".join(result.output.split())
