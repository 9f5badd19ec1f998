"""The nouns of Magister: Item, Exam, Request, Completion, Answer, Grade.

An Exam is a list of Items. A Model turns Requests into Completions. Sitting an
exam turns each Item into an Answer, and a grader turns each Answer into a Grade.
"""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Kind(str, Enum):
    """What sort of reference an item has, which decides how it is asked and graded."""

    classification = "classification"  # reference is one label of a closed set (`labels`)
    multiple_choice = "multiple_choice"  # reference is a letter A, B, ... into `choices`
    numeric = "numeric"  # reference is a number (GSM8K `#### 42` is reduced to 42)
    free_form = "free_form"  # reference is free text


class Item(BaseModel):
    """One exam question."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Unique within its exam.")
    input: str = Field(description="The question or text the model sees.")
    reference: str = Field(description="The right answer: label, choice letter, number or text.")
    kind: Kind
    labels: list[str] | None = Field(None, description="Closed label set (classification).")
    choices: list[str] | None = Field(None, description="Options, lettered A, B, ... (multiple choice).")
    checklist: list[str] | None = Field(None, description="Yes/no grading questions (judged graders).")
    meta: dict[str, Any] = Field(default_factory=dict, description="Free metadata: topic, source ...")

    @model_validator(mode="after")
    def _check_kind(self) -> Item:
        if self.kind is Kind.classification and not self.labels:
            raise ValueError("a classification item needs its label set in 'labels'")
        if self.kind is Kind.multiple_choice and not self.choices:
            raise ValueError("a multiple-choice item needs 'choices'")
        return self

    @property
    def candidates(self) -> list[str] | None:
        """The closed answer set a model can be scored on, if the item has one."""
        if self.kind is Kind.classification:
            return self.labels
        if self.kind is Kind.multiple_choice:
            return letters(len(self.choices or []))
        return None


class Exam(BaseModel):
    """A named list of items; `version` is a hash of the content, so edits make a new version."""

    name: str
    items: list[Item]
    instructions: str | None = Field(None, description="Overrides the default system prompt.")
    fewshot: list[Item] = Field(default_factory=list, description="Worked examples shown before each item.")
    source: str | None = None

    @property
    def version(self) -> str:
        payload = [self.instructions, [i.model_dump(mode="json") for i in self.fewshot],
                   [i.model_dump(mode="json") for i in self.items]]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class Request(BaseModel):
    """One call to a model: chat messages (or a raw prompt) and how to decode."""

    model_config = ConfigDict(frozen=True)

    messages: list[Message] | None = None
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = 0
    stop: list[str] = Field(default_factory=list)
    logprobs: bool = False
    top_logprobs: int = 0
    choices: list[str] | None = Field(
        None, description="Score these continuations instead of generating (constrained choice).")

    @model_validator(mode="after")
    def _one_input(self) -> Request:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a request has either messages or a prompt, not both or neither")
        return self

    @property
    def cacheable(self) -> bool:
        """Sampling without a seed is not reproducible, so it is never served from cache."""
        return self.temperature == 0 or self.seed is not None


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    top: dict[str, float] | None = None


class Completion(BaseModel):
    """What a model returned for one Request."""

    text: str
    choice_logprobs: dict[str, float] | None = Field(
        None, description="Log-probability of each requested choice, when the request had choices.")
    logprobs: list[TokenLogprob] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    finish_reason: str | None = None
    error: str | None = Field(None, description="Why the backend could not answer this request (e.g. HTTP 400); "
                                                "such a completion is never cached, and its item is retried.")


class Answer(BaseModel):
    """What a model produced for one item of a run."""

    item_id: str
    text: str
    choice_logprobs: dict[str, float] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    request_key: str = Field(description="Cache key of the request: the row that holds prompt and response.")


class Grade(BaseModel):
    """A grader's verdict on one answer."""

    item_id: str
    grader: str
    score: float = Field(ge=0.0, le=1.0)
    correct: bool | None = None
    extracted: str | None = Field(None, description="What the grader read out of the answer.")
    parsed: bool = Field(True, description="False when the answer could not be parsed.")
    rationale: str | None = None
    raw: str | None = Field(None, description="A judge's raw output (judged graders).")


def letters(n: int) -> list[str]:
    """Choice letters A, B, C ... for n options (up to 26)."""
    if n > 26:
        raise ValueError(f"at most 26 choices are supported, got {n}")
    return [chr(ord("A") + i) for i in range(n)]
