"""Contextual calibration of constrained choice (Zhao et al., 2021, "Calibrate Before Use").

A small model scored on a closed answer set carries a prior over the answers that has little to
do with the input: the labels' own frequency in pretraining, the last worked example, the
first option. Zhao et al. measure that prior by asking the same prompt with a content-free
input ("N/A", "", "[MASK]") and divide it out: the calibrated score of answer c is
log p(c | x) - log p_cf(c), with p_cf the content-free probabilities (renormalised over the
answers, averaged over the content-free inputs). The answer is the best calibrated score.

`sit(..., calibrate_choices=True)` applies it to every item scored by constrained choice: one
extra set of requests per distinct prompt shape (kind and answer set), served from the cache
after the first run; the run's config records it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from magister.types import Answer, Item, Request

CONTENT_FREE = ("N/A", "", "[MASK]")


def prior(item: Item, ask_choices: Callable[[list[Request]], list[dict[str, float]]],
          build: Callable[[Item], Request]) -> dict[str, float]:
    """The content-free probability of each candidate: the item's prompt with its input replaced by each
    content-free text, each scored distribution renormalised, then averaged."""
    scored = ask_choices([build(item.model_copy(update={"input": text})) for text in CONTENT_FREE])
    candidates = list(item.candidates or [])
    mean = {c: 0.0 for c in candidates}
    for logprobs in scored:
        top = max(logprobs[c] for c in candidates)
        total = sum(math.exp(logprobs[c] - top) for c in candidates)
        for c in candidates:
            mean[c] += math.exp(logprobs[c] - top) / total / len(scored)
    return mean


def recalibrate(answer: Answer, content_free: dict[str, float]) -> Answer:
    """The answer with its choice log-probabilities divided by the content-free prior (and renormalised),
    and the best calibrated candidate as its text."""
    if not answer.choice_logprobs:
        return answer
    shifted = {c: lp - math.log(max(content_free.get(c, 1.0), 1e-12)) for c, lp in answer.choice_logprobs.items()}
    top = max(shifted.values())
    norm = top + math.log(sum(math.exp(v - top) for v in shifted.values()))
    calibrated = {c: v - norm for c, v in shifted.items()}
    return answer.model_copy(update={"choice_logprobs": calibrated, "text": max(calibrated, key=calibrated.__getitem__)})


__all__ = ["CONTENT_FREE", "prior", "recalibrate"]
