"""OpenAI-compatible HTTP servers (vLLM, Ollama, llama-server, llama_cpp.server) and the OpenAI API.

Specs:
  openai-compatible:http://127.0.0.1:8000/v1#MODEL   key, if the server wants one, from MAGISTER_API_KEY
  openai:gpt-4o-mini                                 key from OPENAI_API_KEY

Requests in a batch run concurrently on a bounded thread pool. Each retries on timeouts,
connection errors, 429 and 5xx with exponential backoff and jitter, waiting at least as long
as a `Retry-After` header asks. Each attempt has a total deadline (MAGISTER_HTTP_TIMEOUT), not
only one per read, so a server that trickles its reply cannot hold a request for long.

One bad item costs only that item: a request that still gets a 5xx, a malformed reply or a
timeout after its retries comes back as a Completion with `error`, and the run goes on. A circuit
breaker stops the run when the server seems down: many failed attempts in a row, with no success
between them, spread over several requests (one item's retries alone never trip it).

The key goes into the Authorization header and nowhere else: not into the model identity, the
cache key, the store or any message. URLs are shown only through `redact_url`: no user:password@,
and every query value replaced by REDACTED; the real URL is used only to send requests.
"""

from __future__ import annotations

import email.utils
import math
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import httpcore
import httpx

from magister.errors import BackendError, ConfigError, RateLimitError
from magister.models.base import REDACTED, Model, env_number, redact_url, split_credentials
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


def check_key(key: str) -> None:
    """A key that cannot go into an HTTP header fails now, not after a minute of retries."""
    if any(ch in key for ch in "\r\n") or not key.isascii() or not key.isprintable():
        raise ConfigError("the API key holds a newline, a control character or a non-ASCII character: check "
                          "how it was set (it is read from the environment and never stored)")


_attempt = threading.local()  # `end`: the monotonic deadline of the attempt this thread is making, or None


def _time_left(timeout: float | None, error: type[Exception]) -> float | None:
    """The socket timeout for the next step of an attempt: what the step allows, cut to what the attempt has left."""
    end = getattr(_attempt, "end", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise error("the attempt ran past its total deadline (MAGISTER_HTTP_TIMEOUT)")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write stops at the deadline of the attempt using it."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self.inner.start_tls(ssl_context, server_hostname,
                                                    _time_left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self.inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self.inner.connect_tcp(host, port, _time_left(timeout, httpcore.ConnectTimeout),
                                                      local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self.inner.connect_unix_socket(path, _time_left(timeout, httpcore.ConnectTimeout),
                                                              socket_options))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def arm_deadlines(client: httpx.Client) -> bool:
    """Give every connection pool of a client the deadline-aware network backend (httpx has no total timeout).
    False if this httpx keeps its pools elsewhere: then only the per-read timeouts apply."""
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    armed = True
    for transport in transports:
        if transport is None:  # a mount that sends nowhere (NO_PROXY)
            continue
        pool = getattr(transport, "_pool", None)
        if pool is None or not hasattr(pool, "_network_backend"):
            armed = False
            continue
        if not isinstance(pool._network_backend, _DeadlineBackend):  # noqa: SLF001
            pool._network_backend = _DeadlineBackend(pool._network_backend)  # noqa: SLF001
    return armed


def count(value: Any) -> int:
    """A token count from a reply: absent, null or nonsense is 0, never a failed request."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return 0
    return int(value)


def _logprob(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def token_logprobs(logprobs: Any) -> list[TokenLogprob] | None:
    """Per-token log-probabilities of a chat reply (`logprobs.content`). Optional: None when the reply has none, or
    when an entry lacks its token or log-probability (a partial list would misalign with the text); a malformed
    alternative in `top_logprobs` is left out."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content:
        return None
    out = []
    for entry in content:
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            return None
        value = _logprob(entry.get("logprob"))
        if value is None:
            return None
        alternatives = entry.get("top_logprobs")
        top = {}
        for alt in alternatives if isinstance(alternatives, list) else []:
            alt_value = _logprob(alt.get("logprob")) if isinstance(alt, dict) else None
            if alt_value is not None and isinstance(alt.get("token"), str):
                top[alt["token"]] = alt_value
        out.append(TokenLogprob(token=entry["token"], logprob=value, top=top or None))
    return out


class OpenAICompatModel(Model):
    backend = "openai-compatible"
    supports_logprobs = True
    supports_choices = False
    key_env = "MAGISTER_API_KEY"

    def __init__(self, spec: str, *, concurrency: int | None = None, timeout_s: float | None = None,
                 max_retries: int = 6, backoff_s: float = 0.5, max_backoff_s: float = 60.0,
                 breaker: int = 20) -> None:
        super().__init__(spec)
        url, self.model_name = self._parse(spec.partition(":")[2])
        self.base_url = redact_url(url).rstrip("/")  # shown, stored and hashed; the real URL only sends
        try:
            send_url, self.url_credentials, params = split_credentials(url)
            if not send_url.partition("://")[2].partition("/")[0]:
                raise ValueError("no host")
        except ValueError as error:  # a port that is not a number or out of range, a broken IPv6 address ...
            reason = str(error).replace("Port", "port")  # urllib's messages name the port, never the userinfo
            raise ConfigError(f"{self.base_url} is not a URL that can be reached: {reason}") from None
        secrets = [v for k, v in self.url_credentials.items() if k != "key_name"]
        secrets += [value or name for name, value in params]  # a bare ?TOKEN is a name without a value
        self.secrets = sorted({v for v in secrets if len(v) >= 3}, key=len, reverse=True)  # scrubbed from replies
        self.concurrency = concurrency or env_number("MAGISTER_HTTP_CONCURRENCY", 8, int, low=1)
        self.batch_size = self.concurrency * 4
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        timeout = timeout_s or env_number("MAGISTER_HTTP_TIMEOUT", 120.0, float, low=0.001)
        if not math.isfinite(timeout) or timeout <= 0:
            raise ConfigError(f"the HTTP timeout must be a positive finite number of seconds, not {timeout!r}")
        self.timeout = timeout
        headers = {"Content-Type": "application/json"}
        key = self._key()
        if key and "key" in self.url_credentials:  # the header has its key already: the URL's is sent as it came
            params.append((self.url_credentials["key_name"], self.url_credentials["key"]))
        key = key or self.url_credentials.get("key") or (
            self.url_credentials.get("password") if "user" not in self.url_credentials else None)
        if key:
            check_key(key)
            headers["Authorization"] = f"Bearer {key}"
        auth = None
        if "user" in self.url_credentials:  # user:password@host: HTTP basic auth, never part of the stored spec
            auth = httpx.BasicAuth(self.url_credentials["user"], self.url_credentials.get("password", ""))
        self.client = httpx.Client(base_url=send_url.rstrip("/"), params=params, headers=headers, timeout=timeout,
                                   auth=auth, limits=httpx.Limits(max_connections=self.concurrency))
        arm_deadlines(self.client)
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="magister-http")
        self.retries = 0  # retried attempts, for reports and tests
        self.stopping = False  # set on Ctrl-C: workers send nothing more and stop retrying
        # The breaker: `breaker` failed attempts in a row over all requests, with no success between them, spread
        # over at least `breaker_spread` different requests, and the run stops (the server seems down). One item
        # that keeps failing never trips it alone: it fails by itself, and the other items go on.
        self.breaker = breaker
        self.breaker_spread = min(max(self.concurrency, 2), 3)
        self.failures_in_a_row = 0
        self.failing: set[int] = set()  # the requests that failed since the last success
        self.sent = 0  # numbers the requests, for `failing`
        self.lock = threading.Lock()

    def _parse(self, rest: str) -> tuple[str, str]:
        """The real base URL (with any credentials: only for sending) and the model name."""
        url, _, model = rest.partition("#")
        if not url.startswith(("http://", "https://")) or not model:
            raise ConfigError(f"'{self.spec}' should look like openai-compatible:http://HOST:PORT/v1#MODEL")
        return url, model

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
        where = f"{self.base_url}{path}"
        start = time.perf_counter()
        with self.lock:
            self.sent += 1
            me = self.sent
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            tries = f"after {attempt + 1} {'try' if attempt == 0 else 'tries'}"
            if self.stopping:
                raise BackendError("interrupted")
            self._check_breaker(where)
            _attempt.end = time.monotonic() + self.timeout  # the whole attempt, not each read, ends by then
            try:
                response = self.client.post(path, json=body)
            except httpx.TimeoutException as err:  # this request may be the slow one: it fails alone
                self._failed(me)
                if last:
                    return self._item_failed(where, f"{type(err).__name__} {tries} (each limited to "
                                                    f"{self.timeout:g} s by MAGISTER_HTTP_TIMEOUT)", start)
                self._sleep(attempt, None)
                continue
            except httpx.ConnectError as err:  # nothing answers there: no item can succeed
                self._failed(me)
                if last:
                    raise BackendError(f"{where}: {type(err).__name__} {tries}") from None
                self._sleep(attempt, None)
                continue
            except httpx.TransportError as err:  # the connection broke during this request
                self._failed(me)
                if last:
                    return self._item_failed(where, f"{type(err).__name__} {tries}", start)
                self._sleep(attempt, None)
                continue
            finally:
                _attempt.end = None
            if response.status_code == 200:
                try:  # a 200 that is not the JSON it should be (an HTML error page, a cut body) is a server fault
                    completion = self._parse_response(path, response.json(), time.perf_counter() - start)
                except (ValueError, TypeError, KeyError, AttributeError, BackendError) as err:
                    self._failed(me)
                    if last:
                        return self._item_failed(where, f"malformed response {tries}: "
                                                        f"{self._scrub(str(err)[:200])}", start)
                    self._sleep(attempt, None)
                    continue
                with self.lock:
                    self.failures_in_a_row = 0
                    self.failing.clear()
                return completion
            detail = self._scrub(response.text[:300])
            if response.status_code in RETRY_STATUS:
                if response.status_code != 429:  # a rate limit is the server working, not failing
                    self._failed(me)
                if not last:
                    self._sleep(attempt, retry_after(response.headers.get("Retry-After")))
                    continue
                if response.status_code == 429:
                    raise RateLimitError(f"{where}: still rate limited {tries}: {detail}")
                return self._item_failed(where, f"HTTP {response.status_code} {tries}: {detail}", start)
            if response.status_code in (401, 403):
                raise BackendError(f"{where}: HTTP {response.status_code}: check the key in "
                                   f"{self.key_env}: {detail}")
            if response.status_code in ITEM_STATUS:  # this request, not the server: the item fails, the run goes on
                return Completion(text="", error=f"HTTP {response.status_code}: {detail}",
                                  latency_s=time.perf_counter() - start)
            raise BackendError(f"{where}: HTTP {response.status_code}: {detail}")
        raise AssertionError("unreachable")

    def _tripped(self) -> bool:
        return self.failures_in_a_row >= self.breaker and len(self.failing) >= self.breaker_spread

    def _check_breaker(self, where: str) -> None:
        with self.lock:
            if self._tripped():
                raise BackendError(f"{where}: stopped after {self.failures_in_a_row} failed attempts in a row over "
                                   f"{len(self.failing)} requests (the server seems down)")

    def _item_failed(self, where: str, why: str, start: float) -> Completion:
        """This request has used its retries. If the server is down, the run stops; otherwise only the item fails."""
        self._check_breaker(where)
        return Completion(text="", error=why, latency_s=time.perf_counter() - start)

    def _failed(self, request: int) -> None:
        with self.lock:
            self.failures_in_a_row += 1
            self.failing.add(request)

    def _scrub(self, text: str) -> str:
        """Text from the server, with any credential it echoes (a URL in an error page) replaced."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _sleep(self, attempt: int, asked: float | None) -> None:
        self.retries += 1
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)
        if asked is not None:
            delay = max(delay, min(asked, self.max_backoff_s))
        deadline = time.monotonic() + delay
        while not self.stopping and time.monotonic() < deadline:  # a Ctrl-C cuts the wait short
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _parse_response(self, path: str, data: Any, latency: float) -> Completion:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if path == "/chat/completions" else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"{self.base_url}{path}: unexpected response shape: "
                               f"{self._scrub(str(data)[:300])}") from None
        if text is not None and not isinstance(text, str):
            raise BackendError(f"{self.base_url}{path}: the content is a {type(text).__name__}, not text")
        usage = data.get("usage") if isinstance(data, dict) else None
        usage = usage if isinstance(usage, dict) else {}  # usage is optional: null, absent or partial is 0 tokens
        finish = choice.get("finish_reason") if isinstance(choice, dict) else None
        return Completion(text=text or "", logprobs=token_logprobs(choice.get("logprobs")),
                          prompt_tokens=count(usage.get("prompt_tokens")),
                          completion_tokens=count(usage.get("completion_tokens")), latency_s=latency,
                          finish_reason=finish if isinstance(finish, str) else None)

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
        base = os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        if not base.startswith(("http://", "https://")):
            raise ConfigError(f"OPENAI_BASE_URL={redact_url(base)!r} should look like https://HOST/v1")
        return base, rest  # like any URL: credentials only for sending, redact_url for the rest

    def _key(self) -> str | None:
        key = os.environ.get(self.key_env)
        if not key:
            raise ConfigError("No key found - set OPENAI_API_KEY (it is read from the environment and never stored)")
        return key
