"""The verifier gate: a verifier must beat the out-of-fold student to decide; below it, it may only veto."""

from __future__ import annotations

import re

import pytest

from magister.errors import ConfigError
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
    assert against_student.verifier == weak.spec  # the report names who checked
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


def overlap(text: str, others) -> "np.ndarray":  # noqa: ANN001
    """Word-overlap (Jaccard) similarity: a stand-in for embeddings with known neighbours."""
    import numpy as np

    words = set(text.lower().split())
    return np.array([len(words & set(o.lower().split())) / len(words | set(o.lower().split())) for o in others])


TOPICS = {"location": ["city", "river", "country", "mountain"], "human": ["author", "painter", "king", "singer"]}
NEIGHBOURLY = [Item(id=f"n{label[0]}{i}", input=f"which {word} is famous {i}", reference=label,
                    kind=Kind.classification, labels=sorted(TOPICS))
               for label, words in TOPICS.items() for i, word in enumerate(words * 3)]


def test_neighbours_are_checked_leave_one_out_and_veto_a_draft_their_labels_contradict(tmp_path) -> None:  # noqa: ANN001
    from magister.synth.verify import Neighbours

    store = Store(tmp_path / "s.db")
    near = Neighbours(NEIGHBOURLY, similarity=overlap, k=3)
    alone = Neighbours(NEIGHBOURLY[:1] + NEIGHBOURLY[12:13], similarity=overlap, k=3)
    assert set(alone.scores("which city is famous 0", skip="nl0")) == {"human", "location"}
    trial = check_verifier(near, store, NEIGHBOURLY, NEIGHBOURLY[:5], bar=0.5)
    assert trial.n == len(NEIGHBOURLY) and trial.calls == 0  # every seed item, none voting on itself
    assert trial.accuracy == 1.0 and trial.trusted  # each topic word recurs under one label only
    assert trial.verifier == "the 3 nearest seed items in embedding space"
    drafts = [(Draft(input="which river is famous now", reference="human", strategy="contrast", source="nl1"),
               NEIGHBOURLY[1].model_copy(update={"id": "r1-0", "input": "which river is famous now",
                                                 "reference": "human"})),
              (Draft(input="which king is famous now", reference="human", strategy="contrast", source="nh2"),
               NEIGHBOURLY[14].model_copy(update={"id": "r1-1", "input": "which king is famous now"}))]
    assert verify(drafts, near, store, "neighbours", 1, []) == (0, 0)
    assert drafts[0][0].reason is not None and "verifier answered 'location'" in drafts[0][0].reason
    assert drafts[1][0].reason is None and drafts[1][0].extra["verifier"]["answer"] == "human"


def test_neighbours_that_cannot_beat_the_student_only_veto_or_are_not_used(tmp_path) -> None:  # noqa: ANN001
    from magister.synth.verify import Neighbours

    store = Store(tmp_path / "s.db")
    noise = Neighbours(NEIGHBOURLY, similarity=lambda text, others: __import__("numpy").zeros(len(others)), k=3)
    trial = check_verifier(noise, store, NEIGHBOURLY, [], bar=0.8)  # all ties: no better than chance
    assert not trial.trusted and trial.role in ("veto only", "not used")
    with pytest.raises(ConfigError, match="classification"):
        Neighbours([Item(id="q", input="2+2", reference="4", kind=Kind.numeric)], similarity=overlap)


@pytest.mark.llamacpp
@pytest.mark.slow
def test_neighbours_in_the_embedded_models_embedding_space(tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("llama_cpp")
    from magister.synth.verify import Neighbours

    questions = {"location": ["What is the capital city of France?", "Which country has the longest river?",
                              "Where is the tallest mountain in Europe?"],
                 "number": ["How many legs does a spider have?", "How many days are in a leap year?",
                            "What year did the Second World War end?"]}
    seed = [Item(id=f"{label}{i}", input=text, reference=label, kind=Kind.classification, labels=sorted(questions))
            for label, texts in questions.items() for i, text in enumerate(texts)]
    near = Neighbours(seed, k=1)
    assert max(near.scores("What is the capital city of Spain?").items(), key=lambda kv: kv[1])[0] == "location"
    assert max(near.scores("How many legs does an insect have?").items(), key=lambda kv: kv[1])[0] == "number"
