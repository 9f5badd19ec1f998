"""Dedupe: near-copies of held data, or of earlier drafts, are rejected with the nearest id."""

from __future__ import annotations

import pytest

from magister.synth.dedupe import dedupe
from magister.synth.drafts import Draft

pytest.importorskip("rouge_score")


def draft(text: str, rationale: str | None = None) -> Draft:
    return Draft(input=text, reference="x", strategy="similar", source="s1", rationale=rationale)


def test_rouge_marks_copies_of_data_and_of_earlier_drafts() -> None:
    drafts = [draft("what is the capital of france"), draft("who wrote the novel war and peace"),
              draft("who wrote war and peace"), draft("how tall is mount everest in metres")]
    marked = dedupe(drafts, {"s1": "What is the capital of France ?"}, "rouge", 0.7)
    assert marked == 2
    assert drafts[0].reason == "duplicate of s1 (rouge 1.00)"
    assert drafts[1].reason is None
    assert drafts[2].reason is not None and drafts[2].reason.startswith("duplicate of draft 1 (rouge 0.8")
    assert drafts[3].reason is None


def test_threshold_and_off() -> None:
    drafts = [draft("who wrote war and peace")]
    assert dedupe(drafts, {"s1": "who wrote the novel war and peace"}, "rouge", 0.95) == 0
    assert dedupe([draft("same")], {"s1": "same"}, "off", 0.5) == 0


def test_rationales_replays_and_rejected_drafts_are_left_alone() -> None:
    drafts = [draft("same text", rationale="because"), draft("same text"), draft("same text")]
    drafts[1].reason = "empty input"
    drafts[2].replay = True
    assert dedupe(drafts, {"s1": "same text"}, "rouge", 0.7) == 0
    assert drafts[0].reason is None and drafts[1].reason == "empty input" and drafts[2].reason is None
