"""Contamination is an exact or long n-gram copy of an exam item, not shared phrasing."""

from __future__ import annotations

from magister.synth.contamination import Contamination, contamination_summary, normalise
from magister.synth.drafts import Draft
from magister.types import Item, Kind

EXAM = [Item(id="t1", input="What is the capital of Australia ?", reference="location", kind=Kind.classification,
             labels=["location"]),
        Item(id="t2", input="How many miles is it from the Earth to the Moon on an average day in June ?",
             reference="number", kind=Kind.classification, labels=["number"])]


def test_an_exact_copy_after_normalisation_is_contamination() -> None:
    hit = Contamination(EXAM).find("what is the CAPITAL of australia?")
    assert hit is not None and hit.item_id == "t1" and hit.how == "exact"
    assert normalise("  Café, au-lait! ") == "cafe au lait"


def test_a_long_shared_run_of_words_is_contamination() -> None:
    hit = Contamination(EXAM).find("Tell me: how many miles is it from the Earth to the Moon, roughly?")
    assert hit is not None and hit.item_id == "t2" and hit.how == "8-gram"
    assert "how many miles is it from the earth" in hit.reason()


def test_a_shared_template_is_not_contamination() -> None:
    index = Contamination(EXAM)
    for text in ("What is the capital of Austria ?", "What is the capital of Peru ?",
                 "How many miles is it from Paris to Rome ?"):
        assert index.find(text) is None, text


def test_the_summary_counts_each_kind_and_shows_the_exam_item() -> None:
    index = Contamination(EXAM)
    drafts = [Draft(input=t, reference="location", strategy="contrast", source="s1")
              for t in ("What is the capital of Australia?", "What is the capital of Peru ?",
                        "so how many miles is it from the Earth to the Moon on average")]
    for draft in drafts:
        hit = index.find(draft.input)
        draft.reason = hit.reason() if hit else None
    summary = contamination_summary(drafts, EXAM)
    assert summary["rejected_exact"] == 1 and summary["rejected_ngram"] == 1
    assert [s["exam_item"] for s in summary["rejected_sample"]] == ["t1", "t2"]
    assert summary["rejected_sample"][0]["exam_text"] == EXAM[0].input
