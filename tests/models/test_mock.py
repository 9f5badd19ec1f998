"""The mock backend shipped for tests, and spec parsing."""

from __future__ import annotations

import pytest

from magister.errors import ConfigError
from magister.models.base import BACKENDS, backend_class, cache_key, load_model
from magister.types import Message, Request


def req(text: str, choices: list[str] | None = None) -> Request:
    return Request(messages=[Message(role="user", content=text)], choices=choices)


def test_modes() -> None:
    assert load_model("mock:first").generate([req("x", ["a", "b"])])[0].text == "a"
    assert load_model("mock:last").generate([req("x", ["a", "b"])])[0].text == "b"
    assert load_model("mock:echo").generate([req("hello", ["a"])])[0].text == "hello"
    assert load_model("mock:text=42").generate([req("x")])[0].text == "42"
    picks = {load_model("mock:random?seed=1").generate([req("x", list("abcdef"))])[0].text for _ in range(3)}
    assert len(picks) == 1  # seeded


def test_bad_specs() -> None:
    with pytest.raises(ConfigError, match="must look like BACKEND:NAME"):
        load_model("smollm2")
    with pytest.raises(ConfigError, match="unknown backend 'vllm'"):
        load_model("vllm:x")
    with pytest.raises(ConfigError, match="unknown mock mode"):
        load_model("mock:psychic")
    with pytest.raises(ConfigError, match="bad mock option"):
        load_model("mock:first?delay=soon")


def test_cache_key_depends_on_model_and_request() -> None:
    a, b = load_model("mock:first"), load_model("mock:last")
    assert cache_key(a, req("x")) == cache_key(load_model("mock:first"), req("x"))
    assert cache_key(a, req("x")) != cache_key(b, req("x"))
    assert cache_key(a, req("x")) != cache_key(a, req("y"))


def test_every_backend_imports_without_heavy_dependencies() -> None:
    import sys

    for name in BACKENDS:
        backend_class(name)
    assert "torch" not in sys.modules or "transformers" in sys.modules  # backends import lazily
