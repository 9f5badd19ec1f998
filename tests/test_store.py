"""The store: migrations, the response cache, runs, answers and grades, leases; each on SQLite and on
PostgreSQL (`@on_both_backends`: a throwaway server, an empty store per test), and MAGISTER_STORE."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import sentiment_exam, write_jsonl
from magister.errors import ConfigError
from magister.errors import StoreError
from magister.store import MIGRATIONS, Store, user_dir
from magister.types import Answer, Completion, Grade, Message, Request
from postgres import on_both_backends


def test_user_dir_from_environment(magister_home: Path) -> None:
    assert user_dir() == magister_home


@on_both_backends
def test_schema_version_and_wal(store: Store, backend: str) -> None:
    assert store.schema_version() == len(MIGRATIONS)
    if backend == "sqlite":
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    else:  # one row per migration, and the floats are 8 bytes (PostgreSQL's REAL would keep 6 digits of a time)
        assert [v for (v,) in store.db.execute("SELECT version FROM schema_version ORDER BY version")] == [1, 2, 3]
        assert store.db.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'runs' AND "
                                "column_name = 'created_at' AND table_schema = current_schema()").fetchone() == \
            ("double precision",)
    again = Store()  # reopening applies nothing twice
    assert again.schema_version() == len(MIGRATIONS)
    again.close()


@on_both_backends
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


@on_both_backends
def test_transaction_rolls_back_on_error(store: Store) -> None:
    request = Request(prompt="x")
    try:
        with store.transaction():
            store.put_responses("mock", "m", [("k", request, Completion(text="y"))])
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert store.cached(["k"]) == {}


@on_both_backends
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


@on_both_backends
def test_foreign_keys_enforced(store: Store) -> None:
    try:
        with store.transaction():
            store.put_answers("no-such-run", [(0, Answer(item_id="x", text="", request_key="nope"),
                                               Grade(item_id="x", grader="g", score=0))])
    except Exception as error:  # sqlite3.IntegrityError, psycopg.errors.ForeignKeyViolation
        assert isinstance(error, sqlite3.IntegrityError) or type(error).__name__ == "ForeignKeyViolation", error
        return
    raise AssertionError("an answer for a missing run was accepted")


@on_both_backends
def test_processes_opening_a_new_store_at_once_migrate_it_once(tmp_path: Path, backend: str,
                                                               request: pytest.FixtureRequest) -> None:
    code = ("import sys; from magister.store import Store; s = Store(sys.argv[1]); "
            "print(s.schema_version()); s.close()")
    for trial in range(3 if backend == "sqlite" else 1):  # PostgreSQL: the writers' advisory lock decides the race
        where = (request.getfixturevalue("postgres_cluster").new_store() if backend == "postgres"
                 else str(tmp_path / f"new-{trial}.db"))
        workers = [subprocess.Popen([sys.executable, "-c", code, where], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(4)]
        results = [w.communicate(timeout=60) for w in workers]
        assert all(w.returncode == 0 for w in workers), [err for _, err in results]
        assert {out.strip() for out, _ in results} == {str(len(MIGRATIONS))}


@on_both_backends
def test_a_run_id_prefix_or_suffix_must_be_unique(store: Store) -> None:
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


@on_both_backends
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


@on_both_backends
def test_a_live_lease_on_another_machine_is_kept_until_it_expires(store: Store) -> None:
    """A lease's owner is host:pid:token. Its pid says whether it is alive only on this host: a worker on another
    machine (sharing a PostgreSQL store) keeps its items until the lease expires, whatever that pid is here."""
    run = store.open_run(sentiment_exam(4), "mock:first", "auto", "fp", {})
    here = socket.gethostname()
    elsewhere = f"not-{here}:999999999:a"  # no such pid on this machine, but it is not this machine's pid
    assert store.claim(run, ["s0", "s1"], elsewhere) == ["s0", "s1"]
    assert store.claim(run, ["s0", "s1", "s2"], f"{here}:{os.getpid()}:b") == ["s2"]  # not stolen
    with store.transaction():  # the remote worker stopped renewing: its lease on s1 ran out
        store.db.execute("UPDATE leases SET expires_at = ? WHERE item_id = 's1'", (time.time() - 1,))
    assert store.claim(run, ["s0", "s1"], f"{here}:{os.getpid()}:b") == ["s1"]
    assert store.claim(run, ["s3"], f"{here}:999999999:c") == ["s3"]  # a dead worker on this machine ...
    assert store.claim(run, ["s3"], f"{here}:{os.getpid()}:b") == ["s3"]  # ... loses its lease at once


def test_magister_store_chooses_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          magister_home: Path) -> None:
    monkeypatch.setenv("MAGISTER_STORE", str(tmp_path / "team.db"))  # a path: SQLite there
    store = Store()
    assert store.path == tmp_path / "team.db" and not store.postgres and not (magister_home / "magister.db").exists()
    store.close()
    for url in ("mysql://me:pw@db/x", "sqlite:///x.db"):
        monkeypatch.setenv("MAGISTER_STORE", url)
        with pytest.raises(ConfigError, match="neither a file path") as refused:
            Store()
        assert "pw" not in str(refused.value)


def test_a_postgres_store_without_psycopg_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'magister\[postgres\]'"):
        Store("postgresql://me:pw@127.0.0.1/magister")


def test_importing_the_store_does_not_load_psycopg() -> None:
    code = "import sys, magister, magister.store, magister.cli; print('psycopg' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_a_server_that_is_down_or_refuses_is_one_line_without_the_password(postgres_cluster) -> None:  # noqa: ANN001
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreError) as down:
        Store(f"postgresql://ann:s3cr3t-pw@127.0.0.1:{port}/magister?sslmode=disable")
    message = str(down.value)
    assert f"postgresql://127.0.0.1:{port}/magister?sslmode=REDACTED cannot be opened" in message
    assert "refused" in message and "s3cr3t" not in message and "\n" not in message
    with pytest.raises(StoreError, match="password authentication failed") as refused:
        Store(postgres_cluster.tcp_url_of("magister", password="wr0ng-pw"))
    assert "wr0ng" not in str(refused.value)
    with pytest.raises(StoreError, match="does not exist"):
        Store(postgres_cluster.url_of("no_such_database"))
    team = Store(postgres_cluster.new_store(tcp=True))  # as a team would: host, port, user and password
    assert team.postgres and postgres_cluster.password not in team.shown and team.runs() == []
    team.close()


@pytest.mark.parametrize("backend", ["postgres"])  # tests/test_cli.py drives the same commands on SQLite
def test_exam_then_runs_from_the_command_line(store_url: str, tmp_path: Path, magister_home: Path) -> None:
    """`magister exam`, `runs` and a cached re-run as processes, with MAGISTER_STORE=postgresql://..."""
    rows = [{"id": f"q{i}", "text": f"question {i}", "label": ["neg", "pos"][i % 2]} for i in range(6)]
    exam = write_jsonl(tmp_path / "exam.jsonl", rows)
    env = {**os.environ, "MAGISTER_HOME": str(magister_home), "MAGISTER_STORE": store_url}

    def magister(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "magister.cli", *args], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    summary = json.loads(magister("exam", str(exam), "--model", "mock:first", "--json"))
    assert summary["n"] == 6 and summary["accuracy"] == 0.5
    [listed] = json.loads(magister("runs", "--json"))
    assert listed["run_id"] == summary["run_id"] and listed["accuracy"] == 0.5
    assert not (magister_home / "magister.db").exists()  # nothing went to SQLite
    again = json.loads(magister("exam", str(exam), "--model", "mock:first", "--json"))
    assert again["cache_hits"] == 6 and again["model_calls"] == 0
