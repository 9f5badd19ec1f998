"""The HTTP backend: retries against a scripted flaky server, and a real llama_cpp.server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from magister.errors import BackendError, ConfigError, RateLimitError
from magister.models.base import load_model
from magister.models.openai_compat import OpenAICompatModel, retry_after
from magister.types import Message, Request


class FlakyHandler(BaseHTTPRequestHandler):
    """Answers according to the user message: 'rate N' gives N 429s first, 'error N' N 500s, 'slow N' N slow
    replies, 'deny' a 401; then a 200 that echoes the message. More faults: 'bytes' a 200 that is not UTF-8,
    'trickle' a 200 sent one byte every 0.3 s, 'usage-*' replies with odd usage, 'logprobs-*' with odd logprobs,
    'missing' a 404 and 'teapot' a 501 that both echo the request path. Records every Authorization header and
    request path."""

    attempts: Counter = Counter()
    auth: list[str] = []
    paths: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"]
        FlakyHandler.auth.append(self.headers.get("Authorization", ""))
        FlakyHandler.paths.append(self.path)
        FlakyHandler.attempts[text] += 1
        if text in ODD_REPLIES:
            return self._send(200, ODD_REPLIES[text])
        if text == "bytes":
            return self._send_raw(200, b'{"choices": [{"message": {"content": "\xff\xfe"}}]}', "application/json")
        if text == "trickle":
            return self._trickle()
        if text in ("missing", "teapot"):
            return self._send(404 if text == "missing" else 501, {"error": f"no route for POST {self.path}"})
        seen = FlakyHandler.attempts[text]
        kind, _, count = text.partition(" ")
        failing = count.isdigit() and seen <= int(count)
        if kind == "deny":
            return self._send(401, {"error": "bad key"})
        if kind == "rate" and failing:
            return self._send(429, {"error": "slow down"}, {"Retry-After": "1"})
        if kind == "error" and failing:
            return self._send(500, {"error": "boom"})
        if kind == "slow" and failing:
            time.sleep(1.5)
        if kind == "reject":
            return self._send(400, {"error": {"message": "This model's maximum context length is 8 tokens"}})
        if kind == "html" and failing:
            return self._send_raw(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        if kind == "shape" and failing:
            return self._send(200, {"choices": [{"message": {"content": {"parts": ["x"]}}}]})
        self._send(200, {"choices": [{"message": {"content": f"echo: {text}"}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 5, "completion_tokens": 2}})

    def _trickle(self) -> None:
        data = json.dumps({"choices": [{"message": {"content": "late"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            for byte in data:  # 45 bytes, 0.3 s apart: every read is quick, the whole reply takes ~13 s
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.3)
        except OSError:  # the client gave up
            pass

    def _send_raw(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except BrokenPipeError:
            pass


ECHO = {"message": {"content": "fine"}, "finish_reason": "stop"}
ODD_REPLIES = {
    "usage-null": {"choices": [ECHO], "usage": None},
    "usage-empty": {"choices": [ECHO], "usage": {}},
    "usage-nulls": {"choices": [ECHO], "usage": {"prompt_tokens": None, "completion_tokens": None}},
    "usage-junk": {"choices": [ECHO], "usage": {"prompt_tokens": "many", "completion_tokens": -3}},
    "usage-list": {"choices": [ECHO], "usage": [], "unused": 1},
    "logprobs-no-token": {"choices": [{**ECHO, "logprobs": {"content": [{"logprob": -0.1}]}}]},
    "logprobs-no-logprob": {"choices": [{**ECHO, "logprobs": {"content": [{"token": "fine"}]}}]},
    "logprobs-odd-top": {"choices": [{**ECHO, "logprobs": {"content": [
        {"token": "fine", "logprob": -0.5, "top_logprobs": [{"token": "fine", "logprob": -0.5}, {"logprob": -2},
                                                            {"token": "ok"}, "junk"]}]}}]},
}


@pytest.fixture
def flaky() -> Iterator[str]:
    FlakyHandler.attempts.clear()
    FlakyHandler.auth.clear()
    FlakyHandler.paths.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def ask(text: str) -> Request:
    return Request(messages=[Message(role="user", content=text)], max_tokens=8)


def test_retries_lose_nothing(flaky: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGISTER_API_KEY", "sk-test-secret")
    model = OpenAICompatModel(f"openai-compatible:{flaky}#m", concurrency=4, timeout_s=1.0, backoff_s=0.05)
    texts = ["fine", "rate 1", "error 2", "slow 1", "also fine", "rate 2"]
    start = time.perf_counter()
    out = model.generate([ask(t) for t in texts])
    elapsed = time.perf_counter() - start
    assert [c.text for c in out] == [f"echo: {t}" for t in texts]
    assert out[0].prompt_tokens == 5 and out[0].completion_tokens == 2
    assert model.retries == 1 + 2 + 1 + 2
    assert elapsed >= 2.0  # 'rate 2' waited for Retry-After: 1 twice
    assert set(FlakyHandler.auth) == {"Bearer sk-test-secret"}
    assert "sk-test-secret" not in model.identity()
    model.close()


def test_gives_up_with_clear_errors(flaky: str) -> None:
    model = OpenAICompatModel(f"openai-compatible:{flaky}#m", max_retries=1, backoff_s=0.01, timeout_s=2)
    with pytest.raises(RateLimitError, match="still rate limited after 2 tries"):
        model.generate([ask("rate 5")])
    with pytest.raises(BackendError, match="HTTP 401: check the key in MAGISTER_API_KEY"):
        model.generate([ask("deny")])
    out = model.generate([ask("ok"), ask("error 9")])  # one item that keeps failing fails alone
    assert out[0].text == "echo: ok" and out[1].text == "" and out[1].error.startswith("HTTP 500 after 2 tries")
    with pytest.raises(BackendError) as info:
        model.generate([ask("ok"), ask("deny")])
    assert list(info.value.partial) == [0]  # the finished request is handed back to be cached
    model.close()


def test_a_malformed_200_is_retried_then_fails_in_one_line(flaky: str) -> None:
    model = OpenAICompatModel(f"openai-compatible:{flaky}#m", max_retries=2, backoff_s=0.01, timeout_s=2)
    out = model.generate([ask("html 1"), ask("shape 2")])
    assert [c.text for c in out] == ["echo: html 1", "echo: shape 2"] and model.retries == 3
    shape, html = model.generate([ask("shape 9"), ask("html 9")])  # each fails alone, in one line
    assert shape.text == "" and "malformed response after 3 tries: " in shape.error and "not text" in shape.error
    assert html.text == "" and html.error.startswith("malformed response after 3 tries")
    assert "\n" not in shape.error + html.error
    model.close()


@pytest.fixture
def python_ctrl_c() -> Iterator[None]:
    """Python's own Ctrl-C handler for the test, whatever an earlier test in the process left installed (the
    whole suite once ran the test below without a KeyboardInterrupt), and the earlier one back afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_ctrl_c")
def test_ctrl_c_sends_nothing_new_and_keeps_what_arrived(flaky: str) -> None:
    model = OpenAICompatModel(f"openai-compatible:{flaky}#m", concurrency=2, timeout_s=10)
    texts = ["fast a", "fast b", *[f"slow {n}" for n in range(1, 9)]]  # 'slow N' sleeps 1.5 s
    threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGINT)).start()  # a real Ctrl-C
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt) as info:
        model.generate([ask(t) for t in texts])
    assert time.perf_counter() - start < 1.0
    assert [info.value.partial[i].text for i in sorted(info.value.partial)] == ["echo: fast a", "echo: fast b"]
    model.pool.shutdown(wait=True)  # the workers end at once: nothing was left to send
    assert time.perf_counter() - start < 2.0
    assert sum(FlakyHandler.attempts.values()) <= 4  # 2 fast + the 2 in flight at the interrupt


def test_a_down_server_trips_the_breaker(flaky: str) -> None:
    model = OpenAICompatModel(f"openai-compatible:{flaky}#m", concurrency=8, max_retries=6, backoff_s=0.01,
                              breaker=20)
    start = time.perf_counter()
    with pytest.raises(BackendError, match="stopped after 2[0-9] failed attempts in a row"):
        model.generate([ask("error 99") for _ in range(40)])
    assert sum(FlakyHandler.attempts.values()) <= 20 + 8 and time.perf_counter() - start < 5
    model.close()


def test_an_item_the_server_refuses_fails_alone_and_is_retried(flaky: str, tmp_path) -> None:  # noqa: ANN001
    from magister.sit import sit
    from magister.store import Store
    from magister.types import Exam, Item, Kind

    items = [Item(id=f"q{n}", input=text, reference=f"echo: {text}", kind=Kind.free_form)
             for n, text in enumerate(["one", "two", "reject", "four"])]
    exam = Exam(name="http", items=items, instructions="x")
    store = Store(tmp_path / "m.db")
    model = OpenAICompatModel(f"openai-compatible:{flaky}#m", backoff_s=0.01)
    first = sit(exam, model, store, progress=False)
    assert first.n == 3 and first.n_failed == 1 and first.failed[0]["item_id"] == "q2"
    assert "HTTP 400" in first.failed[0]["error"] and "maximum context length" in first.failed[0]["error"]
    assert store.run(first.run_id).status == "incomplete"
    before = sum(FlakyHandler.attempts.values())
    again = sit(exam, model, store, progress=False)
    assert again.run_id == first.run_id and again.n_failed == 1
    assert sum(FlakyHandler.attempts.values()) - before == 1  # only the refused item is asked again
    model.close()


def test_unreachable_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = OpenAICompatModel(f"openai-compatible:http://127.0.0.1:{port}/v1#m", max_retries=1, backoff_s=0.01)
    with pytest.raises(BackendError, match="ConnectError after 2 tries"):
        model.generate([ask("hi")])


def test_retry_after_forms() -> None:
    assert retry_after("3") == 3.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)


def test_specs_and_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="openai-compatible:http://HOST:PORT/v1#MODEL"):
        load_model("openai-compatible:localhost:8000")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="No key found - set OPENAI_API_KEY"):
        load_model("openai:gpt-4o-mini")


@pytest.mark.parametrize(("url", "reason"), [
    ("http://u:SECRET@127.0.0.1:99999/v1", "port out of range"),
    ("http://127.0.0.1:0/v1", "port 0 is not a port"),
    ("http://u:SECRET@127.0.0.1:abc/v1", "could not be cast to integer"),
    ("http://[::1/v1", "Invalid IPv6 URL"),
    ("http:///v1", "no host"),
])
def test_unreachable_url_is_one_line_without_secrets(url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as info:
        load_model(f"openai-compatible:{url}#m")
    assert "SECRET" not in str(info.value) and "\n" not in str(info.value)


def test_sit_stores_no_secret(flaky: str, monkeypatch: pytest.MonkeyPatch, magister_home) -> None:  # noqa: ANN001
    from helpers import sentiment_exam
    from magister.sit import sit
    from magister.store import Store

    monkeypatch.setenv("MAGISTER_API_KEY", "sk-never-stored")
    store = Store()
    summary = sit(sentiment_exam(4), load_model(f"openai-compatible:{flaky}#m"), store, progress=False)
    assert summary.n == 4 and summary.model_calls == 4
    store.close()
    blob = b"".join(p.read_bytes() for p in magister_home.iterdir())
    assert b"sk-never-stored" not in blob


# -- the real thing: llama_cpp.server with the embedded model -----------------------------

@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    pytest.importorskip("llama_cpp.server")
    from magister.models.llamacpp import embedded_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The server loads the model with the same llama.cpp parameters as the llamacpp backend (see
    # magister.models.llamacpp.params_patched: no extra buffer types on CPUs where they crash).
    launch = ("import runpy, sys\nfrom magister.models.llamacpp import params_patched\n"
              "with params_patched():\n    runpy.run_module('llama_cpp.server', run_name='__main__')")
    process = subprocess.Popen(
        [sys.executable, "-c", launch, "--model", str(embedded_path("smollm2")), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OPENAI_API_KEY": ""})
    import httpx

    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("llama_cpp.server did not start within 90 s")
    yield f"http://127.0.0.1:{port}/v1"
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.llamacpp
def test_real_server_generates(llama_server: str) -> None:
    model = load_model(f"openai-compatible:{llama_server}#smollm2")
    out = model.generate([Request(messages=[Message(role="user", content=f"Say the number {i}.")], max_tokens=12)
                          for i in range(3)])
    assert len(out) == 3 and all(c.text.strip() for c in out)
    assert all(0 < c.completion_tokens <= 12 and c.prompt_tokens > 5 for c in out)
    model.close()


@pytest.mark.slow
@pytest.mark.llamacpp
def test_real_server_sits_an_exam_and_caches(llama_server: str, store) -> None:  # noqa: ANN001
    from helpers import write_jsonl
    from magister.exams.load import load_exam
    from magister.sit import sit

    import tempfile
    from pathlib import Path

    rows = [{"question": f"What is {a} + {a}?", "answer": str(2 * a)} for a in range(1, 6)]
    with tempfile.TemporaryDirectory() as tmp:
        exam = load_exam(write_jsonl(Path(tmp) / "sums.jsonl", rows))
    spec = f"openai-compatible:{llama_server}#smollm2"
    first = sit(exam, load_model(spec), store, progress=False)
    assert first.n == 5 and first.model_calls == 5 and first.completion_tokens > 0
    second = sit(exam, load_model(spec), store, progress=False)
    assert second.cache_hits == 5 and second.accuracy == first.accuracy


def test_credentials_in_the_url_never_reach_the_store_or_the_output(flaky: str, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from magister.cli import app
    from magister.models.base import redact

    monkeypatch.delenv("MAGISTER_API_KEY", raising=False)
    marker = "SECRETMARKER42"
    host = flaky.removeprefix("http://")
    assert redact(f"openai-compatible:http://bob:{marker}@{host}#m") == f"openai-compatible:http://{host}#m"
    assert redact(f"openai-compatible:http://{host}?api_key={marker}&x=1#m") == \
        f"openai-compatible:http://{host}?x=REDACTED#m"  # every query value can be a credential
    first, second = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    first.write_text('{"id": "a", "question": "one", "answer": "echo: one"}\n'
                     '{"id": "b", "question": "two", "answer": "echo: two"}\n')
    second.write_text('{"id": "c", "question": "three", "answer": "echo: three"}\n'
                      '{"id": "d", "question": "four", "answer": "echo: four"}\n')
    outputs = []
    for exam, spec in ((first, f"openai-compatible:http://bob:{marker}@{host}#m"),
                       (second, f"openai-compatible:{flaky}?api_key={marker}#m"),
                       (first, f"openai-compatible:http://bob:OTHER@{host}#m")):
        result = CliRunner().invoke(app, ["exam", str(exam), "-m", spec, "--json"])
        assert result.exit_code == 0, result.output
        outputs.append(result.output + CliRunner().invoke(app, ["runs", "--json"]).output)
    assert json.loads(outputs[2].splitlines()[0])["cache_hits"] == 2  # the cache key ignores the credentials
    store_bytes = b"".join(p.read_bytes() for p in (tmp_path / "home").rglob("*") if p.is_file())
    assert marker.encode() not in store_bytes and not any(marker in o for o in outputs)
    assert any(a == f"Bearer {marker}" for a in FlakyHandler.auth)  # the query key went into the header
    assert any(a.startswith("Basic ") for a in FlakyHandler.auth)  # user:password became basic auth
    database = next((tmp_path / "home").rglob("magister.db"))
    assert database.stat().st_mode & 0o077 == 0  # only the owner can read the store


def test_a_key_with_a_newline_is_refused_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGISTER_API_KEY", "sk-abc\n")
    with pytest.raises(ConfigError, match="holds a newline"):
        OpenAICompatModel("openai-compatible:http://127.0.0.1:9/v1#m")


# -- hardening (issue #23) ------------------------------------------------------------------

def test_one_bad_item_costs_only_that_item(flaky: str) -> None:
    # breaker=5 is far below the 2 x 7 failed attempts of the two bad items: the breaker must see they are two
    # requests, not a dead server, and the 38 good replies between them must keep resetting it.
    model = OpenAICompatModel(f"openai-compatible:{flaky}#m", concurrency=8, max_retries=6, backoff_s=0.01,
                              max_backoff_s=0.05, timeout_s=5, breaker=5)
    texts = [f"item {n}" for n in range(40)]
    texts[7], texts[23] = "error 999", "bytes"  # one always gets a 500, one always a 200 that is not UTF-8
    start = time.perf_counter()
    out = model.generate([ask(t) for t in texts])
    assert time.perf_counter() - start < 10
    failed = [i for i, c in enumerate(out) if c.error]
    assert failed == [7, 23] and all(out[i].text == "" for i in failed)
    assert out[7].error.startswith("HTTP 500 after 7 tries") and "malformed response after 7 tries" in out[23].error
    assert all(c.text == f"echo: {t}" for t, c in zip(texts, out) if not c.error)
    assert FlakyHandler.attempts["error 999"] == 7 and FlakyHandler.attempts["bytes"] == 7
    model.close()


def test_a_server_that_fails_everything_still_stops_the_run(flaky: str) -> None:
    model = OpenAICompatModel(f"openai-compatible:{flaky}#m", concurrency=8, max_retries=6, backoff_s=0.01,
                              timeout_s=5, breaker=5)
    start = time.perf_counter()
    with pytest.raises(BackendError, match="the server seems down"):
        model.generate([ask("error 99") for _ in range(40)])
    assert time.perf_counter() - start < 5 and sum(FlakyHandler.attempts.values()) <= 5 + 8
    model.close()


def test_a_trickling_reply_is_bounded_by_the_timeout_in_total(flaky: str) -> None:
    model = OpenAICompatModel(f"openai-compatible:{flaky}#m", max_retries=1, backoff_s=0.01, timeout_s=1.0)
    start = time.perf_counter()
    late, fine = model.generate([ask("trickle"), ask("fine")])  # the slow item times out alone
    elapsed = time.perf_counter() - start
    assert elapsed < 4, f"took {elapsed:.1f} s: the timeout bounds each read, not the attempt"
    assert late.text == "" and late.error.startswith("ReadTimeout after 2 tries") and fine.text == "echo: fine"
    assert FlakyHandler.attempts["trickle"] == 2  # the timed-out attempt was retried once
    model.close()


@pytest.mark.parametrize("name", ["MAGISTER_HTTP_TIMEOUT", "MAGISTER_HTTP_CONCURRENCY"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_http_settings_are_one_clear_error(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"^{name}=") as info:
        OpenAICompatModel("openai-compatible:http://127.0.0.1:9/v1#m")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", [t for t in ODD_REPLIES if t.startswith("usage")])
def test_missing_or_null_usage_is_zero_tokens_not_a_failure(flaky: str, text: str) -> None:
    model = OpenAICompatModel(f"openai-compatible:{flaky}#m", concurrency=4, max_retries=2, backoff_s=0.01,
                              timeout_s=5, breaker=2)
    out = model.generate([ask(text) for _ in range(12)])
    assert all(c.text == "fine" and not c.error and c.prompt_tokens == c.completion_tokens == 0 for c in out)
    assert model.retries == 0 and model.failures_in_a_row == 0 and FlakyHandler.attempts[text] == 12
    model.close()


def test_logprobs_with_missing_fields_are_optional(flaky: str) -> None:
    model = OpenAICompatModel(f"openai-compatible:{flaky}#m", max_retries=2, backoff_s=0.01, timeout_s=5)
    no_token, no_logprob, odd_top = model.generate([ask("logprobs-no-token"), ask("logprobs-no-logprob"),
                                                    ask("logprobs-odd-top")])
    assert no_token.text == no_logprob.text == "fine" and no_token.logprobs is None and no_logprob.logprobs is None
    assert not no_token.error and not no_logprob.error and model.retries == 0
    assert [(t.token, t.logprob, t.top) for t in odd_top.logprobs] == [("fine", -0.5, {"fine": -0.5})]
    model.close()


SECRET = "SeCrEt9Z"
SECRET_FORMS = [("?api_token=", ""), ("?x-api-key=", ""), ("?access-token=", ""), ("?key=", ""),
                ("?api-version=2024&anything=", ""), ("?", ""), ("", "bob:{}@")]


def secret_url(base: str, form: tuple[str, str]) -> str:
    query, userinfo = form
    return base.replace("://", "://" + userinfo.format(SECRET)) + (query + SECRET if query else "")


@pytest.mark.parametrize("form", SECRET_FORMS, ids=lambda f: f[0] or "userinfo")
@pytest.mark.parametrize("how", ["spec", "OPENAI_BASE_URL"])
def test_url_credentials_are_sent_but_never_shown(flaky: str, form: tuple[str, str], how: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    from magister.models.base import cache_key, load_model

    monkeypatch.delenv("MAGISTER_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key")

    def open_model(base: str) -> OpenAICompatModel:
        url = secret_url(base, form)
        if how == "spec":
            return load_model(f"openai-compatible:{url}#m")  # type: ignore[return-value]
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        return load_model("openai:m")  # type: ignore[return-value]

    model = open_model(flaky)
    shown = [model.identity(), model.spec, model.model_name, model.base_url, repr(model), str(model),
             cache_key(model, ask("x"))]
    assert not any(SECRET in s for s in shown), shown
    ok, missing = model.generate([ask("fine"), ask("missing")])
    assert ok.text == "echo: fine"
    assert "HTTP 404" in missing.error and SECRET not in missing.error  # the server echoed the path: scrubbed
    with pytest.raises(BackendError) as info:
        model.generate([ask("teapot")])
    assert "HTTP 501" in str(info.value) and SECRET not in str(info.value)
    sent = FlakyHandler.paths + FlakyHandler.auth + [base64.b64decode(a.split()[1]).decode(errors="replace")
                                                     for a in FlakyHandler.auth if a.startswith("Basic ")]
    assert any(SECRET in s for s in sent), sent  # the credential still reached the server
    model.close()

    with socket.socket() as s:  # nothing listens there: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = open_model(f"http://127.0.0.1:{port}/v1")
    dead.max_retries, dead.backoff_s = 1, 0.01
    with pytest.raises(BackendError, match="ConnectError") as info:
        dead.generate([ask("hi")])
    assert SECRET not in str(info.value) and SECRET not in repr(info.value) and SECRET not in dead.identity()
    dead.close()


def test_redact_url_forms() -> None:
    from magister.models.base import redact, redact_url, split_credentials

    assert redact_url("http://bob:pw@h:8000/v1?api_token=abc&key=k&x-api-key=z") == \
        "http://h:8000/v1?api_token=REDACTED&x-api-key=REDACTED"
    assert redact_url("https://h/v1?sk-bare-token") == "https://h/v1?REDACTED"
    assert redact_url("https://api.openai.com/v1") == "https://api.openai.com/v1"
    assert redact("openai-compatible:http://u:p@h/v1?access-token=abc#m") == \
        "openai-compatible:http://h/v1?access-token=REDACTED#m"
    url, found, params = split_credentials("http://bob:pw@h:8000/v1?api_token=abc&key=k")
    assert url == "http://h:8000/v1" and found == {"user": "bob", "password": "pw", "key": "k", "key_name": "key"}
    assert params == [("api_token", "abc")]
