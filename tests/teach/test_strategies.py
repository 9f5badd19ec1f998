"""Each strategy's prompt and parser, without a model."""

from __future__ import annotations

from magister.teach.strategies import STRATEGIES, Mined
from magister.types import Item, Kind

LABELS = ["negative", "positive"]


def mined(reference: str = "positive", kind: Kind = Kind.classification) -> Mined:
    item = Item(id="s1", input="nice film", reference=reference, kind=kind,
                labels=LABELS if kind is Kind.classification else None)
    return Mined(item, wrong="negative")


def test_similar_shows_the_wrong_answer_only_when_asked() -> None:
    similar = STRATEGIES["similar"]
    shown, hidden = similar.jobs([mined()], [], 2, True)[0], similar.jobs([mined()], [], 2, False)[0]
    assert "The student answered: negative" in similar.prompt(shown)[1].content
    assert "student" not in similar.prompt(hidden)[1].content.split("got wrong")[1]


def test_similar_reads_inputs_and_keeps_the_label() -> None:
    job = STRATEGIES["similar"].jobs([mined()], [], 2, True)[0]
    text = "Sure! Here they are:\n1. Input: great movie\n**Input**: good meal\nInput: fine food"
    drafts = STRATEGIES["similar"].read(text, job)
    assert [(d.input, d.reference, d.reason) for d in drafts] == [("great movie", "positive", None),
                                                                   ("good meal", "positive", None)]  # k=2


def test_an_answer_on_the_input_line_is_not_part_of_the_input() -> None:
    job = STRATEGIES["similar"].jobs([mined()], [], 2, True)[0]
    drafts = STRATEGIES["similar"].read("Input: great meal Correct answer: positive\nInput: dull film label: negative",
                                        job)
    assert [(d.input, d.reason) for d in drafts] == [
        ("great meal", None), ("dull film", "teacher labelled it 'negative', asked for 'positive'")]


def test_similar_rejects_copies_empty_inputs_and_other_labels() -> None:
    job = STRATEGIES["similar"].jobs([mined()], [], 3, True)[0]
    drafts = STRATEGIES["similar"].read("Input: nice film\nInput:\nInput: bad film\nAnswer: negative", job)
    assert [d.reason for d in drafts] == ["copies the mined item", "empty input",
                                          "teacher labelled it 'negative', asked for 'positive'"]


def test_similar_on_free_form_items_needs_an_answer() -> None:
    job = STRATEGIES["similar"].jobs([mined("Paris", Kind.free_form)], [], 2, True)[0]
    assert "Answer: ..." in STRATEGIES["similar"].prompt(job)[1].content
    drafts = STRATEGIES["similar"].read("Input: capital of Italy?\nAnswer: Rome\nInput: capital of Spain?", job)
    assert [(d.reference, d.reason) for d in drafts] == [("Rome", None), ("", "no answer given")]


def test_rephrase_keeps_the_reference_whatever_the_kind() -> None:
    job = STRATEGIES["rephrase"].jobs([mined("Paris", Kind.free_form)], [], 2, True)[0]
    drafts = STRATEGIES["rephrase"].read("Input: which city is France's capital?", job)
    assert [(d.input, d.reference, d.reason) for d in drafts] == [("which city is France's capital?", "Paris", None)]


def test_explain_keeps_the_item_and_adds_a_rationale() -> None:
    job = STRATEGIES["explain"].jobs([mined()], [], 5, True)[0]
    assert job.k == 1 and "not the student's answer" in STRATEGIES["explain"].prompt(job)[1].content
    good = STRATEGIES["explain"].read("Calling a film nice praises it, so it is positive.\nAnswer: positive", job)
    assert good[0].rationale == "Calling a film nice praises it, so it is positive." and good[0].reason is None
    assert good[0].input == "nice film"
    wrong = STRATEGIES["explain"].read("It sounds rather dull and flat to me.\nAnswer: negative", job)
    assert wrong[0].reason == "rationale does not end with the answer 'positive'"
    assert STRATEGIES["explain"].read("Answer: positive", job)[0].reason == "no rationale"


def test_new_shows_seed_examples_of_the_missed_label() -> None:
    seed = [Item(id=f"p{i}", input=f"great {i}", reference="positive", kind=Kind.classification, labels=LABELS)
            for i in range(5)] + [Item(id="n0", input="bad", reference="negative", kind=Kind.classification,
                                       labels=LABELS)]
    job = STRATEGIES["new"].jobs([mined()], seed, 2, True)[0]
    assert len(job.examples) == 3 and all(e.reference == "positive" for e in job.examples)
    prompt = STRATEGIES["new"].prompt(job)[1].content
    assert "nice film" not in prompt and "great" in prompt
    assert STRATEGIES["new"].read("Input: nice film", job)[0].reason is None  # not shown, so not a copy


def test_replay_copies_each_missed_item_without_the_teacher() -> None:
    replay = STRATEGIES["replay"]
    assert replay.teacher is False
    drafts = replay.drafts([mined(), mined("Paris", Kind.free_form)])
    assert [(d.input, d.reference, d.source, d.replay, d.reason) for d in drafts] == [
        ("nice film", "positive", "s1", True, None), ("nice film", "Paris", "s1", True, None)]


def test_the_config_names_every_strategy_module_and_no_other() -> None:
    import typing

    from magister.teach.config import TeachConfig
    from magister.teach.strategies import STRATEGIES

    [literal] = typing.get_args(TeachConfig.model_fields["strategies"].annotation)
    assert set(typing.get_args(literal)) == set(STRATEGIES)


def test_pairs_writes_both_sides_of_each_confused_pair() -> None:
    pairs = STRATEGIES["pairs"]
    seed = [Item(id=f"p{i}", input=f"good {i}", reference="positive", kind=Kind.classification, labels=LABELS)
            for i in range(4)] + [Item(id=f"n{i}", input=f"bad {i}", reference="negative", kind=Kind.classification,
                                       labels=LABELS) for i in range(4)]
    gold, mirror = pairs.jobs([mined()], seed, 2, True)
    assert (gold.label, mirror.label) == ("positive", "negative") and gold.strategy == mirror.strategy == "pairs"
    assert {s.reference for s in mirror.examples} == {"negative"} and {s.reference for s in mirror.contrast} == \
        {"positive"}
    assert pairs.prompt(gold) == STRATEGIES["contrast"].prompt(gold)  # the gold side is `contrast`
    asked = pairs.prompt(mirror)[1].content
    assert "correct label is 'negative'" in asked and "could mistake for 'positive'" in asked
    assert "labelled 'positive', but a student model took it for 'negative'" in asked
    drafts = pairs.read("Input: a dull film that some call a triumph\nInput: flat and tired", mirror)
    assert [(d.reference, d.source, d.reason) for d in drafts] == [("negative", "s1", None)] * 2
    # an answer outside the label set, or a free-form item, has no mirror: one job, as `contrast`
    odd = Mined(mined().item, wrong="maybe")
    assert len(pairs.jobs([odd], seed, 2, True)) == 1
    assert len(pairs.jobs([mined(kind=Kind.free_form)], seed, 2, True)) == 1
