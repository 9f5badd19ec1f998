"""Contamination: is a new input a copy of an exam item? Not the same question as deduplication.

Deduplication (ROUGE-L or embeddings, `magister.synth.dedupe`) keeps training data varied, and
on short templated questions ("What is the ...?") a ROUGE-L of 0.7 is shared phrasing, not
leakage. Contamination asks whether the exam's own text reached the training data, with the
field's standard tests (as GPT-3's and the Llama papers' overlap checks and lm-evaluation-
harness's decontamination do):

- **exact**: the same text after normalisation (lower case, punctuation and spacing dropped);
- **n-gram**: a run of `n` words (default 8; GPT-3 used 13) shared with an exam item. A text
  shorter than `n` words can only be contaminated by an exact match.

A rejected draft is reported beside the exam item it copies, so a person can see what was thrown away.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from magister.synth.drafts import Draft
from magister.types import Item

WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """Lower case, accents folded, punctuation dropped, words joined by single spaces."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode() or text
    return " ".join(WORD.findall(folded.lower()))


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class Hit:
    """Why a text counts as contamination: which exam item, and how (`exact` or `N-gram`)."""

    item_id: str
    how: str
    shared: str  # the matching text, normalised

    def reason(self) -> str:
        return f"contaminated: {self.how} match with exam item {self.item_id} ('{self.shared}')"


class Contamination:
    """An index of exam items to test new texts against: `find(text)` is a Hit or None."""

    def __init__(self, items: Sequence[Item], n: int = 8) -> None:
        self.n = n
        self.exact: dict[str, str] = {}
        self.grams: dict[tuple[str, ...], str] = {}
        for item in items:
            self.exact.setdefault(normalise(item.input), item.id)
            for gram in ngrams(item.input, n):
                self.grams.setdefault(gram, item.id)

    def find(self, text: str) -> Hit | None:
        key = normalise(text)
        if key in self.exact:
            return Hit(self.exact[key], "exact", key)
        words = key.split()
        for gram in (tuple(words[i:i + self.n]) for i in range(len(words) - self.n + 1)):  # in reading order
            if gram in self.grams:
                return Hit(self.grams[gram], f"{self.n}-gram", " ".join(gram))
        return None


def contamination_summary(drafts: Sequence[Draft], exam: Sequence[Item], sample: int = 5) -> dict[str, object]:
    """Counts of drafts rejected as contamination (exact, n-gram) and a few of them beside their exam item."""
    by_id = {i.id: i for i in exam}
    rejected = [(d, d.reason) for d in drafts if d.reason and d.reason.startswith("contaminated")]
    shown = []
    for draft, reason in rejected[:sample]:
        match = re.search(r"with exam item (\S+)", reason)
        item = by_id.get(match.group(1)) if match else None
        shown.append({"draft": draft.input, "exam_item": item.id if item else None,
                      "exam_text": item.input if item else None, "reason": reason})
    return {"rejected_exact": sum(" exact match" in reason for _, reason in rejected),
            "rejected_ngram": sum("-gram match" in reason for _, reason in rejected),
            "rejected_sample": shown}


__all__ = ["Contamination", "Hit", "contamination_summary", "ngrams", "normalise"]
