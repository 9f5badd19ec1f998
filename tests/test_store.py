"""The store: migrations, the response cache, runs, answers and grades."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from helpers import sentiment_exam
from magister.store import MIGRATIONS, Store, user_dir
from magister.types import Answer, Completion, Grade, Message, Request


def test_user_dir_from_environment(magister_home: Path) -> None:
    assert user_dir() == magister_home


def test_schema_version_and_wal(store: Store) -> None:
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    Store(store.path).close()  # reopening applies nothing twice


def test_cache_round_trip(store: Store) -> None:
    request = Request(messages=[Message(role="user", content="hi")], choices=["a", "b"])
    completion = Completion(text="a", choice_logprobs={"a": -0.1, "b": -2.0}, prompt_tokens=3, cached=True)
    with store.transaction():
        store.put_responses("mock", "m1", [("k1", request, completion)])
    found = store.cached(["k1", "k2", "k1"])
    assert list(found) == ["k1"]
    assert found["k1"].choice_logprobs == {"a": -0.1, "b": -2.0}
    assert found["k1"].cached is False  # the stored row records the original call
    assert store.request("k1") == request


def test_transaction_rolls_back_on_error(store: Store) -> None:
    request = Request(prompt="x")
    try:
        with store.transaction():
            store.put_responses("mock", "m", [("k", request, Completion(text="y"))])
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert store.cached(["k"]) == {}


def test_runs_answers_grades(store: Store) -> None:
    exam = sentiment_exam(3)
    run_id = store.create_run(exam, "mock:first", "auto", 3, "fp", {"a": 1})
    assert store.resumable_run("fp") == run_id
    with store.transaction():
        store.put_responses("mock", "m", [("k0", Request(prompt="p"), Completion(text="negative"))])
        store.put_answers(run_id, [(0, Answer(item_id="s0", text="negative", request_key="k0"),
                                    Grade(item_id="s0", grader="label", score=1.0, correct=True, extracted="negative"))])
    assert store.answered(run_id) == {"s0"}
    [(answer, grade)] = store.answers(run_id)
    assert answer.text == "negative" and grade.correct and grade.grader == "label"
    store.finish_run(run_id, {"accuracy": 1.0})
    assert store.resumable_run("fp") is None
    run = store.run(run_id[-6:])
    assert run.status == "finished" and run.summary == {"accuracy": 1.0} and run.config == {"a": 1}
    assert store.exam(run.exam_version) == exam


def test_foreign_keys_enforced(store: Store) -> None:
    try:
        with store.transaction():
            store.put_answers("no-such-run", [(0, Answer(item_id="x", text="", request_key="nope"),
                                               Grade(item_id="x", grader="g", score=0))])
    except sqlite3.IntegrityError:
        return
    raise AssertionError("an answer for a missing run was accepted")


def test_processes_opening_a_new_store_at_once_migrate_it_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys; from magister.store import Store; s = Store(sys.argv[1]); "
            "print(s.db.execute('PRAGMA user_version').fetchone()[0]); s.close()")
    for trial in range(3):
        path = tmp_path / f"new-{trial}.db"
        workers = [subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(4)]
        results = [w.communicate(timeout=60) for w in workers]
        assert all(w.returncode == 0 for w in workers), [err for _, err in results]
        assert len({out.strip() for out, _ in results}) == 1


def test_a_run_id_prefix_or_suffix_must_be_unique(tmp_path: Path) -> None:
    import pytest

    store = Store(tmp_path / "m.db")
    exam = sentiment_exam(2)
    ids = [store.create_run(exam, "mock:first", "auto", 2, f"fp{n}", {}) for n in range(2)]
    assert store.run(ids[0]).id == ids[0] and store.run(ids[1][-6:]).id == ids[1]
    with pytest.raises(KeyError, match="matches 2 runs"):
        store.run(ids[0][:9])  # the date part is shared
    with pytest.raises(KeyError):
        store.run("%")  # no wildcards


def _graded_run(store: Store, model: str, texts: list[str], fingerprint: str) -> tuple[str, str]:
    """A run of sentiment_exam(len(texts)) answered with `texts`, graded by exact match; (run_id, exam_version)."""
    exam = sentiment_exam(len(texts))
    run_id = store.create_run(exam, model, "label", len(texts), fingerprint, {})
    with store.transaction():
        store.put_responses("mock", model, [(f"{model}-{k}", Request(prompt=item.input), Completion(text=text))
                                            for k, (item, text) in enumerate(zip(exam.items, texts))])
        store.put_answers(run_id, [(k, Answer(item_id=item.id, text=text, request_key=f"{model}-{k}"),
                                    Grade(item_id=item.id, grader="label", score=float(text == item.reference),
                                          correct=text == item.reference, extracted=text or None, parsed=bool(text)))
                                   for k, (item, text) in enumerate(zip(exam.items, texts))])
    return run_id, exam.version


def test_the_queries_behind_the_viewer(store: Store) -> None:
    a, version = _graded_run(store, "mock:a", ["negative", "negative", "negative", ""], "fa")
    b, _ = _graded_run(store, "mock:b", ["negative", "positive", "positive", "positive"], "fb")
    assert store.exam_names() == ["sentiment"] and store.model_names() == ["mock:a", "mock:b"]
    assert store.references(version) == ["negative", "positive"]
    assert store.answer_count(a) == 4 and store.has_answer(a, "s3") and not store.has_answer(a, "s9")
    assert store.score_counts(a) == (4, 2, 4, 1, 0.5)
    assert store.grade_values(a) == {"s0": (True, 1.0), "s1": (False, 0.0), "s2": (True, 1.0), "s3": (False, 0.0)}
    assert [r.item_id for r in store.items(a, version)] == ["s0", "s1", "s2", "s3"]
    assert [r.item_id for r in store.items(a, version, wrong=True)] == ["s1", "s3"]
    assert store.count_items(a, version, unparsed=True) == 1 and store.count_items(a, version, q="NUMBER 2") == 1
    assert [r.item_id for r in store.items(a, version, label="positive", limit=1, offset=1)] == ["s3"]
    assert [r.item_id for r in store.items(a, version, positions=[2, 0])] == ["s0", "s2"]
    assert store.items(a, version, positions=[]) == []
    first = store.items(a, version)[0]
    assert first.answer == "negative" and first.correct is True and first.parsed is True and first.position == 0
    detail = store.item_answer(a, version, "s1")
    assert detail is not None and detail.text == "negative" and detail.correct is False and detail.position == 1
    assert store.item_answer(a, version, "s9") is None
    assert store.neighbours(a, 0) == (None, "s1") and store.neighbours(a, 3) == ("s2", None)
    assert sorted(store.confusion_cells(a, version)) == [("negative", "negative", 2), ("positive", "", 1),
                                                         ("positive", "negative", 1)]
    assert sorted(store.score_histogram(a, 10)) == [(0, 2), (9, 2)]  # a score of 1 falls in the last bucket
    assert sorted(store.paired_grades(a, b)) == [(0, 0.0, 1, 1.0), (0, 0.0, 1, 1.0), (1, 1.0, 0, 0.0),
                                                 (1, 1.0, 1, 1.0)]
    assert store.count_paired(a, b, version) == 4 and store.count_paired(a, b, version, discordant_only=True) == 3
    paired = store.paired_items(a, b, version)  # the items graded differently first, then in exam order
    assert [(p.item_id, p.discordant) for p in paired] == [("s1", True), ("s2", True), ("s3", True), ("s0", False)]
    assert paired[0].a_correct is False and paired[0].b_answer == "positive" and paired[0].b_correct is True
    assert [p.item_id for p in store.paired_items(a, b, version, discordant_only=True, limit=1, offset=1)] == ["s2"]
    request, completion = store.response_json("mock:a-1") or ("", "")
    assert Request.model_validate_json(request).prompt == "text number 1" and '"negative"' in completion
    assert store.response_json("missing") is None
    assert [Request.model_validate_json(r).prompt for r, _ in store.responses_containing("number 3")] == \
        ["text number 3", "text number 3"]
