"""`new`: fresh examples for the answers the student misses most, not tied to one missed item.

Each mined item asks for examples of its answer (so labels with more errors get more of
them), shown a few seed examples of that answer as a style guide instead of the missed item.
"""

from __future__ import annotations

import random

from magister.exams.prompt import question_text
from magister.teach.strategies.base import Draft, Job, Mined, fixed_answer, read_blocks, system_prompt
from magister.types import Item, Message

name = "new"


def jobs(mined: list[Mined], seed: list[Item], k: int, show_wrong: bool) -> list[Job]:
    out = []
    for m in mined:
        pool = [s for s in seed if s.id != m.item.id and (s.reference == m.item.reference or not fixed_answer(m.item))]
        shown = tuple(random.Random(m.item.id).sample(pool, min(3, len(pool))))
        out.append(Job(strategy=name, mined=m, k=k, show_wrong=False, label=m.item.reference, examples=shown,
                       labels=tuple(m.item.labels or ())))
    return out


def prompt(job: Job) -> list[Message]:
    item = job.mined.item
    shown = "\n".join(f"Input: {question_text(s)}" + ("" if fixed_answer(item) else f"\nAnswer: {s.reference}")
                      for s in job.examples)
    if fixed_answer(item):
        text = (f"Examples whose answer is '{job.label}':\n{shown}\n\nWrite {job.k} new, different inputs whose "
                f"answer is '{job.label}'. Write each on one line starting with 'Input: '.")
    else:
        text = (f"Examples:\n{shown}\n\nWrite {job.k} new, different examples like these, each as a line "
                "'Input: ...' followed by a line 'Answer: ...'.")
    return [Message(role="system", content=system_prompt(item)), Message(role="user", content=text)]


def read(text: str, job: Job) -> list[Draft]:
    drafts = read_blocks(text, job)
    for draft in drafts:
        if draft.reason == "copies the mined item":  # the mined item was not shown: a copy is a duplicate
            draft.reason = None
    return drafts
