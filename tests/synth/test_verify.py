"""The verifier gate: a verifier must beat the out-of-fold student to decide; below it, it may only veto."""

from __future__ import annotations

import re

from magister.models.mock import MockModel
from magister.store import Store
from magister.synth.drafts import Draft
from magister.synth.verify import check_verifier, verify
from magister.types import Item, Kind, Request

LABELS = ["negative", "positive"]
SEED = [Item(id=f"s{i}", input=f"text {i}", reference=LABELS[i % 2], kind=Kind.classification, labels=LABELS)
        for i in range(60)]


def verifier(right_every: int, sure: float = 0.9, unsure: float = 0.55) -> MockModel:
    """Right on every item but each `right_every`-th: confident where right, hesitant where wrong."""
    def score(request: Request) -> dict[str, float]:
        found = re.findall(r"text (\d+)", (request.messages or [])[-1].content)
        if not found:
            return {"negative": 0.5, "positive": 0.5}
        number, truth = int(found[-1]), LABELS[int(found[-1]) % 2]
        answer = truth if number % right_every else LABELS[1 - LABELS.index(truth)]
        p = unsure if answer != truth else sure
        return {answer: p, LABELS[1 - LABELS.index(answer)]: 1 - p}

    return MockModel(f"mock:verifier-{right_every}-{sure}-{unsure}", score=score)  # its own cache entries


def test_a_verifier_weaker_than_the_student_is_not_trusted(tmp_path) -> None:  # noqa: ANN001
    store = Store(tmp_path / "s.db")
    weak = verifier(right_every=4)  # 75% right
    against_student = check_verifier(weak, store, SEED, [], bar=0.9)
    assert not against_student.trusted and against_student.bar_name == "the out-of-fold student"
    assert 0.7 < against_student.accuracy < 0.8
    against_majority = check_verifier(weak, store, SEED, [])  # the old gate: it beats always saying one label
    assert against_majority.trusted and against_majority.bar == 0.5
    assert check_verifier(verifier(right_every=1000), store, SEED, [], bar=0.9).trusted  # ~100% right: beats the student


def test_an_untrusted_verifier_vetoes_only_above_its_calibrated_confidence(tmp_path) -> None:  # noqa: ANN001
    store = Store(tmp_path / "s.db")
    trial = check_verifier(verifier(right_every=4), store, SEED, [], bar=0.9)
    assert trial.role == "veto only" and trial.veto_at is not None and 0.55 < trial.veto_at <= 0.9
    assert trial.by_label["positive"]["answered"] > 0 and trial.by_label["positive"]["precision"] is not None
    # drafts the verifier contradicts: hesitantly (item 4, a wrong answer at 0.55), confidently (a mislabel)
    drafts = [(Draft(input="text 4", reference="negative", strategy="contrast", source="s4"), SEED[4]),
              (Draft(input="text 5", reference="negative", strategy="contrast", source="s5"),
               SEED[5].model_copy(update={"reference": "negative"}))]
    verify(drafts, verifier(right_every=4), store, "teacher", 1, [], veto_at=trial.veto_at)
    assert drafts[0][0].reason is None and drafts[0][0].extra["verifier"]["agrees"] is False  # ignored: unsure
    assert drafts[1][0].reason is not None and "confidence 0.90" in drafts[1][0].reason  # vetoed: sure


def test_selective_labelling_keeps_a_label_only_where_the_verifier_is_precise(tmp_path) -> None:  # noqa: ANN001
    store = Store(tmp_path / "s.db")
    unsure = verifier(right_every=1000, sure=0.55, unsure=0.55)  # right, but hesitant, on these items
    drafts = [(Draft(input="text 7", reference="positive", strategy="write", source="label:positive"), SEED[7]),
              (Draft(input="text 9", reference="positive", strategy="write", source="label:positive"), SEED[9])]
    verify(drafts[:1], unsure, store, "teacher", 1, [], keep_at=0.8)
    verify(drafts[1:], verifier(right_every=1000), store, "teacher", 1, [], keep_at=0.8)
    assert drafts[0][0].reason and "not precise enough" in drafts[0][0].reason  # agreed, at 0.55 < 0.8
    assert drafts[1][0].reason is None  # agreed at 0.9


def test_a_verifier_with_no_confident_precision_is_not_used(tmp_path) -> None:  # noqa: ANN001
    trial = check_verifier(verifier(right_every=2, sure=0.6, unsure=0.6), Store(tmp_path / "s.db"), SEED, [], bar=0.9)
    assert trial.role == "not used" and trial.veto_at is None
