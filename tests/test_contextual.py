"""Contextual calibration (Zhao et al. 2021) against a hand-computed example, in `sit` and for the judge."""

from __future__ import annotations

import math

import pytest

from magister.contextual import CONTENT_FREE, recalibrate
from magister.judges import Judge
from magister.judges.judge import _divide_prior
from magister.models.mock import MockModel
from magister.sit import sit
from magister.store import Store
from magister.types import Answer, Exam, Item, Kind, Request

LABELS = ["negative", "positive"]


def leaning(request: Request) -> dict[str, float]:
    """Labels scored with a strong prior for 'positive': content-free inputs get (0.2, 0.8), a negative text
    (0.4, 0.6), a positive one (0.05, 0.95). Uncalibrated, it says 'positive' every time."""
    text = (request.messages or [])[-1].content
    p_neg = 0.2 if text in CONTENT_FREE else 0.4 if "bad" in text else 0.05
    return {"negative": p_neg, "positive": 1 - p_neg}


def PositiveLeaning() -> MockModel:  # noqa: N802 - reads as the model it makes
    return MockModel("mock:leaning", score=leaning)


def test_recalibrate_divides_out_the_prior_by_hand() -> None:
    answer = Answer(item_id="x", text="positive", request_key="k",
                    choice_logprobs={"negative": math.log(0.4), "positive": math.log(0.6)})
    calibrated = recalibrate(answer, {"negative": 0.2, "positive": 0.8})
    # 0.4 / 0.2 = 2 against 0.6 / 0.8 = 0.75: P(negative) = 2 / 2.75
    assert calibrated.text == "negative"
    assert math.exp(calibrated.choice_logprobs["negative"]) == pytest.approx(2 / 2.75)
    assert recalibrate(answer.model_copy(update={"choice_logprobs": None}), {}).choice_logprobs is None


def test_sit_with_calibrated_choices_fixes_a_label_prior(store: Store) -> None:
    items = [Item(id=f"i{n}", input=text, reference=label, kind=Kind.classification, labels=LABELS)
             for n, (text, label) in enumerate([("good film", "positive"), ("bad film", "negative"),
                                                ("fine meal", "positive"), ("bad meal", "negative")])]
    exam = Exam(name="leaning", items=items)
    plain = sit(exam, PositiveLeaning(), store, progress=False)
    model = PositiveLeaning()
    calibrated = sit(exam, model, store, progress=False, calibrate_choices=True)
    assert plain.accuracy == 0.5 and calibrated.accuracy == 1.0
    assert calibrated.run_id != plain.run_id and store.run(calibrated.run_id).config["calibrate_choices"]
    assert model.calls == len(CONTENT_FREE)  # the items come from the cache; one content-free set per answer set


def test_the_judge_prior_is_divided_out(store: Store) -> None:
    assert _divide_prior(0.6, 0.8) == pytest.approx((0.6 / 0.8) / (0.6 / 0.8 + 0.4 / 0.2))
    judge = Judge(MockModel("mock:first"), store, calibrate_choices=True)  # P(yes) high everywhere
    item = Item(id="q", input="Capital of France?", reference="Paris", kind=Kind.free_form)
    [grade] = judge.match([item], [Answer(item_id="q", text="Lyon", request_key="k")])
    assert judge.prior_yes() > 0.9 and grade.score == pytest.approx(0.5)  # no evidence beyond the prior
