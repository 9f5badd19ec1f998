"""judge-check: agreement with human labels, from files, with the mock judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import write_jsonl
from magister.cli import app
from magister.errors import DataError
from magister.judges import Judge
from magister.judges.check import Columns, check
from magister.models.mock import MockModel
from magister.store import Store
from magister.types import Request

runner = CliRunner()


def says_yes_when_equal(request: Request) -> str:
    text = [m.content for m in request.messages or [] if m.role == "user"][-1]
    reference = text.split("<reference>\n")[1].split("\n</reference>")[0]
    response = text.split("<response>\n")[1].split("\n</response>")[0]
    return "yes" if reference == response else "no"


@pytest.fixture
def rated(tmp_path: Path) -> Path:
    rows = []
    for n in range(12):
        same = n % 2 == 0
        rows.append({"id": n, "question": f"q{n}", "reference": "42", "response": "42" if same else "41",
                     "h1": 5 if same else 1, "h2": 5 if same or n == 1 else 2})
    return write_jsonl(tmp_path / "rated.jsonl", rows)


def test_match_agreement_with_two_humans(store: Store, rated: Path) -> None:
    judge = Judge(MockModel("mock:custom", respond=says_yes_when_equal), store)
    report = check(rated, "match", judge, Columns(human=["h1", "h2"], match_threshold=4))
    assert report["n"] == 12 and report["parse_failures"] == 0
    assert report["kappa_per_human"][0] == pytest.approx(1.0)  # the judge equals human 1
    # human 2 differs on one item: 11/12 agreement, kappa = (11/12 - 0.5) / 0.5 with margins 7/12 and 6/12
    po, pe = 11 / 12, (7 / 12) * (6 / 12) + (5 / 12) * (6 / 12)
    assert report["kappa_per_human"][1] == pytest.approx((po - pe) / (1 - pe))
    assert report["human_human_kappa"] == pytest.approx((po - pe) / (1 - pe))
    assert report["accuracy"] == pytest.approx((1 + 11 / 12) / 2)
    assert report["kappa_ci"][0] <= report["kappa"] <= report["kappa_ci"][1]
    assert report["correlations"]["spearman"] > 0.8 and report["repeat_agreement"] == 1.0
    assert report["tokens_per_grade"] > 0


def test_pairwise_flip_rate(store: Store, tmp_path: Path) -> None:
    rows = [{"instruction": "i", "response_a": "a", "response_b": "bb", "human": "a"} for _ in range(4)]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    report = check(path, "pairwise", Judge(MockModel("mock:first"), store), Columns())
    assert report["flip_rate"] == 1.0 and report["tie_rate"] == 1.0 and report["accuracy"] == 0.0
    assert report["position_bias"] > 0.9 and report["debiased"]["accuracy"] == 0.0  # no lean: ties


def test_missing_field_names_line_and_field(store: Store, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "response": "r", "human": 1},
                                                {"question": "q", "human": 1}])
    with pytest.raises(DataError, match=r"bad.jsonl:2: missing \(field 'response'\)"):
        check(path, "match", Judge(MockModel("mock:first"), store), Columns())


def test_judge_check_command_json(rated: Path) -> None:
    result = runner.invoke(app, ["judge-check", str(rated), "--grader", "rubric", "--judge", "mock:last",
                                 "--human", "h1", "--human", "h2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"n", "kappa", "kappa_ci", "accuracy", "human_human_kappa", "parse_failures"} <= set(report)
    assert "weighted_kappa" in report and report["grader"] == "rubric"
    bad = runner.invoke(app, ["judge-check", str(rated), "--grader", "vibes"])
    assert bad.exit_code == 1 and "unknown grader 'vibes'" in bad.output


def test_exam_with_a_judged_grader(tmp_path: Path) -> None:
    exam = write_jsonl(tmp_path / "free.jsonl", [{"id": "a", "question": "Capital of France?", "answer": "Paris"}])
    result = runner.invoke(app, ["exam", str(exam), "--model", "mock:text=Paris", "--grader", "match",
                                 "--judge", "mock:text=yes", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["accuracy"] == 1.0 and out["judge_repeat_agreement"] == 1.0


def test_checklist_weights_fitted_from_human_labels() -> None:
    from magister.judges.check import fit_checklist
    from magister.types import Grade

    # The judge's P(yes) on the 2nd question separates the labels; the plain mean does not.
    grades, labels = [], []
    for n in range(40):
        right = n % 2 == 0
        p = [0.9, 0.8 if right else 0.2, 0.1]
        grades.append(Grade(item_id=str(n), grader="checklist", score=sum(p) / 3, raw=json.dumps({"p_yes": p})))
        labels.append(right)
    fitted = fit_checklist(grades, labels)
    assert fitted is not None and sum(f == y for f, y in zip(fitted, labels)) >= 38
    assert fit_checklist(grades[:4], labels[:4]) is None  # too few labels: fall back to the plain score


def test_battles_command_feeds_the_leaderboard(tmp_path: Path) -> None:
    rows = [{"prompt_id": f"p{n}", "instruction": "Say hi", "model_a": "big", "response_a": "hi",
             "model_b": "small", "response_b": "hello there"} for n in range(6)]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "battles.jsonl"
    result = runner.invoke(app, ["battles", str(pairs), "--judge", "mock:first", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(written) == 6 and all(b["winner"] == "tie" and b["flipped"] for b in written)  # first-position bias
    board = runner.invoke(app, ["leaderboard", "--battles", str(out), "--rounds", "50", "--json"])
    assert board.exit_code == 0 and {r["model"] for r in json.loads(board.stdout)} == {"big", "small"}


def test_battles_on_pairs_without_ids_or_model_names(tmp_path: Path) -> None:
    """The shared MT-Bench pairs have `id` and no model names: ids become prompt ids, names come from options."""
    rows = [{"id": f"mtbench-{n}", "instruction": "Say hi", "response_a": "hi", "response_b": "hello there",
             "human": "a"} for n in range(3)]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "battles.jsonl"
    result = runner.invoke(app, ["battles", str(pairs), "--judge", "mock:first", "--out", str(out),
                                 "--model-a", "gpt-4", "--model-b", "claude"])
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [b["prompt_id"] for b in written] == ["mtbench-0", "mtbench-1", "mtbench-2"]
    assert {(b["model_a"], b["model_b"]) for b in written} == {("gpt-4", "claude")}
    missing = write_jsonl(tmp_path / "bad.jsonl", [{"id": "x", "instruction": "i", "response_a": "a"}])
    bad = runner.invoke(app, ["battles", str(missing), "--judge", "mock:first", "--out", str(tmp_path / "b.jsonl")])
    assert bad.exit_code == 1 and "bad.jsonl:1" in bad.output and "response_b" in bad.output


def test_bad_human_labels_fail_before_any_judge_call(tmp_path: Path) -> None:
    judge_model = MockModel("mock:first")
    for value, message in (("great", "--match-threshold needs a numeric rating, got 'great'"),
                           (float("nan"), "the human label is nan")):
        path = tmp_path / "rated.jsonl"
        path.write_text(json.dumps({"question": "q", "reference": "r", "response": "r", "human": 4}) + "\n" +
                        json.dumps({"question": "q", "reference": "r", "response": "r", "human": value}) + "\n")
        with pytest.raises(DataError, match=rf"rated.jsonl:2: {message} \(field 'human'\)"):
            check(path, "match", Judge(judge_model, Store(":memory:")), Columns(match_threshold=4))
    assert judge_model.calls == 0
