"""Keep a new example only if an independent answer agrees with the answer it was written for.

The verifier (the teacher unless another model is named) sits each new example as an exam
item, shown a few seed examples as worked examples, without seeing the intended answer:
- `teacher`: one answer (constrained choice where the backend scores closed answer sets);
- `majority`: `samples` sampled answers; kept when more than half are right.
Rejections carry the verifier's answer, so the report can show what was thrown away and why.

Before it is trusted, the verifier sits labelled seed items it was not shown (`check`), and
must beat a bar on them (the 95% lower bound of its accuracy above it): in a teaching run the
out-of-fold student's accuracy (a verifier worse than the student would overrule a better
classifier), elsewhere, or with `verify_gate: majority`, always giving the most common answer.
A verifier that fails may still **veto**: its disagreement rejects a draft only at a confidence
(its probability for its own answer, from choice scores) at or above `veto_at`, the lowest at
which its precision on the seed items reaches the bar; below that its answer is ignored. A
verifier with no such confidence is not used at all, and the report says so.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from magister.cache import ask
from magister.errors import ConfigError
from magister.exams.prompt import build_request
from magister.graders import auto
from magister.models.base import Model
from magister.sit import answer_from
from magister.store import Store

from magister.stats import wilson
from magister.synth.drafts import Draft
from magister.types import Exam, Item, Kind


def confidence(scores: dict[str, float] | None) -> float | None:
    """The probability of the best-scored answer among the closed set (softmax of the choice log-probabilities)."""
    if not scores:
        return None
    top = max(scores.values())
    return 1.0 / sum(math.exp(v - top) for v in scores.values())


class Neighbours:
    """The `k` labelled items nearest a text vote for its label, each with weight exp(similarity / temperature).

    `similarity(text, others)` gives one score per other text (default: cosine similarity of the embedded
    SmolLM2's mean-pooled embeddings, `magister.synth.dedupe.embedding_similarity`). An item never votes on its own
    text (`skip`), so checking it on the seed it votes with is leave-one-out."""

    def __init__(self, items: Sequence[Item], similarity: Callable[[str, Sequence[str]], np.ndarray] | None = None,
                 k: int = 5, temperature: float = 0.05) -> None:
        if any(i.kind is not Kind.classification for i in items):
            raise ConfigError("verify: neighbours checks closed labels; these items are not classification items")
        if similarity is None:
            from magister.synth.dedupe import embedding_similarity

            similarity = embedding_similarity()
        self.items, self.similarity, self.k, self.temperature = list(items), similarity, k, temperature
        self.labels = sorted({label for i in self.items for label in (i.labels or [i.reference])})

    def scores(self, text: str, skip: str | None = None) -> dict[str, float]:
        """Log vote share per label (smoothed, so every label has one), like a model's choice log-probabilities."""
        voters = [i for i in self.items if i.id != skip]
        weights = dict.fromkeys(self.labels, 0.0)
        if voters:
            near = np.asarray(self.similarity(text, [i.input for i in voters]), dtype=float)
            for index in np.argsort(-near, kind="stable")[:self.k]:
                weights[voters[index].reference] += math.exp((near[index] - near.max()) / self.temperature)
        total = sum(weights.values()) + 1e-3 * len(weights)
        return {label: math.log((w + 1e-3) / total) for label, w in weights.items()}


def _judge(draft: Draft, item: Item, said: str, agrees: bool, sure: float | None,
           veto_at: float | None, keep_at: float | None) -> None:
    """Record the verifier's verdict on a draft and reject it where the verdict counts (see `verify`)."""
    draft.extra["verifier"] = {"answer": said, "confidence": sure, "agrees": agrees}
    if agrees and keep_at is not None and (sure is None or sure < keep_at):
        draft.reason = (f"verifier agreed at confidence {sure if sure is not None else 0:.2f}, below "
                        f"{keep_at:.2f}: not precise enough there to trust the label")
    if not agrees:
        if veto_at is not None and (sure is None or sure < veto_at):
            return  # a disagreement below the calibrated confidence is not a veto
        shown = f" (confidence {sure:.2f})" if sure is not None else ""
        draft.reason = f"verifier answered '{said}'{shown}, intended '{item.reference}'"


def verify(drafts: list[tuple[Draft, Item]], verifier: Model | Neighbours, store: Store, mode: str, samples: int,
           shots: list[Item], on_calls: Callable[[int], None] | None = None,
           veto_at: float | None = None, keep_at: float | None = None) -> tuple[int, int]:
    """Set `reason` on drafts the verifier disagrees with; returns (verifier calls, tokens).

    With `veto_at`, a disagreement rejects a draft only when the verifier's confidence in its own answer is
    at least `veto_at`. With `keep_at` (selective labelling), an agreement keeps a draft only at a confidence of
    at least `keep_at`: the label is used only where the verifier is measured to be precise enough. Every
    verdict is kept in `draft.extra["verifier"]`. `on_calls` (progress) is called
    with the number of verifier requests each batch finished."""
    todo = [(d, item) for d, item in drafts if d.reason is None and not d.replay]
    if mode == "off" or not todo:
        return 0, 0
    if isinstance(verifier, Neighbours):  # `neighbours`: no model call
        for draft, item in todo:
            scores = verifier.scores(item.input, skip=item.id)
            said = max(scores, key=lambda label: scores[label])
            _judge(draft, item, said, said == item.reference, confidence(scores), veto_at, keep_at)
        if on_calls is not None:
            on_calls(len(todo))
        return 0, 0
    assert isinstance(verifier, Model)
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
        answered = [(c, auto(item, answer_from(item, key, c))) for key, c in completions[position:position + len(plan)]]
        position += len(plan)
        grades = [g for _, g in answered]
        right = sum(bool(g.correct) for g in grades)
        sure = confidence(answered[0][0].choice_logprobs) if mode == "teacher" else None
        said = ", ".join(sorted({str(g.extracted) for g in grades}))
        _judge(draft, item, said, right * 2 > len(grades), sure, veto_at, keep_at)
    return calls, tokens


@dataclass(frozen=True)
class Check:
    """How the verifier did on labelled seed items, against the bar it must beat (the out-of-fold student's
    accuracy, or always giving the most common answer), and from what confidence it may veto."""

    n: int
    correct: int
    accuracy: float
    ci_low: float
    majority: float
    trusted: bool
    calls: int
    tokens: int
    bar: float = 0.0
    bar_name: str = "the most common answer"
    veto_at: float | None = None  # lowest confidence at which its precision on the seed reaches the bar
    by_label: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> answered, precision, recall
    verifier: str = ""  # who checked: a model spec, or the nearest seed items

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def role(self) -> str:
        """'trusted', 'veto only' or 'not used': what its verdicts do."""
        return "trusted" if self.trusted else "veto only" if self.veto_at is not None else "not used"


def check_verifier(verifier: Model | Neighbours, store: Store, seed: list[Item], shots: list[Item], limit: int = 60,
          bar: float | None = None, least: int = 10) -> Check:
    """The verifier answers up to `limit` seed items not among its worked examples (`Neighbours`: every seed item,
    leave-one-out); trusted when the 95% lower bound of its accuracy beats `bar` (default: the most-common-answer
    rate). Also finds `veto_at`: the lowest confidence c such that its precision on the (at least `least`) items
    answered with confidence >= c is at least the bar."""
    if isinstance(verifier, Neighbours):
        shots, limit = [], len(seed)
    shown = {s.id for s in shots}
    items = [i for i in seed if i.id not in shown][:limit]
    drafts = [(Draft(input=i.input, reference=i.reference, strategy="check", source=i.id), i) for i in items]
    calls, tokens = verify(drafts, verifier, store, "neighbours" if isinstance(verifier, Neighbours) else "teacher",
                           1, shots)
    correct = sum(d.reason is None for d, _ in drafts)
    n = max(len(items), 1)
    majority = max(Counter(i.reference for i in items).values(), default=0) / n
    threshold = majority if bar is None else bar
    low, _ = wilson(correct, n)
    sure = sorted(((d.extra["verifier"]["confidence"], d.reason is None) for d, _ in drafts
                   if d.extra.get("verifier", {}).get("confidence") is not None), key=lambda x: -x[0])
    veto_at, right = None, 0
    for number, (level, ok) in enumerate(sure, start=1):
        right += ok
        boundary = number == len(sure) or sure[number][0] < level  # every item at this confidence counted
        if boundary and number >= least and right / number >= threshold:
            veto_at = level
    by_label = {}
    for label in sorted({i.reference for i in items} | {str(d.extra.get("verifier", {}).get("answer")) for d, _ in drafts}):
        answered = [(d, i) for d, i in drafts if d.extra.get("verifier", {}).get("answer") == label]
        gold = [(d, i) for d, i in drafts if i.reference == label]
        by_label[label] = {"answered": len(answered),
                           "precision": sum(i.reference == label for _, i in answered) / len(answered) if answered else None,
                           "recall": sum(d.reason is None for d, _ in gold) / len(gold) if gold else None}
    return Check(n=len(items), correct=correct, accuracy=correct / n, ci_low=low, majority=majority,
                 trusted=bool(low > threshold), calls=calls, tokens=tokens, bar=threshold,
                 bar_name="the most common answer" if bar is None else "the out-of-fold student",
                 veto_at=None if low > threshold else veto_at, by_label=by_label,
                 verifier=verifier.spec if isinstance(verifier, Model) else
                 f"the {verifier.k} nearest seed items in embedding space")
