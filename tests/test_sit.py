"""Sitting an exam: scores, the response cache, resume after Ctrl-C and after kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import sentiment_exam, write_jsonl
from magister.errors import BackendError
from magister.models.base import load_model
from magister.models.mock import MockModel
from magister.sit import sit
from magister.store import Store
from postgres import on_both_backends


def test_score_and_interval(store: Store) -> None:
    summary = sit(sentiment_exam(20), load_model("mock:first"), store, progress=False)
    assert (summary.n, summary.correct, summary.accuracy) == (20, 10, 0.5)  # 'negative' is right half the time
    assert summary.ci_low == pytest.approx(0.2993, abs=1e-3) and summary.ci_high == pytest.approx(0.7007, abs=1e-3)
    assert summary.model_calls == 20 and summary.cache_hits == 0 and summary.parse_failures == 0


def test_rerun_is_all_cache_hits(store: Store) -> None:
    exam = sentiment_exam(12)
    first = sit(exam, load_model("mock:random"), store, progress=False)
    model = load_model("mock:random?seed=99")  # a different seed would answer differently ...
    model.spec = "mock:random"  # ... but the cache is keyed by identity, so it is never asked
    second = sit(exam, model, store, progress=False)
    assert model.calls == 0 and second.cache_hits == 12 and second.model_calls == 0
    assert second.accuracy == first.accuracy and second.run_id != first.run_id


def test_a_damaged_cache_row_is_a_miss_and_is_reported(store: Store) -> None:
    exam = sentiment_exam(6)
    sit(exam, load_model("mock:first"), store, progress=False)
    with store.transaction():
        store.db.execute("UPDATE responses SET completion = '{not json' WHERE rowid = (SELECT min(rowid) FROM responses)")
        store.db.execute("UPDATE responses SET completion = '{\"text\": 3}' WHERE rowid = (SELECT max(rowid) FROM responses)")
    model = load_model("mock:first")
    again = sit(exam, model, store, progress=False)
    assert again.damaged_cache_rows == 2 and model.calls == 2 and again.cache_hits == 4 and again.n == 6
    fresh = Store(store.path)
    third = sit(exam, load_model("mock:first"), fresh, progress=False)
    assert third.damaged_cache_rows == 0 and third.cache_hits == 6


def test_generation_fallback_when_backend_cannot_score(store: Store) -> None:
    model = MockModel("mock:custom", respond=lambda r: "I'd say positive.")
    summary = sit(sentiment_exam(4), model, store, progress=False)
    assert summary.accuracy == 0.5
    [(answer, grade), *_] = store.answers(summary.run_id)
    assert answer.choice_logprobs is None and grade.extracted == "positive"


def test_unparsed_answers_are_counted(store: Store) -> None:
    summary = sit(sentiment_exam(4), load_model("mock:text=no idea"), store, progress=False)
    assert summary.parse_failures == 4 and summary.accuracy == 0.0


@on_both_backends
def test_interrupt_then_resume_asks_nothing_twice(store: Store) -> None:
    exam = sentiment_exam(40)

    def stop_after_two_batches(done: int) -> None:
        if done >= 16:
            raise KeyboardInterrupt

    first = load_model("mock:first")
    with pytest.raises(KeyboardInterrupt):
        sit(exam, first, store, batch_size=8, progress=False, on_batch=stop_after_two_batches)
    assert first.calls == 16
    second = load_model("mock:first")
    summary = sit(exam, second, store, batch_size=8, progress=False)
    assert second.calls == 24 and summary.resumed_items == 16 and summary.n == 40
    assert len(store.runs()) == 1  # the same run, finished


@on_both_backends
def test_failed_batch_keeps_finished_completions(store: Store) -> None:
    class HalfBroken(MockModel):
        def generate(self, requests):  # noqa: ANN001, ANN202
            done = super().generate(requests[:2])
            error = BackendError("server went away")
            error.partial = dict(enumerate(done))
            raise error

    exam = sentiment_exam(4)
    with pytest.raises(BackendError):
        sit(exam, HalfBroken("mock:first"), store, progress=False)
    healthy = load_model("mock:first")
    summary = sit(exam, healthy, store, progress=False)
    assert healthy.calls == 2 and summary.cache_hits == 2


def _answers_in(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_killed_process_resumes(tmp_path: Path, magister_home: Path, sig: signal.Signals) -> None:
    """A real `magister exam` process killed mid-run; the next identical command finishes the job."""
    rows = [{"id": f"q{i}", "text": f"item {i}", "label": ["neg", "pos"][i % 2]} for i in range(120)]
    path = write_jsonl(tmp_path / "exam.jsonl", rows)
    command = [sys.executable, "-m", "magister.cli", "exam", str(path), "--model", "mock:first?delay=0.02", "--json"]
    env = {**os.environ, "MAGISTER_HOME": str(magister_home)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = magister_home / "magister.db"
    deadline = time.time() + 30
    while _answers_in(db) < 16 and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(sig)
    process.wait(timeout=30)
    assert process.returncode == (-9 if sig == signal.SIGKILL else 130)
    saved = _answers_in(db)
    assert 16 <= saved < 120

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    import json

    summary = json.loads(again.stdout)
    assert summary["n"] == 120 and summary["resumed_items"] == saved
    assert summary["model_calls"] + summary["cache_hits"] == 120 - saved
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(DISTINCT run_id) FROM answers").fetchone()[0] == 1
        assert conn.execute("SELECT status FROM runs").fetchall() == [("finished",)]


def test_an_interrupt_exits_at_once_though_a_request_is_in_flight(tmp_path: Path, magister_home: Path) -> None:
    """Against a server that answers after 30 s: Ctrl-C (and SIGTERM) exit in about a second, not when the
    request finishes; a second signal during the shutdown is no traceback either."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            time.sleep(30)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        path = write_jsonl(tmp_path / "exam.jsonl", [{"id": f"q{i}", "question": f"{i}+1?", "answer": str(i + 1)}
                                                     for i in range(4)])
        spec = f"openai-compatible:http://127.0.0.1:{server.server_port}/v1#m"
        env = {**os.environ, "MAGISTER_HOME": str(magister_home)}
        for sigs in ([signal.SIGINT], [signal.SIGTERM, signal.SIGTERM]):
            process = subprocess.Popen([sys.executable, "-m", "magister.cli", "exam", str(path), "-m", spec],
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(4)  # started, and its requests are in flight
            sent = time.monotonic()
            for sig in sigs:
                process.send_signal(sig)
                time.sleep(0.05)
            _, stderr = process.communicate(timeout=20)
            assert time.monotonic() - sent < 3, "the exit waited for the request in flight"
            assert process.returncode == 130 and "Traceback" not in stderr
        with sqlite3.connect(magister_home / "magister.db") as conn:
            assert {s for (s,) in conn.execute("SELECT status FROM runs")} <= {"interrupted"}
            assert conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
    finally:
        server.shutdown()


def test_every_run_stores_its_kinds_and_label_sets(store: Store) -> None:
    from magister.models.base import load_model

    summary = sit(sentiment_exam(6), load_model("mock:first"), store, progress=False)
    config = store.run(summary.run_id).config
    assert config["kinds"] == ["classification"] and config["label_sets"] == [["negative", "positive"]]


@on_both_backends
def test_a_bad_regex_fails_before_any_call_and_a_failed_run_resumes(store: Store) -> None:
    from magister.errors import ConfigError
    from magister.models.base import load_model
    from magister.models.mock import MockModel
    from magister.types import Exam, Item, Kind

    bad = Exam(name="rx", items=[Item(id="a", input="q", reference="(unclosed", kind=Kind.free_form)])
    model = MockModel("mock:text=x")
    with pytest.raises(ConfigError, match="item 'a': the reference is not a valid regular expression"):
        sit(bad, model, store, grader="regex", progress=False)
    assert model.calls == 0 and store.runs() == []

    calls = {"n": 0}

    def flaky(request):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the backend broke")
        return "negative"

    exam = sentiment_exam(4)
    broken = MockModel("mock:flaky", respond=flaky)
    broken.batch_size = 1
    with pytest.raises(RuntimeError):
        sit(exam, broken, store, use_choices=False, progress=False)
    [failed] = store.runs()
    assert failed.status == "failed"
    summary = sit(exam, MockModel("mock:flaky", respond=lambda r: "negative"), store, use_choices=False,
                  progress=False)
    assert summary.run_id == failed.id and summary.resumed_items == 1 and store.run(failed.id).status == "finished"


@on_both_backends
def test_the_same_exam_run_twice_at_once_asks_each_item_once(store_url: str | None) -> None:
    """Two workers on one run lease batches: every item is asked once, and both print the store's final score."""
    import threading

    exam = sentiment_exam(60)
    calls: list[str] = []
    lock = threading.Lock()

    def slow(request) -> str:  # noqa: ANN001
        time.sleep(0.01)
        with lock:
            calls.append(request.messages[-1].content)
        return "positive"

    summaries = []
    start = threading.Barrier(3)  # at once: a worker that starts after the run finished opens a new run

    def worker() -> None:
        store = Store()
        start.wait(timeout=60)
        try:
            summaries.append(sit(exam, MockModel("mock:slow", respond=slow), store, progress=False, batch_size=4))
        finally:
            store.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(summaries) == 3 and len({s.run_id for s in summaries}) == 1
    assert sorted(calls) == sorted(item.input for item in exam.items)  # each item asked exactly once
    assert {(s.n, s.correct) for s in summaries} == {(60, 30)}  # one score, read from the store
    store = Store()
    assert store.db.execute("SELECT count(*) FROM leases").fetchone()[0] == 0
    store.close()


@on_both_backends
def test_a_lease_of_a_dead_worker_is_taken_over(store: Store) -> None:
    exam = sentiment_exam(6)
    run = store.open_run(exam, "mock:first", "auto", "fp", {})
    dead = f"{__import__('socket').gethostname()}:999999999:x"
    assert store.claim(run, ["s0", "s1"], dead) == ["s0", "s1"]
    assert store.claim(run, ["s0", "s1", "s2"], "elsewhere:1:y") == ["s0", "s1", "s2"]  # pid 999999999 is gone
    assert store.claim(run, ["s2", "s3"], "another:2:z") == ["s3"]  # a live (remote) holder keeps s2
