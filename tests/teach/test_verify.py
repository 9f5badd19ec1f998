"""Verification: the verifier answers each new example; disagreement rejects it, with its answer."""

from __future__ import annotations

import pytest

from magister.models.mock import MockModel
from magister.teach.strategies import Draft
from magister.teach.strategies.base import as_item
from magister.teach.verify import check, verify
from magister.types import Item, Kind, Request

LIKE = Item(id="s1", input="seed", reference="positive", kind=Kind.classification, labels=["negative", "positive"])


def pairs(*texts: str) -> list[tuple[Draft, Item]]:
    out = []
    for n, text in enumerate(texts):
        d = Draft(input=text, reference="positive", strategy="similar", source="s1")
        out.append((d, as_item(d, LIKE, f"d{n}")))
    return out


def keyword(request: Request) -> str:
    return "positive" if "good" in (request.messages or [])[-1].content else "negative"


def test_teacher_verification_rejects_disagreement_with_a_reason(store) -> None:  # noqa: ANN001
    drafts = pairs("good film", "dull film")
    calls, tokens = verify(drafts, MockModel("mock:v", respond=keyword), store, "teacher", 3, [LIKE])
    assert calls == 2 and tokens > 0
    assert drafts[0][0].reason is None
    assert drafts[1][0].reason == "verifier answered 'negative', intended 'positive'"


def test_choice_scoring_verifier_is_used_where_the_backend_has_it(store) -> None:  # noqa: ANN001
    drafts = pairs("good film")
    verify(drafts, MockModel("mock:first"), store, "teacher", 3, [])  # always picks 'negative'
    assert drafts[0][0].reason == "verifier answered 'negative', intended 'positive'"
    drafts = pairs("good film")
    verify(drafts, MockModel("mock:last"), store, "teacher", 3, [])
    assert drafts[0][0].reason is None


def test_majority_needs_more_than_half_of_the_samples(store) -> None:  # noqa: ANN001
    votes = {1: "positive", 2: "negative", 3: "positive"}
    majority = MockModel("mock:m", respond=lambda r: votes[r.seed or 0])
    drafts = pairs("any film")
    calls, _ = verify(drafts, majority, store, "majority", 3, [])
    assert calls == 3 and drafts[0][0].reason is None
    split = MockModel("mock:m2", respond=lambda r: votes[r.seed or 0] if r.seed != 3 else "negative")
    drafts = pairs("any film")
    verify(drafts, split, store, "majority", 3, [])
    assert drafts[0][0].reason == "verifier answered 'negative, positive', intended 'positive'"


def test_off_and_already_rejected_cost_nothing(store) -> None:  # noqa: ANN001
    model = MockModel("mock:v", respond=keyword)
    drafts = pairs("dull film")
    assert verify(drafts, model, store, "off", 3, []) == (0, 0) and drafts[0][0].reason is None
    drafts[0][0].reason = "empty input"
    assert verify(drafts, model, store, "teacher", 3, []) == (0, 0) and model.calls == 0
    replayed = pairs("dull film")  # a replayed seed item carries a human label: never verified
    replayed[0][0].replay = True
    assert verify(replayed, model, store, "teacher", 3, []) == (0, 0) and replayed[0][0].reason is None


def seed_items(n: int = 30) -> list[Item]:
    return [Item(id=f"s{i}", input=("good film" if i % 3 else "dull film"), reference=("positive" if i % 3 else
            "negative"), kind=Kind.classification, labels=["negative", "positive"]) for i in range(n)]


def test_a_verifier_is_trusted_only_if_it_beats_the_most_common_answer(store) -> None:  # noqa: ANN001
    good = check(MockModel("mock:v", respond=keyword), store, seed_items(), [])
    assert good.n == 30 and good.accuracy == 1.0 and good.majority == pytest.approx(20 / 30) and good.trusted
    constant = check(MockModel("mock:last"), store, seed_items(), [])  # always 'positive': the majority rate
    assert constant.accuracy == pytest.approx(20 / 30) and not constant.trusted
    shown = check(MockModel("mock:v", respond=keyword), store, seed_items(), seed_items()[:10])
    assert shown.n == 20  # worked examples are not used to check the verifier
