"""Judged graders: a judge model decides what no regex can.

- `match`: does the response give the same answer as the reference? P(yes) / (P(yes) + P(no))
  from the judge's log-probabilities when the backend scores choices, a parsed verdict
  otherwise.
- `checklist` (RocketEval, TICK): the judge writes 2-8 yes/no questions per item from the
  question and reference (or uses the item's own `checklist`), answers each in its own call,
  and the score is the weighted mean of the P(yes) values.
- `rubric`: a 1..N score against a rubric; the expected score over the score tokens'
  probabilities when available, the parsed digit otherwise; normalised to [0, 1].
- `pairwise`: response A vs B on the same instruction, judged in both orders; when the two
  orders disagree the verdict is a tie and the pair counts as a flip.

Every call goes through the store's response cache, so a judged run is reproducible and a
re-run costs nothing. Each Grade keeps the judge's raw output (`raw`) and a readable
`rationale`.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from magister.cache import ask
from magister.graders.deterministic import rules_match
from magister.judges import prompts
from magister.judges.calibrate import Calibration, features
from magister.models.base import Model
from magister.store import Store
from magister.types import Answer, Completion, Grade, Item, Message, Request

JUDGED = ("match", "checklist", "rubric")
YES, NO = ("yes", "Yes"), ("no", "No")
_YES_NO = re.compile(r"\b(yes|no)\b", re.I)
_CHECK_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])?\s*(.+\?)\s*$")
FALLBACK_CHECKLIST = ["Does the response answer the question that was asked?",
                     "Does the response agree with the reference answer?"]


@dataclass
class Usage:
    """What the judge cost: model calls (cache misses), tokens in and out, seconds; and, with the cascade,
    how many answers the rules settled without a judge call."""

    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    judged: int = 0  # answers that reached the judge (`match`)
    settled: int = 0  # answers the rules settled first (`match` with the cascade)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairVerdict:
    """A pairwise judgment in both orders.

    `winner` needs both orders to agree (a tie when they do not). `debiased` compares the two
    orders' log-odds instead: with l1 = logit P(first | a shown first) and l2 = logit P(first |
    b shown first), a judge with a position bias beta adds beta to both, so (l1 - l2) / 2 is
    the evidence for a with the bias cancelled (as PriDe divides out a position prior), and
    a consistent lean survives even when the judge picks the first position every time.
    """

    winner: str  # "a", "b" or "tie" (the two orders disagreed)
    p_a: float  # mean over both orders of P(response a is better)
    flipped: bool
    parsed: bool
    raw: str
    debiased: str = "tie"  # "a" or "b" by the sign of (l1 - l2) / 2; "tie" when it is 0 or unreadable
    p_first: tuple[float, float] | None = None  # P(first shown is better) in order (a, b) and in order (b, a)


@dataclass
class Judge:
    """A judge model, the store that caches its calls, and whether prompts carry the injection defences."""

    model: Model
    store: Store
    guarded: bool = True
    usage: Usage = field(default_factory=Usage)
    calibration: Calibration | None = None  # `match`, `rubric`: verdicts from a fitted calibration
    cascade: bool = False  # `match`: answers the deterministic rules accept are right without a judge call
    calibrate_choices: bool = False  # `match`: divide out the judge's content-free P(yes) (magister.contextual)
    _prior_yes: float | None = None
    on_calls: Callable[[int], None] | None = None  # progress: called with the number of calls just finished

    # -- calls --------------------------------------------------------------------------

    def _run(self, conversations: Sequence[list[Message]], choices: list[str] | None,
             max_tokens: int) -> list[Completion]:
        use = choices if self.model.supports_choices else None
        requests = [Request(messages=m, choices=use, max_tokens=max_tokens, temperature=0.0, seed=0)
                    for m in conversations]
        out: list[Completion] = []
        for start in range(0, len(requests), self.model.batch_size):
            chunk = requests[start:start + self.model.batch_size]
            began = time.perf_counter()
            _, completions, hits = ask(self.model, self.store, chunk)
            self.usage.seconds += time.perf_counter() - began
            self.usage.cached += hits
            self.usage.calls += len(chunk) - hits
            for c in completions:
                if not c.cached:
                    self.usage.prompt_tokens += c.prompt_tokens
                    self.usage.completion_tokens += c.completion_tokens
            out += completions
            if self.on_calls is not None:
                self.on_calls(len(chunk))
        return out

    def yes_probabilities(self, conversations: Sequence[list[Message]]) -> list[tuple[float | None, str]]:
        """P(yes) for each conversation (None when the verdict could not be read), and the raw output."""
        out = []
        for c in self._run(conversations, [*YES, *NO], max_tokens=8):
            if c.choice_logprobs:
                yes = sum(math.exp(c.choice_logprobs[t]) for t in YES if t in c.choice_logprobs)
                no = sum(math.exp(c.choice_logprobs[t]) for t in NO if t in c.choice_logprobs)
                out.append((yes / (yes + no) if yes + no > 0 else None, json.dumps(c.choice_logprobs)))
            else:
                found = _YES_NO.search(c.text)
                out.append((None if found is None else float(found.group(1).lower() == "yes"), c.text))
        return out

    def scores(self, conversations: Sequence[list[Message]], scale: int,
               explain: bool = False) -> list[tuple[float | None, str]]:
        """Expected rubric score in 1..scale for each conversation (None when unreadable), and the raw output.

        `explain`: the judge writes a rationale first and the score is read from its last 'Score: N'.
        """
        digits = [str(s) for s in range(1, scale + 1)]
        pattern = re.compile(rf"\b([1-{scale}])\b")
        out = []
        completions = self._run(conversations, None if explain else digits, max_tokens=256 if explain else 8)
        for c in completions:
            if c.choice_logprobs:
                weights = {int(d): math.exp(lp) for d, lp in c.choice_logprobs.items()}
                total = sum(weights.values())
                out.append((sum(s * w for s, w in weights.items()) / total if total > 0 else None,
                            json.dumps(c.choice_logprobs)))
            else:
                found = re.findall(rf"score\W*([1-{scale}])\b", c.text, re.I) if explain else []
                first = pattern.search(c.text)
                value = found[-1] if found else (first.group(1) if first else None)
                out.append((None if value is None else float(value), c.text))
        return out

    # -- graders --------------------------------------------------------------------------

    def match(self, items: Sequence[Item], answers: Sequence[Answer]) -> list[Grade]:
        pairs = list(zip(items, answers, strict=True))
        settled = [self.cascade and rules_match(i.reference, a.text) for i, a in pairs]
        todo = [(i, a) for (i, a), done in zip(pairs, settled) if not done]
        verdicts = iter(self.yes_probabilities([prompts.match(i.input, i.reference, a.text, self.guarded)
                                                for i, a in todo]))
        self.usage.judged += len(todo)
        self.usage.settled += len(pairs) - len(todo)
        grades = []
        for (item, answer), done in zip(pairs, settled):
            if done:
                grades.append(Grade(item_id=item.id, grader="match", score=1.0, correct=True, extracted="yes",
                                    rationale="settled by the rules (the reference is in the answer), no judge call"))
                continue
            p, raw = next(verdicts)
            if self.calibrate_choices and p is not None:
                p = _divide_prior(p, self.prior_yes())
            grade = _yes_grade(item, "match", p, raw)
            if self.calibration is not None and p is not None:
                grade = self._calibrated(grade, item, answer, p, f"P(yes) = {p:.3f}")
            grades.append(grade)
        return self._screened(grades, answers)

    def _calibrated(self, grade: Grade, item: Item, answer: Answer, p: float, said: str) -> Grade:
        """The grade with the calibration's verdict: its probability as the score, right when over its cut."""
        assert self.calibration is not None
        right, probability = self.calibration.decide(features(item.reference, answer.text, p))
        return grade.model_copy(update={
            "score": probability, "correct": right, "extracted": "yes" if right else "no",
            "rationale": f"{said}; calibrated ({self.calibration.method}): {probability:.3f} "
                         f"{'>=' if right else '<'} {self.calibration.threshold:.3f}"})

    def prior_yes(self) -> float:
        """The judge's mean P(yes) on content-free match prompts (every slot 'N/A', '' or '[MASK]')."""
        if self._prior_yes is None:
            from magister.contextual import CONTENT_FREE

            free = [p for p, _ in self.yes_probabilities([prompts.match(t, t, t, self.guarded) for t in CONTENT_FREE])
                    if p is not None]
            self._prior_yes = sum(free) / len(free) if free else 0.5
        return self._prior_yes

    def checklists(self, items: Sequence[Item]) -> list[tuple[list[str], bool]]:
        """Each item's checklist, and whether it came from the judge (False: given with the item, or fallback)."""
        todo = [i for i in items if not i.checklist]
        written = self._run([prompts.write_checklist(i.input, i.reference or None) for i in todo], None,
                            max_tokens=200)
        parsed = {item.id: parse_checklist(c.text) for item, c in zip(todo, written)}
        out = []
        for item in items:
            if item.checklist:
                out.append((list(item.checklist), False))
            else:
                questions = parsed[item.id]
                out.append((questions, True) if questions else (FALLBACK_CHECKLIST, False))
        return out

    def checklist(self, items: Sequence[Item], answers: Sequence[Answer],
                  weights: Sequence[float] | None = None) -> list[Grade]:
        lists = self.checklists(items)
        conversations, owner = [], []
        for n, ((questions, _), item, answer) in enumerate(zip(lists, items, answers, strict=True)):
            for q in questions:
                conversations.append(prompts.checklist_question(item.input, answer.text, q, self.guarded))
                owner.append(n)
        verdicts = self.yes_probabilities(conversations)
        grades = []
        for n, ((questions, written), item) in enumerate(zip(lists, items)):
            mine = [v for v, o in zip(verdicts, owner) if o == n]
            readable = [p for p, _ in mine if p is not None]
            w = list(weights[:len(questions)]) if weights else [1.0] * len(questions)
            pairs = [(p, wi) for (p, _), wi in zip(mine, w) if p is not None]
            score = sum(p * wi for p, wi in pairs) / sum(wi for _, wi in pairs) if pairs else 0.0
            lines = [f"{'?' if p is None else f'{p:.2f}'}  {q}" for q, (p, _) in zip(questions, mine)]
            grades.append(Grade(item_id=item.id, grader="checklist", score=score, correct=score >= 0.5,
                                parsed=len(readable) == len(questions), rationale="\n".join(lines),
                                raw=json.dumps({"checklist": questions, "written_by_judge": written,
                                                "p_yes": [p for p, _ in mine], "raw": [r for _, r in mine]})))
        return self._screened(grades, answers)

    def rubric(self, items: Sequence[Item], answers: Sequence[Answer], scale: int = 5,
               text: str = prompts.DEFAULT_RUBRIC, explain: bool = False) -> list[Grade]:
        scores = self.scores([prompts.rubric(i.input, i.reference or None, a.text, scale, text, self.guarded, explain)
                              for i, a in zip(items, answers, strict=True)], scale, explain)
        grades = []
        for item, answer, (s, raw) in zip(items, answers, scores):
            norm = 0.0 if s is None else (s - 1) / (scale - 1)
            # right = at least half a point above the scale's midpoint (4 and 5 of 5)
            grade = Grade(item_id=item.id, grader="rubric", score=norm, correct=None if s is None else
                          s >= (scale + 1) / 2 + 0.5, extracted=None if s is None else f"{s:.2f}",
                          parsed=s is not None, rationale=None if s is None else f"expected score {s:.2f}/{scale}",
                          raw=raw)
            if self.calibration is not None and s is not None:
                grade = self._calibrated(grade, item, answer, norm, f"expected score {s:.2f}/{scale}")
            grades.append(grade)
        return self._screened(grades, answers)

    def _screened(self, grades: list[Grade], answers: Sequence[Answer]) -> list[Grade]:
        """Say in each grade's rationale what the screen cut from its answer before the judge saw it."""
        if not self.guarded:
            return grades
        out = []
        for grade, answer in zip(grades, answers, strict=True):
            cut = prompts.screen(answer.text)[1]
            if cut:
                note = f"text addressed to the grader was removed before judging: {cut[:200]!r}"
                grade = grade.model_copy(update={"rationale": f"{grade.rationale}\n{note}" if grade.rationale else note})
            out.append(grade)
        return out

    def pairwise(self, pairs: Sequence[tuple[str, str, str]]) -> list[PairVerdict]:
        """(instruction, response a, response b) -> verdicts, judging both orders."""
        conversations = []
        for instruction, a, b in pairs:
            conversations += [prompts.pairwise(instruction, a, b, self.guarded),
                              prompts.pairwise(instruction, b, a, self.guarded)]
        picks = self._run(conversations, ["A", "B"], max_tokens=8)
        verdicts = []
        for n in range(len(pairs)):
            first, second = picks[2 * n], picks[2 * n + 1]
            p1, p2 = _p_first(first), _p_first(second)  # P(first-shown is better)
            if p1 is None or p2 is None:
                verdicts.append(PairVerdict("tie", 0.5, False, False, json.dumps([first.text, second.text])))
                continue
            p_a = (p1 + (1 - p2)) / 2
            a_first, a_second = p1 > 0.5, (1 - p2) > 0.5
            winner = ("a" if a_first else "b") if a_first == a_second else "tie"
            evidence = (_logit(p1) - _logit(p2)) / 2
            debiased = "a" if evidence > 0 else "b" if evidence < 0 else "tie"
            raw = json.dumps([first.choice_logprobs or first.text, second.choice_logprobs or second.text])
            verdicts.append(PairVerdict(winner, p_a, a_first != a_second, True, raw, debiased, (p1, p2)))
        return verdicts


def position_bias(verdicts: Sequence[PairVerdict]) -> float | None:
    """Mean P(the first-shown response is better) over both orders of every readable pair; 0.5 is unbiased."""
    shown = [p for v in verdicts if v.p_first for p in v.p_first]
    return sum(shown) / len(shown) if shown else None


def _logit(p: float, eps: float = 1e-6) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))


def _divide_prior(p: float, prior: float) -> float:
    """P(yes) with the content-free prior divided out: odds(p) / odds(prior), back to a probability."""
    prior = min(max(prior, 1e-6), 1 - 1e-6)
    yes, no = p / prior, (1 - p) / (1 - prior)
    return yes / (yes + no)


def _p_first(c: Completion) -> float | None:
    if c.choice_logprobs:
        a, b = math.exp(c.choice_logprobs.get("A", -math.inf)), math.exp(c.choice_logprobs.get("B", -math.inf))
        return a / (a + b) if a + b > 0 else None
    found = re.search(r"\b([AB])\b", c.text)
    return None if found is None else float(found.group(1) == "A")


def _yes_grade(item: Item, grader: str, p: float | None, raw: str) -> Grade:
    if p is None:
        return Grade(item_id=item.id, grader=grader, score=0.0, correct=False, parsed=False,
                     rationale="verdict unreadable", raw=raw)
    return Grade(item_id=item.id, grader=grader, score=p, correct=p >= 0.5, extracted="yes" if p >= 0.5 else "no",
                 rationale=f"P(yes) = {p:.3f}", raw=raw)


def parse_checklist(text: str) -> list[str]:
    """Up to 8 distinct yes/no questions, one per line (numbering and bullets stripped)."""
    questions: list[str] = []
    for line in text.splitlines():
        found = _CHECK_LINE.match(line)
        if found and found.group(1) not in questions and len(found.group(1)) > 8:
            questions.append(found.group(1).strip())
    return questions[:8] if len(questions) >= 2 else []
