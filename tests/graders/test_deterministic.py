"""Deterministic graders: what each reads out of an answer, and when it gives up."""

from __future__ import annotations

import pytest

from magister.errors import ConfigError
from magister.graders import get_grader
from magister.types import Answer, Item, Kind


def ans(text: str) -> Answer:
    return Answer(item_id="i", text=text, request_key="k")


CLS = Item(id="i", input="q", reference="location", kind=Kind.classification,
           labels=["location", "human", "number", "entity"])
MC = Item(id="i", input="q", reference="C", kind=Kind.multiple_choice, choices=["w", "x", "y", "z"])
NUM = Item(id="i", input="q", reference="1234", kind=Kind.numeric)
FREE = Item(id="i", input="q", reference="The Eiffel Tower", kind=Kind.free_form)


@pytest.mark.parametrize("text,extracted,correct", [
    ("location", "location", True),
    ("Location.", "location", True),
    ("The answer is location, not human", "location", True),
    ("human", "human", False),
    ("I think it is a person", None, False),
])
def test_label(text: str, extracted: str | None, correct: bool) -> None:
    grade = get_grader("label")(CLS, ans(text))
    assert (grade.extracted, grade.correct, grade.parsed) == (extracted, correct, extracted is not None)


@pytest.mark.parametrize("text,extracted", [
    ("C", "C"), ("c", "C"), ("(C)", "C"), ("C. y", "C"), ("The answer is (C).", "C"), ("Answer: c", "C"),
    ("B) x", "B"), ("I would pick D because", "D"), ("none of these", None),
])
def test_choice(text: str, extracted: str | None) -> None:
    grade = get_grader("choice")(MC, ans(text))
    assert grade.extracted == extracted
    assert grade.correct == (extracted == "C")


@pytest.mark.parametrize("text,correct,parsed", [
    ("so 1,234 apples\n#### 1234", True, True), ("#### 1,234.0", True, True), ("The total is $1,234.", True, True),
    ("first 12 then 1233", False, True), ("no idea", False, False), ("#### 1234 \nWait, 99?", True, True),
])
def test_numeric(text: str, correct: bool, parsed: bool) -> None:
    grade = get_grader("numeric")(NUM, ans(text))
    assert (grade.correct, grade.parsed) == (correct, parsed)


def test_numeric_tolerance_and_negative() -> None:
    from magister.graders.deterministic import numeric

    item = Item(id="i", input="q", reference="-0.5", kind=Kind.numeric)
    assert numeric(item, ans("it is -0.50")).correct
    assert numeric(item, ans("-0.51"), rel_tol=0.05).correct
    assert not numeric(item, ans("-0.51")).correct


def test_exact_contains_regex() -> None:
    assert get_grader("exact")(FREE, ans("the eiffel tower!")).correct
    assert not get_grader("exact")(FREE, ans("It is the Eiffel Tower")).correct
    assert get_grader("contains")(FREE, ans("It is the Eiffel Tower, in Paris")).correct
    assert not get_grader("contains")(FREE, ans("Eiffel")).correct
    pattern = Item(id="i", input="q", reference=r"\bparis\b", kind=Kind.free_form)
    grade = get_grader("regex")(pattern, ans("It is in Paris."))
    assert grade.correct and grade.extracted == "Paris"
    assert not get_grader("regex")(pattern, ans("Parisian")).parsed


def test_auto_follows_kind() -> None:
    auto = get_grader("auto")
    assert auto(CLS, ans("location")).grader == "label"
    assert auto(MC, ans("C")).grader == "choice"
    assert auto(NUM, ans("1234")).grader == "numeric"
    assert auto(FREE, ans("eiffel tower")).grader == "exact"


def test_unknown_grader() -> None:
    with pytest.raises(ConfigError, match="unknown grader 'judge'"):
        get_grader("judge")


@pytest.mark.parametrize("reference,text,correct", [
    ("48", "one of: " + ", ".join(str(n) for n in range(40, 101)), False),  # a list of candidates
    ("48", "40 41 42 43 44 45 46 47 48", False),
    ("Paris", "It is either Paris or London", False),
    ("Paris", "Paris or maybe Lyon", False),
    ("48", "The answer is 48 because 6*8=48", True),
    ("48", "12+12=24, 24+24=48. So 48.", True),
    ("1, 2, 3, 4, 5, 6", "1, 2, 3, 4, 5, 6", True),
])
def test_rules_never_pass_an_answer_that_hedges(reference: str, text: str, correct: bool) -> None:
    item = Item(id="i", input="q", reference=reference, kind=Kind.free_form)
    assert get_grader("rules")(item, ans(text)).correct is correct


def test_the_cascade_sends_a_hedging_answer_to_the_judge(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from magister.judges import Judge
    from magister.models.mock import MockModel
    from magister.store import Store

    items = [Item(id=f"i{n}", input="How many?", reference="48", kind=Kind.free_form) for n in range(3)]
    answers = [Answer(item_id=i.id, text="one of: " + ", ".join(str(n) for n in range(40, 101)), request_key="k")
               for i in items]
    judge = Judge(MockModel("mock:text=no"), Store(tmp_path / "s.db"), cascade=True)
    grades = judge.match(items, answers)
    assert judge.usage.settled == 0 and judge.usage.judged == 3
    assert not any(g.correct for g in grades)
