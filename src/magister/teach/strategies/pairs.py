"""`pairs`: `contrast` from both sides of the boundary the student got wrong.

For an error with human label y and student answer ŷ, two teacher calls: new inputs of label y
that a reader could mistake for ŷ (as `contrast`), and new inputs of label ŷ that a reader could
mistake for y (the mirror). Both are labelled by the request, never by the teacher.

Why: `contrast` adds examples of the gold labels of the errors only. When the errors lean one way
(on SST-2, 13 of 17 out-of-fold errors were `positive` items read as `negative`), the added data
leans the same way and moves the student's prior with it: `negative` recall fell from 79% to 70%
on the exam (benchmarks/results/teach_sst2.json). Writing both sides of each confused pair keeps
the additions balanced over the two labels while still drawing the boundary where the errors are,
like counterfactually augmented data (Kaushik et al., 2020), which pairs each example with a
minimally different one of the other label.

Items without a fixed answer set have no ŷ to mirror: there it writes what `contrast` writes.
"""

from __future__ import annotations

from dataclasses import replace

from magister.teach.strategies import contrast
from magister.teach.strategies.base import Job, Mined, fixed_answer, read_blocks
from magister.types import Item, Message

name = "pairs"


def jobs(mined: list[Mined], seed: list[Item], k: int, show_wrong: bool) -> list[Job]:
    out = []
    for job in contrast.jobs(mined, seed, k, show_wrong):
        job = replace(job, strategy=name)
        out.append(job)
        wrong = job.mined.wrong.strip()
        if fixed_answer(job.mined.item) and wrong and wrong != job.label and wrong in job.labels:
            out.append(replace(job, label=wrong, examples=job.contrast, contrast=job.examples))  # the mirror
    return out


def prompt(job: Job) -> list[Message]:
    item = job.mined.item
    if job.label == item.reference:  # the gold side: exactly what `contrast` asks
        return contrast.prompt(job)
    return contrast.boundary_prompt(job, item.reference, job.mined.wrong.strip())


read = read_blocks
