"""Deterministic graders: exact or normalised label, choice letter, numeric, regex, contains, rules.

Each reads what it needs out of the answer text, says what it extracted, and marks the
grade unparsed when it could read nothing (so parse failures are counted, not hidden).
"""

from __future__ import annotations

import math
import re
import string

from magister.types import Answer, Grade, Item, letters

_PUNCT = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def normalize(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the SQuAD normalisation)."""
    text = text.lower().translate(_PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _grade(item: Item, answer: Answer, grader: str, extracted: str | None, correct: bool) -> Grade:
    return Grade(item_id=item.id, grader=grader, score=float(correct), correct=correct, extracted=extracted,
                 parsed=extracted is not None)


def exact(item: Item, answer: Answer) -> Grade:
    """The normalised answer equals the normalised reference."""
    got = normalize(answer.text)
    return _grade(item, answer, "exact", got or None, got == normalize(item.reference))


def contains(item: Item, answer: Answer) -> Grade:
    """The normalised reference appears in the normalised answer."""
    got, want = normalize(answer.text), normalize(item.reference)
    return _grade(item, answer, "contains", got or None, bool(want) and f" {want} " in f" {got} ")


def regex(item: Item, answer: Answer) -> Grade:
    """The item's reference is a regular expression that must match somewhere in the answer."""
    found = re.search(item.reference, answer.text, flags=re.IGNORECASE | re.MULTILINE)
    return _grade(item, answer, "regex", found.group(0) if found else None, found is not None)


def find_label(text: str, labels: list[str]) -> str | None:
    """The label an answer gives: an exact (normalised) match, else the label named first in it."""
    norm = normalize(text)
    by_norm = {normalize(label): label for label in labels}
    if norm in by_norm:
        return by_norm[norm]
    positions = []
    for key, label in by_norm.items():
        hit = re.search(rf"\b{re.escape(key)}\b", norm) if key else None
        if hit:
            positions.append((hit.start(), -len(key), label))
    return min(positions)[2] if positions else None


def label(item: Item, answer: Answer) -> Grade:
    """Classification: which label the answer names, compared with the reference label."""
    found = find_label(answer.text, item.labels or [item.reference])
    return _grade(item, answer, "label", found, found == item.reference)


def find_letter(text: str, n_choices: int) -> str | None:
    """The choice letter an answer gives: 'B', '(B)', 'B.', 'Answer: B', 'the answer is (B)'."""
    valid = "".join(letters(n_choices))
    stripped = text.strip()
    if len(stripped) == 1 and stripped.upper() in valid:
        return stripped.upper()
    for pattern in (rf"answer\s*(?:is)?\s*[:\-]?\s*\(?([{valid}])\b", rf"^\(?([{valid}])[\).:\s]",
                    rf"\(([{valid}])\)", rf"\b([{valid}])\b"):
        found = re.search(pattern, stripped, flags=re.IGNORECASE if "answer" in pattern else 0)
        if found:
            return found.group(1).upper()
    return None


def choice(item: Item, answer: Answer) -> Grade:
    """Multiple choice: the letter the answer gives, compared with the reference letter."""
    found = find_letter(answer.text, len(item.choices or []) or 26)
    return _grade(item, answer, "choice", found, found == item.reference.upper())


def find_number(text: str) -> float | None:
    """The final answer of a text: the number right after the last '####', else the last number in it."""
    after = _NUMBER.findall(text.rsplit("####", 1)[1]) if "####" in text else []
    numbers = after[:1] or _NUMBER.findall(text)
    if not numbers:
        return None
    try:
        return float(numbers[-1].replace(",", "").replace("$", ""))
    except ValueError:
        return None


def numeric(item: Item, answer: Answer, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> Grade:
    """Numbers: the answer's final number equals the reference within tolerance."""
    got = find_number(answer.text)
    want = float(item.reference)
    correct = got is not None and math.isclose(got, want, rel_tol=rel_tol, abs_tol=abs_tol)
    return _grade(item, answer, "numeric", None if got is None else f"{got:g}", correct)


def _numbers(text: str) -> list[float]:
    return [float(n.replace(",", "")) for n in re.findall(r"-?\d[\d,]*\.?\d*", text)]


_HEDGE = re.compile(r"\b(one of|any of|either\b.*\bor|or maybe)\b", re.IGNORECASE)


def hedges(reference: str, response: str) -> bool:
    """Whether a response lists candidates instead of giving one answer ("one of: 40, 41, ..., 100",
    "either Paris or London"): such a response never passes the rules (a judge may still see it)."""
    extra = set(_numbers(response)) - set(_numbers(reference))
    return len(extra) >= 5 and len(extra) > len(normalize(response).split()) / 3 or bool(_HEDGE.search(response))


def rules_match(reference: str, response: str) -> bool:
    """The answer-matching rules: normalised containment either way, or every number of the reference
    found in the response (1% tolerance); never a response that hedges over candidates (`hedges`)."""
    if hedges(reference, response):
        return False
    ref, got = normalize(reference), normalize(response)
    if ref and (f" {ref} " in f" {got} " or (got and f" {got} " in f" {ref} ")):
        return True
    want, have = _numbers(reference), _numbers(response)
    return bool(want) and all(any(abs(w - h) <= 0.01 * max(abs(w), 1e-9) for h in have) for w in want)


def rules(item: Item, answer: Answer) -> Grade:
    """Free-form answers by rules: see `rules_match`. What these rules accept needs no judge."""
    got = normalize(answer.text)
    return _grade(item, answer, "rules", got or None, rules_match(item.reference, answer.text))


def token_f1(reference: str, response: str) -> float:
    """SQuAD's token F1 between the normalised texts."""
    want, got = normalize(reference).split(), normalize(response).split()
    common = sum(min(want.count(t), got.count(t)) for t in set(want))
    if not want or not got or not common:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


GRADERS = {"exact": exact, "label": label, "choice": choice, "numeric": numeric, "regex": regex,
           "contains": contains, "rules": rules}
