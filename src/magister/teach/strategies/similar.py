"""`similar` (LLM2LLM): new examples like the one the student missed, with the same answer.

Unlike the LLM2LLM code, the teacher also sees the student's wrong answer (`show_wrong_answer`),
so it can write examples that separate the right answer from the one the student gave.
"""

from __future__ import annotations

from magister.exams.prompt import question_text
from magister.teach.strategies.base import Job, Mined, fixed_answer, per_item_jobs, read_blocks, system_prompt
from magister.types import Item, Message

name = "similar"


def jobs(mined: list[Mined], seed: list[Item], k: int, show_wrong: bool) -> list[Job]:
    return per_item_jobs(name, mined, k, show_wrong)


def prompt(job: Job) -> list[Message]:
    item = job.mined.item
    lines = ["Here is an example a student model got wrong.", f"Input: {question_text(item)}",
             f"Correct answer: {item.reference}"]
    if job.show_wrong:
        lines.append(f"The student answered: {job.mined.wrong.strip() or '(nothing)'}")
    lines.append("")
    if fixed_answer(item):
        ask = f"Write {job.k} new inputs on a similar topic and in a similar style whose correct answer is also " \
              f"'{item.reference}'"
        if job.show_wrong:
            ask += f", and that make clear why the answer is '{item.reference}' and not '{job.mined.wrong.strip()}'"
        lines.append(ask + ". Write each on one line starting with 'Input: '.")
    else:
        lines.append(f"Write {job.k} new examples of the same kind and difficulty, each as a line 'Input: ...' "
                     "followed by a line 'Answer: ...'.")
    return [Message(role="system", content=system_prompt(item)), Message(role="user", content="\n".join(lines))]


read = read_blocks
