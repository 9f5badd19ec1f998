"""Graders: plain functions `(item, answer) -> Grade`, looked up by name.

Deterministic graders live in `deterministic.py`. `auto` picks the natural grader for each
item's kind: `label` for classification, `choice` for multiple choice, `numeric` for numbers,
`exact` for free-form text.
"""

from __future__ import annotations

from collections.abc import Callable

from magister.errors import ConfigError
from magister.graders.deterministic import GRADERS, choice, contains, exact, label, numeric, regex
from magister.types import Answer, Grade, Item, Kind

Grader = Callable[[Item, Answer], Grade]

BY_KIND: dict[Kind, str] = {Kind.classification: "label", Kind.multiple_choice: "choice",
                            Kind.numeric: "numeric", Kind.free_form: "exact"}


def auto(item: Item, answer: Answer) -> Grade:
    return GRADERS[BY_KIND[item.kind]](item, answer)


def as_batch(grader: Grader) -> Callable[[list[Item], list[Answer]], list[Grade]]:
    """A per-item grader as a batch grader (the form `sit` calls; judged graders batch their calls)."""
    return lambda items, answers: [grader(item, answer) for item, answer in zip(items, answers, strict=True)]


def get_grader(name: str) -> Grader:
    """The grader called `name` ('auto' or one of the deterministic graders)."""
    if name == "auto":
        return auto
    if name not in GRADERS:
        raise ConfigError(f"unknown grader '{name}'; choose from auto, {', '.join(GRADERS)}")
    return GRADERS[name]


__all__ = ["Grader", "as_batch", "get_grader", "auto", "exact", "label", "choice", "numeric", "regex", "contains", "GRADERS"]
