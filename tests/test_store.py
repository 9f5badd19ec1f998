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
