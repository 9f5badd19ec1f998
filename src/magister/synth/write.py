"""`magister write`: the teacher writes a new exam from a few examples.

    like     labelled examples of the task (any exam file); the label set comes from all of them
    write    per label, calls of "here are 4 examples of label X; write 10 new, varied inputs of
             label X" (or Input/Answer pairs for numeric and free-form items), sampled with fixed
             seeds, so a rerun is served from the response cache
    parse    what small teachers really write: `Input:` / `Question:` lines, numbered or bulleted
             lists, quotes, bold, prose before and after; a call that yields nothing is a parse failure
    filter   empty or labelled-otherwise drafts; near-duplicates (ROUGE-L) of each other, of the
             examples and of earlier data; near-copies of `exclude` items (the test set): contamination
    verify   an independent answer (the teacher, another model, or the nearest labelled examples in
             embedding space: `neighbours`) must agree with the reference; the verifier is first checked
             on labelled examples it was not shown, and used only if it beats always giving the most
             common answer (or a student's accuracy: `verify_bar`)

Labels get their share of `n` evenly, or by `weights` (e.g. the labels a student misses most).
Labels short of their share after a pass get more calls, up to `passes` passes. Every
rejected draft is kept with its reason.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import Progress

from magister.cache import ask
from magister.errors import ConfigError
from magister.exams.load import pick_fewshot
from magister.exams.prompt import answer_text, question_text
from magister.models.base import Model
from magister.progress import progress_bar
from magister.store import Store
from magister.synth.contamination import Contamination, contamination_summary, ngrams
from magister.synth.dedupe import dedupe, rouge_similarity
from magister.synth.drafts import Draft, as_item, reason_kind
from magister.synth.verify import Neighbours, check_verifier, verify
from magister.types import Exam, Item, Kind, Message, Request

MARKER = re.compile(r"^\s*(?:\d+\s*[.):]|[-*\u2022]|#+)\s*")
FIELD = re.compile(r"^(?:\*\*)?(input|question|text|sentence|answer|label|category)(?:\*\*)?\s*\d*\s*[:\-]\s*(.*)$",
                   re.I)
TRAILING_LABEL = re.compile(r"\s*[\(\[]?\s*(?:answer|label|category|type)\s*[:=\-]\s*([^\)\]]*)[\)\]]?\s*$", re.I)


@dataclass
class Written:
    """What one `write` did: the kept items, every rejected draft with its reason, and the counts."""

    items: list[Item]
    drafts: list[Draft]
    calls: int = 0
    tokens: int = 0
    parse_failures: int = 0  # teacher calls from which no draft could be read
    targets: dict[str, int] = field(default_factory=dict)
    verifier: dict[str, Any] | None = None
    contamination: dict[str, Any] = field(default_factory=dict)

    @property
    def rejections(self) -> dict[str, int]:
        return dict(Counter(reason_kind(d.reason) for d in self.drafts if d.reason))

    def summary(self) -> dict[str, Any]:
        return {"kept": len(self.items), "drafts": len(self.drafts), "calls": self.calls, "tokens": self.tokens,
                "parse_failures": self.parse_failures, "rejections": self.rejections, "targets": self.targets,
                "kept_by_label": dict(Counter(i.reference for i in self.items)), "verifier": self.verifier,
                "contamination": self.contamination}

    def rejected(self) -> list[dict[str, Any]]:
        return [asdict(d) for d in self.drafts if d.reason]


def allocate(n: int, labels: Sequence[str], weights: dict[str, float] | None = None) -> dict[str, int]:
    """n items shared over the labels in proportion to `weights` (evenly without), largest remainder first."""
    raw = {label: max(float((weights or {}).get(label, 0.0 if weights else 1.0)), 0.0) for label in labels}
    total = sum(raw.values()) or float(len(labels))
    exact = {label: n * (raw[label] if sum(raw.values()) else 1.0) / total for label in labels}
    share = {label: math.floor(x) for label, x in exact.items()}
    for label in sorted(labels, key=lambda lab: exact[lab] - share[lab], reverse=True)[: n - sum(share.values())]:
        share[label] += 1
    return share


def parse_drafts(text: str, label: str | None) -> list[tuple[str, str | None]]:
    """(input, answer) pairs from a teacher's text; `label` fixes the answer (classification).

    Reads `Input:`/`Question:` fields (with `Answer:` on the same or the next line), numbered or
    bulleted list entries, and, when the text has neither, each line that is not prose ending
    in a colon. Quotes, bold and a trailing "(label: x)" are stripped.
    """
    pairs: list[list[str | None]] = []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    structured = any(MARKER.match(line) or FIELD.match(line) for line in lines)
    for line in lines:
        body = MARKER.sub("", line, count=1).strip() if MARKER.match(line) else line
        match = FIELD.match(body)
        if match:
            key, value = match.group(1).lower(), match.group(2).strip()
            if key in ("answer", "label", "category"):
                if pairs and pairs[-1][1] is None:
                    pairs[-1][1] = _clean(value)
                continue
            body = value
        elif structured and not MARKER.match(line):
            continue  # prose around a list
        if not body or body.endswith(":"):
            continue
        answer = None
        trailing = TRAILING_LABEL.search(body)
        if trailing and trailing.start() > 0:
            body, answer = body[:trailing.start()], _clean(trailing.group(1))
        pairs.append([_clean(body), answer])
    return [(str(text_), answer) for text_, answer in pairs if text_]


def _clean(text: str) -> str:
    text = text.strip().strip("*").strip()
    if len(text) >= 2 and text[0] in "\"'\u201c" and text[-1] in "\"'\u201d":
        text = text[1:-1].strip()
    return text


def _seed(*parts: object) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def prompt(like: list[Item], label: str | None, k: int, rng: random.Random, shown: int) -> list[Message]:
    """One writing call: a few examples (of `label`, for classification), and the ask for k new ones."""
    item = like[0]
    pool = [i for i in like if label is None or i.reference == label] or like
    examples = rng.sample(pool, min(shown, len(pool)))
    if label is not None:
        system = (f"You write exam questions for a text classifier. The labels are: {', '.join(item.labels or [])}. "
                  "Follow the requested format exactly.")
        shown_text = "\n".join(f"Input: {question_text(e)}" for e in examples)
        ask_text = (f"Examples whose label is '{label}':\n{shown_text}\n\nWrite {k} new, varied inputs whose label is "
                    f"'{label}'. Vary the topic, wording and length; do not copy the examples. Write each on one "
                    "line starting with 'Input: '.")
    else:
        system = "You write exam questions with correct reference answers. Follow the requested format exactly."
        shown_text = "\n".join(f"Input: {question_text(e)}\nAnswer: {answer_text(e)}" for e in examples)
        ask_text = (f"Examples:\n{shown_text}\n\nWrite {k} new, different examples like these, each as a line "
                    "'Input: ...' followed by a line 'Answer: ...'.")
    return [Message(role="system", content=system), Message(role="user", content=ask_text)]


def write_exam(like: Exam, teacher: Model, store: Store, *, n: int, labels: Sequence[str] | None = None,
               weights: dict[str, float] | None = None, per_call: int = 10, shown: int = 4,
               avoid: Sequence[Item] = (), exclude: Sequence[Item] = (), verify_mode: str = "teacher",
               verifier: Model | None = None, samples: int = 3, verify_shots: int = 12, verify_check: bool = True,
               dedupe_method: str = "rouge", threshold: float = 0.7, temperature: float = 0.8, seed: int = 0,
               passes: int = 3, prefix: str = "w", console: Console | None = None, progress: bool = True,
               verify_bar: float | None = None, selective: bool = False) -> Written:
    """Have `teacher` write about `n` new items like `like`'s, filtered and verified.

    `avoid`: more items the new ones must not duplicate (earlier training data); `exclude`: items
    they must not copy (the test set), counted as contamination. `seed` picks the sampling seeds:
    the same arguments give the same calls, so a rerun after a kill is served from the cache.
    `verify_bar`: the accuracy the verifier must beat to be trusted (a student's); a verifier below it
    only vetoes, at its calibrated confidence (`magister.synth.verify`). Default: the most common label.
    `selective`: such a verifier's agreement keeps an item only at that confidence too (selective labelling:
    where the items' labels are the teacher's, as in a probe exam, they are used only where it is precise).
    """
    items = like.items
    if not items:
        raise ConfigError("write needs at least one example item (--like)")
    kind = items[0].kind
    if kind is Kind.multiple_choice:
        raise ConfigError("write cannot write multiple-choice options yet; give classification, numeric or "
                          "free-form examples")
    if kind is Kind.classification:
        label_set = list(labels or sorted({lab for i in items for lab in i.labels or ()}))
        unknown = sorted(set(weights or {}) - set(label_set))
        if unknown:
            raise ConfigError(f"weights name labels not in the label set: {', '.join(unknown)}")
        items = [i.model_copy(update={"labels": label_set}) for i in items]
        targets = allocate(n, label_set, weights)
    else:
        targets = {"": n}
    console = console or Console(stderr=True)
    written = Written(items=[], drafts=[], targets={k: v for k, v in targets.items() if v})
    similarity = rouge_similarity() if exclude else None
    existing = {i.id: i.input for i in [*items, *avoid]}
    kept_by: Counter[str] = Counter()
    shots = pick_fewshot(items, verify_shots, seed=0)
    checked_verifier: Model | Neighbours = Neighbours(items) if verify_mode == "neighbours" else verifier or teacher
    veto_at: float | None = None
    keep_at: float | None = None
    with progress_bar(console, progress) as bar:
        if verify_mode != "off" and verify_check and kind is Kind.classification:
            trial = check_verifier(checked_verifier, store, items, shots, bar=verify_bar)
            written.verifier = trial.to_dict()
            if checked_verifier is teacher:  # the check is teacher spend too
                written.calls += trial.calls
                written.tokens += trial.tokens
            if not trial.trusted:
                veto_at = trial.veto_at if verify_mode in ("teacher", "neighbours") else None
                keep_at = veto_at if selective else None
                use = f"it only vetoes, at confidence >= {veto_at:.2f}" if veto_at is not None else \
                    "its verdicts are not used"
                console.print(f"[yellow]The verifier got {trial.accuracy:.0%} of {trial.n} labelled examples right, "
                              f"no better than {trial.bar_name} ({trial.bar:.0%}): {use}.[/]")
                verify_mode = verify_mode if veto_at is not None else "off"
        for number in range(passes):
            short = {label: target - kept_by[label] for label, target in targets.items() if kept_by[label] < target}
            if not short:
                break
            factor = 1.5 if number == 0 else 2.0  # ask for more than needed: some drafts are rejected
            jobs = [(label, call) for label, missing in short.items()
                    for call in range(math.ceil(missing * factor / per_call))]
            drafts = _write_pass(jobs, like=items, teacher=teacher, store=store, written=written, per_call=per_call,
                                 shown=shown, temperature=temperature, seed=seed, number=number, bar=bar,
                                 kind=kind)
            _filter(drafts, existing, exclude, dedupe_method, threshold)
            todo = [(d, as_item(d, items[0], f"{prefix}{len(written.drafts) + j}")) for j, d in enumerate(drafts)]
            asks = sum(d.reason is None for d, _ in todo) * (samples if verify_mode == "majority" else 1)
            task = bar.add_task(f"verifying (pass {number + 1})", total=asks if verify_mode != "off" else 0, rate="")
            calls, tokens = verify(todo, checked_verifier, store, verify_mode, samples, shots,
                                   on_calls=lambda k: bar.advance(task, k), veto_at=veto_at, keep_at=keep_at)
            if checked_verifier is teacher:
                written.calls += calls
                written.tokens += tokens
            for draft, item in todo:
                label = item.reference if kind is Kind.classification else ""
                if draft.reason is None and kept_by[label] >= targets[label]:
                    draft.reason = "surplus: the label's share is full"
                if draft.reason is None:
                    kept_by[label] += 1
                    written.items.append(item)
                    existing[item.id] = item.input
            written.drafts.extend(drafts)
    if similarity is not None:
        written.contamination = _contamination(written.items, written.drafts, exclude, similarity)
    return written


def _write_pass(jobs: list[tuple[str, int]], *, like: list[Item], teacher: Model, store: Store, written: Written,
                per_call: int, shown: int, temperature: float, seed: int, number: int, bar: Progress,
                kind: Kind) -> list[Draft]:
    """Ask the teacher for every job of one pass, batch by batch; returns the parsed drafts."""
    task = bar.add_task(f"teacher drafts (pass {number + 1})", total=len(jobs), rate="")
    drafts: list[Draft] = []
    made = 0
    for begin in range(0, len(jobs), teacher.batch_size):
        batch = jobs[begin:begin + teacher.batch_size]
        requests = []
        for label, call in batch:
            call_seed = _seed(seed, label, number, call)
            messages = prompt(like, label if kind is Kind.classification else None, per_call,
                              random.Random(call_seed), shown)
            requests.append(Request(messages=messages, temperature=temperature, seed=call_seed,
                                    max_tokens=32 + 40 * per_call))
        _, completions, _ = ask(teacher, store, requests)
        for (label, _), completion in zip(batch, completions):
            written.calls += 1
            written.tokens += completion.prompt_tokens + completion.completion_tokens
            made += 0 if completion.cached else completion.completion_tokens
            pairs = parse_drafts(completion.text, label if kind is Kind.classification else None)[:per_call]
            if not pairs:
                written.parse_failures += 1
            for text, answer in pairs:
                drafts.append(_draft(text, answer, label, kind))
        elapsed = bar.tasks[task].elapsed or 0.0
        bar.update(task, advance=len(batch), rate=f"{made / elapsed:.1f} new tok/s" if elapsed else "")
    return drafts


def _draft(text: str, answer: str | None, label: str, kind: Kind) -> Draft:
    if kind is Kind.classification:
        reason = None
        if answer and answer.strip().lower() != label.lower():
            reason = f"teacher labelled it '{answer.strip()}', asked for '{label}'"
        return Draft(input=text, reference=label, strategy="write", source=f"label:{label}", reason=reason)
    return Draft(input=text, reference=(answer or "").strip(), strategy="write", source="examples",
                 reason=None if answer else "no answer given")


def _filter(drafts: list[Draft], existing: dict[str, str], exclude: Sequence[Item], method: str,
            threshold: float) -> None:
    """Empty drafts, copies of the test set (contamination: exact or 8-gram), then near-duplicates of all held."""
    for draft in drafts:
        if draft.reason is None and len(draft.input.split()) < 2:
            draft.reason = "empty input"
    if exclude:  # exact or long n-gram copies of the test set; shared phrasing is dedupe's business
        index = Contamination(exclude)
        for draft in drafts:
            hit = index.find(draft.input) if draft.reason is None else None
            if hit:
                draft.reason = hit.reason()
    dedupe(drafts, dict(existing), method, threshold)


def _contamination(items: list[Item], drafts: list[Draft], exclude: Sequence[Item], similarity: Any,
                   n: int = 8) -> dict[str, Any]:
    """What was rejected as contamination (exact, n-gram, with a sample beside its exam item), and how
    close the kept items come to the excluded ones (ROUGE-L nearest neighbour, shared n-grams)."""
    import numpy as np

    texts = [i.input for i in exclude]
    nearest = np.array([float(similarity(i.input, texts).max()) for i in items]) if items else np.zeros(1)
    grams = {g for t in texts for g in ngrams(t, n)}
    shared = sum(bool(ngrams(i.input, n) & grams) for i in items)
    return {"excluded_items": len(texts), **contamination_summary(drafts, exclude),
            "rouge_l_nearest_mean": float(nearest.mean()),
            "rouge_l_nearest_max": float(nearest.max()), "at_least_0.5": int((nearest >= 0.5).sum()),
            f"sharing_{n}gram": shared}


__all__ = ["Written", "allocate", "parse_drafts", "write_exam"]
