"""The Model contract and the spec strings that name models (`backend:name`).

Every backend implements one batch method, `generate(requests) -> completions`, so each
can be fast in its own way, and declares what it supports with class attributes.
Backends are imported only when a spec names them: `magister --help` never loads torch.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from magister.errors import ConfigError
from magister.types import Completion, Request


class Model(ABC):
    """Anything that completes prompts."""

    backend: str = ""
    supports_choices: bool = False  # can score a fixed list of continuations (Request.choices)
    supports_logprobs: bool = False  # can return per-token log-probabilities of generated text
    batch_size: int = 8  # how many requests to hand `generate` at once

    def __init__(self, spec: str) -> None:
        self.spec = redact(spec)  # what is stored and printed: never a credential

    @abstractmethod
    def identity(self) -> str:
        """What makes this model's outputs what they are (weights file, server and model name).

        Part of every cache key: change the weights and the cache no longer answers."""

    @abstractmethod
    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """One completion per request, in order."""

    def close(self) -> None:
        """Free what the backend holds (threads, connections, weights)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"


@dataclass(frozen=True)
class Backend:
    name: str
    module: str
    cls: str
    example: str
    summary: str


BACKENDS: dict[str, Backend] = {b.name: b for b in [
    Backend("llamacpp", "magister.models.llamacpp", "LlamaCppModel", "llamacpp:smollm2",
            "GGUF models on CPU with llama.cpp; 'smollm2' is the embedded default"),
    Backend("openai-compatible", "magister.models.openai_compat", "OpenAICompatModel",
            "openai-compatible:http://127.0.0.1:8000/v1#qwen2.5-7b", "any OpenAI-compatible server (vLLM, Ollama, llama-server)"),
    Backend("openai", "magister.models.openai_compat", "OpenAIModel", "openai:gpt-4o-mini",
            "the OpenAI API; key from OPENAI_API_KEY"),
    Backend("hf", "magister.models.hf", "HFModel", "hf:./runs/trec/round-2",
            "a transformers model directory or GGUF file, batched (CPU or GPU)"),
    Backend("mock", "magister.models.mock", "MockModel", "mock:first",
            "scripted outputs for tests: echo, first, last, random, text=..."),
]}

DEFAULT_MODEL = "llamacpp:smollm2"



def env_number(name: str, default: float, kind: type, low: float) -> Any:
    """A number from the environment, checked: a bad value is one clear error, not a traceback."""
    text = os.environ.get(name)
    if text is None or not text.strip():
        return kind(default)
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value):  # nan would pass every comparison, inf would wait forever
        raise ConfigError(f"{name}={text!r} must be a finite number")
    if value < low:
        raise ConfigError(f"{name}={text!r} must be at least {low:g}")
    return value


def threads() -> int:
    """CPU threads a local backend computes with: MAGISTER_THREADS, else every core (a Ray actor sets it from
    its share of the CPUs, so two actors on two cores do not each run two threads)."""
    return env_number("MAGISTER_THREADS", os.cpu_count() or 1, int, low=1)

def backend_class(name: str) -> type[Model]:
    """The Model class of a backend, imported on first use."""
    if name not in BACKENDS:
        known = ", ".join(BACKENDS)
        raise ConfigError(f"unknown backend '{name}'; known backends: {known}")
    backend = BACKENDS[name]
    module = importlib.import_module(backend.module)
    return getattr(module, backend.cls)


def load_model(spec: str) -> Model:
    """Open the model a spec string names, e.g. `llamacpp:smollm2` or `openai:gpt-4o-mini`."""
    backend, sep, name = spec.partition(":")
    if not sep or not name:
        raise ConfigError(f"model spec '{spec}' must look like BACKEND:NAME, e.g. {DEFAULT_MODEL} "
                          f"(backends: {', '.join(BACKENDS)})")
    return backend_class(backend)(spec)


SECRET_PARAMS = {"api_key", "api-key", "apikey", "key", "token", "access_token", "auth", "password", "secret"}
REDACTED = "REDACTED"


def split_credentials(url: str) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
    """A URL taken apart for sending: the URL to send to (no userinfo, no query), the credentials (`user` and
    `password` from user:pass@host, `key` from a parameter named like ?api_key=..., which goes into the
    Authorization header instead, and its name `key_name`), and the other query parameters, real values, to send
    with every request.

    What to show or store is `redact_url(url)`, never any of these."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    parts = urlsplit(url)
    found: dict[str, str] = {}
    if parts.username is not None or parts.password is not None:
        found.update({k: v for k, v in (("user", parts.username), ("password", parts.password)) if v})
    kept = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name.lower() in SECRET_PARAMS:
            found["key"], found["key_name"] = value, name
        else:
            kept.append((name, value))
    return urlunsplit((parts.scheme, _hostport(parts), parts.path, "", "")), found, kept


def redact_url(url: str) -> str:
    """The one form of a URL that is shown, stored or hashed: no user:password@, no parameter that becomes the
    key (?api_key=...), and every other query value replaced by REDACTED (?api_token=REDACTED): a query value
    can be a credential under any name. The real URL is kept apart only to send requests."""
    from urllib.parse import unquote_plus, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        netloc = _hostport(parts)
    except ValueError:  # an unparseable URL is shown as nothing but its scheme
        return url.partition("://")[0] + "://" + REDACTED if "://" in url else REDACTED
    shown = []
    for piece in parts.query.split("&") if parts.query else []:
        name, eq, _ = piece.partition("=")
        if unquote_plus(name).lower() in SECRET_PARAMS:
            continue
        shown.append(f"{name}={REDACTED}" if eq else REDACTED)  # a bare ?TOKEN is a value too
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(shown), parts.fragment and REDACTED))


def _hostport(parts: object) -> str:
    host = parts.hostname or ""  # type: ignore[attr-defined]
    if ":" in host:  # IPv6
        host = f"[{host}]"
    port = parts.port  # type: ignore[attr-defined]  # raises ValueError on a bad port
    if port == 0:
        raise ValueError("port 0 is not a port a server listens on")
    return f"{host}:{port}" if port else host


def redact(spec: str) -> str:
    """A model spec with any credentials in its URL taken out (user:pass@, query values): see `redact_url`."""
    backend, sep, rest = spec.partition(":")
    if not sep or "://" not in rest:
        return spec
    url, hash_, model = rest.partition("#")
    return f"{backend}:{redact_url(url)}{hash_}{model}"


def cache_key(model: Model, request: Request) -> str:
    """The response-cache key: backend, model identity and the full request."""
    payload = {"backend": model.backend, "model": model.identity(), "request": request.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
