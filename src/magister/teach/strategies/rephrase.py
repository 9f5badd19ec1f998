"""`rephrase`: the missed example in new words, with its meaning and its answer unchanged."""

from __future__ import annotations

from magister.exams.prompt import question_text
from magister.teach.strategies.base import Draft, Job, Mined, per_item_jobs, read_blocks, system_prompt
from magister.types import Item, Message

name = "rephrase"


def jobs(mined: list[Mined], seed: list[Item], k: int, show_wrong: bool) -> list[Job]:
    return per_item_jobs(name, mined, k, show_wrong)


def prompt(job: Job) -> list[Message]:
    item = job.mined.item
    text = (f"Rewrite this input in {job.k} different ways. Keep its meaning, so that its correct answer stays "
            f"'{item.reference}'.\nInput: {question_text(item)}\n\nWrite each rewrite on one line starting with "
            "'Input: '.")
    return [Message(role="system", content=system_prompt(item)), Message(role="user", content=text)]


def read(text: str, job: Job) -> list[Draft]:
    drafts = read_blocks(text, job)
    for draft in drafts:  # a rephrasing keeps the answer, whatever kind the item is
        draft.reference = job.mined.item.reference
        if draft.reason == "no answer given":
            draft.reason = None
    return drafts
