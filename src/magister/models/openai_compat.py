"""OpenAI-compatible HTTP servers (vLLM, Ollama, llama-server, llama_cpp.server) and the OpenAI API.

Specs:
  openai-compatible:http://127.0.0.1:8000/v1#MODEL   key, if the server wants one, from MAGISTER_API_KEY
  openai:gpt-4o-mini                                 key from OPENAI_API_KEY

Requests in a batch run concurrently on a bounded thread pool. Each retries on timeouts,
connection errors, 429 and 5xx with exponential backoff and jitter, waiting at least as long
as a `Retry-After` header asks. The key goes into the Authorization header and nowhere else:
not into the model identity, the cache key, the store or any message.
"""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import httpx

from magister.errors import BackendError, ConfigError, RateLimitError
from magister.models.base import Model, split_credentials
from magister.types import Completion, Request, TokenLogprob

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
ITEM_STATUS = {400, 404, 413, 422}  # the server refuses this request (content filter, context overflow ...)


def retry_after(header: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait: delta-seconds or an HTTP date."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def env_number(name: str, default: float, kind: type, low: float) -> Any:
    """A number from the environment, checked: a bad value is one clear error, not a traceback."""
    text = os.environ.get(name)
    if text is None or not text.strip():
        return kind(default)
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if value < low:
        raise ConfigError(f"{name}={text!r} must be at least {low:g}")
    return value


def check_key(key: str) -> None:
    """A key that cannot go into an HTTP header fails now, not after a minute of retries."""
    if any(ch in key for ch in "\r\n") or not key.isascii() or not key.isprintable():
        raise ConfigError("the API key holds a newline, a control character or a non-ASCII character: check "
                          "how it was set (it is read from the environment and never stored)")


class OpenAICompatModel(Model):
    backend = "openai-compatible"
    supports_logprobs = True
    supports_choices = False
    key_env = "MAGISTER_API_KEY"

    def __init__(self, spec: str, *, concurrency: int | None = None, timeout_s: float | None = None,
                 max_retries: int = 6, backoff_s: float = 0.5, max_backoff_s: float = 60.0,
                 breaker: int = 20) -> None:
        super().__init__(spec)
        self.base_url, self.model_name = self._parse(spec.partition(":")[2])
        self.concurrency = concurrency or env_number("MAGISTER_HTTP_CONCURRENCY", 8, int, low=1)
        self.batch_size = self.concurrency * 4
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        timeout = timeout_s or env_number("MAGISTER_HTTP_TIMEOUT", 120.0, float, low=0.001)
        headers = {"Content-Type": "application/json"}
        key = self._key() or self.url_credentials.get("key") or (
            self.url_credentials.get("password") if "user" not in self.url_credentials else None)
        if key:
            check_key(key)
            headers["Authorization"] = f"Bearer {key}"
        auth = None
        if "user" in self.url_credentials:  # user:password@host: HTTP basic auth, never part of the stored spec
            auth = httpx.BasicAuth(self.url_credentials["user"], self.url_credentials.get("password", ""))
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, auth=auth,
                                   limits=httpx.Limits(max_connections=self.concurrency))
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="magister-http")
        self.retries = 0  # retried attempts, for reports and tests
        self.stopping = False  # set on Ctrl-C: workers send nothing more and stop retrying
        self.breaker = breaker  # this many failed attempts in a row, over all requests, and the run stops
        self.failures_in_a_row = 0
        self.lock = threading.Lock()

    def _parse(self, rest: str) -> tuple[str, str]:
        url, _, model = rest.partition("#")
        if not url.startswith(("http://", "https://")) or not model:
            raise ConfigError(f"'{self.spec}' should look like openai-compatible:http://HOST:PORT/v1#MODEL")
        clean, self.url_credentials = split_credentials(url)
        return clean.rstrip("/"), model

    def _key(self) -> str | None:
        return os.environ.get(self.key_env)

    url_credentials: dict[str, str] = {}

    def identity(self) -> str:
        return f"{self.base_url}#{self.model_name}"

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """Answer a batch concurrently. On Ctrl-C nothing new is sent, requests in flight are dropped, and
        the KeyboardInterrupt carries the completions that had arrived (`partial`), for the cache."""
        futures = [self.pool.submit(self._one, r) for r in requests]
        results: dict[int, Completion] = {}
        failure: Exception | None = None
        try:
            for index, future in enumerate(futures):
                while not future.done():  # short waits: a Ctrl-C is seen at once, not after the slowest reply
                    wait([future], timeout=0.1)
                try:
                    results[index] = future.result()
                except Exception as err:  # keep collecting: the finished ones are worth saving
                    failure = failure or err
        except KeyboardInterrupt as interrupt:
            self.stopping = True
            for future in futures:
                future.cancel()
            for index, future in enumerate(futures):
                if future.done() and not future.cancelled() and future.exception() is None:
                    results[index] = future.result()
            interrupt.partial = results  # type: ignore[attr-defined]
            self.client.close()  # requests in flight end now, so the process can exit at once
            raise
        if failure is not None:
            if isinstance(failure, BackendError):
                failure.partial = results  # type: ignore[attr-defined]
            raise failure
        return [results[i] for i in range(len(requests))]

    def _body(self, request: Request) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model_name, "max_tokens": request.max_tokens,
                                "temperature": request.temperature}
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = request.stop
        if request.messages is None:
            body["prompt"] = request.prompt
            if request.logprobs:
                body["logprobs"] = max(1, request.top_logprobs)
            return "/completions", body
        body["messages"] = [m.model_dump() for m in request.messages]
        if request.logprobs:
            body["logprobs"] = True
            if request.top_logprobs:
                body["top_logprobs"] = request.top_logprobs
        return "/chat/completions", body

    def _one(self, request: Request) -> Completion:
        path, body = self._body(request)
        start = time.perf_counter()
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            if self.stopping:
                raise BackendError("interrupted")
            if self.failures_in_a_row >= self.breaker:
                raise BackendError(f"{self.base_url}{path}: stopped after {self.failures_in_a_row} failed attempts "
                                   "in a row (the server seems down)")
            try:
                response = self.client.post(path, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                self._failed()
                if last:
                    raise BackendError(f"{self.base_url}{path}: {type(err).__name__} after {attempt + 1} tries") from None
                self._sleep(attempt, None)
                continue
            if response.status_code == 200:
                try:  # a 200 that is not the JSON it should be (an HTML error page, a cut body) is a server fault
                    completion = self._parse_response(path, response.json(), time.perf_counter() - start)
                    with self.lock:
                        self.failures_in_a_row = 0
                    return completion
                except (ValueError, BackendError) as err:
                    self._failed()
                    if last:
                        raise BackendError(f"{self.base_url}{path}: malformed response after {attempt + 1} tries: "
                                           f"{str(err)[:200]}") from None
                    self._sleep(attempt, None)
                    continue
            if response.status_code in RETRY_STATUS:
                if response.status_code != 429:  # a rate limit is the server working, not failing
                    self._failed()
                if not last:
                    self._sleep(attempt, retry_after(response.headers.get("Retry-After")))
                    continue
            detail = response.text[:300]
            if response.status_code == 429:
                raise RateLimitError(f"{self.base_url}{path}: still rate limited after {attempt + 1} tries: {detail}")
            if response.status_code in (401, 403):
                raise BackendError(f"{self.base_url}{path}: HTTP {response.status_code}: check the key in "
                                   f"{self.key_env}: {detail}")
            if response.status_code in ITEM_STATUS:  # this request, not the server: the item fails, the run goes on
                return Completion(text="", error=f"HTTP {response.status_code}: {detail}",
                                  latency_s=time.perf_counter() - start)
            raise BackendError(f"{self.base_url}{path}: HTTP {response.status_code}: {detail}")
        raise AssertionError("unreachable")

    def _failed(self) -> None:
        with self.lock:
            self.failures_in_a_row += 1

    def _sleep(self, attempt: int, asked: float | None) -> None:
        self.retries += 1
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)
        if asked is not None:
            delay = max(delay, min(asked, self.max_backoff_s))
        deadline = time.monotonic() + delay
        while not self.stopping and time.monotonic() < deadline:  # a Ctrl-C cuts the wait short
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _parse_response(self, path: str, data: dict[str, Any], latency: float) -> Completion:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if path == "/chat/completions" else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"{self.base_url}{path}: unexpected response shape: {str(data)[:300]}") from None
        if text is not None and not isinstance(text, str):
            raise BackendError(f"{self.base_url}{path}: the content is a {type(text).__name__}, not text")
        usage = data.get("usage") or {}
        logprobs = None
        content = (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
        if content:
            logprobs = [TokenLogprob(token=t["token"], logprob=t["logprob"],
                                     top={x["token"]: x["logprob"] for x in t.get("top_logprobs") or []} or None)
                        for t in content]
        return Completion(text=text or "", logprobs=logprobs, prompt_tokens=usage.get("prompt_tokens", 0),
                          completion_tokens=usage.get("completion_tokens", 0), latency_s=latency,
                          finish_reason=choice.get("finish_reason"))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


class OpenAIModel(OpenAICompatModel):
    """The OpenAI API itself: `openai:MODEL`, key from OPENAI_API_KEY."""

    backend = "openai"
    key_env = "OPENAI_API_KEY"

    def _parse(self, rest: str) -> tuple[str, str]:
        if not rest:
            raise ConfigError("name the model: openai:gpt-4o-mini")
        base = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        return base.rstrip("/"), rest

    def _key(self) -> str | None:
        key = os.environ.get(self.key_env)
        if not key:
            raise ConfigError("No key found - set OPENAI_API_KEY (it is read from the environment and never stored)")
        return key
