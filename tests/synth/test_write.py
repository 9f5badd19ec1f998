"""`magister write` with a scripted teacher: parsing, balance, dedupe, contamination, verification, resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from magister.models.mock import MockModel
from magister.store import Store
from magister.synth.write import allocate, parse_drafts, write_exam
from magister.types import Exam, Item, Kind, Request

from helpers import NEGATIVE, POSITIVE, label_of

pytest.importorskip("rouge_score")

LABELS = ["negative", "positive"]
ADJECTIVES = {"positive": ["good", "great", "nice", "fine"], "negative": ["bad", "awful", "terrible"]}
NOUNS = ["movie", "food", "film", "meal"]


def like_exam() -> Exam:
    texts = POSITIVE + NEGATIVE
    return Exam(name="sentiment", items=[Item(id=f"s{i}", input=t, reference=label_of(t), kind=Kind.classification,
                                              labels=LABELS) for i, t in enumerate(texts)])


def writer(request: Request) -> str:
    """Writes like a small teacher: prose, a numbered list, quotes, bold, one duplicate, one wrong label.

    As the verifier it answers by keyword."""
    messages = request.messages or []
    system, user = messages[0].content, messages[-1].content
    if system.startswith("Classify the input"):
        return label_of(user)
    label = re.search(r"whose label is '(\w+)'", user.split("\n\n")[-1]).group(1)  # type: ignore[union-attr]
    seed = request.seed or 0
    lines = ["Sure! Here are some new inputs:"]
    for i in range(4):
        adjective = ADJECTIVES[label][(seed + i) % len(ADJECTIVES[label])]
        noun = NOUNS[(seed // 5 + i) % len(NOUNS)]
        text = f"the {adjective} {noun} {seed % 97} {i}"
        lines.append(f'{i + 1}. "{text}"' if i % 2 else f"{i + 1}. **{text}**")
    lines.append(f"5. the {ADJECTIVES[label][0]} {NOUNS[0]} {seed % 97} 0")  # a duplicate of the first
    other = "negative" if label == "positive" else "positive"
    lines.append(f"6. the {ADJECTIVES[other][0]} meal {seed % 97} (label: {other})")  # labelled otherwise
    lines.append("I hope these help!")
    return "\n".join(lines)


def teacher(respond=writer) -> MockModel:  # noqa: ANN001
    return MockModel("mock:writer", respond=respond)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "m.db")


def test_read_lines_copes_with_what_small_teachers_write() -> None:
    text = ("Here are 5 new questions whose label is 'location':\n\n1. What city is the Eiffel Tower in?\n"
            '2) "Where is Mount Fuji?"\n- **Which river runs through Cairo?**\n'
            "Question: Where do penguins live? (label: location)\nInput: What is the capital of Peru? "
            "Answer: location\nThese cover several regions.")
    pairs = parse_drafts(text, "location")
    assert [p[0] for p in pairs] == ["What city is the Eiffel Tower in?", "Where is Mount Fuji?",
                                     "Which river runs through Cairo?", "Where do penguins live?",
                                     "What is the capital of Peru?"]
    assert pairs[3][1] == "location"
    free = parse_drafts("Input: What is 2 + 3?\nAnswer: 5\n\nInput: What is 4 * 4?\nAnswer: 16", None)
    assert free == [("What is 2 + 3?", "5"), ("What is 4 * 4?", "16")]
    assert parse_drafts("Where is Rome?\nWhere is Oslo?", "location") == [("Where is Rome?", None),
                                                                          ("Where is Oslo?", None)]
    assert parse_drafts("I cannot help with that.", "location") == [("I cannot help with that.", None)]
    assert parse_drafts("Sure, here you go:", "location") == []


def test_allocate_is_balanced_or_weighted_and_sums_to_n() -> None:
    assert allocate(9, ["a", "b", "c"]) == {"a": 3, "b": 3, "c": 3}
    assert sum(allocate(10, ["a", "b", "c"]).values()) == 10
    assert allocate(10, ["a", "b", "c"], {"a": 3, "b": 1, "c": 1}) == {"a": 6, "b": 2, "c": 2}


def test_write_balances_labels_dedupes_and_keeps_every_rejection(store: Store) -> None:
    written = write_exam(like_exam(), teacher(), store, n=10, per_call=6, verify_shots=2, progress=False)
    assert len(written.items) == 10
    assert {lab: sum(i.reference == lab for i in written.items) for lab in LABELS} == {"negative": 5, "positive": 5}
    assert all(i.kind is Kind.classification and i.labels == LABELS for i in written.items)
    assert len({i.id for i in written.items}) == 10 and len({i.input for i in written.items}) == 10
    reasons = written.rejections
    assert reasons.get("duplicate", 0) >= 1 and reasons.get("teacher labelled", 0) >= 1
    assert all(d.reason for d in written.drafts if d.input not in {i.input for i in written.items})
    assert written.verifier is not None and written.verifier["trusted"]
    assert written.calls > 0 and written.tokens > 0 and written.parse_failures == 0
    assert not any('"' in i.input or "*" in i.input for i in written.items)


def test_write_rejects_what_the_verifier_disagrees_with(store: Store) -> None:
    def mislabelling(request: Request) -> str:
        text = writer(request)
        if (request.messages or [])[0].content.startswith("Classify"):
            return text
        return text.replace(" great ", " awful ")  # 'great' lines asked as positive are now negative

    written = write_exam(like_exam(), teacher(mislabelling), store, n=8, per_call=6, verify_shots=2, progress=False)
    rejected = [d for d in written.drafts if d.reason and d.reason.startswith("verifier")]
    assert rejected and all(" awful " in d.input and d.reference == "positive" for d in rejected)
    assert "intended 'positive'" in rejected[0].reason
    assert not any(" awful " in i.input and i.reference == "positive" for i in written.items)


def test_write_with_neighbours_verifies_without_a_model_call(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from functools import partial

    import numpy as np

    from magister.synth import write as write_module
    from magister.synth.verify import Neighbours

    def polarity(text: str, others: list[str]) -> np.ndarray:  # an embedding that sees the sentiment words
        return np.array([float(label_of(text) == label_of(o)) for o in others])

    monkeypatch.setattr(write_module, "Neighbours", partial(Neighbours, similarity=polarity))

    def mislabelling(request: Request) -> str:
        return writer(request).replace(" great ", " awful ")  # 'great' lines asked as positive are now negative

    writing = teacher(mislabelling)
    written = write_exam(like_exam(), writing, store, n=8, per_call=6, verify_mode="neighbours", progress=False)
    assert written.verifier is not None and written.verifier["calls"] == 0 and written.verifier["trusted"]
    assert written.calls == writing.calls  # every call wrote; none verified
    rejected = [d for d in written.drafts if d.reason and d.reason.startswith("verifier")]
    assert rejected and all(" awful " in d.input and d.reference == "positive" for d in rejected)
    assert not any(" awful " in i.input and i.reference == "positive" for i in written.items)


def test_write_rejects_copies_of_the_excluded_test_set(store: Store) -> None:
    first = write_exam(like_exam(), teacher(), Store(store.path.with_name("other.db")), n=6, per_call=6,
                       verify_shots=2, verify_mode="off", progress=False)
    test_set = [first.items[0].model_copy(update={"id": "test-1"})]
    written = write_exam(like_exam(), teacher(), store, n=6, per_call=6, verify_shots=2, verify_mode="off",
                         exclude=test_set, progress=False)
    contaminated = [d for d in written.drafts if d.reason and d.reason.startswith("contaminated")]
    assert [d.input for d in contaminated] == [first.items[0].input] and "test-1" in contaminated[0].reason
    assert first.items[0].input not in {i.input for i in written.items}
    overlap = written.contamination
    assert overlap["excluded_items"] == 1 and overlap["rejected_exact"] == 1 and overlap["rejected_ngram"] == 0
    assert overlap["rejected_sample"][0]["exam_item"] == "test-1"


def test_an_untrustworthy_verifier_is_not_used(store: Store) -> None:
    def wrong_verifier(request: Request) -> str:
        if (request.messages or [])[0].content.startswith("Classify"):
            return "negative"  # always the same label: no better than the most common answer
        return writer(request)

    written = write_exam(like_exam(), teacher(wrong_verifier), store, n=6, per_call=6, verify_shots=2,
                         progress=False)
    assert written.verifier is not None and not written.verifier["trusted"]
    assert len(written.items) == 6 and not written.rejections.get("verifier")


def test_a_call_that_yields_nothing_is_a_parse_failure(store: Store) -> None:
    calls = {"n": 0}

    def chatty(request: Request) -> str:
        if (request.messages or [])[0].content.startswith("Classify"):
            return writer(request)
        calls["n"] += 1
        return "Here are the inputs you asked for:" if calls["n"] == 1 else writer(request)

    written = write_exam(like_exam(), teacher(chatty), store, n=6, per_call=6, verify_shots=2, progress=False)
    assert written.parse_failures >= 1 and len(written.items) == 6


def test_a_killed_write_resumes_from_the_cache(store: Store) -> None:
    calls = {"n": 0}

    def dies(request: Request) -> str:
        if not (request.messages or [])[0].content.startswith("Classify"):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
        return writer(request)

    model = teacher(dies)
    model.batch_size = 1
    with pytest.raises(KeyboardInterrupt):
        write_exam(like_exam(), model, store, n=10, per_call=6, verify_shots=2, progress=False)
    again = teacher()
    written = write_exam(like_exam(), again, store, n=10, per_call=6, verify_shots=2, progress=False)
    fresh = write_exam(like_exam(), teacher(), Store(store.path.with_name("fresh.db")), n=10, per_call=6,
                       verify_shots=2, progress=False)
    assert [i.input for i in written.items] == [i.input for i in fresh.items]
    assert written.calls == fresh.calls  # the same calls, counted the same way
    assert 0 < again.calls < fresh.calls  # but the resumed run asked the model only for what the kill lost


def test_write_numeric_items_as_input_answer_pairs(store: Store) -> None:
    like = Exam(name="sums", items=[Item(id=f"q{i}", input=f"What is {i} + {i}?", reference=str(2 * i),
                                         kind=Kind.numeric) for i in range(1, 6)])

    def sums(request: Request) -> str:
        user = (request.messages or [])[-1].content
        if "Write" not in user:  # the verifier: compute the sum
            a, b = map(int, re.findall(r"\d+", user)[-2:])
            return f"#### {a + b}"
        s = (request.seed or 0) % 50
        return f"Input: What is {s} + 1?\nAnswer: {s + 1}\nInput: What is {s} + 2?\nAnswer: {s + 9}"

    written = write_exam(like, teacher(sums), store, n=2, per_call=2, verify_shots=2, threshold=0.95, progress=False)
    assert all(i.kind is Kind.numeric for i in written.items)
    assert all(int(i.reference) == sum(map(int, re.findall(r"\d+", i.input))) for i in written.items)
    assert written.rejections.get("verifier", 0) >= 1


def test_cli_write_writes_an_exam_that_exam_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from magister.cli import app
    from magister.exams.load import load_exam
    from magister.models import base

    like = tmp_path / "like.jsonl"
    like.write_text("".join(json.dumps({"id": i.id, "text": i.input, "label": i.reference}) + "\n"
                            for i in like_exam().items))
    monkeypatch.setattr(base, "load_model", lambda spec: teacher())
    out = tmp_path / "probe.jsonl"
    result = CliRunner().invoke(app, ["write", "--like", str(like), "--teacher", "mock:writer", "--n", "8",
                                      "--per-call", "6", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["kept"] == 8 and summary["kept_by_label"] == {"negative": 4, "positive": 4}
    exam = load_exam(out)
    assert len(exam.items) == 8 and exam.items[0].kind is Kind.classification and exam.items[0].labels == LABELS
    assert exam.items[0].meta["written_by"] == "teacher"
    rejected = json.loads((tmp_path / "probe.rejected.json").read_text())
    assert rejected and all(r["reason"] for r in rejected)
