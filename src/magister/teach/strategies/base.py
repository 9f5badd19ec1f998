"""What every teaching strategy shares: the mined item, the job, the draft, and the parser.

A strategy turns the items the student got wrong (`Mined`) into `Job`s, one teacher call
each; `prompt` writes the call and `read` turns the teacher's text into `Draft`s, the new
examples before dedupe and verification. Strategies ask for one plain format that even a
small teacher can follow:

    Input: <a new question or text>
    Answer: <its answer>            (left out when the strategy fixes the answer)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from magister.synth.drafts import Draft
from magister.types import Item, Kind, Message


@dataclass(frozen=True)
class Mined:
    """A training item the student answered wrongly, and what it answered.

    Out-of-fold mining also records the runner-up (the best other answer) and the margin: how far
    the student's answer's log-probability was above the reference's (None without choice scores)."""

    item: Item
    wrong: str
    runner_up: str = ""
    margin: float | None = None


@dataclass(frozen=True)
class Job:
    """One teacher call: a strategy applied to a mined item."""

    strategy: str
    mined: Mined
    k: int
    show_wrong: bool
    label: str  # the answer the new examples must have
    examples: tuple[Item, ...] = ()  # seed items shown as a style guide (`new`)
    labels: tuple[str, ...] = ()
    contrast: tuple[Item, ...] = ()  # seed items of the student's wrong answer (`contrast`)
    descriptions: tuple[tuple[str, str], ...] = ()  # (label, what it means), from the config


class Strategy(Protocol):
    """A strategy module: `teacher = False` modules give `drafts(mined)` without any call instead."""

    name: str

    def jobs(self, mined: list[Mined], seed: list[Item], k: int, show_wrong: bool) -> list[Job]: ...

    def prompt(self, job: Job) -> list[Message]: ...

    def read(self, text: str, job: Job) -> list[Draft]: ...


def per_item_jobs(name: str, mined: list[Mined], k: int, show_wrong: bool) -> list[Job]:
    """One job per mined item, asking for answers equal to the item's reference."""
    return [Job(strategy=name, mined=m, k=k, show_wrong=show_wrong, label=m.item.reference,
                labels=tuple(m.item.labels or ())) for m in mined]


def job_seed(job: Job, round_: int) -> int:
    """The sampling seed of a job: fixed per (item, strategy, round), so reruns hit the response cache."""
    import hashlib

    key = f"{job.mined.item.id}|{job.strategy}|{round_}"
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


def system_prompt(item: Item) -> str:
    if item.kind is Kind.classification:
        return ("You write training examples for a text classifier. The labels are: "
                f"{', '.join(item.labels or [])}. Follow the requested format exactly.")
    return "You write training examples for a small language model. Follow the requested format exactly."


def fixed_answer(item: Item) -> bool:
    """Whether new examples keep the mined item's answer (classification), or bring their own."""
    return item.kind is Kind.classification


INLINE_ANSWER = re.compile(r"\s*(?:correct )?(?:answer|label)\s*:\s*(.*)$", re.I)
FIELD = re.compile(r"^\s*(?:\d+[.)]\s*)?(?:\*\*)?(input|question|answer|label)(?:\*\*)?\s*[:\-]\s*(.*)$", re.I)


def read_blocks(text: str, job: Job) -> list[Draft]:
    """Parse `Input:` lines (and `Answer:` lines where the answer is not fixed) into drafts."""
    drafts: list[Draft] = []
    current: dict[str, str] = {}

    def flush() -> None:
        if "input" in current:
            answer = job.label if fixed_answer(job.mined.item) else current.get("answer", "")
            reason = None if answer else "no answer given"
            if fixed_answer(job.mined.item) and current.get("answer") and \
                    current["answer"].strip().lower() != job.label.lower():
                reason = f"teacher labelled it '{current['answer'].strip()}', asked for '{job.label}'"
            drafts.append(Draft(input=current["input"].strip(), reference=answer.strip(), strategy=job.strategy,
                                source=job.mined.item.id, reason=reason))
        current.clear()

    for line in text.splitlines():
        match = FIELD.match(line)
        if not match:
            continue
        key = "input" if match.group(1).lower() in ("input", "question") else "answer"
        if key == "input" and "input" in current:
            flush()
        value = match.group(2)
        inline = INLINE_ANSWER.search(value) if key == "input" else None
        if inline:  # "Input: ... Correct answer: x" on one line: the answer is not part of the input
            value, current["answer"] = value[:inline.start()], inline.group(1)
        current[key] = value
    flush()
    for draft in drafts:
        if not draft.input:
            draft.reason = "empty input"
        elif draft.input.strip().lower() == job.mined.item.input.strip().lower():
            draft.reason = "copies the mined item"
    return drafts[: job.k]
