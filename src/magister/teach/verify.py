"""Keep a new example only if an independent answer agrees with the answer it was written for.

The verifier (the teacher unless another model is named) sits each new example as an exam
item, shown a few seed examples as worked examples, without seeing the intended answer:
- `teacher`: one answer (constrained choice where the backend scores closed answer sets);
- `majority`: `samples` sampled answers; kept when more than half are right.
Rejections carry the verifier's answer, so the report can show what was thrown away and why.

Before it is trusted, the verifier sits labelled seed items it was not shown (`check`): a
verifier no better than always giving the most common answer would only throw away examples
at random (the embedded 135M model, asked to classify, mostly repeats the first label), so
its verdicts are then not used, and the report says so.
"""

from __future__ import annotations

from magister.cache import ask
from magister.exams.prompt import build_request
from magister.graders import auto
from magister.models.base import Model
from magister.sit import answer_from
from magister.store import Store
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from magister.stats import wilson
from magister.teach.strategies import Draft
from magister.types import Exam, Item


def verify(drafts: list[tuple[Draft, Item]], verifier: Model, store: Store, mode: str, samples: int,
           shots: list[Item], on_calls: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Set `reason` on drafts the verifier disagrees with; returns (verifier calls, tokens).

    `on_calls` (progress) is called with the number of verifier requests each batch finished."""
    todo = [(d, item) for d, item in drafts if d.reason is None and not d.replay]
    if mode == "off" or not todo:
        return 0, 0
    exam = Exam(name="verify", items=[item for _, item in todo], fewshot=shots)
    if mode == "teacher":
        plans = [[build_request(item, exam, use_choices=verifier.supports_choices)] for _, item in todo]
    else:
        plans = [[build_request(item, exam, use_choices=False).model_copy(update={"temperature": 0.7, "seed": s})
                  for s in range(1, samples + 1)] for _, item in todo]
    flat = [r for plan in plans for r in plan]
    calls = tokens = 0
    completions = []
    for begin in range(0, len(flat), verifier.batch_size):
        keys, done, _ = ask(verifier, store, flat[begin:begin + verifier.batch_size])
        completions.extend(zip(keys, done))
        calls += len(done)
        tokens += sum(c.prompt_tokens + c.completion_tokens for c in done)
        if on_calls is not None:
            on_calls(len(done))
    position = 0
    for (draft, item), plan in zip(todo, plans):
        grades = [auto(item, answer_from(item, key, c)) for key, c in completions[position:position + len(plan)]]
        position += len(plan)
        right = sum(bool(g.correct) for g in grades)
        if right * 2 <= len(grades):
            said = ", ".join(sorted({str(g.extracted) for g in grades}))
            draft.reason = f"verifier answered '{said}', intended '{item.reference}'"
    return calls, tokens


@dataclass(frozen=True)
class Check:
    """How the verifier did on labelled seed items, against always giving the most common answer."""

    n: int
    correct: int
    accuracy: float
    ci_low: float
    majority: float
    trusted: bool
    calls: int
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(verifier: Model, store: Store, seed: list[Item], shots: list[Item], limit: int = 60) -> Check:
    """The verifier answers up to `limit` seed items not among its worked examples; trusted when the
    95% lower bound of its accuracy beats the most-common-answer rate."""
    shown = {s.id for s in shots}
    items = [i for i in seed if i.id not in shown][:limit]
    drafts = [(Draft(input=i.input, reference=i.reference, strategy="check", source=i.id), i) for i in items]
    calls, tokens = verify(drafts, verifier, store, "teacher", 1, shots)
    correct = sum(d.reason is None for d, _ in drafts)
    n = max(len(items), 1)
    majority = max(Counter(i.reference for i in items).values(), default=0) / n
    low, _ = wilson(correct, n)
    return Check(n=len(items), correct=correct, accuracy=correct / n, ci_low=low, majority=majority,
                 trusted=bool(low > majority), calls=calls, tokens=tokens)
