"""`explain`: the teacher writes a short rationale for the missed item, to distil its reasoning.

The new example is the missed item with the rationale in its target. Where the answer is read
from the last line (numeric items, `#### N`) the rationale comes first, as in chain of thought;
where the student's first tokens are scored as the answer (labels, choice letters, short text),
the answer comes first and the rationale follows it, so the scored tokens stay the answer.
"""

from __future__ import annotations

import re

from magister.exams.prompt import question_text
from magister.teach.strategies.base import Draft, Job, Mined, per_item_jobs, system_prompt
from magister.types import Item, Message

name = "explain"


def jobs(mined: list[Mined], seed: list[Item], k: int, show_wrong: bool) -> list[Job]:
    return per_item_jobs(name, mined, 1, show_wrong)  # one rationale per missed item


def prompt(job: Job) -> list[Message]:
    item = job.mined.item
    text = f"Input: {question_text(item)}\nCorrect answer: {item.reference}\n"
    if job.show_wrong:
        text += f"A student answered: {job.mined.wrong.strip() or '(nothing)'}\n"
    text += (f"\nIn one or two sentences, explain why the correct answer is '{item.reference}'"
             + (" and not the student's answer" if job.show_wrong else "")
             + f". Then write a last line 'Answer: {item.reference}'.")
    return [Message(role="system", content=system_prompt(item)), Message(role="user", content=text)]


def read(text: str, job: Job) -> list[Draft]:
    item = job.mined.item
    rationale = re.split(r"^\s*answer\s*:", text, flags=re.I | re.M)[0].strip()
    reason = None
    if len(rationale.split()) < 4:
        reason = "no rationale"
    elif not re.search(rf"answer\s*:\s*\**\s*{re.escape(item.reference)}\b", text, flags=re.I):
        reason = f"rationale does not end with the answer '{item.reference}'"
    return [Draft(input=item.input, reference=item.reference, strategy=name, source=item.id,
                  rationale=" ".join(rationale.split()), reason=reason)]
