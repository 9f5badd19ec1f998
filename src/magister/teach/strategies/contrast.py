"""`contrast`: new inputs of the label a person gave that a reader could mistake for the student's answer.

For an error with human label y and student answer ŷ, the teacher is shown seed examples of
both labels (and what each label means, when the config has `label_descriptions`) and writes
inputs whose label is y but that sit near ŷ: the boundary the student got wrong, drawn on the
right side. The label is the human's; the teacher only writes. Writing an input for a given
label is what a small teacher does well; classifying is not (see the teaching benchmark).

Items without a fixed answer set (numbers, free text) have no ŷ to contrast with: there the
strategy asks for new examples like the missed one, as `similar` does.
"""

from __future__ import annotations

import random

from magister.exams.prompt import question_text
from magister.teach.strategies.base import Job, Mined, fixed_answer, read_blocks, system_prompt
from magister.types import Item, Message

name = "contrast"
SHOWN = 3  # seed examples of each of the two labels


def jobs(mined: list[Mined], seed: list[Item], k: int, show_wrong: bool) -> list[Job]:
    out = []
    for m in mined:
        rng = random.Random(m.item.id)
        of_label = [s for s in seed if s.id != m.item.id and s.reference == m.item.reference]
        of_wrong = [s for s in seed if s.id != m.item.id and s.reference == m.wrong.strip()]
        out.append(Job(strategy=name, mined=m, k=k, show_wrong=True, label=m.item.reference,
                       labels=tuple(m.item.labels or ()),
                       examples=tuple(rng.sample(of_label, min(SHOWN, len(of_label)))),
                       contrast=tuple(rng.sample(of_wrong, min(SHOWN, len(of_wrong))))))
    return out


def prompt(job: Job) -> list[Message]:
    item, wrong = job.mined.item, job.mined.wrong.strip()
    if not fixed_answer(item) or not wrong or wrong == item.reference:
        lines = [f"Input: {question_text(item)}", f"Answer: {item.reference}", "",
                 f"Write {job.k} new examples of the same kind and difficulty, each as a line 'Input: ...' followed "
                 "by a line 'Answer: ...'."]
        return [Message(role="system", content=system_prompt(item)), Message(role="user", content="\n".join(lines))]
    return boundary_prompt(job, item.reference, wrong)


def boundary_prompt(job: Job, gold: str, wrong: str) -> list[Message]:
    """Ask for inputs of `job.label` that a careless reader could mistake for the other label of the pair
    (gold, wrong): seed examples of both (`job.examples` of the asked label, `job.contrast` of the other),
    what each means, and the input the student got wrong. `contrast` asks for the gold side; `pairs`
    also for the wrong side."""
    item, asked = job.mined.item, job.label
    other = wrong if asked == gold else gold
    meaning = dict(job.descriptions)
    lines = []
    for label, shown in ((asked, job.examples), (other, job.contrast)):
        about = f" ({meaning[label]})" if label in meaning else ""
        lines.append(f"Examples labelled '{label}'{about}:")
        lines += [f"Input: {question_text(s)}" for s in shown] or ["(none)"]
        lines.append("")
    lines += [f"This input is labelled '{gold}', but a student model took it for '{wrong}':",
              f"Input: {question_text(item)}", "",
              f"Write {job.k} new, different inputs whose correct label is '{asked}' and that a careless "
              f"reader could mistake for '{other}'. Each must clearly be '{asked}' by the examples above. "
              "Write each on one line starting with 'Input: '."]
    return [Message(role="system", content=system_prompt(item)), Message(role="user", content="\n".join(lines))]

read = read_blocks
