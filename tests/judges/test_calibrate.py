"""Calibrating a yes/no judge on human labels, the cascade, and judge-check's comparisons, with mock judges."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import write_jsonl
from magister.cli import app
from magister.errors import ConfigError
from magister.judges import Judge, prompts
from magister.judges.calibrate import Calibration, features, fit
from magister.judges.check import Columns, check
from magister.models.mock import MockModel
from magister.store import Store
from magister.types import Answer, Item, Kind, Request

runner = CliRunner()


def stingy(request: Request) -> dict[str, float]:
    """A yes/no judge: P(yes) = 0.3 when the response names the reference, else 0.1. Below 0.5 every time, so
    its uncalibrated verdict is always 'no', though its P(yes) separates right from wrong perfectly."""
    text = (request.messages or [])[-1].content
    reference = text.split("<reference>\n")[1].split("\n</reference>")[0] if "<reference>" in text else ""
    response = text.split("<response>\n")[1].split("\n</response>")[0] if "<response>" in text else ""
    p = 0.3 if reference.lower() in response.lower() else 0.1
    return {"yes": p, "no": 1 - p}


def StingyJudge() -> MockModel:  # noqa: N802 - reads as the model it makes
    return MockModel("mock:stingy", score=stingy)


CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Quito", "Hanoi", "Delhi", "Tokyo", "Dakar"]


def rows(n: int = 40) -> list[dict]:
    """Answers to 'capital of X?': half name the capital (right, human 1), half another city (wrong, 0)."""
    out = []
    for i in range(n):
        city = CITIES[i % len(CITIES)]
        right = i % 2 == 0
        response = f"I believe it is {city}." if right else f"I believe it is {CITIES[(i + 3) % len(CITIES)]}."
        out.append({"id": f"r{i}", "question": f"What is the capital of country {i}?", "reference": city,
                    "response": response, "human": int(right)})
    return out


def test_a_threshold_recovers_a_judge_that_says_yes_too_rarely() -> None:
    data = rows()
    x = [features(r["reference"], r["response"], 0.3 if r["human"] else 0.1) for r in data]
    fitted = fit(x, [bool(r["human"]) for r in data], methods=("threshold",))
    assert fitted.method == "threshold" and 0.1 < fitted.threshold < 0.3
    assert fitted.heldout["threshold"]["kappa"] == pytest.approx(1.0)
    assert fitted.decide(features("Paris", "Paris", 0.3))[0] and not fitted.decide(features("Paris", "Rome", 0.1))[0]


def test_held_out_kappa_is_not_the_in_sample_one() -> None:
    """On labels that carry no relation to P(yes), the cut fitted in-sample finds agreement that is not
    there; the cross-validated verdicts must not."""
    gaps, held = [], []
    for seed in range(6):
        rng = random.Random(seed)
        x = [features("a", "b", rng.random()) for _ in range(60)]
        y = [rng.random() < 0.5 for _ in range(60)]
        report = fit(x, y, methods=("threshold",)).heldout["threshold"]
        gaps.append(report["in_sample_kappa"] - report["kappa"])
        held.append(report["kappa"])
    assert sum(gaps) / len(gaps) > 0.15 and abs(sum(held) / len(held)) < 0.1
    with pytest.raises(ConfigError, match="at least 5 human labels of each verdict"):
        fit(x[:6], [True] * 5 + [False])


def test_calibration_files_round_trip_and_bad_files_fail_clearly(tmp_path: Path) -> None:
    data = rows()
    x = [features(r["reference"], r["response"], 0.3 if r["human"] else 0.1) for r in data]
    fitted = fit(x, [bool(r["human"]) for r in data])
    path = tmp_path / "c.json"
    fitted.save(path)
    loaded = Calibration.load(path)
    assert [loaded.decide(row) for row in x] == [fitted.decide(row) for row in x]
    assert "verdicts" not in json.loads(path.read_text())["heldout"][fitted.method]
    (tmp_path / "bad.json").write_text("{\"method\": 3")
    with pytest.raises(ConfigError, match="not a calibration file"):
        Calibration.load(tmp_path / "bad.json")


def test_match_uses_the_calibration_and_the_cascade_skips_the_judge(store: Store, tmp_path: Path) -> None:
    data = rows(20)
    items = [Item(id=r["id"], input=r["question"], reference=r["reference"], kind=Kind.free_form) for r in data]
    answers = [Answer(item_id=r["id"], text=r["response"], request_key="k") for r in data]
    raw = Judge(StingyJudge(), store).match(items, answers)
    assert not any(g.correct for g in raw)  # P(yes) < 0.5 everywhere
    x = [features(r["reference"], r["response"], g.score) for r, g in zip(data, raw)]
    calibration = fit(x, [bool(r["human"]) for r in data], methods=("threshold",))
    judged = Judge(StingyJudge(), store, calibration=calibration).match(items, answers)
    assert [g.correct for g in judged] == [bool(r["human"]) for r in data]
    assert "calibrated (threshold)" in (judged[0].rationale or "")
    model = StingyJudge()
    cascaded = Judge(model, Store(tmp_path / "fresh.db"), cascade=True)
    grades = cascaded.match(items, answers)
    assert model.calls == 10 and cascaded.usage.settled == 10 and cascaded.usage.judged == 10
    assert all(g.correct and "settled by the rules" in (g.rationale or "") for g, r in zip(grades, data) if r["human"])


def test_judge_check_calibrates_compares_with_a_baseline_and_plots(tmp_path: Path, store: Store,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from magister.models import base

    path = write_jsonl(tmp_path / "rated.jsonl", rows())
    report = check(path, "match", Judge(StingyJudge(), store), Columns(), baseline="contains", calibrate=True)
    assert report["kappa"] == pytest.approx(0.0) and report["confusion"]["tp"] == 0
    assert "called every one of the 40 rows 'wrong'" in report["warning"]
    assert report["calibration"]["kappa"] == pytest.approx(1.0) and report["calibration"]["method"] == "threshold"
    assert report["baseline"]["grader"] == "contains" and report["vs_baseline"]["difference"] == pytest.approx(0.0)
    assert report["calibration_curve"] and report["calibration_curve"][0]["human_right"] == 0.0
    rules = check(path, "rules", None, Columns())
    assert rules["kappa"] == pytest.approx(1.0) and rules["judge"] == "-" and rules["confusion"]["fp"] == 0

    real = base.load_model
    monkeypatch.setattr(base, "load_model", lambda spec: StingyJudge() if spec == "mock:stingy" else real(spec))
    out, plot = tmp_path / "stingy.calibration.json", tmp_path / "curve.png"
    result = runner.invoke(app, ["judge-check", str(path), "--judge", "mock:stingy", "--calibrate", "--baseline",
                                 "rules", "--calibration-out", str(out), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "calibrated (threshold" in result.stdout and "baseline: rules" in result.stdout
    assert Calibration.load(out).method == "threshold" and plot.read_bytes()[:4] == b"\x89PNG"

    exam = write_jsonl(tmp_path / "exam.jsonl", [{"id": r["id"], "question": r["question"],
                                                  "answer": r["reference"]} for r in rows(6)])
    sat = runner.invoke(app, ["exam", str(exam), "-m", "mock:text=I believe it is Paris.", "--grader", "match",
                              "--judge", "mock:stingy", "--calibration", str(out), "--no-cascade", "--json"])
    assert sat.exit_code == 0, sat.output
    run_id = json.loads(sat.stdout)["run_id"]
    config = store.run(run_id).config
    assert config["calibration"][0] == str(out) and len(config["calibration"][1]) == 12
    assert json.loads(sat.stdout)["correct"] == 1  # only the item whose capital is Paris
    cascaded = runner.invoke(app, ["exam", str(exam), "-m", "mock:text=I believe it is Paris.", "--grader",
                                   "match", "--judge", "mock:stingy", "--json"])
    assert json.loads(cascaded.stdout)["judge_share"] == pytest.approx(5 / 6)


def harsh_rubric(request: Request) -> dict[str, float]:
    """A rubric judge that scores a right answer about 2 of 5 and a wrong one about 1: uncalibrated, it fails
    every answer (right needs 4 or more), though its scores separate them perfectly."""
    text = (request.messages or [])[-1].content
    reference = text.split("<reference>\n")[1].split("\n</reference>")[0]
    response = text.split("<response>\n")[1].split("\n</response>")[0]
    return {"2": 0.9, "1": 0.1} if reference.lower() in response.lower() else {"1": 0.9, "2": 0.1}


def test_a_rubric_is_calibrated_by_a_score_cut_and_its_file_only_fits_the_rubric(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from magister.models import base
    from magister.sit import grader_for

    path = write_jsonl(tmp_path / "rated.jsonl", rows())
    judge = MockModel("mock:harsh", score=harsh_rubric)
    report = check(path, "rubric", Judge(judge, store), Columns(), calibrate=True)
    assert report["kappa"] == pytest.approx(0.0) and report["calibration"]["kappa"] == pytest.approx(1.0)
    fitted = report["_calibration"]
    assert fitted.grader == "rubric" and fitted.method == "threshold"
    data = rows(10)
    items = [Item(id=r["id"], input=r["question"], reference=r["reference"], kind=Kind.free_form) for r in data]
    answers = [Answer(item_id=r["id"], text=r["response"], request_key="k") for r in data]
    grades = Judge(judge, store, calibration=fitted).rubric(items, answers)
    assert [g.correct for g in grades] == [bool(r["human"]) for r in data]
    assert "expected score" in (grades[0].rationale or "") and "calibrated (threshold)" in (grades[0].rationale or "")
    out = tmp_path / "rubric.calibration.json"
    fitted.save(out)
    assert Calibration.load(out).grader == "rubric"
    with pytest.raises(ConfigError, match="calibrates the 'rubric' grader, not 'match'"):
        grader_for("match", judge, store, calibration=out)
    assert Calibration.load(out).prompt == prompts.version("rubric") != prompts.version("match")
    grader_for("rubric", judge, store, calibration=out)  # the prompt it was fitted on: accepted
    stale = json.loads(out.read_text()) | {"prompt": "0123456789ab"}
    (tmp_path / "stale.json").write_text(json.dumps(stale))
    with pytest.raises(ConfigError, match="another version of the 'rubric' judge prompt"):
        grader_for("rubric", judge, store, calibration=tmp_path / "stale.json")

    real = base.load_model
    monkeypatch.setattr(base, "load_model", lambda spec: judge if spec == "mock:harsh" else real(spec))
    saved = tmp_path / "cli.calibration.json"
    result = runner.invoke(app, ["calibrate", str(path), "--grader", "rubric", "--judge", "mock:harsh", "-o", str(saved)])
    assert result.exit_code == 0, result.output
    assert Calibration.load(saved).grader == "rubric"
    wrong = runner.invoke(app, ["calibrate", str(path), "--grader", "pairwise", "--judge", "mock:harsh"])
    assert wrong.exit_code != 0 and "match or rubric can be calibrated" in wrong.output


@pytest.mark.slow
@pytest.mark.llamacpp
def test_calibrating_the_embedded_judge_on_real_human_labels(store: Store) -> None:
    """SmolLM2 as a match judge on 30 human-labelled rows of the shared data: its P(yes) < 0.5 almost
    everywhere (kappa ~0 at the default cut); the cross-validated calibration is reported held out."""
    pytest.importorskip("llama_cpp")
    from helpers import SHARED
    from magister.models.base import load_model

    path = SHARED / "judge" / "answer_matching_mmlu_pro.jsonl"
    if not path.exists():
        pytest.skip("../shared/data is not beside the project")
    model = load_model("llamacpp:smollm2")
    try:
        report = check(path, "match", Judge(model, store), Columns(human=["human_1", "human_2"], match_threshold=4),
                       limit=30, baseline="rules", calibrate=True)
    finally:
        model.close()
    calibrated = report["calibration"]
    assert report["n"] == 30 and -1 <= calibrated["kappa"] <= 1 and len(calibrated["verdicts"]) == 30
    for method in ("threshold", "logistic"):
        held = calibrated["heldout"][method]
        assert held["in_sample_kappa_vs_consensus"] >= held["heldout_kappa_vs_consensus"] - 0.05
    assert report["vs_baseline"]["ci_low"] <= report["vs_baseline"]["difference"] <= report["vs_baseline"]["ci_high"]
