"""A scripted model for tests and dry runs, shipped in the package.

Specs:
  mock:first          always picks the first candidate (and says its text otherwise)
  mock:last           always picks the last candidate
  mock:random         a seeded random candidate (mock:random?seed=3)
  mock:echo           repeats the last user message; scores no choices
  mock:text=ANSWER    always says ANSWER; scores no choices
Options after '?': delay=SECONDS (per request), seed=N.

In Python, `MockModel("mock:custom", respond=fn)` answers with `fn(request)`, and
`MockModel("mock:custom", score=fn)` scores a request's choices with `fn(request)`, a dict of
probabilities (a judge or classifier with a known bias, for calibration tests).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from urllib.parse import parse_qsl

from magister.errors import ConfigError
from magister.models.base import Model
from magister.types import Completion, Request

MODES = ("first", "last", "random", "echo", "text", "custom")


class MockModel(Model):
    backend = "mock"
    supports_logprobs = False

    def __init__(self, spec: str, respond: Callable[[Request], str] | None = None,
                 score: Callable[[Request], dict[str, float]] | None = None) -> None:
        super().__init__(spec)
        body, _, query = spec.partition(":")[2].partition("?")
        options = dict(parse_qsl(query))
        self.mode, _, self.text = body.partition("=")
        if respond is not None or score is not None:
            self.mode = "custom"
        if self.mode not in MODES:
            raise ConfigError(f"unknown mock mode '{self.mode}' in '{spec}'; use one of {', '.join(MODES[:-1])}")
        try:
            self.delay = float(options.get("delay", 0))
            self.rng = random.Random(int(options.get("seed", 0)))
        except ValueError:
            raise ConfigError(f"bad mock option in '{spec}': delay is seconds, seed an integer") from None
        self.respond, self.score = respond, score
        self.supports_choices = self.mode in ("first", "last", "random") or score is not None
        self.calls = 0  # requests answered, for tests that count model calls

    def identity(self) -> str:
        return self.spec

    def _pick(self, candidates: list[str]) -> int:
        if self.mode == "first":
            return 0
        if self.mode == "last":
            return len(candidates) - 1
        return self.rng.randrange(len(candidates))

    def _say(self, request: Request) -> str:
        if self.respond is not None:
            return self.respond(request)
        if self.mode == "text":
            return self.text
        if self.mode == "echo" or not request.messages:
            users = [m.content for m in request.messages or [] if m.role == "user"]
            return users[-1] if users else request.prompt or ""
        return "A" if self.mode == "first" else "answer"

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        out = []
        for request in requests:
            start = time.perf_counter()
            if self.delay:
                time.sleep(self.delay)
            self.calls += 1
            if request.choices and self.score is not None:
                probabilities = self.score(request)
                logprobs = {c: math.log(max(probabilities.get(c, 0.0), 1e-12)) for c in request.choices}
                text = max(logprobs, key=logprobs.__getitem__)
            elif request.choices and self.supports_choices:
                best = self._pick(request.choices)
                logprobs = {c: (-0.1 if i == best else -3.0) for i, c in enumerate(request.choices)}
                text = request.choices[best]
            else:
                logprobs, text = None, self._say(request)
            prompt = " ".join(m.content for m in request.messages or []) or request.prompt or ""
            out.append(Completion(text=text, choice_logprobs=logprobs, prompt_tokens=len(prompt.split()),
                                  completion_tokens=len(text.split()), latency_s=time.perf_counter() - start,
                                  finish_reason="stop"))
        return out
